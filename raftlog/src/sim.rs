//! The deterministic cluster simulator.
//!
//! N [`Core`]s — the same driver the threaded node runs — with a simulated
//! disk each (asynchronous group commit with a seeded delay; a crash loses
//! what was not yet durable and may tear the batch in flight), snapshot
//! files in a temporary directory, the KV state machine, and the faulty
//! network of [`transport::sim`](crate::transport::sim). Time is virtual
//! (milliseconds) and every random choice comes from one seeded RNG, so a
//! seed replays a run exactly; [`Sim::trace_digest`] fingerprints a run.
//!
//! While it runs the simulator checks raft's safety properties (raft
//! thesis §3.6.3, Figure 3.2) and records violations instead of panicking:
//! - Election Safety: at most one leader per term;
//! - State Machine Safety: no two nodes apply different entries at an index;
//! - every node applies a gap-free sequence (the KV model checks it).

use std::collections::{BTreeMap, VecDeque};

use raft::eraftpb::{ConfState, Message, MessageType};
use raft::StateRole;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::Config;
use crate::core::{Core, PersistBatch, Status, Work};
use crate::kv::{decode_opt, KvCommand, SharedKv};
use crate::linearizability::{HistoryOp, KvInput, KvOutput};
use crate::log_bridge::raft_logger;
use crate::read_index::ReadId;
use crate::record::{LogRecord, SnapshotOrigin};
use crate::snapshot::SnapDir;
use crate::state_machine::{Committed, MembershipChange, Payload, ProposalId, StateMachine};
use crate::storage::{snapshot_metadata, RaftStorage};
use crate::transport::sim::{NetConfig, Packet, SimNetwork};

/// Simulation settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    /// Nodes of the initial cluster, ids 1..=nodes.
    pub nodes: u64,
    pub net: NetConfig,
    /// Time from submitting a batch to it being durable, `[min, max]` ms.
    pub disk_delay_ms: (u64, u64),
    /// Virtual ms per raft tick.
    pub tick_ms: u64,
    /// Template for every node's configuration (the id is filled in).
    pub node: Config,
}

impl SimConfig {
    pub fn new(seed: u64, nodes: u64) -> SimConfig {
        let mut node = Config::new(1);
        node.heartbeat_tick = 2;
        // 15 ticks leave room for five timeouts three ticks apart (below).
        node.election_tick = 15;
        node.snapshot_interval_entries = 200;
        node.compaction_margin_entries = 50;
        node.snapshot_chunk_bytes = 4096;
        node.read_index_retry_ticks = 15;
        SimConfig {
            seed,
            nodes,
            net: NetConfig::default(),
            disk_delay_ms: (1, 4),
            tick_ms: 10,
            node,
        }
    }

    /// The longest a healthy cluster may need to elect a leader once the old
    /// one is gone: the largest randomized election timeout (2 × election
    /// tick) plus one tick of phase, then a pre-vote and a vote round trip
    /// (four one-way delays), with up to four durable writes on the way (the
    /// candidate's term and vote, each voter's vote; an answer may also wait
    /// behind a write already in flight).
    pub fn election_bound_ms(&self) -> u64 {
        2 * self.node.election_tick as u64 * self.tick_ms
            + self.tick_ms
            + 4 * self.net.delay_ms.1
            + 4 * self.disk_delay_ms.1
    }
}

/// How a client operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No answer (yet): it may or may not take effect.
    Pending,
    /// Applied (a put) or served (a read), with the value returned.
    Ok { at_ms: u64, value: Option<Vec<u8>> },
    /// Refused before it entered the log; it never takes effect.
    Failed { at_ms: u64, error: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// A put through the log; returns the previous value.
    Put { key: Vec<u8>, value: Vec<u8> },
    /// A linearizable read through ReadIndex.
    Read { key: Vec<u8> },
    /// A membership change.
    Membership(MembershipChange),
}

#[derive(Clone, Debug)]
pub struct Op {
    pub node: u64,
    pub kind: OpKind,
    pub invoked_ms: u64,
    pub outcome: Outcome,
}

#[derive(Default)]
struct SimDisk {
    durable: Vec<LogRecord>,
    pending: VecDeque<(u64, PersistBatch)>,
    last_due: u64,
}

impl SimDisk {
    /// Drops the records written before the `Taken` marker of `index` that
    /// belong to indexes at or below it, as the WAL releases segments (it
    /// may keep more; recovery tolerates both).
    fn release_to(&mut self, index: u64) {
        let pos = self.durable.iter().rposition(|r| {
            matches!(r, LogRecord::Snapshot { origin: SnapshotOrigin::Taken, meta, .. } if meta.index == index)
        });
        if let Some(pos) = pos {
            let mut i = 0;
            self.durable.retain(|r| {
                i += 1;
                i > pos || r.index() > index
            });
        }
    }
}

struct SimNode {
    id: u64,
    core: Option<Core>,
    removed: bool,
    disk: SimDisk,
    snaps: SnapDir,
    sm: SharedKv,
    /// Configuration and term as of the state machine's applied index.
    sm_conf: ConfState,
    sm_term: u64,
    last_snapshot: u64,
    tick_phase: u64,
    next_seq: u64,
    next_read: ReadId,
    proposals: BTreeMap<ProposalId, usize>,
    /// Proposals waiting for the next loop iteration, proposed as one batch.
    queued: Vec<(ProposalId, bytes::Bytes)>,
    reads: BTreeMap<ReadId, usize>,
    election_offset: usize,
    /// The last term in which the node's campaign timeout was redrawn.
    campaign_term: u64,
    snapshots_taken: u64,
    snapshots_installed: u64,
    restarts: u64,
}

/// Counters of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub snapshots_taken: u64,
    pub snapshots_installed: u64,
    pub restarts: u64,
    pub durable_records: usize,
}

pub struct Sim {
    cfg: SimConfig,
    rng: StdRng,
    now: u64,
    pub net: SimNetwork,
    nodes: BTreeMap<u64, SimNode>,
    dir: tempfile::TempDir,
    ops: Vec<Op>,
    /// index → (term, digest) of the entry applied there by anyone.
    applied_log: BTreeMap<u64, (u64, u64)>,
    leaders: BTreeMap<u64, u64>,
    trace: xxhash_rust::xxh3::Xxh3,
    violations: Vec<String>,
    logger: slog::Logger,
}

fn payload_digest(c: &Committed) -> u64 {
    let text = match &c.payload {
        Payload::Command(d) => return xxhash_rust::xxh3::xxh3_64(d),
        Payload::Empty => "empty".to_string(),
        Payload::Membership { change, conf_state } => format!(
            "{change:?} {:?} {:?}",
            conf_state.voters, conf_state.learners
        ),
    };
    xxhash_rust::xxh3::xxh3_64(text.as_bytes())
}

impl Sim {
    /// Bootstraps `cfg.nodes` nodes (ids 1..=n) as a new cluster.
    pub fn new(cfg: SimConfig) -> Sim {
        let mut sim = Sim {
            rng: StdRng::seed_from_u64(cfg.seed),
            now: 0,
            net: SimNetwork::new(cfg.net.clone()),
            nodes: BTreeMap::new(),
            dir: tempfile::tempdir().expect("temporary directory for snapshots"),
            ops: Vec::new(),
            applied_log: BTreeMap::new(),
            leaders: BTreeMap::new(),
            trace: xxhash_rust::xxh3::Xxh3::new(),
            violations: Vec::new(),
            logger: raft_logger(0),
            cfg,
        };
        let members: Vec<(u64, String)> = (1..=sim.cfg.nodes)
            .map(|id| (id, format!("sim://{id}")))
            .collect();
        for (id, _) in &members {
            let mut node = sim.empty_node(*id);
            node.disk.durable = Core::bootstrap_records(&members);
            sim.nodes.insert(*id, node);
            sim.start_node(*id);
        }
        sim
    }

    fn empty_node(&mut self, id: u64) -> SimNode {
        SimNode {
            id,
            core: None,
            removed: false,
            disk: SimDisk::default(),
            snaps: SnapDir::open(self.dir.path().join(format!("node-{id}")))
                .expect("snapshot directory"),
            sm: SharedKv::new(),
            sm_conf: ConfState::default(),
            sm_term: 0,
            last_snapshot: 0,
            tick_phase: self.rng.gen_range(0..self.cfg.tick_ms),
            next_seq: 0,
            next_read: 0,
            proposals: BTreeMap::new(),
            queued: Vec::new(),
            reads: BTreeMap::new(),
            election_offset: usize::MAX,
            campaign_term: 0,
            snapshots_taken: 0,
            snapshots_installed: 0,
            restarts: 0,
        }
    }

    /// (Re)creates a node's core from its durable records and snapshot files,
    /// as a process restart does.
    fn start_node(&mut self, id: u64) {
        let et = self.cfg.node.election_tick;
        // raft-rs draws election timeouts from an unseeded RNG; a one-wide
        // range drawn here from the seeded RNG keeps runs reproducible. Live
        // nodes get timeouts at least three ticks apart (when there is room):
        // randomization exists to make that the common case, and it lets the
        // first candidate's vote requests arrive before the next node times
        // out, instead of splitting the vote and costing another timeout.
        let taken: Vec<usize> = self
            .nodes
            .values()
            .filter(|n| n.id != id && n.core.is_some())
            .map(|n| n.election_offset)
            .collect();
        let free: Vec<usize> = (0..et)
            .filter(|o| taken.iter().all(|t| t.abs_diff(*o) >= 3))
            .collect();
        let offset = if free.is_empty() {
            self.rng.gen_range(0..et)
        } else {
            free[self.rng.gen_range(0..free.len())]
        };
        let seq_base = self.rng.gen::<u64>() >> 1;
        let mut cfg = self.cfg.node.clone();
        cfg.id = id;
        cfg.election_tick_range = Some((et + offset, et + offset + 1));
        let node = self.nodes.get_mut(&id).expect("node exists");
        node.election_offset = offset;
        let storage = match RaftStorage::recover(&node.disk.durable) {
            Ok(s) => s,
            Err(e) => {
                self.violations
                    .push(format!("node {id}: recovery failed: {e}"));
                return;
            }
        };
        node.sm = SharedKv::new();
        node.sm_conf = storage.conf_state().clone();
        node.sm_term = 0;
        node.last_snapshot = 0;
        match node.snaps.latest() {
            Ok(Some((snap, path))) => {
                let meta = snap.get_metadata();
                let restored = node.snaps.open_payload(&path).and_then(|(_, mut r)| {
                    Ok(node.sm.restore_snapshot(&mut r, meta.index, meta.term)?)
                });
                if let Err(e) = restored {
                    self.violations
                        .push(format!("node {id}: restore failed: {e}"));
                    return;
                }
                node.sm_conf = meta.get_conf_state().clone();
                node.sm_term = meta.term;
                node.last_snapshot = meta.index;
            }
            Ok(None) => {}
            Err(e) => {
                self.violations
                    .push(format!("node {id}: snapshot directory: {e}"));
                return;
            }
        }
        node.next_seq = seq_base;
        match Core::new(&cfg, storage, &self.logger, seq_base) {
            Ok(mut core) => {
                core.on_applied(node.sm.applied_index());
                node.core = Some(core);
            }
            Err(e) => self
                .violations
                .push(format!("node {id}: start failed: {e}")),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.now
    }

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    pub fn is_up(&self, id: u64) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.core.is_some())
    }

    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    pub fn op(&self, i: usize) -> &Op {
        &self.ops[i]
    }

    /// A fingerprint of everything that happened so far.
    pub fn trace_digest(&self) -> u64 {
        self.trace.digest()
    }

    pub fn status(&self, id: u64) -> Option<Status> {
        self.nodes.get(&id)?.core.as_ref().map(Core::status)
    }

    pub fn stats(&self, id: u64) -> NodeStats {
        let n = &self.nodes[&id];
        NodeStats {
            snapshots_taken: n.snapshots_taken,
            snapshots_installed: n.snapshots_installed,
            restarts: n.restarts,
            durable_records: n.disk.durable.len(),
        }
    }

    /// (applied index, content hash) of a node's state machine.
    pub fn kv_state(&self, id: u64) -> (u64, u64) {
        let s = self.nodes[&id].sm.state();
        (s.applied(), s.hash())
    }

    pub fn kv_get(&self, id: u64, key: &[u8]) -> Option<Vec<u8>> {
        self.nodes[&id].sm.state().get(key).map(<[u8]>::to_vec)
    }

    pub fn kv_version(&self, id: u64, key: &[u8]) -> u64 {
        self.nodes[&id].sm.state().version(key)
    }

    /// The leader of the highest term among running nodes, if any.
    pub fn leader(&self) -> Option<u64> {
        self.nodes
            .values()
            .filter_map(|n| n.core.as_ref())
            .filter(|c| c.is_leader())
            .max_by_key(|c| c.raw().raft.term)
            .map(Core::id)
    }

    /// Runs until `pred` holds or `max_ms` passed; true if it holds.
    pub fn run_until(&mut self, max_ms: u64, mut pred: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.now + max_ms;
        while self.now < end {
            if pred(self) {
                return true;
            }
            self.step_ms();
        }
        pred(self)
    }

    pub fn run_for(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.step_ms();
        }
    }

    /// Runs until a leader exists; returns it.
    pub fn elect(&mut self, max_ms: u64) -> Option<u64> {
        self.run_until(max_ms, |s| s.leader().is_some());
        self.leader()
    }

    /// Advances virtual time by one millisecond.
    pub fn step_ms(&mut self) {
        self.now += 1;
        let now = self.now;
        let ids = self.ids();
        for id in &ids {
            let tick_ms = self.cfg.tick_ms;
            let node = self.nodes.get_mut(id).unwrap();
            if let Some(core) = &mut node.core {
                if now % tick_ms == node.tick_phase {
                    core.tick();
                }
                // Durable batches complete in order.
                while node
                    .disk
                    .pending
                    .front()
                    .is_some_and(|(due, _)| *due <= now)
                {
                    let (_, batch) = node.disk.pending.pop_front().unwrap();
                    node.disk.durable.extend(batch.records);
                    core.on_persisted(batch.seq);
                }
            }
        }
        for d in self.net.due(now) {
            if d.lost {
                self.lost(d.from, d.to, &d.packet);
            } else {
                self.deliver(d.from, d.to, d.packet);
            }
        }
        self.flush_proposals();
        self.poll_all();
        self.observe_leaders();
        self.redraw_campaign_timeouts();
    }

    /// Each node's timeout is pinned to its own offset (see `start_node`),
    /// which spreads the first timeouts after a leader is lost. A candidate
    /// whose vote split, though, would retry with the same timeout every
    /// term and could stay in step with a rival candidate for many terms.
    /// raft-rs redraws the timeout whenever a node starts a campaign; here a
    /// candidate's next timeout is redrawn from the seeded RNG within
    /// `[election_tick, its pinned timeout]`.
    fn redraw_campaign_timeouts(&mut self) {
        let et = self.cfg.node.election_tick;
        for node in self.nodes.values_mut() {
            let Some(core) = &mut node.core else { continue };
            let raft = &core.raw().raft;
            if raft.state != StateRole::Candidate || raft.term == node.campaign_term {
                continue;
            }
            node.campaign_term = raft.term;
            let spread = raft.randomized_election_timeout().saturating_sub(et);
            let ticks = self.rng.gen_range(0..=spread);
            core.advance_election_clock(ticks);
        }
    }

    /// Proposes each node's queued commands as one batch, as the node's
    /// raft loop does with everything that arrived during an iteration.
    fn flush_proposals(&mut self) {
        let now = self.now;
        let mut failed = Vec::new();
        for node in self.nodes.values_mut() {
            if node.queued.is_empty() {
                continue;
            }
            let batch = std::mem::take(&mut node.queued);
            let ids: Vec<ProposalId> = batch.iter().map(|(id, _)| *id).collect();
            let Some(core) = node.core.as_mut() else {
                continue;
            };
            if let Err(e) = core.propose_batch(batch) {
                for id in ids {
                    if let Some(op) = node.proposals.remove(&id) {
                        failed.push((op, e.to_string()));
                    }
                }
            }
        }
        for (op, error) in failed {
            self.complete(op, Outcome::Failed { at_ms: now, error });
        }
    }

    /// A packet that will never arrive. A snapshot stream's sender learns of
    /// it (a broken TCP stream is an error at the sender); raft would
    /// otherwise wait for that follower's snapshot forever.
    fn lost(&mut self, from: u64, to: u64, packet: &Packet) {
        if matches!(packet, Packet::Snapshot { .. }) {
            if let Some(sender) = self.nodes.get_mut(&from).and_then(|n| n.core.as_mut()) {
                sender.report_snapshot(to, false);
            }
        }
    }

    fn deliver(&mut self, from: u64, to: u64, packet: Packet) {
        if !self.is_up(to) {
            self.lost(from, to, &packet);
            return;
        }
        let node = self.nodes.get_mut(&to).unwrap();
        let core = node.core.as_mut().unwrap();
        match packet {
            Packet::Raft(m) => {
                self.trace.update(&[m.get_msg_type() as u8]);
                self.trace.update(&[from as u8, to as u8]);
                self.trace.update(&m.index.to_le_bytes());
                core.step(m);
            }
            Packet::Removed => core.on_removed_notice(from),
            Packet::Snapshot { msg, file } => {
                let snap = msg.get_snapshot().clone();
                let chunk = self.cfg.node.snapshot_chunk_bytes;
                let received = node.snaps.receive(&snap).and_then(|mut rx| {
                    for c in file.chunks(chunk) {
                        rx.write_chunk(c)?;
                    }
                    rx.finish(&node.snaps)
                });
                let ok = match received {
                    Ok(_) => {
                        core.step(msg);
                        true
                    }
                    Err(e) => {
                        self.violations.push(format!(
                            "node {to}: snapshot stream from {from} refused: {e}"
                        ));
                        false
                    }
                };
                self.trace.update(b"snapshot");
                if let Some(sender) = self.nodes.get_mut(&from).and_then(|n| n.core.as_mut()) {
                    sender.report_snapshot(to, ok);
                }
            }
        }
    }

    fn poll_all(&mut self) {
        loop {
            let mut any = false;
            for id in self.ids() {
                loop {
                    let node = self.nodes.get_mut(&id).unwrap();
                    let Some(core) = node.core.as_mut() else {
                        break;
                    };
                    match core.poll() {
                        Ok(Some(work)) => {
                            any = true;
                            self.handle_work(id, work);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            self.violations.push(format!("node {id}: poll: {e}"));
                            self.nodes.get_mut(&id).unwrap().core = None;
                            break;
                        }
                    }
                }
                let node = self.nodes.get_mut(&id).unwrap();
                if node.core.as_ref().is_some_and(Core::is_removed) {
                    // A removed member shuts down, as etcd's does.
                    node.core = None;
                    node.removed = true;
                }
            }
            if !any {
                break;
            }
        }
    }

    fn handle_work(&mut self, id: u64, work: Work) {
        let now = self.now;
        let mut node = self.nodes.remove(&id).unwrap();
        for batch in work.persist {
            let due = (now
                + self
                    .rng
                    .gen_range(self.cfg.disk_delay_ms.0..=self.cfg.disk_delay_ms.1))
            .max(node.disk.last_due);
            node.disk.last_due = due;
            node.disk.pending.push_back((due, batch));
        }
        if let Some(snap) = work.install_snapshot {
            self.install_snapshot(&mut node, &snap);
        }
        if !work.committed.is_empty() {
            self.apply(&mut node, work.committed);
        }
        if work.snapshot_wanted {
            self.take_snapshot(&mut node);
        }
        for m in work.messages {
            self.send(&mut node, m);
        }
        for rid in work.reads_ready {
            if let Some(op) = node.reads.remove(&rid) {
                let OpKind::Read { key } = &self.ops[op].kind else {
                    unreachable!("reads map holds reads")
                };
                let value = node.sm.state().get(key).map(<[u8]>::to_vec);
                self.complete(op, Outcome::Ok { at_ms: now, value });
            }
        }
        for to in work.tell_removed {
            self.net.send(&mut self.rng, now, id, to, Packet::Removed);
        }
        if let Some(index) = work.release_to {
            node.disk.release_to(index);
            if let Err(e) = node.snaps.retain_latest(2) {
                self.violations
                    .push(format!("node {id}: pruning snapshots: {e}"));
            }
        }
        self.nodes.insert(id, node);
    }

    fn install_snapshot(&mut self, node: &mut SimNode, snap: &raft::eraftpb::Snapshot) {
        let meta = snap.get_metadata();
        let path = node.snaps.path_of(meta.index, meta.term);
        let restored = node
            .snaps
            .open_payload(&path)
            .and_then(|(_, mut r)| Ok(node.sm.restore_snapshot(&mut r, meta.index, meta.term)?));
        if let Err(e) = restored {
            self.violations.push(format!(
                "node {}: installing snapshot {}: {e}",
                node.id, meta.index
            ));
            return;
        }
        node.sm_conf = meta.get_conf_state().clone();
        node.sm_term = meta.term;
        node.last_snapshot = meta.index;
        node.snapshots_installed += 1;
        self.trace.update(&meta.index.to_le_bytes());
        if let Some(core) = node.core.as_mut() {
            core.on_applied(meta.index);
        }
    }

    fn apply(&mut self, node: &mut SimNode, committed: Vec<Committed>) {
        let now = self.now;
        let mut last = 0;
        for c in &committed {
            let digest = (c.term, payload_digest(c));
            match self.applied_log.get(&c.index) {
                Some(seen) if *seen != digest => self.violations.push(format!(
                    "state machine safety: node {} applies {:?} at index {}, another node applied {:?}",
                    node.id, digest, c.index, seen
                )),
                Some(_) => {}
                None => {
                    self.applied_log.insert(c.index, digest);
                }
            }
            let skipped = c.index <= node.sm.applied_index();
            match node.sm.apply(c) {
                Ok(resp) => {
                    if let Payload::Membership { conf_state, .. } = &c.payload {
                        node.sm_conf = conf_state.clone();
                    }
                    node.sm_term = c.term;
                    if let Some(p) = c.proposal.filter(|p| p.node == node.id) {
                        if let Some(op) = node.proposals.remove(&p) {
                            let outcome = match (&self.ops[op].kind, &c.payload) {
                                (OpKind::Membership(_), Payload::Empty) => Outcome::Failed {
                                    at_ms: now,
                                    error: "membership change rejected".into(),
                                },
                                (OpKind::Membership(_), _) => Outcome::Ok {
                                    at_ms: now,
                                    value: None,
                                },
                                _ if skipped => Outcome::Pending,
                                _ => Outcome::Ok {
                                    at_ms: now,
                                    value: decode_opt(&resp).flatten(),
                                },
                            };
                            self.complete(op, outcome);
                        }
                    }
                }
                Err(e) => {
                    self.violations
                        .push(format!("node {}: apply {}: {e}", node.id, c.index));
                    node.core = None;
                    return;
                }
            }
            self.trace.update(&node.id.to_le_bytes());
            self.trace.update(&c.index.to_le_bytes());
            last = c.index;
        }
        let applied = node.sm.applied_index();
        if let Some(core) = node.core.as_mut() {
            core.on_applied(last.max(applied));
        }
        self.maybe_snapshot(node);
    }

    fn maybe_snapshot(&mut self, node: &mut SimNode) {
        if node.sm.applied_index() >= node.last_snapshot + self.cfg.node.snapshot_interval_entries {
            self.take_snapshot(node);
        }
    }

    fn take_snapshot(&mut self, node: &mut SimNode) {
        let applied = node.sm.applied_index();
        if applied <= node.last_snapshot {
            return;
        }
        let meta = snapshot_metadata(applied, node.sm_term, node.sm_conf.clone());
        let snap = match node
            .sm
            .snapshot()
            .map_err(Into::into)
            .and_then(|image| node.snaps.save(&meta, image))
        {
            Ok(s) => s,
            Err(e) => {
                self.violations
                    .push(format!("node {}: snapshot: {e}", node.id));
                return;
            }
        };
        node.last_snapshot = applied;
        node.snapshots_taken += 1;
        if let Some(core) = node.core.as_mut() {
            if let Err(e) = core.on_snapshot_taken(snap) {
                self.violations.push(format!("node {}: {e}", node.id));
            }
        }
    }

    fn send(&mut self, node: &mut SimNode, m: Message) {
        let (from, to) = (node.id, m.to);
        if m.get_msg_type() == MessageType::MsgSnapshot {
            let meta = m.get_snapshot().get_metadata();
            let path = node.snaps.path_of(meta.index, meta.term);
            let sent = match std::fs::read(&path) {
                Ok(file) => self.net.send(
                    &mut self.rng,
                    self.now,
                    from,
                    to,
                    Packet::Snapshot { msg: m, file },
                ),
                Err(e) => {
                    self.violations.push(format!(
                        "node {from}: snapshot file {}: {e}",
                        path.display()
                    ));
                    false
                }
            };
            if !sent {
                if let Some(core) = node.core.as_mut() {
                    core.report_snapshot(to, false);
                }
            }
            return;
        }
        let alive = self.nodes.get(&to).is_some_and(|n| n.core.is_some());
        self.net
            .send(&mut self.rng, self.now, from, to, Packet::Raft(m));
        if !alive {
            // Like a refused TCP connection: raft stops optimistic
            // replication to the peer until it answers again.
            if let Some(core) = node.core.as_mut() {
                core.report_unreachable(to);
            }
        }
    }

    fn observe_leaders(&mut self) {
        for n in self.nodes.values() {
            let Some(core) = &n.core else { continue };
            if core.raw().raft.state != StateRole::Leader {
                continue;
            }
            let term = core.raw().raft.term;
            match self.leaders.get(&term) {
                Some(&other) if other != n.id => self.violations.push(format!(
                    "election safety: {other} and {} both lead term {term}",
                    n.id
                )),
                Some(_) => {}
                None => {
                    self.leaders.insert(term, n.id);
                    self.trace.update(&term.to_le_bytes());
                    self.trace.update(&n.id.to_le_bytes());
                }
            }
        }
    }

    fn complete(&mut self, op: usize, outcome: Outcome) {
        self.trace.update(&(op as u64).to_le_bytes());
        self.ops[op].outcome = outcome;
    }

    fn new_op(&mut self, node: u64, kind: OpKind) -> usize {
        self.ops.push(Op {
            node,
            kind,
            invoked_ms: self.now,
            outcome: Outcome::Pending,
        });
        self.ops.len() - 1
    }

    /// A client puts `key = value` through `node`. The proposal joins the
    /// node's batch for the current millisecond.
    pub fn put(&mut self, node: u64, key: &[u8], value: &[u8]) -> usize {
        let op = self.new_op(
            node,
            OpKind::Put {
                key: key.to_vec(),
                value: value.to_vec(),
            },
        );
        let data = KvCommand::Put {
            key: key.to_vec(),
            value: value.to_vec(),
        }
        .encode();
        match self.nodes.get_mut(&node).filter(|n| n.core.is_some()) {
            Some(n) => {
                n.next_seq += 1;
                let pid = ProposalId {
                    node: n.id,
                    seq: n.next_seq,
                };
                n.queued.push((pid, data));
                n.proposals.insert(pid, op);
            }
            None => self.complete(
                op,
                Outcome::Failed {
                    at_ms: self.now,
                    error: "node is down".into(),
                },
            ),
        }
        op
    }

    /// A client reads `key` from `node`'s state machine at once, without
    /// ReadIndex: a serializable read, which may be stale. Recorded like a
    /// linearizable read, so tests can show the checker catches it.
    pub fn read_local(&mut self, node: u64, key: &[u8]) -> usize {
        let op = self.new_op(node, OpKind::Read { key: key.to_vec() });
        let now = self.now;
        let outcome = match self.nodes.get(&node).filter(|n| n.core.is_some()) {
            Some(n) => Outcome::Ok {
                at_ms: now,
                value: n.sm.state().get(key).map(<[u8]>::to_vec),
            },
            None => Outcome::Failed {
                at_ms: now,
                error: "node is down".into(),
            },
        };
        self.complete(op, outcome);
        op
    }

    /// A client reads `key` linearizably (ReadIndex) through `node`.
    pub fn read(&mut self, node: u64, key: &[u8]) -> usize {
        let op = self.new_op(node, OpKind::Read { key: key.to_vec() });
        let now = self.now;
        let result = self.with_core(node, |n, core| {
            n.next_read += 1;
            let rid = n.next_read;
            core.read_index(rid).then_some(rid)
        });
        match result {
            Some(Some(rid)) => {
                self.nodes.get_mut(&node).unwrap().reads.insert(rid, op);
            }
            Some(None) => self.complete(
                op,
                Outcome::Failed {
                    at_ms: now,
                    error: "too many reads".into(),
                },
            ),
            None => self.complete(
                op,
                Outcome::Failed {
                    at_ms: now,
                    error: "node is down".into(),
                },
            ),
        }
        op
    }

    /// Proposes a membership change through the current leader.
    pub fn change_membership(&mut self, change: MembershipChange) -> crate::Result<usize> {
        let leader = self
            .leader()
            .ok_or(crate::Error::NotLeader { leader: None })?;
        let op = self.new_op(leader, OpKind::Membership(change.clone()));
        let result = self.with_core(leader, |n, core| {
            n.next_seq += 1;
            let pid = ProposalId {
                node: n.id,
                seq: n.next_seq,
            };
            core.propose_membership(pid, &change).map(|()| pid)
        });
        match result {
            Some(Ok(pid)) => {
                self.nodes
                    .get_mut(&leader)
                    .unwrap()
                    .proposals
                    .insert(pid, op);
                Ok(op)
            }
            Some(Err(e)) => {
                self.ops.pop();
                Err(e)
            }
            None => unreachable!("the leader is up"),
        }
    }

    pub fn transfer_leader(&mut self, to: u64) -> crate::Result<()> {
        let leader = self
            .leader()
            .ok_or(crate::Error::NotLeader { leader: None })?;
        self.with_core(leader, |_, core| core.transfer_leader(to))
            .unwrap()
    }

    fn with_core<T>(&mut self, id: u64, f: impl FnOnce(&mut SimNode, &mut Core) -> T) -> Option<T> {
        let node = self.nodes.get_mut(&id)?;
        let mut core = node.core.take()?;
        let out = f(node, &mut core);
        node.core = Some(core);
        Some(out)
    }

    /// Adds an empty node that joins through a membership change (etcd's
    /// `--initial-cluster-state existing`).
    pub fn add_empty_node(&mut self, id: u64) {
        assert!(!self.nodes.contains_key(&id), "node {id} exists");
        let node = self.empty_node(id);
        self.nodes.insert(id, node);
        self.start_node(id);
    }

    /// Kills a node: its volatile state is gone, batches not yet durable are
    /// lost except a random prefix of the one being written (a torn group
    /// commit), its connections drop.
    pub fn crash(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("node exists");
        if node.core.take().is_none() {
            return;
        }
        if let Some((_, batch)) = node.disk.pending.pop_front() {
            let keep = self.rng.gen_range(0..=batch.records.len());
            node.disk
                .durable
                .extend(batch.records.into_iter().take(keep));
        }
        node.disk.pending.clear();
        node.disk.last_due = 0;
        let reads: Vec<usize> = std::mem::take(&mut node.reads).into_values().collect();
        // Puts in flight stay Pending: they may still commit. Queued ones
        // never reached raft.
        let never_proposed: Vec<usize> = node
            .queued
            .drain(..)
            .filter_map(|(id, _)| node.proposals.remove(&id))
            .collect();
        node.proposals.clear();
        for op in never_proposed {
            self.complete(
                op,
                Outcome::Failed {
                    at_ms: self.now,
                    error: "node crashed".into(),
                },
            );
        }
        for op in reads {
            self.complete(
                op,
                Outcome::Failed {
                    at_ms: self.now,
                    error: "node crashed".into(),
                },
            );
        }
        for d in self.net.forget(id) {
            self.lost(d.from, d.to, &d.packet);
        }
        self.trace.update(b"crash");
    }

    pub fn restart(&mut self, id: u64) {
        assert!(!self.is_up(id), "node {id} is running");
        let node = self.nodes.get_mut(&id).unwrap();
        if node.removed {
            return;
        }
        node.restarts += 1;
        self.start_node(id);
        self.trace.update(b"restart");
    }

    /// The ops as a history for the linearizability checker (puts and
    /// reads; membership changes are not KV operations).
    pub fn history(&self) -> Vec<HistoryOp> {
        self.ops
            .iter()
            .enumerate()
            .filter_map(|(i, op)| {
                let input = match &op.kind {
                    OpKind::Put { key, value } => KvInput::Put {
                        key: key.clone(),
                        value: value.clone(),
                    },
                    OpKind::Read { key } => KvInput::Get { key: key.clone() },
                    OpKind::Membership(_) => return None,
                };
                let (ret_ms, output) = match &op.outcome {
                    Outcome::Ok { at_ms, value } => (Some(*at_ms), KvOutput::Value(value.clone())),
                    Outcome::Pending => (None, KvOutput::Unknown),
                    // Never entered the log: not part of the history.
                    Outcome::Failed { .. } => return None,
                };
                Some(HistoryOp {
                    client: i as u64,
                    input,
                    call: op.invoked_ms * 2,
                    ret: ret_ms.map(|t| t * 2 + 1),
                    output,
                })
            })
            .collect()
    }

    /// Waits until the cluster is quiescent and agrees: a leader whose whole
    /// log is committed, and every running node applied exactly that log to
    /// the same state. True if that happened within `max_ms`.
    pub fn converge(&mut self, max_ms: u64) -> bool {
        self.run_until(max_ms, |s| {
            let Some(leader) = s.leader() else {
                return false;
            };
            let st = s.status(leader).unwrap();
            if st.commit_index != st.last_index {
                return false;
            }
            let states: Vec<(u64, u64)> = s
                .nodes
                .values()
                .filter(|n| n.core.is_some())
                .map(|n| {
                    let kv = n.sm.state();
                    (kv.applied(), kv.hash())
                })
                .collect();
            states.iter().all(|st2| st2.0 == st.last_index)
                && states.windows(2).all(|w| w[0] == w[1])
        })
    }

    /// Random bytes from the simulation's RNG, for workloads.
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    pub fn commit_index(&self, id: u64) -> Option<u64> {
        self.nodes
            .get(&id)?
            .core
            .as_ref()
            .map(|c| c.raw().raft.raft_log.committed)
    }
}
