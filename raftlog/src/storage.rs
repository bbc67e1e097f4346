//! `raft::Storage` over an in-memory tail of the log.
//!
//! The durable copy lives in the [`LogStore`](crate::log_store::LogStore);
//! this is the part raft reads from: the entries since the last compaction,
//! the hard state, the latest snapshot's metadata. The driver appends here
//! *before* the durable write completes, which raft-rs requires of
//! `advance_append_async` ("the updates can be read by raft from the
//! Storage"). On restart the tail is rebuilt from the durable records.

use std::collections::{BTreeMap, VecDeque};

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::error::{Error, Result};
use crate::record::{LogRecord, SnapshotOrigin};

#[derive(Default, Debug)]
pub struct RaftStorage {
    hard_state: HardState,
    /// The configuration raft starts with: the latest snapshot's.
    conf_state: ConfState,
    /// The latest snapshot (metadata and descriptor), index 0 when none.
    snapshot: Snapshot,
    /// Entries `[first_index, first_index + entries.len())`.
    entries: VecDeque<Entry>,
    first_index: u64,
    /// Term of entry `first_index - 1` (kept after compaction for matching).
    prev_term: u64,
    /// Set when raft asked for a snapshot the latest one cannot serve (too
    /// old, or it predates the configuration that added the receiver); the
    /// driver asks the state machine for a fresh one.
    snapshot_wanted: std::cell::Cell<bool>,
}

impl RaftStorage {
    /// An empty log: first index 1, nothing in it.
    pub fn new() -> RaftStorage {
        RaftStorage {
            first_index: 1,
            ..Default::default()
        }
    }

    /// Rebuilds the tail from durable records in the order they were written.
    ///
    /// The latest snapshot marker is the base. Before a `Taken` marker the
    /// durable log may hold entries beyond its index (written before the
    /// snapshot was taken) and, after a release, nothing at or below it. The
    /// records before the marker are replayed in file order into the log
    /// as it stood (truncations included: an entry at or below the marker's
    /// index still removes the stale entries after it), and that log's
    /// entries beyond the marker's index go on top of the base. An
    /// `Installed` marker replaced the whole log, so only hard states
    /// survive from before it.
    ///
    /// A later entry at an existing index replaces it and everything after
    /// it (a follower's truncation); a gap is corruption.
    pub fn recover(records: &[LogRecord]) -> Result<RaftStorage> {
        let mut s = RaftStorage::new();
        let base = records
            .iter()
            .rposition(|r| matches!(r, LogRecord::Snapshot { .. }));
        let mut start = 0;
        if let Some(p) = base {
            let LogRecord::Snapshot {
                origin,
                meta,
                descriptor,
            } = &records[p]
            else {
                unreachable!()
            };
            let mut snap = Snapshot::default();
            snap.set_metadata(meta.clone());
            snap.data = descriptor.clone();
            s.apply_snapshot(snap);
            s.hard_state = HardState::default();
            // The log as it stood when the marker was written, from the
            // records before it in file order: an entry at index i replaces
            // whatever the log held from i on (a follower's truncation), so
            // an entry at or below the marker's index still cuts off the
            // stale entries after it; an installed snapshot replaced the
            // whole log. Of that log, what follows a taken marker's index
            // is the tail.
            let mut log: BTreeMap<u64, &Entry> = BTreeMap::new();
            for rec in &records[..p] {
                match rec {
                    LogRecord::HardState(hs) => s.hard_state = hs.clone(),
                    LogRecord::Entry(e) => {
                        log.split_off(&e.index);
                        log.insert(e.index, e);
                    }
                    LogRecord::Snapshot {
                        origin: SnapshotOrigin::Installed,
                        ..
                    } => log.clear(),
                    LogRecord::Snapshot { .. } => {}
                }
            }
            if *origin == SnapshotOrigin::Taken {
                for e in log.range(meta.index + 1..).map(|(_, e)| *e) {
                    s.replay_entry(e)?;
                }
            }
            start = p + 1;
        }
        for rec in &records[start..] {
            match rec {
                LogRecord::HardState(hs) => s.hard_state = hs.clone(),
                LogRecord::Entry(e) => s.replay_entry(e)?,
                LogRecord::Snapshot { .. } => unreachable!("the latest marker is the base"),
            }
        }
        // The snapshot's entries are committed whatever the hard state says.
        let snap_index = s.snapshot_index();
        if s.hard_state.commit < snap_index {
            s.hard_state.commit = snap_index;
        }
        if s.hard_state.term < s.prev_term {
            s.hard_state.term = s.prev_term;
        }
        if s.hard_state.commit > s.last_index() {
            return Err(Error::Recovery(format!(
                "hard state commit {} beyond last index {}",
                s.hard_state.commit,
                s.last_index()
            )));
        }
        Ok(s)
    }

    fn replay_entry(&mut self, e: &Entry) -> Result<()> {
        if e.index < self.first_index {
            return Err(Error::Recovery(format!(
                "entry {} before first index {}",
                e.index, self.first_index
            )));
        }
        if e.index > self.last_index() + 1 {
            return Err(Error::Recovery(format!(
                "gap in the log: entry {} follows last index {}",
                e.index,
                self.last_index()
            )));
        }
        self.append(std::slice::from_ref(e))
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    pub fn latest_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    pub fn first(&self) -> u64 {
        self.first_index
    }

    pub fn last(&self) -> u64 {
        self.last_index()
    }

    fn last_index(&self) -> u64 {
        self.first_index + self.entries.len() as u64 - 1
    }

    /// Term of `index` if it is in the tail or is the entry just before it.
    pub fn term_of(&self, index: u64) -> Option<u64> {
        if index + 1 == self.first_index {
            return Some(self.prev_term);
        }
        if index < self.first_index || index > self.last_index() {
            return None;
        }
        Some(self.entries[(index - self.first_index) as usize].term)
    }

    /// Appends entries that may overwrite a suffix (raft's conflict
    /// resolution already decided they win).
    pub fn append(&mut self, ents: &[Entry]) -> Result<()> {
        let Some(first) = ents.first() else {
            return Ok(());
        };
        if let Some(w) = ents.windows(2).find(|w| w[1].index != w[0].index + 1) {
            return Err(Error::Recovery(format!(
                "append of non-contiguous entries {} then {}",
                w[0].index, w[1].index
            )));
        }
        if first.index < self.first_index {
            return Err(Error::Recovery(format!(
                "append at {} overwrites compacted log (first index {})",
                first.index, self.first_index
            )));
        }
        if first.index > self.last_index() + 1 {
            return Err(Error::Recovery(format!(
                "append at {} leaves a gap after {}",
                first.index,
                self.last_index()
            )));
        }
        self.entries
            .truncate((first.index - self.first_index) as usize);
        self.entries.extend(ents.iter().cloned());
        Ok(())
    }

    /// Replaces the whole log with an installed snapshot.
    pub fn apply_snapshot(&mut self, snap: Snapshot) {
        let meta = snap.get_metadata();
        self.entries.clear();
        self.first_index = meta.index + 1;
        self.prev_term = meta.term;
        self.conf_state = meta.get_conf_state().clone();
        if self.hard_state.term < meta.term {
            self.hard_state.term = meta.term;
        }
        if self.hard_state.commit < meta.index {
            self.hard_state.commit = meta.index;
        }
        self.snapshot = snap;
    }

    /// Records a snapshot this node took; the log is not touched.
    pub fn set_snapshot(&mut self, snap: Snapshot) {
        debug_assert!(snap.get_metadata().index >= self.snapshot_index());
        self.conf_state = snap.get_metadata().get_conf_state().clone();
        self.snapshot = snap;
    }

    /// Drops entries up to and including `index` from memory.
    pub fn compact(&mut self, index: u64) {
        if index < self.first_index {
            return;
        }
        let index = index.min(self.last_index());
        let n = (index + 1 - self.first_index) as usize;
        self.prev_term = self.entries[n - 1].term;
        self.entries.drain(..n);
        self.first_index = index + 1;
    }

    /// Whether raft asked for a snapshot newer than the latest; clears it.
    pub fn take_snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.replace(false)
    }

    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }
}

impl raft::Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let lo = (low - self.first_index) as usize;
        let hi = (high - self.first_index) as usize;
        let mut ents: Vec<Entry> = self.entries.range(lo..hi).cloned().collect();
        raft::util::limit_size(&mut ents, max_size.into());
        Ok(ents)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx + 1 < self.first_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.term_of(idx)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first_index)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        // Only snapshots the state machine has written (and made durable) are
        // handed out. A receiver missing from the snapshot's configuration
        // (a member added after it) would refuse it, so a fresh one is
        // requested, as etcd sends its current state to a new member.
        let cs = self.snapshot.get_metadata().get_conf_state();
        let knows_receiver = cs.voters.contains(&to) || cs.learners.contains(&to);
        // A marker without a file (`Descriptor::LOCAL`) cannot be sent.
        if self.snapshot_index() == 0
            || self.snapshot_index() < request_index
            || !knows_receiver
            || crate::snapshot::is_local(&self.snapshot)
        {
            self.snapshot_wanted.set(true);
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

/// Snapshot metadata for `index`/`term` with configuration `cs`.
pub fn snapshot_metadata(index: u64, term: u64, cs: ConfState) -> SnapshotMetadata {
    let mut meta = SnapshotMetadata::default();
    meta.index = index;
    meta.term = term;
    meta.set_conf_state(cs);
    meta
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn ent(index: u64, term: u64) -> Entry {
        let mut e = Entry::default();
        e.index = index;
        e.term = term;
        e
    }

    #[test]
    fn append_overwrites_suffix_and_rejects_gaps() {
        let mut s = RaftStorage::new();
        s.append(&[ent(1, 1), ent(2, 1), ent(3, 1)]).unwrap();
        s.append(&[ent(2, 2)]).unwrap();
        assert_eq!(s.last(), 2);
        assert_eq!(s.term(2).unwrap(), 2);
        assert!(s.append(&[ent(5, 2)]).is_err());
        assert_eq!(s.term(0).unwrap(), 0);
        assert!(s.term(3).is_err());
    }

    #[test]
    fn compact_keeps_prev_term() {
        let mut s = RaftStorage::new();
        s.append(&(1..=10).map(|i| ent(i, i / 4 + 1)).collect::<Vec<_>>())
            .unwrap();
        s.compact(5);
        assert_eq!(s.first_index().unwrap(), 6);
        assert_eq!(s.term(5).unwrap(), 2);
        assert!(matches!(
            s.term(4),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert!(matches!(
            s.entries(4, 7, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert_eq!(
            s.entries(6, 11, None, GetEntriesContext::empty(false))
                .unwrap()
                .len(),
            5
        );
    }

    #[test]
    fn recover_replays_truncations_and_snapshots() {
        let mut hs = HardState::default();
        hs.term = 3;
        hs.commit = 4;
        let mut cs = ConfState::default();
        cs.voters = vec![1, 2, 3];
        let records = vec![
            LogRecord::Entry(ent(1, 1)),
            LogRecord::Entry(ent(2, 1)),
            LogRecord::Entry(ent(3, 1)),
            LogRecord::Entry(ent(2, 2)), // truncates 3
            LogRecord::Entry(ent(3, 2)),
            LogRecord::Entry(ent(4, 3)),
            LogRecord::Snapshot {
                origin: SnapshotOrigin::Taken,
                meta: snapshot_metadata(2, 2, cs.clone()),
                descriptor: Default::default(),
            },
            LogRecord::HardState(hs.clone()),
        ];
        let s = RaftStorage::recover(&records).unwrap();
        assert_eq!(s.first_index().unwrap(), 3);
        assert_eq!(s.last(), 4);
        assert_eq!(s.term(2).unwrap(), 2);
        assert_eq!(s.initial_state().unwrap().conf_state.voters, vec![1, 2, 3]);
        assert_eq!(s.snapshot(0, 2).unwrap().get_metadata().index, 2);

        // An installed snapshot replaces stale entries beyond it.
        let mut more = records.clone();
        more.push(LogRecord::Snapshot {
            origin: SnapshotOrigin::Installed,
            meta: snapshot_metadata(5, 5, cs),
            descriptor: Default::default(),
        });
        let s = RaftStorage::recover(&more).unwrap();
        assert_eq!((s.first(), s.last()), (6, 5));
        assert_eq!(s.term(5).unwrap(), 5);
        assert_eq!(s.hard_state().commit, 5);

        // A gap is corruption.
        let gap = vec![LogRecord::Entry(ent(1, 1)), LogRecord::Entry(ent(3, 1))];
        assert!(RaftStorage::recover(&gap).is_err());
        // A commit beyond the log is corruption.
        let mut bad = HardState::default();
        bad.commit = 9;
        assert!(RaftStorage::recover(&[LogRecord::HardState(bad)]).is_err());
    }

    #[test]
    fn a_marker_without_a_file_is_never_handed_out() {
        let mut cs = ConfState::default();
        cs.voters = vec![1, 2];
        let records: Vec<LogRecord> = (1..=5).map(|i| LogRecord::Entry(ent(i, 1))).collect();
        let mut s = RaftStorage::recover(&records).unwrap();
        let mut local = Snapshot::default();
        local.set_metadata(snapshot_metadata(4, 1, cs.clone()));
        local.data = crate::snapshot::Descriptor::LOCAL.encode();
        s.set_snapshot(local);
        s.compact(2);
        assert!(matches!(
            s.snapshot(3, 2),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        ));
        assert!(s.take_snapshot_wanted(), "a file is asked for");
        // A file at the same index replaces the marker and is handed out.
        let mut file = Snapshot::default();
        file.set_metadata(snapshot_metadata(4, 1, cs));
        file.data = crate::snapshot::Descriptor {
            file_len: 100,
            crc: 7,
        }
        .encode();
        s.set_snapshot(file);
        assert_eq!(s.snapshot(3, 2).unwrap().get_metadata().index, 4);
        assert!(!s.take_snapshot_wanted());
    }
}
