//! The durable part of the raft log: a seam between the driver and the
//! write-ahead log.
//!
//! The driver hands over each ready's records as one batch and goes on; the
//! log makes batches durable in submission order (engine::wal's group
//! commit puts many batches — a leader's entries, many followers' worth of
//! appends — under one fdatasync) and reports each batch when it is durable.

use std::path::Path;
use std::sync::Arc;

use engine::wal::{self, RecordRef, Wal};

use crate::error::{Error, Result};
use crate::record::LogRecord;

/// Called once per batch: `Ok` when durable, `Err` when the log failed (an
/// fsync error is permanent; nothing after it is durable).
pub type PersistDone = Box<dyn FnOnce(Result<()>) + Send>;

pub trait LogStore: Send + 'static {
    /// Queues `records` as one batch. `done` runs once, possibly on another
    /// thread, after the batch and every earlier one are durable. May block
    /// while the log's queue is full (backpressure).
    fn append(&self, records: &[LogRecord], done: PersistDone) -> Result<()>;

    /// The log no longer needs records of indexes below `index` (a durable
    /// snapshot marker at `index` covers them). Whole segments go; what
    /// remains is filtered by recovery.
    fn release_to(&self, index: u64) -> Result<()>;
}

/// The raft log on engine::wal. Record kinds are the `record::RECORD_*`
/// bytes; the WAL index of a record is [`LogRecord::index`].
#[derive(Clone)]
pub struct WalStore {
    wal: Arc<Wal>,
}

impl WalStore {
    /// Opens (creating) the WAL in `dir` and decodes every record in file
    /// order. A torn tail was already cut by the WAL; a record that does not
    /// decode is corruption and an error.
    pub fn open(dir: &Path, opts: wal::Options) -> Result<(WalStore, Vec<LogRecord>)> {
        let (wal, recovery) = Wal::open(dir, opts).map_err(|e| Error::Log(e.to_string()))?;
        if let Some(torn) = &recovery.torn_tail {
            tracing::warn!(
                "raft log: torn tail cut at {}:{} ({})",
                torn.segment.display(),
                torn.offset,
                torn.what
            );
        }
        let mut records = Vec::with_capacity(recovery.records.len());
        for r in &recovery.records {
            let rec = LogRecord::decode(r.kind, &r.payload).map_err(|e| match e {
                Error::CorruptRecord { reason, .. } => Error::CorruptRecord {
                    index: r.index,
                    reason,
                },
                e => e,
            })?;
            if rec.index() != r.index {
                return Err(Error::CorruptRecord {
                    index: r.index,
                    reason: format!("payload says index {}", rec.index()),
                });
            }
            records.push(rec);
        }
        Ok((WalStore { wal: Arc::new(wal) }, records))
    }

    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// Appends and waits until durable. When no write is in progress the
    /// calling thread performs the write and fdatasync itself
    /// (`Wal::append_batch_wait`): no hand-off to the WAL's writer thread
    /// and back, which is most of a lone write's latency besides the
    /// fdatasync.
    pub fn append_sync(&self, records: &[LogRecord]) -> Result<()> {
        with_refs(records, |refs| {
            self.wal
                .append_batch_wait(refs)
                .map(|_| ())
                .map_err(|e| Error::Log(e.to_string()))
        })
    }
}

/// Encodes `records` and calls `f` with them as the WAL's record views.
fn with_refs<T>(records: &[LogRecord], f: impl FnOnce(&[RecordRef<'_>]) -> T) -> T {
    let payloads: Vec<Vec<u8>> = records.iter().map(LogRecord::to_bytes).collect();
    let refs: Vec<RecordRef<'_>> = records
        .iter()
        .zip(&payloads)
        .map(|(r, p)| RecordRef {
            index: r.index(),
            kind: r.kind(),
            payload: p,
        })
        .collect();
    f(&refs)
}

impl LogStore for WalStore {
    fn append(&self, records: &[LogRecord], done: PersistDone) -> Result<()> {
        let ticket = with_refs(records, |refs| self.wal.append_batch(refs))
            .map_err(|e| Error::Log(e.to_string()))?;
        ticket.on_durable(move |r| done(r.map(|_| ()).map_err(|e| Error::Log(e.to_string()))));
        Ok(())
    }

    fn release_to(&self, index: u64) -> Result<()> {
        self.wal
            .release_to(index)
            .map(|_| ())
            .map_err(|e| Error::Log(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{snapshot_metadata, RaftStorage};
    use raft::eraftpb::{ConfState, Entry, HardState};

    fn ent(index: u64, term: u64) -> LogRecord {
        let mut e = Entry::default();
        e.index = index;
        e.term = term;
        e.data = bytes::Bytes::from(vec![index as u8; 100]);
        LogRecord::Entry(e)
    }

    fn hs(term: u64, commit: u64) -> LogRecord {
        let mut h = HardState::default();
        h.term = term;
        h.commit = commit;
        LogRecord::HardState(h)
    }

    #[test]
    fn records_survive_reopen_and_release() {
        let dir = tempfile::tempdir().unwrap();
        let opts = wal::Options {
            segment_bytes: 64 << 10,
            queue_bytes_max: 32 << 10,
            record_bytes_max: 16 << 10,
            ..Default::default()
        };
        {
            let (store, records) = WalStore::open(dir.path(), opts.clone()).unwrap();
            assert!(records.is_empty());
            for i in 1..=600 {
                store.append_sync(&[ent(i, 1), hs(1, i)]).unwrap();
            }
            // Truncation: entries 599.. rewritten at term 2.
            store
                .append_sync(&[ent(599, 2), ent(600, 2), ent(601, 2), hs(2, 601)])
                .unwrap();
            let mut cs = ConfState::default();
            cs.voters = vec![1];
            let marker = LogRecord::Snapshot {
                origin: crate::record::SnapshotOrigin::Taken,
                meta: snapshot_metadata(550, 1, cs),
                descriptor: Default::default(),
            };
            store.append_sync(&[marker, hs(2, 601)]).unwrap();
            let before = store.wal().segments().len();
            assert!(before > 2, "the test needs several segments");
            store.release_to(550).unwrap();
            assert!(store.wal().segments().len() < before);
        }
        let (_store, records) = WalStore::open(dir.path(), opts).unwrap();
        assert!(records.len() < 2 * 600, "release dropped nothing");
        let s = RaftStorage::recover(&records).unwrap();
        assert_eq!((s.first(), s.last()), (551, 601));
        assert_eq!(s.term_of(599), Some(2));
        assert_eq!(s.term_of(550), Some(1));
        assert_eq!(s.hard_state().commit, 601);
    }
}
