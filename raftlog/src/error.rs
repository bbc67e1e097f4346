//! The error type of the raftlog crate boundary.

use std::io;
use std::path::PathBuf;

/// Everything raftlog can report to its caller. Bad input and lost leadership
/// are ordinary errors the caller can act on; nothing here is a panic.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),

    #[error("invalid --initial-cluster: {0}")]
    InitialCluster(String),

    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader { leader: Option<u64> },

    #[error("proposal dropped by raft: {0}")]
    ProposalDropped(String),

    #[error("command of {bytes} bytes exceeds the limit of {limit} bytes")]
    CommandTooLarge { bytes: usize, limit: usize },

    #[error("the proposal queue is full ({0} pending)")]
    Busy(usize),

    #[error("the node has stopped")]
    Stopped,

    #[error("the node was removed from the cluster")]
    Removed,

    #[error("request timed out; the outcome is unknown")]
    Timeout,

    #[error("membership change rejected: {0}")]
    Membership(String),

    #[error("raft: {0}")]
    Raft(#[from] raft::Error),

    #[error("corrupt raft log record at index {index}: {reason}")]
    CorruptRecord { index: u64, reason: String },

    #[error("raft log recovery: {0}")]
    Recovery(String),

    #[error("durable log: {0}")]
    Log(String),

    #[error("snapshot {path}: {reason}")]
    Snapshot { path: PathBuf, reason: String },

    #[error("state machine: {0}")]
    StateMachine(String),

    #[error("transport: {0}")]
    Transport(String),

    #[error("protobuf: {0}")]
    Protobuf(#[from] protobuf::ProtobufError),

    #[error("io: {0}")]
    Io(#[from] io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
