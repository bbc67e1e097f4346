//! The apply worker: the thread that owns the state machine.
//!
//! It applies committed entries in order, answers the proposals this node
//! made, installs snapshots received from a leader, and writes a snapshot
//! every `snapshot_interval_entries` (or when a follower needs a newer one).
//! Running apart from the raft loop keeps a slow apply (a large transaction,
//! a B+tree commit) from delaying heartbeats and appends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
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
}

/// What the apply worker reports to the raft loop.
pub(crate) enum Report {
    Applied(u64),
    SnapshotTaken(Snapshot),
    Failed(String),
}

/// Proposals of this node waiting for their entry to be applied.
pub(crate) type Waiters = Mutex<HashMap<ProposalId, Resolver<Bytes>>>;

pub(crate) struct ApplyWorker<S: StateMachine> {
    pub id: u64,
    pub sm: S,
    pub snaps: SnapDir,
    pub waiters: Arc<Waiters>,
    pub reports: Sender<Report>,
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

impl<S: StateMachine> ApplyWorker<S> {
    pub fn run(mut self, tasks: Receiver<ApplyTask>) {
        for task in tasks {
            let result = match task {
                ApplyTask::Apply(entries) => self.apply(entries),
                ApplyTask::Install(snap) => self.install(&snap),
                ApplyTask::SnapshotNow => self.snapshot(),
            };
            if let Err(e) = result {
                tracing::error!(id = format!("{:x}", self.id), "apply worker stops: {e}");
                let _ = self.reports.send(Report::Failed(e.to_string()));
                return;
            }
        }
    }

    fn apply(&mut self, entries: Vec<Committed>) -> Result<(), Error> {
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(());
        };
        for e in &entries {
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
                if let Some(waiter) = self.waiters.lock().remove(&p) {
                    waiter.resolve(Ok(response));
                }
            }
        }
        let _ = self
            .reports
            .send(Report::Applied(last.max(self.sm.applied_index())));
        if self.sm.applied_index() >= self.last_snapshot + self.snapshot_interval {
            self.periodic_snapshot()?;
        }
        Ok(())
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
        let _ = self.reports.send(Report::SnapshotTaken(snap));
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
        let _ = self.reports.send(Report::Applied(meta.index));
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
            self.reports.clone(),
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
                        let _ = reports.send(Report::SnapshotTaken(snap));
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
