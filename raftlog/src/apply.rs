//! The apply worker: the thread that owns the state machine.
//!
//! It applies committed entries in order, answers the proposals this node
//! made, installs snapshots received from a leader, and writes a snapshot
//! every `snapshot_interval_entries` (or when a follower needs a newer one).
//! Running apart from the raft loop keeps a slow apply (a large transaction,
//! a B+tree commit) from delaying heartbeats and appends.
//!
//! A small batch that finds the worker idle is applied by the raft loop
//! itself ([`ApplyQueue::try_inline`]): waking the worker thread costs more
//! than applying a few entries, and a lone client waits for exactly that.
//! The worker sits behind a mutex, and the raft loop applies inline only
//! when no task is queued or running, so entries are still applied once
//! each, in log order. Snapshots and installs always run on the worker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use raft::eraftpb::{ConfState, Snapshot};

use crate::error::Error;
use crate::pending::Resolver;
use crate::snapshot::{Descriptor, SnapDir};
use crate::state_machine::{Committed, Payload, ProposalId, StateMachine};
use crate::storage::snapshot_metadata;

pub(crate) enum ApplyTask {
    Apply(Vec<Committed>),
    Install(Snapshot),
    SnapshotNow,
    /// The periodic snapshot came due while the raft loop applied inline.
    Periodic,
}

/// Entries applied before their answers are released (bounds how long the
/// first answer of a large batch waits for the rest).
const ANSWER_RUN_MAX: usize = 256;

/// Entries in a batch the raft loop may apply itself.
pub(crate) const INLINE_ENTRIES_MAX: usize = 32;
/// Command bytes in a batch the raft loop may apply itself.
pub(crate) const INLINE_BYTES_MAX: usize = 64 << 10;

/// The apply worker as the raft loop sees it, whatever its state machine.
pub(crate) trait Apply: Send {
    fn run_task(&mut self, task: ApplyTask) -> Result<(), Error>;
    /// Applies `entries` and answers their proposers; true when the
    /// periodic snapshot is due (take it on the worker, not inline).
    fn apply_entries(&mut self, entries: &[Committed]) -> Result<bool, Error>;
    fn report(&self, r: Report);
}

/// The raft loop's side of the apply worker: a bounded task queue, and
/// the worker itself for small batches applied inline.
pub(crate) struct ApplyQueue {
    tasks: Sender<ApplyTask>,
    /// Tasks sent and not yet finished by the worker thread.
    queued: Arc<AtomicUsize>,
    worker: Arc<Mutex<Box<dyn Apply>>>,
}

impl ApplyQueue {
    /// Starts the worker thread.
    pub fn start(
        worker: Box<dyn Apply>,
        id: u64,
        queue_max: usize,
    ) -> std::io::Result<(ApplyQueue, std::thread::JoinHandle<()>)> {
        let (tx, rx) = crossbeam_channel::bounded(queue_max);
        let queued = Arc::new(AtomicUsize::new(0));
        let worker = Arc::new(Mutex::new(worker));
        let (w, q) = (Arc::clone(&worker), Arc::clone(&queued));
        let thread = std::thread::Builder::new()
            .name(format!("raft-apply-{id:x}"))
            .spawn(move || run(w, q, rx, id))?;
        Ok((
            ApplyQueue {
                tasks: tx,
                queued,
                worker,
            },
            thread,
        ))
    }

    /// Queues a task for the worker thread (blocks while the queue is full).
    pub fn send(&self, task: ApplyTask) -> Result<(), Error> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        self.tasks.send(task).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            Error::Stopped
        })
    }

    /// Applies a small batch on the calling thread when the worker is idle
    /// (nothing queued or running, so log order holds); otherwise hands the
    /// entries back.
    pub fn try_inline(&self, entries: Vec<Committed>) -> Result<Option<Vec<Committed>>, Error> {
        let bytes: usize = entries
            .iter()
            .map(|e| match &e.payload {
                Payload::Command(d) => d.len(),
                _ => 0,
            })
            .sum();
        if entries.len() > INLINE_ENTRIES_MAX
            || bytes > INLINE_BYTES_MAX
            || self.queued.load(Ordering::SeqCst) != 0
        {
            return Ok(Some(entries));
        }
        // An error stops the raft loop (the caller's `?`), as the worker's
        // report of one would.
        if self.worker.lock().apply_entries(&entries)? {
            self.send(ApplyTask::Periodic)?;
        }
        Ok(None)
    }
}

fn run(
    worker: Arc<Mutex<Box<dyn Apply>>>,
    queued: Arc<AtomicUsize>,
    tasks: Receiver<ApplyTask>,
    id: u64,
) {
    for task in tasks {
        let result = worker.lock().run_task(task);
        queued.fetch_sub(1, Ordering::SeqCst);
        if let Err(e) = result {
            tracing::error!(id = format!("{id:x}"), "apply worker stops: {e}");
            worker.lock().report(Report::Failed(e.to_string()));
            return;
        }
    }
}

/// What the apply worker reports to the raft loop.
pub(crate) enum Report {
    Applied(u64),
    SnapshotTaken(Snapshot),
    Failed(String),
}

/// Where the apply worker's reports go: straight into the raft loop's
/// completion stream (no thread of its own in between).
pub(crate) type ReportTo = Arc<dyn Fn(Report) + Send + Sync>;

/// Proposals of this node waiting for their entry to be applied.
pub(crate) type Waiters = Mutex<HashMap<ProposalId, Resolver<Bytes>>>;

pub(crate) struct ApplyWorker<S: StateMachine> {
    pub id: u64,
    pub sm: S,
    pub snaps: SnapDir,
    pub waiters: Arc<Waiters>,
    pub reports: ReportTo,
    pub snapshot_interval: u64,
    /// Index of the latest snapshot, with or without a file.
    pub last_snapshot: u64,
    /// Index of the latest snapshot file taken here.
    pub last_file_snapshot: u64,
    /// Configuration and term as of the applied index, for snapshots.
    pub conf: ConfState,
    pub term: u64,
    /// A snapshot file is being written (one at a time).
    pub writing: Arc<AtomicBool>,
}

impl<S: StateMachine> Apply for ApplyWorker<S> {
    fn run_task(&mut self, task: ApplyTask) -> Result<(), Error> {
        match task {
            ApplyTask::Apply(entries) => {
                if self.apply_entries(&entries)? {
                    self.periodic_snapshot()?;
                }
                Ok(())
            }
            ApplyTask::Install(snap) => self.install(&snap),
            ApplyTask::SnapshotNow => self.snapshot(),
            ApplyTask::Periodic => {
                if self.snapshot_due() {
                    self.periodic_snapshot()?;
                }
                Ok(())
            }
        }
    }

    fn apply_entries(&mut self, entries: &[Committed]) -> Result<bool, Error> {
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(false);
        };
        let mut answers = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if i > 0 && i % ANSWER_RUN_MAX == 0 {
                self.answer(&mut answers);
            }
            let replay = e.index <= self.sm.applied_index();
            let response = self
                .sm
                .apply(e)
                .map_err(|err| Error::StateMachine(format!("entry {}: {err}", e.index)))?;
            if let Payload::Membership { conf_state, .. } = &e.payload {
                self.conf = conf_state.clone();
            }
            self.term = e.term;
            if replay {
                continue;
            }
            if let Some(p) = e.proposal.filter(|p| p.node == self.id) {
                answers.push((p, response));
            }
        }
        self.answer(&mut answers);
        (self.reports)(Report::Applied(last.max(self.sm.applied_index())));
        Ok(self.snapshot_due())
    }

    fn report(&self, r: Report) {
        (self.reports)(r)
    }
}

impl<S: StateMachine> ApplyWorker<S> {
    /// Releases the answers of the entries applied since the last call:
    /// the state machine's first, then the proposers' results.
    fn answer(&mut self, answers: &mut Vec<(ProposalId, Bytes)>) {
        self.sm.end_of_batch();
        if answers.is_empty() {
            return;
        }
        let ready: Vec<_> = {
            let mut waiters = self.waiters.lock();
            answers
                .drain(..)
                .filter_map(|(p, r)| waiters.remove(&p).map(|w| (w, r)))
                .collect()
        };
        for (w, r) in ready {
            w.resolve(Ok(r));
        }
    }

    fn snapshot_due(&self) -> bool {
        self.sm.applied_index() >= self.last_snapshot + self.snapshot_interval
    }

    /// Every `snapshot_interval` entries: a marker without a file when the
    /// state machine can make its state durable itself, else a file.
    fn periodic_snapshot(&mut self) -> Result<(), Error> {
        let durable = self.sm.make_durable().map_err(|e| {
            Error::StateMachine(format!(
                "making the state at {} durable: {e}",
                self.sm.applied_index()
            ))
        })?;
        if !durable {
            return self.snapshot();
        }
        let applied = self.sm.applied_index();
        let mut snap = Snapshot::default();
        snap.set_metadata(snapshot_metadata(applied, self.term, self.conf.clone()));
        snap.data = Descriptor::LOCAL.encode();
        self.last_snapshot = applied;
        (self.reports)(Report::SnapshotTaken(snap));
        Ok(())
    }

    fn install(&mut self, snap: &Snapshot) -> Result<(), Error> {
        let meta = snap.get_metadata();
        let path = self.snaps.path_of(meta.index, meta.term);
        let (_, mut payload) = self.snaps.open_payload(&path)?;
        self.sm
            .restore_snapshot(&mut payload, meta.index, meta.term)
            .map_err(|e| Error::StateMachine(format!("restoring snapshot {}: {e}", meta.index)))?;
        self.conf = meta.get_conf_state().clone();
        self.term = meta.term;
        self.last_snapshot = meta.index;
        self.last_file_snapshot = meta.index;
        (self.reports)(Report::Applied(meta.index));
        Ok(())
    }

    /// Captures the state now and writes the file on a thread of its own,
    /// so applying goes on meanwhile. One snapshot at a time; a trigger
    /// while one is being written is dropped (the next one comes soon).
    fn snapshot(&mut self) -> Result<(), Error> {
        let applied = self.sm.applied_index();
        if applied <= self.last_file_snapshot || self.writing.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let meta = snapshot_metadata(applied, self.term, self.conf.clone());
        let image = match self.sm.snapshot() {
            Ok(image) => image,
            Err(e) => {
                self.writing.store(false, Ordering::SeqCst);
                return Err(Error::StateMachine(format!(
                    "capturing a snapshot at {applied}: {e}"
                )));
            }
        };
        self.last_snapshot = applied;
        self.last_file_snapshot = applied;
        let (snaps, reports, writing, id) = (
            self.snaps.clone(),
            Arc::clone(&self.reports),
            Arc::clone(&self.writing),
            self.id,
        );
        let spawned = std::thread::Builder::new()
            .name(format!("raft-snapshot-{id:x}"))
            .spawn(move || {
                match snaps.save(&meta, image) {
                    Ok(snap) => {
                        tracing::debug!(
                            id = format!("{id:x}"),
                            index = applied,
                            "snapshot written"
                        );
                        reports(Report::SnapshotTaken(snap));
                    }
                    // Not fatal: the log is kept until a later snapshot succeeds.
                    Err(e) => {
                        tracing::error!(id = format!("{id:x}"), "writing snapshot {applied}: {e}")
                    }
                }
                writing.store(false, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            self.writing.store(false, Ordering::SeqCst);
            return Err(e.into());
        }
        Ok(())
    }
}
