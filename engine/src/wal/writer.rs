//! The single writer: drains the queue into one write and one fdatasync
//! per batch, rolls segments, completes tickets, and makes any I/O failure
//! permanent.

use super::allocator::Allocator;
use super::completion::{Durable, Outcome};
use super::io::{Io, WriteJob};
use super::metrics::Metrics;
use super::queue::{complete_all, Batch, Queue, Taken, Waiter};
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

pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    pub allocator: Arc<Allocator>,
    pub io: Box<dyn Io>,
    pub active: ActiveSegment,
    pub log_id: u64,
    pub next_batch_seq: u64,
    pub spin: Duration,
    done: Option<Done>,
    failed: Option<Arc<str>>,
}

impl Writer {
    pub fn new(
        shared: Arc<Shared>,
        allocator: Arc<Allocator>,
        io: Box<dyn Io>,
        active: ActiveSegment,
        log_id: u64,
        next_batch_seq: u64,
        spin: Duration,
    ) -> Self {
        Writer {
            shared,
            allocator,
            io,
            active,
            log_id,
            next_batch_seq,
            spin,
            done: None,
            failed: None,
        }
    }

    pub fn run(mut self) {
        loop {
            // With a durable batch still to announce, only look for more
            // work; announce it at once if there is none.
            let block = self.done.is_none();
            let batch = match self.shared.queue.take(block, self.spin) {
                Taken::Batch(b) => b,
                Taken::Empty => {
                    self.notify_done();
                    continue;
                }
                Taken::Closed => {
                    self.notify_done();
                    return;
                }
            };
            if let Some(why) = &self.failed {
                let outcome = Outcome::Failed(Arc::clone(why));
                self.notify_done();
                complete_all(batch.waiters, &outcome);
                continue;
            }
            self.write_batch(batch);
        }
    }

    fn write_batch(&mut self, mut batch: Batch) {
        if batch.records == 0 {
            // Only empty appends (sync barriers): everything queued before
            // them is durable once the previous batch is.
            self.notify_done();
            let batch_seq = self.next_batch_seq - 1;
            self.complete(batch.waiters, batch_seq);
            self.shared.queue.recycle(batch.buf);
            return;
        }
        let room = (self.active.segment_bytes - self.active.offset) as usize;
        if BATCH_RECORD_BYTES + batch.record_bytes() > room {
            // Split at an append boundary: what fits goes into this
            // segment, the rest opens the next one.
            let fits = batch.waiters.iter().take_while(|w| w.end <= room).count();
            let rest = batch.split_off(fits);
            if batch.records > 0 {
                self.write_piece(batch);
            } else {
                self.complete_barriers(batch);
            }
            if self.failed.is_some() {
                self.fail_waiters(rest.waiters);
                return;
            }
            if let Err(why) = self.roll() {
                self.fail(why, rest.waiters);
                return;
            }
            self.write_piece(rest);
        } else {
            self.write_piece(batch);
        }
    }

    /// Appends without records at the front of a split batch: durable as
    /// soon as everything before them is.
    fn complete_barriers(&mut self, batch: Batch) {
        self.notify_done();
        let batch_seq = self.next_batch_seq - 1;
        self.complete(batch.waiters, batch_seq);
    }

    fn write_piece(&mut self, mut piece: Batch) {
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
        let job = WriteJob {
            fd: self.active.file.as_raw_fd(),
            offset,
            header: new_header.map(|h| h.encode()),
            batch: std::mem::take(&mut piece.buf),
        };
        let written = job.len() as u64;
        let started = Instant::now();
        self.io.submit(job);
        if self.io.overlaps() {
            // The previous batch is durable: tell its appenders while this
            // one is in flight.
            self.notify_done();
        }
        let (job, result) = self.io.wait();
        let elapsed = started.elapsed();
        self.shared.queue.recycle(job.batch);
        if let Err(failure) = result {
            self.notify_done();
            let why = format!(
                "{failure} (batch {batch_seq}, segment {}, offset {})",
                self.active.path.display(),
                self.active.offset
            );
            self.fail(why, piece.waiters);
            return;
        }
        self.active.offset += bytes as u64 + BATCH_RECORD_BYTES as u64;
        if new_header.is_some() {
            self.active.header = new_header;
        }
        self.next_batch_seq += 1;
        {
            let mut m = self.shared.metrics.lock().unwrap();
            m.fsyncs += 1;
            m.bytes_written += written;
            m.records += piece.records as u64;
            m.fsync_ns.saturating_record(elapsed.as_nanos() as u64);
            m.records_per_fsync.saturating_record(piece.records as u64);
        }
        self.update_segments(first_index, max_index, piece.records);
        self.notify_done();
        self.done = Some(Done {
            waiters: piece.waiters,
            batch_seq,
        });
        if !self.io.overlaps() {
            self.notify_done();
        }
    }

    fn update_segments(&self, first_index: u64, max_index: u64, records: u32) {
        let mut segs = self.shared.segments.lock().unwrap();
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

    fn notify_done(&mut self) {
        if let Some(d) = self.done.take() {
            self.complete(d.waiters, d.batch_seq);
        }
    }

    fn complete(&self, waiters: Vec<Waiter>, batch_seq: u64) {
        let Some(last) = waiters.last() else { return };
        self.shared
            .durable_seq
            .fetch_max(last.seq, Ordering::Release);
        let now = Instant::now();
        {
            let mut m = self.shared.metrics.lock().unwrap();
            m.appends += waiters.len() as u64;
            for w in &waiters {
                m.time_to_durable_ns
                    .saturating_record(now.saturating_duration_since(w.enqueued).as_nanos() as u64);
            }
        }
        for w in waiters {
            w.completion.complete(Outcome::Durable(Durable {
                seq: w.seq,
                batch_seq,
            }));
        }
    }

    fn roll(&mut self) -> Result<(), String> {
        // Appenders of durable batches should not wait for the new file.
        self.notify_done();
        let seq = self.active.seq + 1;
        let path = self.allocator.take(seq)?;
        let file = segment::open_rw(&path).map_err(|e| e.to_string())?;
        tracing::debug!(segment = %path.display(), "WAL segment roll");
        self.active = ActiveSegment {
            file,
            seq,
            path,
            offset: SEGMENT_HEADER_BYTES as u64,
            segment_bytes: self.active.segment_bytes,
            header: None,
        };
        self.shared.metrics.lock().unwrap().segment_rolls += 1;
        Ok(())
    }

    /// Makes a failure permanent: the failed batch's appenders, every
    /// pending append and every later one get the error.
    fn fail(&mut self, why: String, waiters: Vec<Waiter>) {
        tracing::error!(error = %why, "WAL write failed; refusing further appends");
        let why: Arc<str> = Arc::from(why);
        self.failed = Some(Arc::clone(&why));
        self.shared.metrics.lock().unwrap().failures += 1;
        let pending = self.shared.queue.fail(Arc::clone(&why));
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
