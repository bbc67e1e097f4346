//! raftlog — replication for ferrokv.
//!
//! A driver around raft-rs's `RawNode` that replicates opaque commands and
//! hands committed entries, in order, to a [`StateMachine`]. It pipelines
//! appends (`max_inflight_msgs`), persists asynchronously so a leader sends
//! before its own log write is durable (raft thesis §10.2.1), stores the log
//! in a durable [`LogStore`](log_store::LogStore) (engine::wal) behind an
//! in-memory tail, snapshots and compacts, serves linearizable reads through
//! batched ReadIndex, and talks to peers over TCP.
//!
//! Layout, one concept per file:
//! - [`config`]: node configuration and its validation
//! - [`cluster`]: `--initial-cluster` parsing and member ids
//! - [`record`]: the records raftlog writes to the durable log
//! - [`storage`]: `raft::Storage` over the in-memory tail
//! - [`log_store`]: the durable-log seam and its implementations
//! - [`state_machine`]: the trait committed entries are applied to
//! - [`snapshot`]: snapshot files and their streaming
//! - [`read_index`]: batched ReadIndex bookkeeping
//! - [`core`]: the I/O-free driver around `RawNode`
//! - [`node`]: the threaded node (raft loop, WAL, transport) and its handle
//! - `apply`: the apply worker that owns the state machine
//! - [`pending`]: one-shot results of proposals, reads and requests
//! - [`transport`]: the peer transport trait, TCP, and the faulty test network
//! - [`sim`]: the deterministic cluster simulator the tests run
//! - [`kv`]: a small KV state machine for tests and benchmarks
//! - [`kv_service`]: that KV model over TCP, for process tests and benchmarks
//! - [`linearizability`]: a WGL/Porcupine-style checker for KV histories

// raft's protobuf messages are built field by field from `default()`, the way
// their generated API is meant to be used.
#![allow(clippy::field_reassign_with_default)]

mod apply;
pub mod cluster;
pub mod config;
pub mod core;
pub mod error;
pub mod kv;
pub mod kv_service;
pub mod linearizability;
pub mod log_bridge;
pub mod log_store;
pub mod node;
pub mod pending;
pub mod read_index;
pub mod record;
pub mod sim;
pub mod snapshot;
pub mod state_machine;
pub mod storage;
pub mod transport;

pub use crate::cluster::{ClusterState, InitialCluster};
pub use crate::config::Config;
pub use crate::error::{Error, Result};
pub use crate::node::{Node, NodeConfig};
pub use crate::pending::Pending;
pub use crate::state_machine::{Committed, MembershipChange, Payload, ProposalId, StateMachine};
pub use raft;
