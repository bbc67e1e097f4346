//! The state-machine trait: what raftlog hands committed entries to, and the
//! shapes of those entries.
//!
//! raftlog replicates opaque commands; it never looks inside them. The
//! server plugs the MVCC store in here, tests plug a small KV model in.

use std::io::{self, Read, Write};

use bytes::Bytes;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfState};

/// Identifies one proposal across the cluster: the proposing node and a
/// sequence number unique on that node (it starts at a random 64-bit value
/// per process, so a restarted node does not reuse the ids of its past life).
/// Carried in the entry's context so the proposer recognises its own entry
/// when it is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProposalId {
    pub node: u64,
    pub seq: u64,
}

impl ProposalId {
    pub const ENCODED_LEN: usize = 16;

    pub fn encode(&self) -> Bytes {
        let mut b = Vec::with_capacity(Self::ENCODED_LEN);
        b.extend_from_slice(&self.node.to_le_bytes());
        b.extend_from_slice(&self.seq.to_le_bytes());
        Bytes::from(b)
    }

    pub fn decode(b: &[u8]) -> Option<ProposalId> {
        if b.len() != Self::ENCODED_LEN {
            return None;
        }
        Some(ProposalId {
            node: u64::from_le_bytes(b[..8].try_into().unwrap()),
            seq: u64::from_le_bytes(b[8..].try_into().unwrap()),
        })
    }
}

/// A membership change, proposed through raft as a conf change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// A new voting member, reachable at `peer_url`.
    AddVoter { id: u64, peer_url: String },
    /// A new non-voting member that receives the log (the safe first step:
    /// it catches up without affecting the quorum).
    AddLearner { id: u64, peer_url: String },
    /// Turns a caught-up learner into a voter.
    PromoteLearner { id: u64 },
    /// Removes a voter or learner.
    Remove { id: u64 },
}

impl MembershipChange {
    pub fn node_id(&self) -> u64 {
        match self {
            MembershipChange::AddVoter { id, .. }
            | MembershipChange::AddLearner { id, .. }
            | MembershipChange::PromoteLearner { id }
            | MembershipChange::Remove { id } => *id,
        }
    }

    /// The peer URL a new member listens on, if this change introduces one.
    pub fn peer_url(&self) -> Option<&str> {
        match self {
            MembershipChange::AddVoter { peer_url, .. }
            | MembershipChange::AddLearner { peer_url, .. } => Some(peer_url),
            _ => None,
        }
    }

    pub fn to_conf_change(&self) -> ConfChange {
        let mut cc = ConfChange::default();
        cc.node_id = self.node_id();
        match self {
            MembershipChange::AddVoter { peer_url, .. } => {
                cc.set_change_type(ConfChangeType::AddNode);
                cc.context = Bytes::from(peer_url.clone().into_bytes());
            }
            MembershipChange::AddLearner { peer_url, .. } => {
                cc.set_change_type(ConfChangeType::AddLearnerNode);
                cc.context = Bytes::from(peer_url.clone().into_bytes());
            }
            MembershipChange::PromoteLearner { .. } => cc.set_change_type(ConfChangeType::AddNode),
            MembershipChange::Remove { .. } => cc.set_change_type(ConfChangeType::RemoveNode),
        }
        cc
    }

    pub fn from_conf_change(cc: &ConfChange) -> MembershipChange {
        let id = cc.node_id;
        let url = String::from_utf8_lossy(&cc.context).into_owned();
        match cc.get_change_type() {
            ConfChangeType::AddNode if cc.context.is_empty() => {
                MembershipChange::PromoteLearner { id }
            }
            ConfChangeType::AddNode => MembershipChange::AddVoter { id, peer_url: url },
            ConfChangeType::AddLearnerNode => MembershipChange::AddLearner { id, peer_url: url },
            ConfChangeType::RemoveNode => MembershipChange::Remove { id },
        }
    }
}

/// What a committed entry carries.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// An opaque command proposed by a client.
    Command(Bytes),
    /// The empty entry a new leader appends to commit its term.
    Empty,
    /// A membership change and the configuration in force after it.
    Membership {
        change: MembershipChange,
        conf_state: ConfState,
    },
}

/// One committed entry, handed to the state machine in log order.
#[derive(Clone, Debug, PartialEq)]
pub struct Committed {
    pub index: u64,
    pub term: u64,
    /// Set when a node proposed it through raftlog's `propose`.
    pub proposal: Option<ProposalId>,
    pub payload: Payload,
}

/// A fatal state-machine failure (a storage error, not a rejected command).
pub type ApplyError = Box<dyn std::error::Error + Send + Sync>;

/// An image of the state captured at one index, written into a snapshot
/// file on a thread of its own while later entries are applied.
pub type SnapshotImage = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + Send>;

/// The replicated state machine.
///
/// Contract:
/// - `apply` sees committed entries in index order. After a restart raftlog
///   replays every committed entry after the latest snapshot, so entries with
///   `index <= applied_index()` may arrive again and must be skipped (an
///   MVCC store compares against its consistent index).
/// - The bytes `apply` returns go back to the proposer of the entry. A
///   command the state machine rejects (say, a failed compare) is a normal
///   response; `Err` means the state machine cannot go on and stops the node.
/// - `make_durable` (optional) lets periodic snapshots skip the file: the
///   state machine's storage must then hold the state at the returned
///   position across a crash, because the log before it is released.
/// - `snapshot` captures the state at `applied_index()` cheaply (a B+tree
///   read transaction, a copy-on-write view) and returns the writer that
///   streams it; the writer runs off the apply path, so it must not see
///   entries applied after the capture. `restore_snapshot` replaces the
///   whole state with such an image.
pub trait StateMachine: Send + 'static {
    fn apply(&mut self, entry: &Committed) -> Result<Bytes, ApplyError>;

    /// The index of the last entry reflected in the state.
    fn applied_index(&self) -> u64;

    fn snapshot(&mut self) -> io::Result<SnapshotImage>;

    /// Makes the state at `applied_index()` durable in the state machine's
    /// own storage (an MVCC store commits its backend, whose consistent
    /// index records the position) and returns true. The periodic snapshot
    /// is then only a marker at that index, without a file, and the log
    /// before it can be released; a file is still taken (`snapshot`) when a
    /// follower needs one. The default returns false: every snapshot is a
    /// file.
    fn make_durable(&mut self) -> io::Result<bool> {
        Ok(false)
    }

    fn restore_snapshot(&mut self, input: &mut dyn Read, index: u64, term: u64) -> io::Result<()>;

    /// Called after a run of `apply` calls (a committed batch, or a bounded
    /// part of one). A state machine that holds back the answers of the
    /// entries it applied, to hand them out together, releases them now;
    /// the proposers' results (`Node::propose`) are resolved right after.
    /// Waking many waiters at once lets them share work downstream (one
    /// network write per connection for many responses). Default: nothing.
    fn end_of_batch(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposal_id_round_trips() {
        let id = ProposalId {
            node: 7,
            seq: u64::MAX - 3,
        };
        assert_eq!(ProposalId::decode(&id.encode()), Some(id));
        assert_eq!(ProposalId::decode(b"short"), None);
    }

    #[test]
    fn membership_change_round_trips_through_conf_change() {
        for ch in [
            MembershipChange::AddVoter {
                id: 4,
                peer_url: "http://127.0.0.1:1".into(),
            },
            MembershipChange::AddLearner {
                id: 5,
                peer_url: "http://127.0.0.1:2".into(),
            },
            MembershipChange::PromoteLearner { id: 5 },
            MembershipChange::Remove { id: 2 },
        ] {
            assert_eq!(MembershipChange::from_conf_change(&ch.to_conf_change()), ch);
        }
    }
}
