//! ferrobench: load generator, campaigns, reports, regression gate and
//! profiles for etcd v3 API servers (etcd, ferrokv) and the embedded engine.
//!
//! One concept per file: `workload` (what is asked), `keys` (which keys),
//! `target` (whom it is asked of, as a trait) with `grpc` (any etcd v3
//! endpoint), `driver` (closed/open loop, warm-up, coordinated-omission
//! correction), `recorder` (HdrHistogram per operation), `results` (the JSON
//! schema), `machine` (facts, fdatasync), `system` (starting and stopping
//! systems under test), `procstat` (their CPU, RSS, disk writes), `metrics`
//! (their Prometheus counters), and one file per subcommand.

pub mod alloc;
pub mod callgrind;
pub mod campaign;
pub mod driver;
pub mod embedded;
pub mod export;
pub mod gate;
pub mod grpc;
pub mod keys;
pub mod machine;
pub mod metrics;
pub mod plots;
pub mod procstat;
pub mod profile;
pub mod progress;
pub mod recorder;
pub mod report;
pub mod results;
pub mod run;
pub mod summary;
pub mod system;
pub mod target;
pub mod workload;
