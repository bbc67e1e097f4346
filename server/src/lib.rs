//! ferrokv's server: the etcd v3 gRPC API (KV, Watch, Lease, Cluster,
//! Maintenance) on raftlog and engine::mvcc, Prometheus metrics, `/health`,
//! and the `ferrokv` binary's configuration.

pub mod config;
pub mod errors;
pub mod metrics;
pub mod validate;

/// The etcd version ferrokv answers as (Status.version, /version); etcdctl
/// and client libraries gate features on it.
pub const ETCD_API_VERSION: &str = "3.4.23";
