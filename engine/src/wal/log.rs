//! `Wal`: opening (recovery), appending, releasing, closing.

use super::allocator::Allocator;
use super::completion::{Completion, Durable, SpinGate, Ticket};
use super::error::{Error, Result, TryAppendError};
use super::io::Io;
use super::metrics::Metrics;
use super::options::{IoMode, IoPath, Options};
use super::portable::Portable;
use super::queue::{Queue, Refused};
use super::record::{self, RECORD_HEADER_BYTES};
use super::recovery::{self, Recovery, SegmentInfo};
use super::segment;
use super::uring::Uring;
use super::writer::{self, ActiveSegment, Shared, WriterCore};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A record to append: the caller's index and type byte, and the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub index: u64,
    pub kind: u8,
    pub payload: &'a [u8],
}

/// A segmented write-ahead log with group commit. `Send + Sync`: share it
/// between appender threads with an `Arc`.
pub struct Wal {
    dir: PathBuf,
    opts: Options,
    shared: Arc<Shared>,
    gate: Arc<SpinGate>,
    allocator: Arc<Allocator>,
    writer: Option<JoinHandle<()>>,
    allocator_thread: Option<JoinHandle<()>>,
    io_path: IoPath,
    /// Serializes `release_to` calls.
    release: Mutex<()>,
    _lock: File,
}

impl Wal {
    /// Opens (or creates) the log in `dir`, recovers it, and starts the
    /// writer. The recovery holds every record in file order; see
    /// `Recovery::superseded` for raft's truncation rule.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<(Wal, Recovery)> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        if !dir.exists() {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io(&dir, "create WAL directory", e))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                segment::sync_dir(parent)?;
            }
        }
        let lock = lock_dir(&dir)?;
        let rec = recovery::recover(&dir, &opts, new_log_id())?;
        // The end recovery accepted may exist only in the page cache (the
        // previous process died before its fdatasync). It is made durable
        // before anything is written after it: a roll would otherwise put a
        // durable batch in the next segment behind one a power failure
        // could still take away, and recovery would refuse the gap.
        if let Some(last) = rec.recovery.segments.last() {
            segment::sync_data(&last.path)?;
        }
        let active_file = segment::open_append(&rec.active.path)?;
        let active = ActiveSegment {
            file: active_file,
            seq: rec.active.seq,
            path: rec.active.path.clone(),
            offset: rec.active.offset,
            segment_bytes: rec.active.segment_bytes,
            header: rec.active.header,
        };
        let (allocator, allocator_thread) = Allocator::start(
            dir.clone(),
            opts.segment_bytes,
            opts.preallocate,
            rec.spare,
            rec.active.seq + 1,
        )?;
        let io: Box<dyn Io + Send> = match opts.io {
            IoMode::Portable => Box::new(Portable::new(opts.faults.clone())),
            IoMode::IoUring => match Uring::new(opts.faults.clone()) {
                Ok(u) => Box::new(u),
                Err(e) => {
                    allocator.stop();
                    let _ = allocator_thread.join();
                    return Err(Error::IoUringUnavailable(e));
                }
            },
            IoMode::Auto => match Uring::new(opts.faults.clone()) {
                Ok(u) => Box::new(u),
                Err(e) => {
                    tracing::warn!(error = %e, "io_uring unavailable; using pwritev + fdatasync");
                    Box::new(Portable::new(opts.faults.clone()))
                }
            },
        };
        let io_path = io.path();
        let segments = rec.recovery.segments.clone();
        let core = WriterCore::new(
            Arc::clone(&allocator),
            io,
            active,
            rec.log_id,
            rec.next_batch_seq,
        );
        let shared = Arc::new(Shared {
            queue: Queue::new(opts.queue_bytes_max, opts.queue_appends_max, 1),
            metrics: Mutex::new(Metrics::new(io_path)),
            segments: Mutex::new(segments),
            durable_seq: AtomicU64::new(0),
            core: Mutex::new(core),
        });
        let writer = {
            let shared = Arc::clone(&shared);
            let spin = opts.writer_spin;
            std::thread::Builder::new()
                .name("wal-writer".into())
                .spawn(move || writer::run(shared, spin))
                .map_err(|e| Error::io(&dir, "spawn WAL writer thread", e))?
        };
        tracing::info!(dir = %dir.display(), io = io_path.name(), records = rec.recovery.records.len(), "WAL open");
        let wal = Wal {
            dir,
            gate: Arc::new(SpinGate::new(opts.waiter_spin)),
            opts,
            shared,
            allocator,
            writer: Some(writer),
            allocator_thread: Some(allocator_thread),
            io_path,
            release: Mutex::new(()),
            _lock: lock,
        };
        Ok((wal, rec.recovery))
    }

    /// Appends one record; the ticket completes when it is durable.
    /// Blocks while the queue is full.
    pub fn append(&self, index: u64, kind: u8, payload: &[u8]) -> Result<Ticket> {
        self.append_batch(&[RecordRef {
            index,
            kind,
            payload,
        }])
    }

    /// Appends records that become durable together (one write carries
    /// them all, in this order, in one segment). An empty slice is a
    /// barrier: its ticket completes when every earlier append is durable.
    /// Blocks while the queue is full.
    pub fn append_batch(&self, records: &[RecordRef<'_>]) -> Result<Ticket> {
        self.push(records, true, true).map_err(|e| match e {
            TryAppendError::Wal(e) => e,
            TryAppendError::Full => unreachable!("blocking append"),
        })
    }

    /// Appends one record and waits until it is durable. When no write is
    /// in progress, the calling thread performs the write and fdatasync
    /// itself (no hand-off to the writer thread: the lowest latency for a
    /// synchronous appender); otherwise it joins the next group commit,
    /// like `append(..)?.wait()`.
    pub fn append_wait(&self, index: u64, kind: u8, payload: &[u8]) -> Result<Durable> {
        self.append_batch_wait(&[RecordRef {
            index,
            kind,
            payload,
        }])
    }

    /// `append_batch`, then wait, writing the batch itself when it can (see
    /// `append_wait`).
    pub fn append_batch_wait(&self, records: &[RecordRef<'_>]) -> Result<Durable> {
        let ticket = self.push(records, true, false).map_err(|e| match e {
            TryAppendError::Wal(e) => e,
            TryAppendError::Full => unreachable!("blocking append"),
        })?;
        match self.shared.core.try_lock() {
            Ok(mut core) => {
                if !ticket.is_done() {
                    core.lead(&self.shared);
                }
            }
            // The writer thread (or another leader) is writing: make sure
            // it takes this append too.
            Err(_) => self.shared.queue.kick(),
        }
        ticket.wait()
    }

    /// `append_batch` that never blocks: `TryAppendError::Full` when the
    /// queue is at its bound (for async callers; retry after a ticket
    /// completed).
    pub fn try_append_batch(&self, records: &[RecordRef<'_>]) -> Result<Ticket, TryAppendError> {
        self.push(records, false, true)
    }

    /// A barrier: completes when everything appended before is durable.
    pub fn sync(&self) -> Result<Ticket> {
        self.append_batch(&[])
    }

    fn push(
        &self,
        records: &[RecordRef<'_>],
        block: bool,
        want_writer: bool,
    ) -> Result<Ticket, TryAppendError> {
        let mut bytes = 0usize;
        for r in records {
            if r.payload.len() > self.opts.record_bytes_max {
                return Err(Error::RecordTooLarge {
                    len: r.payload.len(),
                    max: self.opts.record_bytes_max,
                }
                .into());
            }
            bytes += record::encoded_len(r.payload.len());
        }
        if bytes > self.opts.queue_bytes_max {
            return Err(Error::AppendTooLarge {
                len: bytes,
                max: self.opts.queue_bytes_max,
            }
            .into());
        }
        // Checksums are computed here, on the appender's thread.
        let mut one = [[0u8; RECORD_HEADER_BYTES]; 1];
        let mut many = Vec::new();
        let headers: &[[u8; RECORD_HEADER_BYTES]] = if records.len() == 1 {
            one[0] = record::data_header(records[0].index, records[0].kind, records[0].payload);
            &one
        } else {
            many.extend(
                records
                    .iter()
                    .map(|r| record::data_header(r.index, r.kind, r.payload)),
            );
            &many
        };
        let first_index = records.first().map_or(0, |r| r.index);
        let max_index = records.iter().map(|r| r.index).max().unwrap_or(0);
        let completion = Arc::new(Completion::default());
        let pushed = self.shared.queue.push(
            bytes,
            records.len() as u32,
            first_index,
            max_index,
            &completion,
            block,
            want_writer,
            |buf| {
                for (h, r) in headers.iter().zip(records) {
                    record::push_data(buf, h, r.payload);
                }
            },
        );
        match pushed {
            Ok(seq) => Ok(Ticket::new(completion, Arc::clone(&self.gate), seq)),
            Err(Refused::Full) => Err(TryAppendError::Full),
            Err(Refused::Failed(why)) => Err(Error::Failed(why.to_string()).into()),
            Err(Refused::Closed) => Err(Error::Closed.into()),
        }
    }

    /// Deletes the oldest segments whose records all have an index below
    /// `index` (after a snapshot covering them), never the segment being
    /// written. Returns how many were deleted.
    pub fn release_to(&self, index: u64) -> Result<usize> {
        let _one = self.release.lock().unwrap();
        let mut released = 0;
        loop {
            let victim = {
                let segs = self.shared.segments.lock().unwrap();
                match segs.first() {
                    Some(s) if segs.len() > 1 && s.max_index < index => s.clone(),
                    _ => break,
                }
            };
            // Oldest first, each removal durable before the next: a crash
            // never leaves a gap in the sequence (recovery rejects gaps).
            std::fs::remove_file(&victim.path)
                .map_err(|e| Error::io(&victim.path, "remove released segment", e))?;
            segment::sync_dir(&self.dir)?;
            self.shared.segments.lock().unwrap().remove(0);
            released += 1;
        }
        Ok(released)
    }

    /// The segments holding records, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.shared.segments.lock().unwrap().clone()
    }

    pub fn metrics(&self) -> Metrics {
        let mut m = self.shared.metrics.lock().unwrap().clone();
        m.queue_bytes_high_water = self.shared.queue.bytes_high_water() as u64;
        m
    }

    /// The I/O path in use.
    pub fn io_path(&self) -> IoPath {
        self.io_path
    }

    /// Highest append sequence number known durable (see `Durable::seq`).
    pub fn durable_seq(&self) -> u64 {
        self.shared.durable_seq.load(Ordering::Acquire)
    }

    /// The permanent failure, if one happened.
    pub fn failure(&self) -> Option<String> {
        self.shared.queue.failure().map(|w| w.to_string())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Drains the queue (every queued append is written or failed) and
    /// stops the threads. Returns the permanent failure, if any.
    pub fn close(mut self) -> Result<()> {
        self.shutdown();
        match self.failure() {
            Some(why) => Err(Error::Failed(why)),
            None => Ok(()),
        }
    }

    fn shutdown(&mut self) {
        self.shared.queue.close();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        self.allocator.stop();
        if let Some(a) = self.allocator_thread.take() {
            let _ = a.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("io", &self.io_path)
            .finish()
    }
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, "open lock file", e))?;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(Error::Locked(dir.to_path_buf()));
        }
        return Err(Error::io(&path, "lock", e));
    }
    Ok(file)
}

/// A log id for a new log: unique enough to tell logs apart, not secret.
fn new_log_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish() | 1
}
