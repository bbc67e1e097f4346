//! The seam between the server and its replicated log. The server proposes
//! opaque entries (see `entry`) and learns their outcome from the apply
//! path (`apply::Applier`), which the log calls for every committed entry
//! in log order; linearizable reads wait on a read barrier (ReadIndex).
//!
//! The implementation is `raft::RaftLog` (raftlog's node, WAL-backed).

use std::future::Future;
use std::pin::Pin;

use crate::errors::EtcdError;

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A member as the Cluster API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// A point-in-time view of the local member's replication state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicationStatus {
    pub member_id: u64,
    /// 0 when no leader is known.
    pub leader_id: u64,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub is_learner: bool,
}

impl ReplicationStatus {
    pub fn is_leader(&self) -> bool {
        self.leader_id != 0 && self.leader_id == self.member_id
    }
}

/// A membership change requested through the Cluster API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    Add {
        id: u64,
        peer_urls: Vec<String>,
        is_learner: bool,
    },
    Remove {
        id: u64,
    },
    Promote {
        id: u64,
    },
}

/// Why the log refused or lost a request; each maps to etcd's error.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplicationError {
    #[error("no leader")]
    NoLeader,
    #[error("not leader")]
    NotLeader,
    #[error("leader changed")]
    LeaderChanged,
    #[error("stopped")]
    Stopped,
    #[error("timed out")]
    Timeout,
    #[error("too many requests")]
    TooManyRequests,
    #[error("not capable")]
    NotCapable,
    #[error("{0}")]
    Etcd(EtcdError),
}

impl From<ReplicationError> for EtcdError {
    fn from(e: ReplicationError) -> EtcdError {
        match e {
            ReplicationError::NoLeader => EtcdError::NoLeader,
            ReplicationError::NotLeader => EtcdError::NotLeader,
            ReplicationError::LeaderChanged => EtcdError::LeaderChanged,
            ReplicationError::Stopped => EtcdError::Stopped,
            ReplicationError::Timeout => EtcdError::Timeout,
            ReplicationError::TooManyRequests => EtcdError::TooManyRequests,
            ReplicationError::NotCapable => EtcdError::NotCapable,
            ReplicationError::Etcd(e) => e,
        }
    }
}

impl From<ReplicationError> for tonic::Status {
    fn from(e: ReplicationError) -> tonic::Status {
        EtcdError::from(e).status()
    }
}

pub trait Replication: Send + Sync + 'static {
    /// Hands `entry` to the log (on a follower: forwarded to the leader).
    /// Resolves once the entry was applied here, or with the reason it
    /// never will be; its answer arrives through the apply path.
    fn propose(&self, entry: Vec<u8>) -> BoxFut<'_, Result<(), ReplicationError>>;

    /// Resolves once the local state machine has applied every entry
    /// committed before the call (raft's ReadIndex, batched).
    fn read_barrier(&self) -> BoxFut<'_, Result<(), ReplicationError>>;

    fn status(&self) -> ReplicationStatus;

    /// The current raft term, cheaply (response headers carry it).
    fn term(&self) -> u64 {
        self.status().term
    }

    /// Whether this member is a learner, as last seen, cheaply.
    fn is_learner(&self) -> bool {
        self.status().is_learner
    }

    /// The leader as last seen (0: none), cheaply.
    fn leader_id(&self) -> u64 {
        self.status().leader_id
    }

    fn members(&self) -> Vec<MemberInfo>;

    /// Applies a membership change through the log; the members after it.
    fn change_membership(
        &self,
        change: MembershipChange,
    ) -> BoxFut<'_, Result<Vec<MemberInfo>, ReplicationError>>;

    /// Hands leadership to `to` (a voting member).
    fn transfer_leadership(&self, to: u64) -> BoxFut<'_, Result<(), ReplicationError>>;
}
