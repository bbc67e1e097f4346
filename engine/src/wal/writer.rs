//! The writer: drains the queue into one write and one fdatasync per
//! batch, rolls segments, completes tickets, and makes any I/O failure
//! permanent.
//!
//! Writing is a role, not a thread: `WriterCore` sits behind a mutex, and
//! whoever holds it is the one writer. The writer thread takes it when
//! appends want it and drains the queue; a thread in `Wal::append_wait`
//! that finds it free takes it for one batch (the batch holds its own
//! records and whatever else is pending), which saves the two thread
//! hand-offs a lone synchronous appender would otherwise pay.

use super::allocator::Allocator;
use super::completion::{Durable, Outcome};
use super::io::{Io, WriteJob};
use super::metrics::Metrics;
use super::queue::{complete_all, Batch, Queue, Waiter};
use super::record::{BatchHeader, BATCH_RECORD_BYTES};
use super::recovery::SegmentInfo;
use super::segment::{self, SegmentHeader, SEGMENT_HEADER_BYTES};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the writer shares with `Wal`.
pub(crate) struct Shared {
    pub queue: Queue,
    pub metrics: Mutex<Metrics>,
    /// The segments holding records, oldest first; the last one is the
    /// segment being written.
    pub segments: Mutex<Vec<SegmentInfo>>,
    /// Highest append sequence number known durable.
    pub durable_seq: AtomicU64,
    /// The writer role.
    pub core: Mutex<WriterCore>,
}

pub(crate) struct ActiveSegment {
    pub file: File,
    pub seq: u64,
    pub path: PathBuf,
    pub offset: u64,
    pub segment_bytes: u64,
    pub header: Option<SegmentHeader>,
}

/// A batch that is durable but whose appenders have not been told yet.
struct Done {
    waiters: Vec<Waiter>,
    batch_seq: u64,
}

pub(crate) struct WriterCore {
    pub allocator: Arc<Allocator>,
    pub io: Box<dyn Io + Send>,
    pub active: ActiveSegment,
    pub log_id: u64,
    pub next_batch_seq: u64,
    done: Option<Done>,
    failed: Option<Arc<str>>,
    /// Set while a thread in `append_wait` holds the role (metrics only).
    leading: bool,
    /// Running averages that decide whether to overlap (see `overlap`).
    notify_ns_per_waiter: Ewma,
    fsync_ns: Ewma,
    pub overlap_policy: Option<bool>,
}

/// An exponentially weighted moving average (weight 1/8 for a new sample).
#[derive(Clone, Copy, Debug)]
struct Ewma(f64);

impl Ewma {
    fn add(&mut self, sample: f64) {
        self.0 += (sample - self.0) / 8.0;
    }
}

/// The writer thread: waits until appends want it, then drains.
pub(crate) fn run(shared: Arc<Shared>, spin: Duration) {
    loop {
        let open = shared.queue.wait_for_work(spin);
        shared.core.lock().unwrap().drain(&shared);
        if !open {
            return;
        }
    }
}

impl WriterCore {
    pub fn new(
        allocator: Arc<Allocator>,
        io: Box<dyn Io + Send>,
        active: ActiveSegment,
        log_id: u64,
        next_batch_seq: u64,
    ) -> Self {
        WriterCore {
            allocator,
            io,
            active,
            log_id,
            next_batch_seq,
            done: None,
            failed: None,
            leading: false,
            notify_ns_per_waiter: Ewma(2_000.0),
            fsync_ns: Ewma(100_000.0),
            overlap_policy: None,
        }
    }

    /// Whether to keep a durable batch's appenders waiting until the next
    /// batch is submitted (and tell them while it is in flight), rather than
    /// tell them first. Telling them first lets them append again before the
    /// next batch is taken, so all appenders share one fsync; overlapping
    /// splits them into two groups that alternate, each waiting for two
    /// fsyncs. Overlap therefore pays only when telling them takes longer
    /// than an fsync (many appenders that are threads, not tasks).
    fn overlap(&self, waiters: usize) -> bool {
        self.io.overlaps()
            && self
                .overlap_policy
                .unwrap_or(self.notify_ns_per_waiter.0 * waiters as f64 > self.fsync_ns.0)
    }

    /// Writes batches until the queue is empty. With io_uring, a durable
    /// batch's appenders may be told while the next batch is in flight
    /// (see `overlap`).
    pub fn drain(&mut self, shared: &Shared) {
        while let Some(batch) = shared.queue.take() {
            self.write_batch(shared, batch);
        }
        self.notify_done(shared);
    }

    /// Writes what is pending as one batch (a leader's turn).
    pub fn lead(&mut self, shared: &Shared) {
        if let Some(batch) = shared.queue.take() {
            self.leading = true;
            self.write_batch(shared, batch);
            self.leading = false;
        }
        self.notify_done(shared);
    }

    fn write_batch(&mut self, shared: &Shared, mut batch: Batch) {
        if let Some(why) = &self.failed {
            let outcome = Outcome::Failed(Arc::clone(why));
            self.notify_done(shared);
            complete_all(batch.waiters, &outcome);
            return;
        }
        if batch.records == 0 {
            // Only empty appends (sync barriers): everything queued before
            // them is durable once the previous batch is.
            self.notify_done(shared);
            let batch_seq = self.next_batch_seq - 1;
            self.complete(shared, batch.waiters, batch_seq);
            shared.queue.recycle(batch.buf);
            return;
        }
        let room = (self.active.segment_bytes - self.active.offset) as usize;
        if BATCH_RECORD_BYTES + batch.record_bytes() > room {
            // Split at an append boundary: what fits goes into this
            // segment, the rest opens the next one.
            let fits = batch.waiters.iter().take_while(|w| w.end <= room).count();
            let rest = batch.split_off(fits);
            if batch.records > 0 {
                self.write_piece(shared, batch);
            } else {
                self.complete_barriers(shared, batch);
            }
            if self.failed.is_some() {
                self.fail_waiters(rest.waiters);
                return;
            }
            if let Err(why) = self.roll(shared) {
                self.fail(shared, why, rest.waiters);
                return;
            }
            self.write_piece(shared, rest);
        } else {
            self.write_piece(shared, batch);
        }
    }

    /// Appends without records at the front of a split batch: durable as
    /// soon as everything before them is.
    fn complete_barriers(&mut self, shared: &Shared, batch: Batch) {
        self.notify_done(shared);
        let batch_seq = self.next_batch_seq - 1;
        self.complete(shared, batch.waiters, batch_seq);
    }

    fn write_piece(&mut self, shared: &Shared, mut piece: Batch) {
        assert!(piece.records > 0);
        let batch_seq = self.next_batch_seq;
        let bytes = piece.record_bytes();
        BatchHeader {
            seq: batch_seq,
            log_id: self.log_id,
            count: piece.records,
            bytes: u32::try_from(bytes).expect("queue bound keeps batches below 4 GiB"),
        }
        .encode(&mut piece.buf[..BATCH_RECORD_BYTES]);
        let first_index = piece
            .waiters
            .iter()
            .find(|w| w.records > 0)
            .expect("records")
            .first_index;
        let max_index = piece
            .waiters
            .iter()
            .filter(|w| w.records > 0)
            .map(|w| w.max_index)
            .max()
            .expect("records");
        let new_header = match self.active.header {
            Some(_) => None,
            None => Some(SegmentHeader {
                seq: self.active.seq,
                log_id: self.log_id,
                first_index,
                first_batch_seq: batch_seq,
                segment_bytes: self.active.segment_bytes,
            }),
        };
        let offset = if new_header.is_some() {
            assert_eq!(self.active.offset, SEGMENT_HEADER_BYTES as u64);
            0
        } else {
            self.active.offset
        };
        assert!(self.active.offset + piece.buf.len() as u64 <= self.active.segment_bytes);
        pad_to_page(
            &mut piece.buf,
            self.active.offset,
            self.active.segment_bytes,
        );
        let job = WriteJob {
            fd: self.active.file.as_raw_fd(),
            offset,
            header: new_header.map(|h| h.encode()),
            batch: std::mem::take(&mut piece.buf),
        };
        let written = job.len() as u64;
        let started = Instant::now();
        self.io.submit(job);
        let mut io_done_at = None;
        if self.io.overlaps() {
            // The previous batch is durable: tell its appenders while this
            // one is in flight, looking at the completion queue between
            // chunks so the fsync metric is the I/O's duration, not the
            // notification's.
            if let Some(d) = self.done.take() {
                let io = &mut self.io;
                let n = d.waiters.len();
                let t = Instant::now();
                Self::complete_with(shared, d.waiters, d.batch_seq, || {
                    if io_done_at.is_none() && io.poll() {
                        io_done_at = Some(started.elapsed());
                    }
                });
                self.notify_ns_per_waiter
                    .add(t.elapsed().as_nanos() as f64 / n.max(1) as f64);
            }
        }
        let (job, result) = self.io.wait();
        let elapsed = io_done_at.unwrap_or_else(|| started.elapsed());
        shared.queue.recycle(job.batch);
        if let Err(failure) = result {
            self.notify_done(shared);
            let why = format!(
                "{failure} (batch {batch_seq}, segment {}, offset {})",
                self.active.path.display(),
                self.active.offset
            );
            self.fail(shared, why, piece.waiters);
            return;
        }
        self.active.offset += bytes as u64 + BATCH_RECORD_BYTES as u64;
        if new_header.is_some() {
            self.active.header = new_header;
        }
        self.next_batch_seq += 1;
        {
            let mut m = shared.metrics.lock().unwrap();
            m.fsyncs += 1;
            m.leader_fsyncs += self.leading as u64;
            m.bytes_written += written;
            m.records += piece.records as u64;
            m.fsync_ns.saturating_record(elapsed.as_nanos() as u64);
            m.records_per_fsync.saturating_record(piece.records as u64);
        }
        self.fsync_ns.add(elapsed.as_nanos() as f64);
        self.update_segments(shared, first_index, max_index, piece.records);
        self.notify_done(shared);
        let overlap = self.overlap(piece.waiters.len());
        self.done = Some(Done {
            waiters: piece.waiters,
            batch_seq,
        });
        if !overlap {
            self.notify_done(shared);
        }
    }

    fn update_segments(&self, shared: &Shared, first_index: u64, max_index: u64, records: u32) {
        let mut segs = shared.segments.lock().unwrap();
        match segs.last_mut() {
            Some(s) if s.seq == self.active.seq => {
                s.max_index = s.max_index.max(max_index);
                s.records += records as u64;
                s.used_bytes = self.active.offset;
            }
            _ => segs.push(SegmentInfo {
                seq: self.active.seq,
                path: self.active.path.clone(),
                first_index,
                max_index,
                records: records as u64,
                used_bytes: self.active.offset,
            }),
        }
    }

    fn notify_done(&mut self, shared: &Shared) {
        if let Some(d) = self.done.take() {
            let n = d.waiters.len();
            let t = Instant::now();
            self.complete(shared, d.waiters, d.batch_seq);
            self.notify_ns_per_waiter
                .add(t.elapsed().as_nanos() as f64 / n.max(1) as f64);
        }
    }

    fn complete(&self, shared: &Shared, waiters: Vec<Waiter>, batch_seq: u64) {
        Self::complete_with(shared, waiters, batch_seq, || {});
    }

    /// Completes `waiters` as durable, calling `between` after every chunk
    /// of eight.
    fn complete_with(
        shared: &Shared,
        waiters: Vec<Waiter>,
        batch_seq: u64,
        mut between: impl FnMut(),
    ) {
        const CHUNK: usize = 8;
        let Some(last) = waiters.last() else { return };
        shared.durable_seq.fetch_max(last.seq, Ordering::Release);
        let now = Instant::now();
        {
            let mut m = shared.metrics.lock().unwrap();
            m.appends += waiters.len() as u64;
            for w in &waiters {
                m.time_to_durable_ns
                    .saturating_record(now.saturating_duration_since(w.enqueued).as_nanos() as u64);
            }
        }
        for (i, w) in waiters.into_iter().enumerate() {
            w.completion.complete(Outcome::Durable(Durable {
                seq: w.seq,
                batch_seq,
            }));
            if i % CHUNK == CHUNK - 1 {
                between();
            }
        }
        between();
    }

    fn roll(&mut self, shared: &Shared) -> Result<(), String> {
        // Appenders of durable batches should not wait for the new file.
        self.notify_done(shared);
        let seq = self.active.seq + 1;
        let path = self.allocator.take(seq)?;
        let file = segment::open_append(&path).map_err(|e| e.to_string())?;
        tracing::debug!(segment = %path.display(), "WAL segment roll");
        self.active = ActiveSegment {
            file,
            seq,
            path,
            offset: SEGMENT_HEADER_BYTES as u64,
            segment_bytes: self.active.segment_bytes,
            header: None,
        };
        shared.metrics.lock().unwrap().segment_rolls += 1;
        Ok(())
    }

    /// Makes a failure permanent: the failed batch's appenders, every
    /// pending append and every later one get the error.
    fn fail(&mut self, shared: &Shared, why: String, waiters: Vec<Waiter>) {
        tracing::error!(error = %why, "WAL write failed; refusing further appends");
        let why: Arc<str> = Arc::from(why);
        self.failed = Some(Arc::clone(&why));
        shared.metrics.lock().unwrap().failures += 1;
        let pending = shared.queue.fail(Arc::clone(&why));
        let outcome = Outcome::Failed(why);
        complete_all(waiters, &outcome);
        complete_all(pending, &outcome);
    }

    fn fail_waiters(&self, waiters: Vec<Waiter>) {
        if let Some(why) = &self.failed {
            complete_all(waiters, &Outcome::Failed(Arc::clone(why)));
        }
    }
}

/// The page size the write pattern is aligned to.
const PAGE_BYTES: u64 = 4096;

/// Extends a batch written at `offset` with zeros to the end of its last
/// page (not past the segment). The segment holds zeros there already, so
/// the file's contents do not change; but the write then covers every new
/// page it touches completely. A write that covers only part of a page
/// that is not in the page cache makes the kernel read that page from the
/// disk first, synchronously (the segment's pages are zero-filled, written
/// extents, and `drop_cache` keeps them out of the cache): one disk read
/// per batch that starts a new page — every batch, with 4 KiB records.
/// The page a batch starts in was covered by the previous write, so it is
/// cached; the padding is never counted in the segment's offset.
fn pad_to_page(buf: &mut Vec<u8>, offset: u64, segment_bytes: u64) {
    let end = offset + buf.len() as u64;
    let padded = end.next_multiple_of(PAGE_BYTES).min(segment_bytes);
    buf.resize(buf.len() + (padded.max(end) - end) as usize, 0);
}
