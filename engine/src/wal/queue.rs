//! The bounded queue between appenders and the writer: the next batch,
//! being encoded while the current one is in flight.
//!
//! Appenders checksum their records on their own threads and copy them,
//! already framed, straight into the pending batch buffer under one short
//! lock. The writer swaps the whole buffer out when it is ready for the
//! next write, so the batch is prepared while the previous write and
//! fdatasync are in flight, and the writer's own work per batch is the
//! 40-byte batch record.

use super::completion::{Completion, Outcome};
use super::record::BATCH_RECORD_BYTES;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One append waiting in a batch.
pub(crate) struct Waiter {
    pub completion: Arc<Completion>,
    pub seq: u64,
    /// End of this append's records in the batch buffer.
    pub end: usize,
    pub records: u32,
    /// Index of the append's first record, and the highest index in it.
    pub first_index: u64,
    pub max_index: u64,
    pub enqueued: Instant,
}

/// Records bound for one write. `buf` starts with room for the batch
/// record; the appends' framed records follow.
pub(crate) struct Batch {
    pub buf: Vec<u8>,
    pub waiters: Vec<Waiter>,
    pub records: u32,
}

impl Batch {
    pub fn new(mut buf: Vec<u8>) -> Self {
        buf.clear();
        buf.resize(BATCH_RECORD_BYTES, 0);
        Batch {
            buf,
            waiters: Vec::new(),
            records: 0,
        }
    }

    /// Encoded bytes of records (without the batch record).
    pub fn record_bytes(&self) -> usize {
        self.buf.len() - BATCH_RECORD_BYTES
    }

    /// Splits off the appends after the first `keep`, into a new batch.
    pub fn split_off(&mut self, keep: usize) -> Batch {
        assert!(keep <= self.waiters.len());
        let cut = if keep == 0 {
            BATCH_RECORD_BYTES
        } else {
            self.waiters[keep - 1].end
        };
        let mut rest = Batch::new(Vec::with_capacity(
            BATCH_RECORD_BYTES + self.buf.len() - cut,
        ));
        rest.buf.extend_from_slice(&self.buf[cut..]);
        self.buf.truncate(cut);
        rest.waiters = self.waiters.split_off(keep);
        for w in &mut rest.waiters {
            w.end = w.end - cut + BATCH_RECORD_BYTES;
        }
        rest.records = rest.waiters.iter().map(|w| w.records).sum();
        self.records -= rest.records;
        rest
    }
}

struct State {
    batch: Batch,
    /// A buffer the writer handed back, reused for the next batch.
    free: Option<Vec<u8>>,
    next_seq: u64,
    failed: Option<Arc<str>>,
    closing: bool,
    /// Some pending append asked for the writer thread (appends from
    /// `append_wait` do not, unless their caller cannot write them itself).
    wanted: bool,
    writer_sleeping: bool,
    space_waiters: usize,
    bytes_high_water: usize,
}

pub(crate) struct Queue {
    state: Mutex<State>,
    work: Condvar,
    space: Condvar,
    /// Mirrors `State::wanted`, readable without the lock (the writer
    /// thread polls it while it spins).
    wanted: AtomicBool,
    bytes_max: usize,
    appends_max: usize,
}

/// Why an append was not queued.
pub(crate) enum Refused {
    Full,
    Failed(Arc<str>),
    Closed,
}

impl Queue {
    pub fn new(bytes_max: usize, appends_max: usize, first_seq: u64) -> Self {
        Queue {
            state: Mutex::new(State {
                batch: Batch::new(Vec::new()),
                free: None,
                next_seq: first_seq,
                failed: None,
                closing: false,
                wanted: false,
                writer_sleeping: false,
                space_waiters: 0,
                bytes_high_water: 0,
            }),
            work: Condvar::new(),
            space: Condvar::new(),
            wanted: AtomicBool::new(false),
            bytes_max,
            appends_max,
        }
    }

    /// Queues one append of `bytes` encoded bytes, written into the batch by
    /// `encode`. Blocks while the queue is full if `block`, else refuses.
    /// With `want_writer`, makes sure the writer thread will take it (else
    /// the caller writes it itself or calls `kick`). Returns the append's
    /// sequence number.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &self,
        bytes: usize,
        records: u32,
        first_index: u64,
        max_index: u64,
        completion: &Arc<Completion>,
        block: bool,
        want_writer: bool,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<u64, Refused> {
        assert!(bytes <= self.bytes_max);
        let mut st = self.state.lock().unwrap();
        loop {
            if let Some(why) = &st.failed {
                return Err(Refused::Failed(Arc::clone(why)));
            }
            if st.closing {
                return Err(Refused::Closed);
            }
            let b = &st.batch;
            let fits = b.waiters.is_empty()
                || (b.record_bytes() + bytes <= self.bytes_max
                    && b.waiters.len() < self.appends_max);
            if fits {
                break;
            }
            if !block {
                return Err(Refused::Full);
            }
            st.space_waiters += 1;
            st = self.space.wait(st).unwrap();
            st.space_waiters -= 1;
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        let before = st.batch.buf.len();
        encode(&mut st.batch.buf);
        assert_eq!(st.batch.buf.len(), before + bytes, "encoded length");
        let end = st.batch.buf.len();
        st.batch.records += records;
        st.batch.waiters.push(Waiter {
            completion: Arc::clone(completion),
            seq,
            end,
            records,
            first_index,
            max_index,
            enqueued: Instant::now(),
        });
        let queued = st.batch.record_bytes();
        st.bytes_high_water = st.bytes_high_water.max(queued);
        if want_writer {
            self.want(st);
        }
        Ok(seq)
    }

    /// Asks the writer thread to take what is pending.
    pub fn kick(&self) {
        let st = self.state.lock().unwrap();
        if !st.batch.waiters.is_empty() {
            self.want(st);
        }
    }

    fn want(&self, mut st: MutexGuard<'_, State>) {
        st.wanted = true;
        self.wanted.store(true, Ordering::Release);
        let wake = std::mem::replace(&mut st.writer_sleeping, false);
        drop(st);
        if wake {
            self.work.notify_one();
        }
    }

    /// The writer thread's wait: returns `true` once work is wanted (after
    /// spinning for `spin`, then sleeping), `false` once the queue is
    /// closing (the caller drains one last time and stops).
    pub fn wait_for_work(&self, spin: Duration) -> bool {
        if !spin.is_zero() && !self.wanted.load(Ordering::Acquire) {
            let deadline = Instant::now() + spin;
            let mut i = 0u32;
            while !self.wanted.load(Ordering::Acquire) {
                std::hint::spin_loop();
                i = i.wrapping_add(1);
                if i.is_multiple_of(64) && Instant::now() >= deadline {
                    break;
                }
            }
        }
        let mut st = self.state.lock().unwrap();
        loop {
            if st.closing {
                return false;
            }
            if st.wanted {
                return true;
            }
            st.writer_sleeping = true;
            st = self.work.wait(st).unwrap();
        }
    }

    /// Takes everything pending, if anything is. Called only by the holder
    /// of the writer role.
    pub fn take(&self) -> Option<Batch> {
        let mut st = self.state.lock().unwrap();
        st.wanted = false;
        self.wanted.store(false, Ordering::Release);
        if st.batch.waiters.is_empty() {
            return None;
        }
        let fresh = Batch::new(st.free.take().unwrap_or_default());
        let batch = std::mem::replace(&mut st.batch, fresh);
        let wake = st.space_waiters > 0;
        drop(st);
        if wake {
            self.space.notify_all();
        }
        Some(batch)
    }

    /// Hands a written batch buffer back for reuse.
    pub fn recycle(&self, buf: Vec<u8>) {
        let mut st = self.state.lock().unwrap();
        if st
            .free
            .as_ref()
            .is_none_or(|f| f.capacity() < buf.capacity())
        {
            st.free = Some(buf);
        }
    }

    /// Makes the failure permanent: refuses every later append and returns
    /// the appends still pending so the writer fails them too.
    pub fn fail(&self, why: Arc<str>) -> Vec<Waiter> {
        let mut st = self.state.lock().unwrap();
        st.failed.get_or_insert(why);
        let batch = std::mem::replace(&mut st.batch, Batch::new(Vec::new()));
        self.wake_all(st);
        batch.waiters
    }

    pub fn failure(&self) -> Option<Arc<str>> {
        self.state.lock().unwrap().failed.clone()
    }

    /// Refuses new appends; the writer drains what is pending and stops.
    pub fn close(&self) {
        let mut st = self.state.lock().unwrap();
        st.closing = true;
        self.wake_all(st);
    }

    fn wake_all(&self, st: MutexGuard<'_, State>) {
        drop(st);
        self.work.notify_all();
        self.space.notify_all();
    }

    pub fn bytes_high_water(&self) -> usize {
        self.state.lock().unwrap().bytes_high_water
    }
}

/// Fails every waiter with `outcome`.
pub(crate) fn complete_all(waiters: Vec<Waiter>, outcome: &Outcome) {
    for w in waiters {
        w.completion.complete(outcome.clone());
    }
}
