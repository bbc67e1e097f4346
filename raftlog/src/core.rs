//! The raft driver without I/O: a `RawNode` and the bookkeeping around it.
//!
//! `Core` never touches a disk, a socket or a clock. The caller feeds it
//! ticks, messages, proposals and completions, and repeatedly takes
//! [`Work`] from [`Core::poll`]: messages to send, record batches to make
//! durable, committed entries to apply, reads that became safe to serve.
//! The threaded [`Node`](crate::node::Node) and the deterministic simulator
//! ([`sim`](crate::sim)) drive the same `Core`, so the simulator tests the
//! code that runs in production.
//!
//! Persistence is asynchronous (raft-rs `advance_append_async` /
//! `on_persist_ready`): a ready's records go to the durable log and the
//! driver goes on. A leader's appends leave at once, before its own write
//! is durable (raft thesis §10.2.1: the leader's log write is just one of
//! the writes a quorum needs); a follower's answers wait until the write
//! they acknowledge is durable. Batches complete in submission order.

use std::collections::VecDeque;

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType, Snapshot,
};
use raft::{RawNode, SnapshotStatus, StateRole};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::read_index::{ReadId, ReadIndexQueue};
use crate::record::{LogRecord, SnapshotOrigin};
use crate::state_machine::{Committed, MembershipChange, Payload, ProposalId};
use crate::storage::RaftStorage;

/// Records to make durable, in order. Report completion with
/// [`Core::on_persisted`]`(seq)`; completions must come in `seq` order.
#[derive(Debug)]
pub struct PersistBatch {
    pub seq: u64,
    pub records: Vec<LogRecord>,
}

/// What the caller has to do after a [`Core::poll`].
#[derive(Debug, Default)]
pub struct Work {
    /// Send these now (a MsgSnapshot needs its file streamed along).
    pub messages: Vec<Message>,
    /// Make these durable, in order.
    pub persist: Vec<PersistBatch>,
    /// Restore the state machine from this snapshot before applying
    /// `committed` (its file was received before the message was stepped).
    pub install_snapshot: Option<Snapshot>,
    /// Apply these in order.
    pub committed: Vec<Committed>,
    /// These reads may now be served from the local state machine.
    pub reads_ready: Vec<ReadId>,
    /// The durable log no longer needs what precedes this snapshot index.
    pub release_to: Option<u64>,
    /// A follower needs a snapshot newer than the latest: take one now
    /// instead of waiting for the snapshot interval.
    pub snapshot_wanted: bool,
    /// Removed members that still send messages: tell them they were
    /// removed (the leader no longer replicates to them, so they may never
    /// see the entry that removed them), as etcd's peer transport does.
    pub tell_removed: Vec<u64>,
}

impl Work {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.persist.is_empty()
            && self.install_snapshot.is_none()
            && self.committed.is_empty()
            && self.reads_ready.is_empty()
            && self.release_to.is_none()
            && !self.snapshot_wanted
            && self.tell_removed.is_empty()
    }
}

/// A point-in-time view of a node.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    pub id: u64,
    pub term: u64,
    pub role: StateRole,
    /// 0 when no leader is known.
    pub leader_id: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub first_index: u64,
    pub last_index: u64,
    pub snapshot_index: u64,
    pub conf_state: ConfState,
    pub removed: bool,
}

/// A submitted (or, without I/O, immediately complete) persistence step.
struct Unpersisted {
    seq: u64,
    ready: Option<u64>,
    messages: Vec<Message>,
    release_to: Option<u64>,
    done: bool,
}

pub struct Core {
    raw: RawNode<RaftStorage>,
    id: u64,
    parallel_leader_persist: bool,
    compaction_margin: u64,
    command_bytes_max: usize,

    persist_seq: u64,
    unpersisted: VecDeque<Unpersisted>,
    /// Batches not yet handed out by `poll` (snapshot markers).
    persist_out: Vec<PersistBatch>,
    /// Messages released by completed persistence, sent at the next poll.
    outbox: Vec<Message>,
    release_to: Option<u64>,

    /// Highest index the state machine has applied.
    sm_applied: u64,
    reads: ReadIndexQueue,
    reads_ready: Vec<ReadId>,

    /// Term and vote of the last hard state handed out for persistence.
    persisted_term_vote: (u64, u64),
    /// Configuration after the last applied membership change.
    conf_state: ConfState,
    removed: bool,
    /// Members removed by changes applied since this start (ids are never
    /// reused, so a message from one is from a removed node).
    removed_peers: std::collections::BTreeSet<u64>,
    tell_removed: Vec<u64>,
}

fn is_ignorable_step_error(e: &raft::Error) -> bool {
    matches!(e, raft::Error::StepPeerNotFound | raft::Error::StepLocalMsg)
}

impl Core {
    /// Starts raft over a recovered (or freshly bootstrapped) log. Committed
    /// entries after the latest snapshot are handed out again; the state
    /// machine skips those it already holds. `incarnation` is a random value
    /// that differs between starts of the node (it numbers ReadIndex rounds).
    pub fn new(
        cfg: &Config,
        storage: RaftStorage,
        logger: &slog::Logger,
        incarnation: u64,
    ) -> Result<Core> {
        cfg.validate()?;
        let conf_state = storage.conf_state().clone();
        let snapshot_index = storage.snapshot_index();
        let persisted_term_vote = (storage.hard_state().term, storage.hard_state().vote);
        let raw = RawNode::new(&cfg.to_raft(), storage, logger)?;
        Ok(Core {
            raw,
            id: cfg.id,
            parallel_leader_persist: cfg.parallel_leader_persist,
            compaction_margin: cfg.compaction_margin_entries,
            command_bytes_max: cfg.command_bytes_max,
            persist_seq: 0,
            unpersisted: VecDeque::new(),
            persist_out: Vec::new(),
            outbox: Vec::new(),
            release_to: None,
            sm_applied: snapshot_index,
            reads: ReadIndexQueue::new(
                cfg.id,
                incarnation,
                cfg.read_index_retry_ticks,
                cfg.proposal_queue_max,
            ),
            reads_ready: Vec::new(),
            persisted_term_vote,
            conf_state,
            removed: false,
            removed_peers: Default::default(),
            tell_removed: Vec::new(),
        })
    }

    /// The records a member of a new cluster starts with (etcd's bootstrap):
    /// one committed AddNode entry per initial member, in id order, at term
    /// one. Every member writes the same records, so their logs agree, and a
    /// member added later learns the initial configuration by replaying them.
    pub fn bootstrap_records(members: &[(u64, String)]) -> Vec<LogRecord> {
        let mut members = members.to_vec();
        members.sort();
        let mut records = Vec::with_capacity(members.len() + 1);
        for (i, (id, url)) in members.iter().enumerate() {
            let cc = MembershipChange::AddVoter {
                id: *id,
                peer_url: url.clone(),
            }
            .to_conf_change();
            let mut e = Entry::default();
            e.set_entry_type(EntryType::EntryConfChange);
            e.term = 1;
            e.index = i as u64 + 1;
            e.data = Bytes::from(cc.write_to_bytes().expect("conf change encodes"));
            records.push(LogRecord::Entry(e));
        }
        let mut hs = raft::eraftpb::HardState::default();
        hs.term = 1;
        hs.commit = members.len() as u64;
        records.push(LogRecord::HardState(hs));
        records
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn raw(&self) -> &RawNode<RaftStorage> {
        &self.raw
    }

    /// Advances the election clock by `ticks`, short of the timeout: the
    /// simulator's stand-in for the fresh random timeout raft-rs draws
    /// (from an RNG it cannot seed) when a node starts a campaign.
    pub(crate) fn advance_election_clock(&mut self, ticks: usize) {
        let raft = &mut self.raw.raft;
        let room = raft
            .randomized_election_timeout()
            .saturating_sub(raft.election_elapsed + 1);
        raft.election_elapsed += ticks.min(room);
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    pub fn leader_id(&self) -> Option<u64> {
        match self.raw.raft.leader_id {
            0 => None,
            id => Some(id),
        }
    }

    pub fn is_removed(&self) -> bool {
        self.removed
    }

    pub fn status(&self) -> Status {
        let raft = &self.raw.raft;
        let store = self.raw.store();
        Status {
            id: self.id,
            term: raft.term,
            role: raft.state,
            leader_id: raft.leader_id,
            commit_index: raft.raft_log.committed,
            applied_index: self.sm_applied,
            first_index: store.first(),
            last_index: raft.raft_log.last_index(),
            snapshot_index: store.snapshot_index(),
            conf_state: self.conf_state.clone(),
            removed: self.removed,
        }
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// One raft tick (heartbeats, election timeout, read retries).
    pub fn tick(&mut self) {
        self.reads.tick();
        self.raw.tick();
    }

    /// A message from a peer.
    pub fn step(&mut self, msg: Message) {
        if msg.to != self.id {
            tracing::debug!(
                id = self.id,
                to = msg.to,
                "dropping message addressed to another node"
            );
            return;
        }
        if self.removed_peers.contains(&msg.from) {
            if !self.tell_removed.contains(&msg.from) {
                self.tell_removed.push(msg.from);
            }
            return;
        }
        if let Err(e) = self.raw.step(msg) {
            if !is_ignorable_step_error(&e) {
                tracing::debug!(id = self.id, "step: {e}");
            }
        }
    }

    /// Proposes a command. Followers forward to the leader; with no known
    /// leader the proposal is refused so the caller can retry elsewhere.
    pub fn propose(&mut self, id: ProposalId, data: Bytes) -> Result<()> {
        self.propose_batch(vec![(id, data)])
    }

    /// Proposes many commands as one raft message: they are appended
    /// together, leave in one append per follower and one durable write.
    /// All or none are accepted.
    pub fn propose_batch(&mut self, batch: Vec<(ProposalId, Bytes)>) -> Result<()> {
        if self.removed {
            return Err(Error::Removed);
        }
        let mut entries = Vec::with_capacity(batch.len());
        for (id, data) in batch {
            if data.is_empty() {
                return Err(Error::ProposalDropped(
                    "empty commands are reserved for leader no-ops".into(),
                ));
            }
            if data.len() > self.command_bytes_max {
                return Err(Error::CommandTooLarge {
                    bytes: data.len(),
                    limit: self.command_bytes_max,
                });
            }
            let mut e = Entry::default();
            e.data = data;
            e.context = id.encode();
            entries.push(e);
        }
        if entries.is_empty() {
            return Ok(());
        }
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgPropose);
        m.from = self.id;
        m.set_entries(entries.into());
        match self.raw.step(m) {
            Ok(()) => Ok(()),
            Err(raft::Error::ProposalDropped) => Err(Error::NotLeader {
                leader: self.leader_id(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Proposes a membership change. Only the leader accepts one, and only
    /// when the previous change has been applied (raft allows one at a time).
    pub fn propose_membership(&mut self, id: ProposalId, change: &MembershipChange) -> Result<()> {
        if self.removed {
            return Err(Error::Removed);
        }
        if !self.is_leader() {
            return Err(Error::NotLeader {
                leader: self.leader_id(),
            });
        }
        if self.raw.raft.has_pending_conf() {
            return Err(Error::Membership(
                "a previous membership change is not applied yet".into(),
            ));
        }
        self.validate_membership(change)?;
        match self
            .raw
            .propose_conf_change(id.encode().to_vec(), change.to_conf_change())
        {
            Ok(()) => Ok(()),
            Err(raft::Error::ProposalDropped) => Err(Error::NotLeader {
                leader: self.leader_id(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    fn validate_membership(&self, change: &MembershipChange) -> Result<()> {
        let cs = &self.conf_state;
        let id = change.node_id();
        let voter = cs.voters.contains(&id);
        let learner = cs.learners.contains(&id);
        let reject = |why: String| Err(Error::Membership(why));
        if id == 0 {
            return reject("node id 0 is invalid".into());
        }
        match change {
            MembershipChange::AddVoter { .. } | MembershipChange::AddLearner { .. }
                if voter || learner =>
            {
                reject(format!("{id:x} is already a member"))
            }
            MembershipChange::PromoteLearner { .. } if !learner => {
                reject(format!("{id:x} is not a learner"))
            }
            MembershipChange::Remove { .. } if !voter && !learner => {
                reject(format!("{id:x} is not a member"))
            }
            MembershipChange::Remove { .. } if id == self.id => {
                reject("the leader cannot remove itself; transfer leadership first".into())
            }
            MembershipChange::Remove { .. } if voter && cs.voters.len() == 1 => {
                reject("cannot remove the last voter".into())
            }
            _ => Ok(()),
        }
    }

    /// Asks the leader to hand leadership to `to` (raft thesis §3.10).
    pub fn transfer_leader(&mut self, to: u64) -> Result<()> {
        if !self.conf_state.voters.contains(&to) {
            return Err(Error::Membership(format!("{to:x} is not a voter")));
        }
        if !self.is_leader() {
            return Err(Error::NotLeader {
                leader: self.leader_id(),
            });
        }
        self.raw.transfer_leader(to);
        Ok(())
    }

    /// Starts campaigning now instead of waiting for the election timeout.
    pub fn campaign(&mut self) -> Result<()> {
        Ok(self.raw.campaign()?)
    }

    /// Queues a linearizable read; false when too many reads are pending.
    pub fn read_index(&mut self, id: ReadId) -> bool {
        self.reads.push(id)
    }

    /// A member told this node it was removed from the cluster.
    pub fn on_removed_notice(&mut self, from: u64) {
        if self.conf_state.voters.contains(&from)
            || self.conf_state.learners.contains(&from)
            || self.conf_state.voters.is_empty()
        {
            tracing::warn!(id = self.id, from, "removed from the cluster; stopping");
            self.removed = true;
        }
    }

    pub fn report_unreachable(&mut self, to: u64) {
        self.raw.report_unreachable(to);
    }

    pub fn report_snapshot(&mut self, to: u64, delivered: bool) {
        let status = if delivered {
            SnapshotStatus::Finish
        } else {
            SnapshotStatus::Failure
        };
        self.raw.report_snapshot(to, status);
    }

    /// Batches up to `seq` are durable.
    pub fn on_persisted(&mut self, seq: u64) {
        for u in self.unpersisted.iter_mut() {
            if u.seq > seq {
                break;
            }
            u.done = true;
        }
        self.drain_persisted();
    }

    fn drain_persisted(&mut self) {
        let mut ready = None;
        while self.unpersisted.front().is_some_and(|u| u.done) {
            let u = self.unpersisted.pop_front().unwrap();
            self.outbox.extend(u.messages);
            if u.ready.is_some() {
                ready = u.ready;
            }
            if u.release_to.is_some() {
                self.release_to = u.release_to;
            }
        }
        if let Some(number) = ready {
            self.raw.on_persist_ready(number);
            self.sync_applied();
        }
    }

    /// The state machine has applied everything up to `index`.
    pub fn on_applied(&mut self, index: u64) {
        if index > self.sm_applied {
            self.sm_applied = index;
        }
        self.sync_applied();
        self.reads.release(self.sm_applied, &mut self.reads_ready);
    }

    /// raft-rs requires applied <= min(committed, persisted); after a
    /// snapshot install the state machine can run ahead of that until the
    /// snapshot marker is durable.
    fn sync_applied(&mut self) {
        let log = &self.raw.raft.raft_log;
        let target = self.sm_applied.min(log.committed).min(log.persisted);
        if target > log.applied {
            self.raw.advance_apply_to(target);
        }
    }

    /// The state machine wrote a snapshot (durably) at `snap`'s index. The
    /// in-memory log is compacted up to `compaction_margin` entries behind
    /// it, and once the marker is durable the durable log may release what
    /// precedes it.
    pub fn on_snapshot_taken(&mut self, snap: Snapshot) -> Result<()> {
        let (index, term) = (snap.get_metadata().index, snap.get_metadata().term);
        let store = self.raw.store();
        // A file taken at the index of a marker without one replaces it
        // (a follower asked for a snapshot right after a marker).
        let replaces_marker = index == store.snapshot_index()
            && crate::snapshot::is_local(store.latest_snapshot())
            && !crate::snapshot::is_local(&snap);
        if index < store.snapshot_index() || (index == store.snapshot_index() && !replaces_marker) {
            return Ok(());
        }
        if index > self.sm_applied || store.term_of(index).is_some_and(|t| t != term) {
            return Err(Error::Snapshot {
                path: Default::default(),
                reason: format!("snapshot {index}/{term} does not match the applied log"),
            });
        }
        let compact_to = index.saturating_sub(self.compaction_margin);
        let hard_state = store.hard_state().clone();
        self.raw.mut_store().set_snapshot(snap.clone());
        self.raw.mut_store().compact(compact_to);
        let records = vec![
            LogRecord::Snapshot {
                origin: SnapshotOrigin::Taken,
                meta: snap.get_metadata().clone(),
                descriptor: snap.data,
            },
            // The latest hard state is written again after the marker so that
            // releasing older records never loses it.
            LogRecord::HardState(hard_state),
        ];
        self.persist_seq += 1;
        let seq = self.persist_seq;
        self.unpersisted.push_back(Unpersisted {
            seq,
            ready: None,
            messages: Vec::new(),
            release_to: Some(index),
            done: false,
        });
        self.persist_out.push(PersistBatch { seq, records });
        Ok(())
    }

    /// Everything the caller has to do now, or None when idle. Call it until
    /// it returns None after every input.
    pub fn poll(&mut self) -> Result<Option<Work>> {
        let mut work = Work::default();
        if let Some(ctx) = self.reads.start_round() {
            self.raw.read_index(ctx.to_vec());
        }
        if self.raw.has_ready() {
            self.handle_ready(&mut work)?;
            // A confirmed read index may already be applied.
            self.reads.release(self.sm_applied, &mut self.reads_ready);
        }
        work.messages.append(&mut self.outbox);
        work.persist.append(&mut self.persist_out);
        work.reads_ready.append(&mut self.reads_ready);
        work.release_to = self.release_to.take();
        work.snapshot_wanted = self.raw.store().take_snapshot_wanted();
        work.tell_removed.append(&mut self.tell_removed);
        Ok(if work.is_empty() { None } else { Some(work) })
    }

    fn handle_ready(&mut self, work: &mut Work) -> Result<()> {
        let mut rd = self.raw.ready();
        let number = rd.number();
        for rs in rd.take_read_states() {
            self.reads.on_read_state(&rs.request_ctx, rs.index);
        }
        let mut records = Vec::new();
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            let meta = snap.get_metadata().clone();
            self.conf_state = meta.get_conf_state().clone();
            self.raw.mut_store().apply_snapshot(snap.clone());
            records.push(LogRecord::Snapshot {
                origin: SnapshotOrigin::Installed,
                meta,
                descriptor: snap.data.clone(),
            });
            work.install_snapshot = Some(snap);
        }
        let entries = rd.take_entries();
        if !entries.is_empty() {
            self.raw.mut_store().append(&entries)?;
            records.extend(entries.into_iter().map(LogRecord::Entry));
        }
        if let Some(hs) = rd.hs() {
            self.raw.mut_store().set_hard_state(hs.clone());
            // etcd's raft.MustSync: a hard state whose term and vote are
            // unchanged needs no write of its own when nothing else is
            // written — the commit index is recovered from the leader (and
            // a restarted leader commits its log again), so durability
            // would only cost a second fsync per committed batch.
            let term_or_vote = (hs.term, hs.vote) != self.persisted_term_vote;
            if term_or_vote || !records.is_empty() {
                self.persisted_term_vote = (hs.term, hs.vote);
                records.push(LogRecord::HardState(hs.clone()));
            }
        }
        let committed = rd.take_committed_entries();
        self.convert_committed(committed, &mut work.committed)?;

        let mut after_persist = rd.take_persisted_messages();
        let leader_msgs = rd.take_messages();
        if self.parallel_leader_persist {
            work.messages.extend(leader_msgs);
        } else {
            after_persist.extend(leader_msgs);
        }
        self.raw.advance_append_async(rd);

        self.persist_seq += 1;
        let seq = self.persist_seq;
        let io = !records.is_empty();
        self.unpersisted.push_back(Unpersisted {
            seq,
            ready: Some(number),
            messages: after_persist,
            release_to: None,
            done: !io,
        });
        if io {
            work.persist.push(PersistBatch { seq, records });
        }
        self.drain_persisted();
        Ok(())
    }

    fn convert_committed(&mut self, entries: Vec<Entry>, out: &mut Vec<Committed>) -> Result<()> {
        for e in entries {
            let proposal = ProposalId::decode(&e.context);
            let payload = match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => Payload::Empty,
                EntryType::EntryNormal => Payload::Command(e.data.clone()),
                EntryType::EntryConfChange => {
                    let cc = ConfChange::parse_from_bytes(&e.data)?;
                    self.apply_conf_change(&cc, MembershipChange::from_conf_change(&cc))
                }
                EntryType::EntryConfChangeV2 => {
                    // Never proposed by raftlog; applied so raft stays consistent.
                    let cc = ConfChangeV2::parse_from_bytes(&e.data)?;
                    match self.raw.apply_conf_change(&cc) {
                        Ok(cs) => self.conf_state = cs,
                        Err(err) => tracing::warn!(id = self.id, "conf change v2 rejected: {err}"),
                    }
                    Payload::Empty
                }
            };
            out.push(Committed {
                index: e.index,
                term: e.term,
                proposal,
                payload,
            });
        }
        Ok(())
    }

    fn apply_conf_change(&mut self, cc: &ConfChange, change: MembershipChange) -> Payload {
        match self.raw.apply_conf_change(cc) {
            Ok(cs) => {
                self.conf_state = cs.clone();
                if let MembershipChange::Remove { id } = change {
                    if id == self.id {
                        self.removed = true;
                    } else {
                        self.removed_peers.insert(id);
                    }
                }
                Payload::Membership {
                    change,
                    conf_state: cs,
                }
            }
            Err(err) => {
                // A committed change raft refuses (it would break an
                // invariant) is a no-op on every node alike.
                tracing::warn!(id = self.id, "membership change {change:?} rejected: {err}");
                Payload::Empty
            }
        }
    }

    /// The messages of type MsgSnapshot in `msgs` need their file streamed.
    pub fn is_snapshot_message(msg: &Message) -> bool {
        msg.get_msg_type() == MessageType::MsgSnapshot
    }

    pub fn pending_reads(&self) -> usize {
        self.reads.pending()
    }

    /// Batches handed out and not yet durable.
    pub fn unpersisted_len(&self) -> usize {
        self.unpersisted.len()
    }
}
