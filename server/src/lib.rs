//! ferrokv's server: the etcd v3 gRPC API (KV, Watch, Lease, Cluster,
//! Maintenance) on a replicated log and engine::mvcc, Prometheus metrics,
//! `/health`, and the `ferrokv` binary's configuration.
//!
//! One concept per file: `config` (flags), `errors` (etcd's codes and
//! messages), `validate` (request checks), `convert` (wire ↔ store types),
//! `entry` (what goes into the log), `apply` (committed entry → store),
//! `replication` (the log seam), `raft` (the seam on raftlog), `node`
//! (what the services share), `service/*`, `snapshot`, `metrics`, `http`,
//! `serve` (listeners).

pub mod apply;
pub mod config;
pub mod convert;
pub mod entry;
pub mod errors;
pub mod http;
pub mod metrics;
pub mod node;
pub mod raft;
pub mod replication;
pub mod serve;
pub mod server_state;
pub mod service;
pub mod snapshot;
pub mod validate;

/// The etcd version ferrokv answers as (Status.version, /version); etcdctl
/// and client libraries gate features on it.
pub const ETCD_API_VERSION: &str = "3.4.23";
