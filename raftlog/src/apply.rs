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
//!
//! A snapshot (a marker without a file, or a file) is taken at the index of
//! the last entry the worker has processed, with that entry's term and the
//! configuration in force after it: the state machine may be ahead of that
//! entry after a restart (its own storage is durable past the latest
//! marker, and raft hands the entries after the marker out again, maybe in
//! several batches), and only the entries the worker has seen tell it the
//! term and membership of an index. A file, which holds the state machine's
//! whole state, waits until the replay has caught up with that state. The
//! worker counts a snapshot as its latest only once the raft loop has
//! recorded it in the log ([`ApplyTask::SnapshotOutcome`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// What became of the snapshot at `index` the worker reported: recorded
    /// in the log (or superseded by a newer one), or not (refused, or its
    /// file could not be written), in which case it is due again.
    SnapshotOutcome {
        index: u64,
        recorded: bool,
    },
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
    /// Applies `entries` and answers their proposers; true when a snapshot
    /// is due (take it on the worker, not inline).
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
    /// The snapshot file at this index could not be written.
    SnapshotFailed(u64),
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
    /// Index of the latest snapshot recorded in the log (or restored, or
    /// installed), with or without a file.
    pub last_snapshot: u64,
    /// Index of the latest snapshot file recorded (or restored, installed).
    pub last_file_snapshot: u64,
    /// Index of the last entry processed (or of the snapshot the worker
    /// started from or installed): `term` and `conf` are as of this index.
    pub processed: u64,
    /// Term of entry `processed`.
    pub term: u64,
    /// Configuration in force after entry `processed`.
    pub conf: ConfState,
    /// A snapshot reported (or being written) whose outcome the raft loop
    /// has not told yet: its index, and whether it is a file. One at a time.
    pub in_flight: Option<(u64, bool)>,
    /// A follower needs a snapshot file that could not be taken yet (the
    /// state machine is ahead of `processed`, or another is in flight).
    pub file_wanted: bool,
}

impl<S: StateMachine> Apply for ApplyWorker<S> {
    fn run_task(&mut self, task: ApplyTask) -> Result<(), Error> {
        match task {
            ApplyTask::Apply(entries) => {
                self.apply_entries(&entries)?;
                self.due_snapshot()
            }
            ApplyTask::Install(snap) => self.install(&snap),
            ApplyTask::SnapshotNow => {
                self.file_wanted = true;
                self.due_snapshot()
            }
            ApplyTask::Periodic => self.due_snapshot(),
            ApplyTask::SnapshotOutcome { index, recorded } => {
                if self.in_flight.is_none_or(|(taken, _)| taken != index) {
                    return Ok(());
                }
                let (_, file) = self.in_flight.take().unwrap();
                if !recorded {
                    // Due again with the next batch (or, for a file, the
                    // follower's next request), not right now: a refusal
                    // must not turn into a loop.
                    self.file_wanted |= file;
                    return Ok(());
                }
                self.last_snapshot = self.last_snapshot.max(index);
                if file {
                    self.last_file_snapshot = self.last_file_snapshot.max(index);
                }
                // One may have come due meanwhile (a file a follower asked
                // for, or the next interval).
                self.due_snapshot()
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
            // Entries at or below the snapshot the worker started from are
            // already reflected in its term and configuration.
            if e.index > self.processed {
                if let Payload::Membership { conf_state, .. } = &e.payload {
                    self.conf = conf_state.clone();
                }
                self.term = e.term;
                self.processed = e.index;
            }
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

    /// The state machine's state is the state at `processed` (not ahead of
    /// it, replaying entries it already holds): a file can be taken.
    fn caught_up(&self) -> bool {
        self.sm.applied_index() == self.processed
    }

    /// Whether a snapshot is to be taken now: a file a follower needs, or
    /// the periodic one every `snapshot_interval` processed entries (the
    /// state machine must hold the state at `processed` to make it durable).
    fn snapshot_due(&self) -> bool {
        self.in_flight.is_none()
            && ((self.file_wanted && self.caught_up())
                || (self.processed >= self.last_snapshot + self.snapshot_interval
                    && self.sm.applied_index() >= self.processed))
    }

    fn due_snapshot(&mut self) -> Result<(), Error> {
        if !self.snapshot_due() {
            return Ok(());
        }
        if self.file_wanted && self.caught_up() {
            return self.snapshot();
        }
        self.periodic_snapshot()
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
            self.file_wanted = true;
            return self.snapshot();
        }
        // The state machine's storage holds the state at its applied index,
        // at or past `processed`: the log up to `processed` may go, and the
        // entries after it are replayed (and skipped up to the applied
        // index) after a restart.
        let index = self.processed;
        let mut snap = Snapshot::default();
        snap.set_metadata(snapshot_metadata(index, self.term, self.conf.clone()));
        snap.data = Descriptor::LOCAL.encode();
        self.in_flight = Some((index, false));
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
        self.processed = meta.index;
        self.last_snapshot = meta.index;
        self.last_file_snapshot = meta.index;
        (self.reports)(Report::Applied(meta.index));
        Ok(())
    }

    /// Captures the state now and writes the file on a thread of its own,
    /// so applying goes on meanwhile. The file is taken at `processed`,
    /// with its term and configuration, once the state machine's state is
    /// the state there (`caught_up`); until then, and while another
    /// snapshot is in flight, the request waits (`file_wanted`).
    fn snapshot(&mut self) -> Result<(), Error> {
        let index = self.processed;
        if index <= self.last_file_snapshot {
            // The latest file is at this index already.
            self.file_wanted = false;
            return Ok(());
        }
        if self.in_flight.is_some() || !self.caught_up() {
            self.file_wanted = true;
            return Ok(());
        }
        let meta = snapshot_metadata(index, self.term, self.conf.clone());
        let image = self
            .sm
            .snapshot()
            .map_err(|e| Error::StateMachine(format!("capturing a snapshot at {index}: {e}")))?;
        self.file_wanted = false;
        self.in_flight = Some((index, true));
        let (snaps, reports, id) = (self.snaps.clone(), Arc::clone(&self.reports), self.id);
        let spawned = std::thread::Builder::new()
            .name(format!("raft-snapshot-{id:x}"))
            .spawn(move || match snaps.save(&meta, image) {
                Ok(snap) => {
                    tracing::debug!(id = format!("{id:x}"), index, "snapshot written");
                    reports(Report::SnapshotTaken(snap));
                }
                // Not fatal: the log is kept until a later snapshot succeeds.
                Err(e) => {
                    tracing::error!(id = format!("{id:x}"), "writing snapshot {index}: {e}");
                    reports(Report::SnapshotFailed(index));
                }
            });
        if let Err(e) = spawned {
            self.in_flight = None;
            return Err(e.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, Read};
    use std::time::Duration;

    use crossbeam_channel::Receiver;

    use super::*;
    use crate::state_machine::{ApplyError, MembershipChange, SnapshotImage};

    /// A state machine at `applied` (ahead of the worker after a restart
    /// when its storage is durable ahead of the latest marker).
    struct Sm {
        applied: u64,
        durable: bool,
    }

    impl StateMachine for Sm {
        fn apply(&mut self, e: &Committed) -> Result<Bytes, ApplyError> {
            self.applied = self.applied.max(e.index);
            Ok(Bytes::new())
        }
        fn applied_index(&self) -> u64 {
            self.applied
        }
        fn snapshot(&mut self) -> std::io::Result<SnapshotImage> {
            let a = self.applied;
            Ok(Box::new(move |out| out.write_all(&a.to_le_bytes())))
        }
        fn make_durable(&mut self) -> std::io::Result<bool> {
            Ok(self.durable)
        }
        fn restore_snapshot(&mut self, input: &mut dyn Read, index: u64, _: u64) -> io::Result<()> {
            let mut b = [0u8; 8];
            input.read_exact(&mut b)?;
            self.applied = index;
            Ok(())
        }
    }

    fn conf(voters: &[u64], learners: &[u64]) -> ConfState {
        let mut cs = ConfState::default();
        cs.voters = voters.to_vec();
        cs.learners = learners.to_vec();
        cs
    }

    /// A worker that processed up to the snapshot at 10 (term 1, voter 1),
    /// over a state machine at `sm_applied`, a snapshot every 5 entries.
    fn worker(
        dir: &std::path::Path,
        sm_applied: u64,
        durable: bool,
    ) -> (ApplyWorker<Sm>, Receiver<Report>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let w = ApplyWorker {
            id: 1,
            sm: Sm {
                applied: sm_applied,
                durable,
            },
            snaps: SnapDir::open(dir).unwrap(),
            waiters: Default::default(),
            reports: Arc::new(move |r| {
                let _ = tx.send(r);
            }),
            snapshot_interval: 5,
            last_snapshot: 10,
            last_file_snapshot: 0,
            processed: 10,
            term: 1,
            conf: conf(&[1], &[]),
            in_flight: None,
            file_wanted: false,
        };
        (w, rx)
    }

    fn entry(index: u64, term: u64) -> Committed {
        Committed {
            index,
            term,
            proposal: None,
            payload: Payload::Empty,
        }
    }

    fn add_learner(index: u64, term: u64, cs: ConfState) -> Committed {
        Committed {
            index,
            term,
            proposal: None,
            payload: Payload::Membership {
                change: MembershipChange::AddLearner {
                    id: 7,
                    peer_url: "http://127.0.0.1:9".into(),
                },
                conf_state: cs,
            },
        }
    }

    /// Hands `entries` out one per batch; returns the snapshots reported.
    fn replay(
        w: &mut ApplyWorker<Sm>,
        rx: &Receiver<Report>,
        entries: Vec<Committed>,
    ) -> Vec<Snapshot> {
        let mut taken = Vec::new();
        for e in entries {
            w.run_task(ApplyTask::Apply(vec![e])).unwrap();
            taken.extend(rx.try_iter().filter_map(|r| match r {
                Report::SnapshotTaken(s) => Some(s),
                _ => None,
            }));
        }
        taken
    }

    fn meta_of(s: &Snapshot) -> (u64, u64, ConfState) {
        let m = s.get_metadata();
        (m.index, m.term, m.get_conf_state().clone())
    }

    /// The state machine is durable at 20; the entries after the marker at
    /// 10 come again one per batch, a learner added at 15 in term 2. The
    /// markers name the entries the worker processed, with their term and
    /// configuration, never the state machine's index 20 with the
    /// configuration of an earlier entry.
    #[test]
    fn markers_during_a_replay_name_the_processed_entry() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, rx) = worker(dir.path(), 20, true);
        let with_learner = conf(&[1], &[7]);
        let mut entries: Vec<Committed> = (11..=14).map(|i| entry(i, 1)).collect();
        entries.push(add_learner(15, 2, with_learner.clone()));
        let taken = replay(&mut w, &rx, entries);
        assert_eq!(taken.len(), 1);
        assert_eq!(meta_of(&taken[0]), (15, 2, with_learner.clone()));
        assert!(is_local_snapshot(&taken[0]));

        // No second marker while the first is in flight.
        let taken = replay(&mut w, &rx, (16..=20).map(|i| entry(i, 2)).collect());
        assert!(taken.is_empty());
        w.run_task(ApplyTask::SnapshotOutcome {
            index: 15,
            recorded: true,
        })
        .unwrap();
        assert_eq!(w.last_snapshot, 15);
        // Due again since 20: taken as soon as the first is recorded.
        let taken: Vec<Snapshot> = rx
            .try_iter()
            .filter_map(|r| match r {
                Report::SnapshotTaken(s) => Some(s),
                _ => None,
            })
            .collect();
        assert_eq!(taken.len(), 1);
        assert_eq!(meta_of(&taken[0]), (20, 2, with_learner));
    }

    fn is_local_snapshot(s: &Snapshot) -> bool {
        crate::snapshot::is_local(s)
    }

    /// A marker the raft loop refuses is not counted: the next batch takes
    /// one again, instead of waiting another interval.
    #[test]
    fn a_refused_marker_is_due_again() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, rx) = worker(dir.path(), 10, true);
        let taken = replay(&mut w, &rx, (11..=15).map(|i| entry(i, 1)).collect());
        assert_eq!(taken.len(), 1);
        w.run_task(ApplyTask::SnapshotOutcome {
            index: 15,
            recorded: false,
        })
        .unwrap();
        assert_eq!(w.last_snapshot, 10);
        assert_eq!(rx.try_iter().count(), 0, "not retaken at once");
        let taken = replay(&mut w, &rx, vec![entry(16, 1)]);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].get_metadata().index, 16);
    }

    /// A follower asks for a snapshot file while the worker replays entries
    /// the state machine already holds (a leader right after a restart):
    /// the file waits until the replay reaches the state machine's index,
    /// and then carries the term and configuration of that index.
    #[test]
    fn a_file_waits_for_the_replay_and_carries_its_index_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, rx) = worker(dir.path(), 13, true);
        w.run_task(ApplyTask::SnapshotNow).unwrap();
        let with_learner = conf(&[1], &[7]);
        let entries = vec![
            entry(11, 1),
            entry(12, 2),
            add_learner(13, 2, with_learner.clone()),
        ];
        let mut taken = replay(&mut w, &rx, entries);
        assert!(w.in_flight.is_some(), "the file is taken once caught up");
        // The file is written on a thread of its own.
        if taken.is_empty() {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(Report::SnapshotTaken(s)) => taken.push(s),
                _ => panic!("no snapshot file written"),
            }
        }
        assert_eq!(taken.len(), 1);
        assert!(!is_local_snapshot(&taken[0]));
        assert_eq!(meta_of(&taken[0]), (13, 2, with_learner));
        let (m, _) = w
            .snaps
            .open_payload(&w.snaps.path_of(13, 2))
            .expect("the file is named by its index and term");
        assert_eq!((m.index, m.term), (13, 2));
    }
}
