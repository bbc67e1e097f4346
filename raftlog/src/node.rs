//! The threaded node: the raft loop, the apply worker, engine::wal for the
//! log, snapshot files, and the TCP transport, behind a handle.
//!
//! Data directory (etcd's layout): `member/wal/` (engine::wal segments),
//! `member/snap/` (snapshot files), `member/peers` (peer URLs learned from
//! membership changes).
//!
//! The raft loop is etcd's node loop: wait for a tick, a message, a
//! proposal or a completion; drain everything else that is ready (bounded);
//! propose the whole batch as one raft message; then take work from the
//! [`Core`] until it is idle: send messages (a leader's before its own
//! write is durable), make record batches durable, pass committed entries
//! to the apply worker.
//!
//! Making records durable has two ways. While an earlier batch is still in
//! flight, the batch goes to the WAL's writer (group commit; the loop does
//! not wait). When nothing is in flight — a lone client, or a follower
//! between appends — the loop writes and fdatasyncs the batch itself: a
//! hand-off to the writer thread and the completion back would each cost a
//! thread wake-up, several times the fdatasync on a fast disk, and the
//! loop would only wait for that completion anyway. Only when the loop is
//! quiet, though (no proposal or message waiting): under load the writer
//! keeps the next batch filling while one is in flight, and the loop must
//! stay free to fill it. Small committed batches are applied inline under
//! the same condition (see `apply`).
//!
//! Queues: proposals and events are bounded (callers get `Busy` or block).
//! Completions from the WAL and the apply worker use an unbounded channel
//! whose population is bounded by those queues, so the WAL's writer thread
//! and the apply worker never wait for the raft loop (which may itself be
//! waiting for them: that would deadlock).

use std::collections::HashMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender, TrySendError};
use parking_lot::Mutex;
use raft::eraftpb::{ConfState, Message};

use crate::apply::{ApplyQueue, ApplyTask, ApplyWorker, Report, Waiters};
use crate::cluster::{ClusterState, InitialCluster};
use crate::config::Config;
use crate::core::{Core, Status, Work};
use crate::error::{Error, Result};
use crate::log_bridge::raft_logger;
use crate::log_store::{LogStore, WalStore};
use crate::pending::{pending, Pending, Resolver};
use crate::snapshot::{sync_dir, SnapDir};
use crate::state_machine::{MembershipChange, Payload, ProposalId, StateMachine};
use crate::storage::RaftStorage;
use crate::transport::tcp::{TcpConfig, TcpTransport};
use crate::transport::{Inbox, Incoming, Transport};

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Raft settings; `raft.id` must be this member's id in `initial_cluster`.
    pub raft: Config,
    pub data_dir: PathBuf,
    pub initial_cluster: InitialCluster,
    pub cluster_state: ClusterState,
    /// Address the peer listener binds (`host:port`); port 0 picks one.
    pub listen_peer: String,
    /// This member's peer URL as the others reach it.
    pub advertise_peer_url: String,
    pub wal: engine::wal::Options,
    /// Apply tasks (batches of committed entries) queued for the apply
    /// worker before the raft loop waits. Default 1024.
    pub apply_queue_max: usize,
    /// Events (messages, reads, admin requests) queued for the raft loop.
    pub event_queue_max: usize,
    /// Emulated one-way network latency added by the transport (benchmarks
    /// only; zero in production).
    pub emulated_one_way_delay: Duration,
    /// The raft loop writes a batch itself when no earlier batch is in
    /// flight (see the module docs). Default on; off hands every batch to
    /// the WAL's writer thread.
    pub persist_inline_when_idle: bool,
}

impl NodeConfig {
    pub fn new(
        raft: Config,
        data_dir: impl Into<PathBuf>,
        initial_cluster: InitialCluster,
        listen_peer: &str,
    ) -> NodeConfig {
        let me = initial_cluster
            .member(raft.id)
            .map(|m| m.peer_urls[0].clone());
        NodeConfig {
            advertise_peer_url: me.unwrap_or_else(|| format!("http://{listen_peer}")),
            raft,
            data_dir: data_dir.into(),
            initial_cluster,
            cluster_state: ClusterState::New,
            listen_peer: listen_peer.to_string(),
            wal: engine::wal::Options::default(),
            apply_queue_max: 1024,
            event_queue_max: 65536,
            emulated_one_way_delay: Duration::ZERO,
            persist_inline_when_idle: true,
        }
    }
}

enum Event {
    Incoming(Incoming),
    Read(Resolver<u64>),
    Membership(MembershipChange, Resolver<ConfState>),
    Transfer(u64, Resolver<()>),
    Campaign(Resolver<()>),
    Stop,
}

enum Completion {
    Persisted(u64),
    LogFailed(String),
    Apply(Report),
}

struct ProposalReq {
    id: ProposalId,
    data: Bytes,
}

struct Shared {
    id: u64,
    events: Sender<Event>,
    proposals: Sender<ProposalReq>,
    waiters: Arc<Waiters>,
    next_seq: AtomicU64,
    status: Mutex<Status>,
    stopped: AtomicBool,
    failure: Mutex<Option<String>>,
    command_bytes_max: usize,
}

struct NodeInbox(Sender<Event>);

impl Inbox for NodeInbox {
    fn deliver(&self, incoming: Incoming) {
        // Blocks when the raft loop is behind: backpressure on the reader.
        let _ = self.0.send(Event::Incoming(incoming));
    }
}

/// A running raft node. Dropping it stops it.
pub struct Node {
    shared: Arc<Shared>,
    transport: Arc<TcpTransport>,
    wal: WalStore,
    threads: Vec<JoinHandle<()>>,
}

impl Node {
    /// Opens the data directory (bootstrapping a new cluster member or
    /// recovering a restarted one), restores the state machine from the
    /// latest snapshot when it is behind it, and starts the node.
    pub fn open<S: StateMachine>(cfg: NodeConfig, mut sm: S) -> Result<Node> {
        cfg.raft.validate()?;
        let id = cfg.raft.id;
        let member_dir = cfg.data_dir.join("member");
        fs::create_dir_all(&member_dir)?;
        let snaps = SnapDir::open(member_dir.join("snap"))?;
        let (log, mut records) = WalStore::open(&member_dir.join("wal"), cfg.wal.clone())?;
        if records.is_empty() && cfg.cluster_state == ClusterState::New {
            if cfg.initial_cluster.member(id).is_none() {
                return Err(Error::Config(format!(
                    "{id:x} is not a member of --initial-cluster"
                )));
            }
            let members: Vec<(u64, String)> = cfg
                .initial_cluster
                .members
                .iter()
                .map(|m| (m.id, m.peer_urls[0].clone()))
                .collect();
            records = Core::bootstrap_records(&members);
            log.append_sync(&records)?;
            tracing::info!(
                id = format!("{id:x}"),
                members = members.len(),
                "bootstrapped a new cluster member"
            );
        }
        let storage = RaftStorage::recover(&records)?;
        drop(records);

        // The state machine catches up to the newest durable snapshot file
        // (it may be newer than the log's marker if a crash came between).
        let mut conf = storage.conf_state().clone();
        let mut term = storage.latest_snapshot().get_metadata().term;
        let mut last_snapshot = storage.snapshot_index();
        let mut last_file_snapshot = 0;
        if let Some((snap, path)) = snaps.latest()? {
            let meta = snap.get_metadata();
            last_file_snapshot = meta.index;
            if sm.applied_index() < meta.index {
                let (_, mut payload) = snaps.open_payload(&path)?;
                sm.restore_snapshot(&mut payload, meta.index, meta.term)
                    .map_err(|e| {
                        Error::StateMachine(format!("restoring snapshot {}: {e}", meta.index))
                    })?;
            }
            if meta.index >= last_snapshot {
                conf = meta.get_conf_state().clone();
                term = meta.term;
                last_snapshot = meta.index;
            }
        }

        // Behind a marker without a file the log is released: the state
        // machine must hold the state there itself.
        if crate::snapshot::is_local(storage.latest_snapshot())
            && sm.applied_index() < storage.snapshot_index()
        {
            return Err(Error::Recovery(format!(
                "the state machine is at {} but its durable snapshot marker is at {}",
                sm.applied_index(),
                storage.snapshot_index()
            )));
        }
        let logger = raft_logger(id);
        let mut core = Core::new(&cfg.raft, storage, &logger, rand::random::<u64>() >> 1)?;
        core.on_applied(sm.applied_index());

        let (events_tx, events_rx) = bounded(cfg.event_queue_max);
        let (proposals_tx, proposals_rx) = bounded(cfg.raft.proposal_queue_max);
        let (completions_tx, completions_rx) = unbounded();

        let mut tcp = TcpConfig::new(
            id,
            &cfg.listen_peer,
            &cfg.advertise_peer_url,
            &cfg.initial_cluster.token,
        );
        tcp.snapshot_chunk_bytes = cfg.raft.snapshot_chunk_bytes;
        tcp.one_way_delay = cfg.emulated_one_way_delay;
        let transport = Arc::new(TcpTransport::start(
            tcp,
            Arc::new(NodeInbox(events_tx.clone())),
            snaps.clone(),
        )?);
        let peers_file = member_dir.join("peers");
        let mut peers: HashMap<u64, String> = cfg
            .initial_cluster
            .members
            .iter()
            .map(|m| (m.id, m.peer_urls[0].clone()))
            .collect();
        peers.extend(load_peers(&peers_file)?);
        for (pid, url) in &peers {
            transport.add_peer(*pid, url);
        }

        let shared = Arc::new(Shared {
            id,
            events: events_tx,
            proposals: proposals_tx,
            waiters: Arc::new(Mutex::new(HashMap::new())),
            next_seq: AtomicU64::new(rand::random::<u64>() >> 1),
            status: Mutex::new(core.status()),
            stopped: AtomicBool::new(false),
            failure: Mutex::new(None),
            command_bytes_max: cfg.raft.command_bytes_max,
        });

        let reports_to = completions_tx.clone();
        let worker = ApplyWorker {
            id,
            sm,
            snaps: snaps.clone(),
            waiters: Arc::clone(&shared.waiters),
            reports: Arc::new(move |r: Report| {
                let _ = reports_to.send(Completion::Apply(r));
            }),
            snapshot_interval: cfg.raft.snapshot_interval_entries,
            last_snapshot,
            last_file_snapshot,
            // The snapshot the state machine starts from: its term and
            // configuration are known; raft hands out the entries after it.
            processed: last_snapshot,
            term,
            conf,
            in_flight: None,
            file_wanted: false,
        };
        let mut threads = Vec::new();
        let (apply, apply_thread) = ApplyQueue::start(Box::new(worker), id, cfg.apply_queue_max)?;
        threads.push(apply_thread);
        let raft_loop = RaftLoop {
            core,
            tick_interval: cfg.raft.tick_interval,
            proposal_batch_max: cfg.raft.proposal_batch_max,
            log: log.clone(),
            transport: Arc::clone(&transport) as Arc<dyn Transport>,
            snaps,
            shared: Arc::clone(&shared),
            events: events_rx,
            proposals: proposals_rx,
            completions: completions_rx,
            completions_tx,
            persist_inline: cfg.persist_inline_when_idle,
            persist_in_flight: 0,
            apply: Some(apply),
            membership_waiters: HashMap::new(),
            read_waiters: HashMap::new(),
            next_read: 0,
            peers,
            peers_file,
            fatal: None,
        };
        threads.push(
            std::thread::Builder::new()
                .name(format!("raft-loop-{id:x}"))
                .spawn(move || raft_loop.run())?,
        );
        Ok(Node {
            shared,
            transport,
            wal: log,
            threads,
        })
    }

    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The address the peer listener is bound to.
    pub fn peer_addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    pub fn wal_metrics(&self) -> engine::wal::Metrics {
        self.wal.wal().metrics()
    }

    fn check_running(&self) -> Result<()> {
        if self.shared.stopped.load(Ordering::SeqCst) {
            return Err(Error::Stopped);
        }
        Ok(())
    }

    /// Proposes a command. The result is the state machine's response once
    /// the entry is committed and applied on this node. A proposal on a
    /// follower is forwarded to the leader; with no leader it fails with
    /// `NotLeader`. If the caller gives up waiting, the outcome is unknown.
    pub fn propose(&self, data: Bytes) -> Result<Pending<Bytes>> {
        self.check_running()?;
        if data.is_empty() {
            return Err(Error::ProposalDropped("empty command".into()));
        }
        if data.len() > self.shared.command_bytes_max {
            return Err(Error::CommandTooLarge {
                bytes: data.len(),
                limit: self.shared.command_bytes_max,
            });
        }
        let id = ProposalId {
            node: self.shared.id,
            seq: self.shared.next_seq.fetch_add(1, Ordering::Relaxed),
        };
        let (resolver, pending) = pending();
        self.shared.waiters.lock().insert(id, resolver);
        match self.shared.proposals.try_send(ProposalReq { id, data }) {
            Ok(()) => Ok(pending),
            Err(e) => {
                self.shared.waiters.lock().remove(&id);
                Err(match e {
                    TrySendError::Full(_) => Error::Busy(self.shared.proposals.len()),
                    TrySendError::Disconnected(_) => Error::Stopped,
                })
            }
        }
    }

    fn send_event(&self, ev: Event) -> Result<()> {
        match self.shared.events.try_send(ev) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Error::Busy(self.shared.events.len())),
            Err(TrySendError::Disconnected(_)) => Err(Error::Stopped),
        }
    }

    /// A linearizable read barrier (ReadIndex, batched): resolves with an
    /// index once this node's state machine has applied at least that far
    /// and the leader confirmed it was still the leader when the read
    /// arrived. Then read the local state machine.
    pub fn read_index(&self) -> Result<Pending<u64>> {
        self.check_running()?;
        let (resolver, pending) = pending();
        self.send_event(Event::Read(resolver))?;
        Ok(pending)
    }

    /// Proposes a membership change (on the leader); resolves with the new
    /// configuration once the change is committed and applied.
    pub fn change_membership(&self, change: MembershipChange) -> Result<Pending<ConfState>> {
        self.check_running()?;
        let (resolver, pending) = pending();
        self.send_event(Event::Membership(change, resolver))?;
        Ok(pending)
    }

    /// Asks the leader to hand leadership to `to`. Resolves once the
    /// request was handed to raft; watch `status()` for the outcome.
    pub fn transfer_leader(&self, to: u64) -> Result<Pending<()>> {
        self.check_running()?;
        let (resolver, pending) = pending();
        self.send_event(Event::Transfer(to, resolver))?;
        Ok(pending)
    }

    /// Starts an election now.
    pub fn campaign(&self) -> Result<Pending<()>> {
        self.check_running()?;
        let (resolver, pending) = pending();
        self.send_event(Event::Campaign(resolver))?;
        Ok(pending)
    }

    pub fn status(&self) -> Status {
        self.shared.status.lock().clone()
    }

    /// Why the node stopped on its own (a failed WAL or state machine).
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.lock().clone()
    }

    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }

    /// Stops the node: the raft loop ends, pending requests fail with
    /// `Stopped`, the transport closes.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self
            .shared
            .events
            .send_timeout(Event::Stop, Duration::from_secs(1));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.transport.shutdown();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct RaftLoop {
    core: Core,
    tick_interval: Duration,
    proposal_batch_max: usize,
    log: WalStore,
    transport: Arc<dyn Transport>,
    snaps: SnapDir,
    shared: Arc<Shared>,
    events: Receiver<Event>,
    proposals: Receiver<ProposalReq>,
    completions: Receiver<Completion>,
    completions_tx: Sender<Completion>,
    /// Write batches inline when none is in flight.
    persist_inline: bool,
    /// Batches handed to the WAL's writer whose completion has not been
    /// handled yet.
    persist_in_flight: usize,
    apply: Option<ApplyQueue>,
    membership_waiters: HashMap<ProposalId, Resolver<ConfState>>,
    read_waiters: HashMap<u64, Resolver<u64>>,
    next_read: u64,
    peers: HashMap<u64, String>,
    peers_file: PathBuf,
    fatal: Option<String>,
}

/// Events or completions handled per loop iteration before proposals and
/// raft work get their turn.
const DRAIN_MAX: usize = 4096;

impl RaftLoop {
    fn run(mut self) {
        let mut next_tick = Instant::now() + self.tick_interval;
        let mut ticks: u64 = 0;
        let mut batch: Vec<ProposalReq> = Vec::new();
        let mut stop = false;
        while !stop && self.fatal.is_none() {
            let timeout = next_tick.saturating_duration_since(Instant::now());
            select! {
                recv(self.completions) -> c => if let Ok(c) = c { self.on_completion(c) },
                recv(self.events) -> e => match e {
                    Ok(e) => stop |= self.on_event(e),
                    Err(_) => stop = true,
                },
                recv(self.proposals) -> p => if let Ok(p) = p { batch.push(p) },
                default(timeout) => {}
            }
            for _ in 0..DRAIN_MAX {
                match self.completions.try_recv() {
                    Ok(c) => self.on_completion(c),
                    Err(_) => break,
                }
            }
            for _ in 0..DRAIN_MAX {
                match self.events.try_recv() {
                    Ok(e) => stop |= self.on_event(e),
                    Err(_) => break,
                }
            }
            while batch.len() < self.proposal_batch_max {
                match self.proposals.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            self.propose(&mut batch);
            let now = Instant::now();
            if now >= next_tick {
                self.core.tick();
                ticks += 1;
                // After a stall, resume the tick rhythm instead of firing a
                // burst of ticks that would time out every election at once.
                next_tick = (next_tick + self.tick_interval).max(now);
                if ticks.is_multiple_of(64) {
                    self.sweep_abandoned();
                }
            }
            if let Err(e) = self.drive() {
                self.fatal = Some(e.to_string());
            }
            *self.shared.status.lock() = self.core.status();
            if self.core.is_removed() {
                tracing::warn!(
                    id = format!("{:x}", self.shared.id),
                    "removed from the cluster; the node stops"
                );
                break;
            }
        }
        if let Some(why) = &self.fatal {
            tracing::error!(
                id = format!("{:x}", self.shared.id),
                "raft loop stops: {why}"
            );
            *self.shared.failure.lock() = Some(why.clone());
        }
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Pending requests fail with Stopped as their resolvers drop.
        self.shared.waiters.lock().clear();
        self.membership_waiters.clear();
        self.read_waiters.clear();
        self.apply = None;
    }

    fn on_event(&mut self, e: Event) -> bool {
        match e {
            Event::Incoming(Incoming::Message(m)) => self.core.step(m),
            Event::Incoming(Incoming::SnapshotStatus { to, delivered }) => {
                self.core.report_snapshot(to, delivered)
            }
            Event::Incoming(Incoming::Unreachable { to }) => self.core.report_unreachable(to),
            Event::Incoming(Incoming::Removed { from }) => self.core.on_removed_notice(from),
            Event::Read(resolver) => {
                self.next_read += 1;
                if self.core.read_index(self.next_read) {
                    self.read_waiters.insert(self.next_read, resolver);
                } else {
                    resolver.resolve(Err(Error::Busy(self.core.pending_reads())));
                }
            }
            Event::Membership(change, resolver) => {
                let id = ProposalId {
                    node: self.shared.id,
                    seq: self.shared.next_seq.fetch_add(1, Ordering::Relaxed),
                };
                match self.core.propose_membership(id, &change) {
                    Ok(()) => {
                        self.membership_waiters.insert(id, resolver);
                    }
                    Err(e) => resolver.resolve(Err(e)),
                }
            }
            Event::Transfer(to, resolver) => resolver.resolve(self.core.transfer_leader(to)),
            Event::Campaign(resolver) => resolver.resolve(self.core.campaign()),
            Event::Stop => return true,
        }
        false
    }

    fn on_completion(&mut self, c: Completion) {
        match c {
            Completion::Persisted(seq) => {
                self.persist_in_flight -= 1;
                self.core.on_persisted(seq)
            }
            Completion::LogFailed(why) => self.fatal = Some(format!("raft log: {why}")),
            Completion::Apply(Report::Applied(index)) => self.core.on_applied(index),
            Completion::Apply(Report::SnapshotTaken(snap)) => {
                let index = snap.get_metadata().index;
                let recorded = match self.core.on_snapshot_taken(snap) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!("snapshot not recorded: {e}");
                        false
                    }
                };
                self.snapshot_outcome(index, recorded);
            }
            Completion::Apply(Report::SnapshotFailed(index)) => self.snapshot_outcome(index, false),
            Completion::Apply(Report::Failed(why)) => {
                self.fatal = Some(format!("state machine: {why}"))
            }
        }
    }

    fn propose(&mut self, batch: &mut Vec<ProposalReq>) {
        if batch.is_empty() {
            return;
        }
        let reqs = std::mem::take(batch);
        let ids: Vec<ProposalId> = reqs.iter().map(|r| r.id).collect();
        if let Err(e) = self
            .core
            .propose_batch(reqs.into_iter().map(|r| (r.id, r.data)).collect())
        {
            let mut waiters = self.shared.waiters.lock();
            for id in ids {
                if let Some(w) = waiters.remove(&id) {
                    w.resolve(Err(clone_error(&e)));
                }
            }
        }
    }

    /// Forgets requests whose callers stopped waiting (a proposal forwarded
    /// to a leader that lost it never completes).
    fn sweep_abandoned(&mut self) {
        self.shared.waiters.lock().retain(|_, w| !w.is_abandoned());
        self.read_waiters.retain(|_, w| !w.is_abandoned());
        self.membership_waiters.retain(|_, w| !w.is_abandoned());
    }

    fn drive(&mut self) -> Result<()> {
        while let Some(work) = self.core.poll()? {
            self.dispatch(work)?;
        }
        Ok(())
    }

    fn dispatch(&mut self, work: Work) -> Result<()> {
        // Nothing else waits for the loop: doing the I/O and the apply here
        // delays nobody and saves the thread hand-offs.
        let quiet = self.proposals.is_empty() && self.events.is_empty();
        // The leader's messages leave first, so the followers' writes run
        // while this node writes its own.
        let (snaps, msgs): (Vec<Message>, Vec<Message>) = work
            .messages
            .into_iter()
            .partition(Core::is_snapshot_message);
        if !msgs.is_empty() {
            self.transport.send(msgs);
        }
        for m in snaps {
            let meta = m.get_snapshot().get_metadata();
            let path = self.snaps.path_of(meta.index, meta.term);
            self.transport.send_snapshot(m, path);
        }
        for batch in work.persist {
            self.persist(batch, quiet)?;
        }
        if let Some(snap) = work.install_snapshot {
            self.apply()?.send(ApplyTask::Install(snap))?;
        }
        if !work.committed.is_empty() {
            for c in &work.committed {
                self.on_committed_membership(c)?;
            }
            let entries = if quiet {
                self.apply()?.try_inline(work.committed)?
            } else {
                Some(work.committed)
            };
            if let Some(entries) = entries {
                self.apply()?.send(ApplyTask::Apply(entries))?;
            }
        }
        if work.snapshot_wanted {
            self.apply()?.send(ApplyTask::SnapshotNow)?;
        }
        for id in work.reads_ready {
            if let Some(w) = self.read_waiters.remove(&id) {
                w.resolve(Ok(self.core.status().applied_index));
            }
        }
        for to in work.tell_removed {
            self.transport.tell_removed(to);
        }
        if let Some(index) = work.release_to {
            self.log.release_to(index)?;
            self.snaps.retain_latest(2)?;
        }
        Ok(())
    }

    fn apply(&self) -> Result<&ApplyQueue> {
        self.apply.as_ref().ok_or(Error::Stopped)
    }

    /// Tells the apply worker what became of the snapshot it reported.
    fn snapshot_outcome(&mut self, index: u64, recorded: bool) {
        let told = self
            .apply()
            .and_then(|a| a.send(ApplyTask::SnapshotOutcome { index, recorded }));
        if let Err(e) = told {
            self.fatal.get_or_insert_with(|| e.to_string());
        }
    }

    /// Makes `batch` durable: here and now when the loop is `quiet` and no
    /// earlier batch is in flight (its completion is then reported before
    /// this returns, so completions stay in order), else through the WAL's
    /// writer.
    fn persist(&mut self, batch: crate::core::PersistBatch, quiet: bool) -> Result<()> {
        if self.persist_inline && quiet && self.persist_in_flight == 0 {
            self.log.append_sync(&batch.records)?;
            self.core.on_persisted(batch.seq);
            return Ok(());
        }
        let tx = self.completions_tx.clone();
        let seq = batch.seq;
        self.log.append(
            &batch.records,
            Box::new(move |r| {
                let _ = tx.send(match r {
                    Ok(()) => Completion::Persisted(seq),
                    Err(e) => Completion::LogFailed(e.to_string()),
                });
            }),
        )?;
        self.persist_in_flight += 1;
        Ok(())
    }

    /// Keeps the transport's peer list and the peers file in step with the
    /// configuration, and answers the proposer of a membership change.
    fn on_committed_membership(&mut self, c: &crate::state_machine::Committed) -> Result<()> {
        let waiter = c.proposal.and_then(|p| self.membership_waiters.remove(&p));
        match &c.payload {
            Payload::Membership { change, conf_state } => {
                let id = change.node_id();
                match change {
                    MembershipChange::AddVoter { peer_url, .. }
                    | MembershipChange::AddLearner { peer_url, .. } => {
                        self.transport.add_peer(id, peer_url);
                        self.peers.insert(id, peer_url.clone());
                        save_peers(&self.peers_file, &self.peers)?;
                    }
                    MembershipChange::Remove { .. } => {
                        // Kept in the transport so the removed member can be
                        // told; dropped from the directory.
                        self.peers.remove(&id);
                        save_peers(&self.peers_file, &self.peers)?;
                    }
                    MembershipChange::PromoteLearner { .. } => {}
                }
                if let Some(w) = waiter {
                    w.resolve(Ok(conf_state.clone()));
                }
            }
            _ => {
                if let Some(w) = waiter {
                    w.resolve(Err(Error::Membership(
                        "rejected by raft when applied".into(),
                    )));
                }
            }
        }
        Ok(())
    }
}

fn clone_error(e: &Error) -> Error {
    match e {
        Error::NotLeader { leader } => Error::NotLeader { leader: *leader },
        Error::Removed => Error::Removed,
        Error::CommandTooLarge { bytes, limit } => Error::CommandTooLarge {
            bytes: *bytes,
            limit: *limit,
        },
        other => Error::ProposalDropped(other.to_string()),
    }
}

/// `member/peers`: one `id_hex url` line per member learned from membership
/// changes, rewritten atomically.
fn load_peers(path: &Path) -> Result<HashMap<u64, String>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(e.into()),
    };
    let mut peers = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (id, url) = line
            .split_once(' ')
            .ok_or_else(|| Error::Recovery(format!("{}: bad line {line:?}", path.display())))?;
        let id = u64::from_str_radix(id, 16)
            .map_err(|_| Error::Recovery(format!("{}: bad id {id:?}", path.display())))?;
        peers.insert(id, url.to_string());
    }
    Ok(peers)
}

fn save_peers(path: &Path, peers: &HashMap<u64, String>) -> Result<()> {
    let mut lines: Vec<String> = peers
        .iter()
        .map(|(id, url)| format!("{id:x} {url}\n"))
        .collect();
    lines.sort();
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, lines.concat())?;
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    Ok(())
}
