//! The replicated log: raftlog's node, with the MVCC store as its state
//! machine. Every request goes through it, also on a one-member cluster,
//! as in etcd.
//!
//! Durability comes from raftlog's WAL (`member/wal/`, group commit): an
//! entry is committed once a quorum has it durably in its WAL, and its
//! request is answered as soon as it is applied to the store. The store's
//! backend (`member/snap/db`) commits in batches on its own thread (etcd's
//! batch tx); its consistent index tells a restarted member which entries
//! of the WAL it still has to apply (apply is idempotent by raft index).
//!
//! Every `--snapshot-count` entries the store's backend commits and the
//! snapshot is only that position (raftlog's marker without a file): the
//! WAL before it is released, and nothing is copied. When a follower is too
//! far behind, the leader takes a snapshot file: a consistent copy of the
//! backend (`Store::snapshot_to`), written by raftlog on a thread of its
//! own while applying goes on; the copy holds everything up to at least the
//! snapshot's index (its meta bucket says exactly where), so a follower
//! that installs it skips the entries it already holds.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use engine::mvcc::Store;
use raftlog::state_machine::{ApplyError, SnapshotImage};
use raftlog::{Committed, Payload, StateMachine};

use crate::apply::{Applier, Delivery};
use crate::errors::EtcdError;
use crate::replication::{
    BoxFut, MemberInfo, MembershipChange, Replication, ReplicationError, ReplicationStatus,
};

/// The MVCC store as raftlog's state machine.
pub struct Machine {
    pub applier: Arc<Applier>,
    /// Answers of the entries applied since the last `end_of_batch`: they
    /// go out together, so the requests' tasks wake together and their
    /// responses share a write per connection.
    answers: Vec<Delivery>,
}

impl Machine {
    pub fn new(applier: Arc<Applier>) -> Machine {
        Machine {
            applier,
            answers: Vec::new(),
        }
    }
}

impl StateMachine for Machine {
    fn apply(&mut self, e: &Committed) -> Result<Bytes, ApplyError> {
        let _applying = self.applier.gate.read();
        match &e.payload {
            Payload::Command(data) => {
                if let Some(d) = self.applier.apply(e.index, data)? {
                    self.answers.push(d);
                }
            }
            Payload::Empty => self.applier.apply_empty(e.index)?,
            Payload::Membership { change, .. } => self.applier.apply_membership(e.index, change)?,
        }
        // Answers travel through the applier's waits as Rust values.
        Ok(Bytes::new())
    }

    fn applied_index(&self) -> u64 {
        self.applier.store().consistent_index()
    }

    fn end_of_batch(&mut self) {
        self.applier.deliver_all(&mut self.answers);
    }

    fn snapshot(&mut self) -> io::Result<SnapshotImage> {
        let store = self.applier.store();
        Ok(Box::new(move |out| {
            store
                .snapshot_to(out)
                .map(|_| ())
                .map_err(|e| io::Error::other(e.to_string()))
        }))
    }

    /// The periodic snapshot is only a position: a backend commit makes
    /// the store durable at its consistent index (no copy of the db; files
    /// are taken when a follower needs one).
    fn make_durable(&mut self) -> io::Result<bool> {
        self.applier
            .store()
            .sync()
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(true)
    }

    fn restore_snapshot(&mut self, input: &mut dyn Read, index: u64, term: u64) -> io::Result<()> {
        let started = Instant::now();
        let _applying = self.applier.gate.write();
        let a = &self.applier;
        let store = Store::restore_from_snapshot(&a.db_path, a.store_opts.clone(), input)
            .map_err(|e| io::Error::other(format!("opening the snapshot's store: {e}")))?;
        if store.consistent_index() < index {
            return Err(io::Error::other(format!(
                "snapshot {index} holds a store at consistent index {} only",
                store.consistent_index()
            )));
        }
        let old = self.applier.store.replace(Arc::new(store));
        self.applier
            .reload_server_state()
            .map_err(io::Error::other)?;
        // The previous store closes when its last reader lets go.
        drop(old);
        tracing::info!(
            index,
            term,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "installed a snapshot from the leader"
        );
        Ok(())
    }
}

/// raftlog's error as the server reports it (etcd's errors).
pub fn map_error(e: raftlog::Error) -> ReplicationError {
    use raftlog::Error as E;
    match e {
        E::NotLeader { leader: None } => ReplicationError::NoLeader,
        E::NotLeader { leader: Some(_) } => ReplicationError::NotLeader,
        E::Busy(_) => ReplicationError::TooManyRequests,
        E::Stopped | E::Removed => ReplicationError::Stopped,
        E::Timeout => ReplicationError::Timeout,
        E::CommandTooLarge { .. } => ReplicationError::Etcd(EtcdError::RequestTooLarge),
        E::Membership(why) => ReplicationError::Etcd(membership_error(&why)),
        E::ProposalDropped(_) => ReplicationError::LeaderChanged,
        other => {
            tracing::warn!("replication error: {other}");
            ReplicationError::Stopped
        }
    }
}

/// raftlog's refusal of a membership change, as etcd's error.
fn membership_error(why: &str) -> EtcdError {
    if why.contains("already a member") {
        EtcdError::MemberExist
    } else if why.contains("not a learner") {
        EtcdError::MemberNotLearner
    } else if why.contains("not a member") || why.contains("not a voter") {
        EtcdError::MemberNotFound
    } else if why.contains("last voter") {
        EtcdError::Unhealthy
    } else {
        // A previous change is still being applied: etcd answers a
        // concurrent change this way too.
        EtcdError::TooManyRequests
    }
}

/// The log of a member: raftlog's node and what the server caches of it.
pub struct RaftLog {
    node: raftlog::Node,
    applier: Arc<Applier>,
    member_id: u64,
    /// The raft term as last seen, for response headers (refreshed by
    /// `refresh`, so a header costs no lock).
    term: AtomicU64,
    leader: AtomicU64,
    learner: std::sync::atomic::AtomicBool,
    /// How long MoveLeader waits for the transferee to take over.
    transfer_timeout: Duration,
}

impl RaftLog {
    pub fn new(
        node: raftlog::Node,
        applier: Arc<Applier>,
        member_id: u64,
        transfer_timeout: Duration,
    ) -> RaftLog {
        let log = RaftLog {
            node,
            applier,
            member_id,
            term: AtomicU64::new(0),
            leader: AtomicU64::new(0),
            learner: std::sync::atomic::AtomicBool::new(false),
            transfer_timeout,
        };
        log.refresh();
        log
    }

    pub fn node(&self) -> &raftlog::Node {
        &self.node
    }

    /// Re-reads term and leader from the node (called every few
    /// milliseconds by the server's background task).
    pub fn refresh(&self) -> raftlog::core::Status {
        let s = self.node.status();
        self.term.store(s.term, Ordering::Relaxed);
        self.leader.store(s.leader_id, Ordering::Relaxed);
        self.learner
            .store(Self::is_learner(&s, self.member_id), Ordering::Relaxed);
        s
    }

    /// WAL write + fdatasync durations so far, in nanoseconds.
    pub fn wal_fsync_ns(&self) -> hdrhistogram::Histogram<u64> {
        self.node.wal_metrics().fsync_ns
    }

    /// Starts an election at once when this member is the only voter
    /// and has no leader: a one-member cluster need not wait an election
    /// timeout to serve after a (re)start. Returns whether it did.
    pub fn campaign_if_alone(&self, s: &raftlog::core::Status) -> bool {
        if s.leader_id != 0 || s.conf_state.voters != [self.member_id] {
            return false;
        }
        match self.node.campaign() {
            Ok(p) => {
                drop(p);
                true
            }
            Err(_) => false,
        }
    }

    fn is_learner(s: &raftlog::core::Status, id: u64) -> bool {
        s.conf_state.learners.contains(&id)
    }
}

impl Replication for RaftLog {
    fn propose(&self, entry: Vec<u8>) -> BoxFut<'_, Result<(), ReplicationError>> {
        let pending = self.node.propose(Bytes::from(entry));
        Box::pin(async move {
            pending.map_err(map_error)?.await.map_err(map_error)?;
            Ok(())
        })
    }

    fn read_barrier(&self) -> BoxFut<'_, Result<(), ReplicationError>> {
        let pending = self.node.read_index();
        Box::pin(async move {
            pending.map_err(map_error)?.await.map_err(map_error)?;
            Ok(())
        })
    }

    fn status(&self) -> ReplicationStatus {
        let s = self.refresh();
        ReplicationStatus {
            member_id: self.member_id,
            leader_id: s.leader_id,
            term: s.term,
            commit_index: s.commit_index,
            applied_index: s.applied_index,
            is_learner: Self::is_learner(&s, self.member_id),
        }
    }

    fn term(&self) -> u64 {
        self.term.load(Ordering::Relaxed)
    }

    fn leader_id(&self) -> u64 {
        self.leader.load(Ordering::Relaxed)
    }

    fn is_learner(&self) -> bool {
        self.learner.load(Ordering::Relaxed)
    }

    fn members(&self) -> Vec<MemberInfo> {
        let s = self.node.status();
        let table = self.applier.members.all();
        let mut ids: Vec<(u64, bool)> = s.conf_state.voters.iter().map(|&id| (id, false)).collect();
        ids.extend(s.conf_state.learners.iter().map(|&id| (id, true)));
        ids.sort_unstable();
        ids.into_iter()
            .map(|(id, is_learner)| {
                let rec = table.get(&id).cloned().unwrap_or_default();
                MemberInfo {
                    id,
                    name: rec.name,
                    peer_urls: rec.peer_urls,
                    client_urls: rec.client_urls,
                    is_learner,
                }
            })
            .collect()
    }

    fn change_membership(
        &self,
        change: MembershipChange,
    ) -> BoxFut<'_, Result<Vec<MemberInfo>, ReplicationError>> {
        use raftlog::MembershipChange as C;
        let c = match change {
            MembershipChange::Add {
                id,
                peer_urls,
                is_learner,
            } => {
                let peer_url = peer_urls.into_iter().next().unwrap_or_default();
                if is_learner {
                    C::AddLearner { id, peer_url }
                } else {
                    C::AddVoter { id, peer_url }
                }
            }
            MembershipChange::Remove { id } => C::Remove { id },
            MembershipChange::Promote { id } => C::PromoteLearner { id },
        };
        let pending = self.node.change_membership(c);
        Box::pin(async move {
            pending.map_err(map_error)?.await.map_err(map_error)?;
            Ok(self.members())
        })
    }

    fn transfer_leadership(&self, to: u64) -> BoxFut<'_, Result<(), ReplicationError>> {
        if to == self.member_id && self.status().is_leader() {
            return Box::pin(async { Ok(()) });
        }
        let pending = self.node.transfer_leader(to);
        Box::pin(async move {
            pending.map_err(map_error)?.await.map_err(map_error)?;
            let deadline = Instant::now() + self.transfer_timeout;
            while Instant::now() < deadline {
                if self.refresh().leader_id == to {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(ReplicationError::Timeout)
        })
    }
}
