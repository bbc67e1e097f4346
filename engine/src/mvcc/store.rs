//! The store: open and restore, the published revision, batched backend
//! commits, serializable reads, status, snapshots, and the background
//! threads (committer, compactor, watch sync, lease expiry).
//!
//! Publication order, which every lock-free reader relies on:
//! 1. apply writes a revision's records into the active buffer and its
//!    entries into the index;
//! 2. then publishes the revision (`current_rev`, Release);
//! 3. then notifies synced watchers.
//!
//! A reader loads `current_rev` (Acquire) first, then the view; every
//! revision up to the one it loaded is then in the index and in the view's
//! buffers or the backend. The committer removes a buffer from the view only
//! after the backend commit holding it is visible to new snapshots.

use super::buckets::*;
use super::buffer::{BackendOp, Buffer, ValueReader, View, ViewCell};
use super::cache::ValueCache;
use super::compact;
use super::error::{Error, Result};
use super::kv::decode_kv;
use super::lease::{decode_record, Lessor};
use super::options::{LeaseExpiry, StoreOptions};
use super::range;
use super::revision::{parse_rev_key, RevKey};
use super::rpc::*;
use super::watch::{WatchHub, WatchStream};
use crate::backend::{self, Backend, BackendKind, ReadSnapshot};
use crate::index::{IndexEntry, TreeIndex};
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// State only the writer (apply, compaction steps) touches.
pub(crate) struct WriterState {
    pub active: Arc<Buffer>,
    pub consistent_index: u64,
    pub current_rev: i64,
    /// Consistent index and sequence number of the last sealed buffer.
    sealed_index: u64,
    sealed_seq: u64,
    pub scratch: Vec<u8>,
}

struct Sealed {
    buffer: Arc<Buffer>,
    seq: u64,
    consistent_index: u64,
    current_rev: i64,
}

#[derive(Default)]
struct CommitQueue {
    pending: VecDeque<Arc<Sealed>>,
    committed_seq: u64,
    failed: Option<String>,
    stop: bool,
}

#[derive(Default)]
pub(crate) struct CompactionState {
    pub scheduled: i64,
    pub finished: i64,
    pub last: Option<CompactionStats>,
}

pub(crate) struct Inner {
    pub opts: StoreOptions,
    pub path: PathBuf,
    pub backend: Box<dyn Backend>,
    pub index: TreeIndex,
    pub view: ViewCell,
    pub cache: ValueCache,
    current_rev: AtomicI64,
    compact_rev: AtomicI64,
    consistent_index: AtomicU64,
    pub writer: Mutex<WriterState>,
    commits: Mutex<CommitQueue>,
    commit_cv: Condvar,
    done_cv: Condvar,
    pub lessor: Mutex<Lessor>,
    pub watch: WatchHub,
    pub compaction: Mutex<CompactionState>,
    pub compaction_cv: Condvar,
    closed: AtomicBool,
    /// Durations of the backend batch commits (nanoseconds).
    commit_ns: Mutex<hdrhistogram::Histogram<u64>>,
    /// Sleeps of the lease thread end early on close.
    sleeper: Mutex<()>,
    sleeper_cv: Condvar,
    next_lease_id: AtomicU64,
}

impl Inner {
    pub fn current_rev(&self) -> i64 {
        self.current_rev.load(Ordering::Acquire)
    }

    pub fn compact_rev(&self) -> i64 {
        self.compact_rev.load(Ordering::Acquire)
    }

    pub fn compact_rev_cell(&self) -> &AtomicI64 {
        &self.compact_rev
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn publish_rev(&self, w: &mut WriterState, rev: i64) {
        debug_assert!(rev > w.current_rev);
        w.current_rev = rev;
        self.current_rev.store(rev, Ordering::Release);
    }

    pub(crate) fn set_compact_rev(&self, rev: i64) {
        self.compact_rev.store(rev, Ordering::Release);
    }

    pub(crate) fn set_consistent_index(&self, w: &mut WriterState, index: u64) {
        w.consistent_index = index;
        self.consistent_index.store(index, Ordering::Release);
    }

    pub fn check_failed(&self) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        match &self.commits.lock().failed {
            Some(why) => Err(Error::Failed(why.clone())),
            None => Ok(()),
        }
    }

    /// Seals the active buffer for commit if it holds anything new; returns
    /// the sequence number whose commit makes everything so far durable.
    pub(crate) fn seal(&self, w: &mut WriterState) -> u64 {
        if w.active.writes() == 0 && w.consistent_index == w.sealed_index {
            return w.sealed_seq;
        }
        let fresh = Arc::new(Buffer::default());
        let sealed = std::mem::replace(&mut w.active, fresh.clone());
        w.sealed_seq += 1;
        w.sealed_index = w.consistent_index;
        self.view.update(|v| {
            let mut buffers = v.buffers.clone();
            debug_assert!(Arc::ptr_eq(buffers.last().expect("active"), &sealed));
            buffers.push(fresh);
            View::new(buffers, v.backend_rev)
        });
        let job = Arc::new(Sealed {
            buffer: sealed,
            seq: w.sealed_seq,
            consistent_index: w.consistent_index,
            current_rev: w.current_rev,
        });
        self.commits.lock().pending.push_back(job);
        self.commit_cv.notify_all();
        w.sealed_seq
    }

    /// After each write: seal at the batch limit, and wait (holding the
    /// writer) while too many sealed batches are still being committed.
    pub(crate) fn after_write(&self, w: &mut WriterState) -> Result<()> {
        if w.active.writes() < self.opts.batch_limit {
            return Ok(());
        }
        self.seal(w);
        let mut q = self.commits.lock();
        while q.pending.len() > self.opts.pending_batches_max && q.failed.is_none() {
            self.done_cv.wait(&mut q);
        }
        match &q.failed {
            Some(why) => Err(Error::Failed(why.clone())),
            None => Ok(()),
        }
    }

    /// Blocks (holding nothing else) while more than `max` sealed batches
    /// wait for their commit: background writers (compaction) pace
    /// themselves with it, so that apply never waits behind their backlog.
    pub(crate) fn wait_commit_backlog(&self, max: usize) -> Result<()> {
        let mut q = self.commits.lock();
        while q.pending.len() > max && q.failed.is_none() && !q.stop {
            self.done_cv.wait(&mut q);
        }
        match &q.failed {
            Some(why) => Err(Error::Failed(why.clone())),
            None => Ok(()),
        }
    }

    /// Blocks until the commit with sequence `seq` is durable.
    pub(crate) fn wait_committed(&self, seq: u64) -> Result<()> {
        let mut q = self.commits.lock();
        loop {
            if q.committed_seq >= seq {
                return Ok(());
            }
            if let Some(why) = &q.failed {
                return Err(Error::Failed(why.clone()));
            }
            if q.stop && q.pending.is_empty() {
                return Err(Error::Closed);
            }
            self.done_cv.wait(&mut q);
        }
    }

    /// Commits everything applied so far and waits for it.
    pub(crate) fn sync(&self) -> Result<()> {
        let seq = {
            let mut w = self.writer.lock();
            self.seal(&mut w)
        };
        self.wait_committed(seq)
    }

    fn commit_loop(&self) {
        let mut last = Instant::now();
        loop {
            let job = {
                let mut q = self.commits.lock();
                loop {
                    if let Some(j) = q.pending.front() {
                        break Some(j.clone());
                    }
                    if q.stop || q.failed.is_some() {
                        return;
                    }
                    let deadline = last + self.opts.batch_interval;
                    if self.commit_cv.wait_until(&mut q, deadline).timed_out() {
                        break None;
                    }
                }
            };
            match job {
                Some(job) => {
                    let started = Instant::now();
                    let result = self.commit(&job);
                    if result.is_ok() {
                        let ns = started.elapsed().as_nanos().min(u64::MAX as u128) as u64;
                        let _ = self.commit_ns.lock().record(ns.max(1));
                    }
                    let mut q = self.commits.lock();
                    match result {
                        Ok(()) => {
                            q.pending.pop_front();
                            q.committed_seq = job.seq;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, path = %self.path.display(), "batch commit failed; the store refuses further writes");
                            q.failed = Some(e.to_string());
                        }
                    }
                    drop(q);
                    self.done_cv.notify_all();
                    last = Instant::now();
                }
                None => {
                    // The interval passed: seal whatever accumulated. A
                    // writer waiting for this thread to drain holds the
                    // lock, so only try it.
                    if let Some(mut w) = self.writer.try_lock_for(Duration::from_millis(2)) {
                        self.seal(&mut w);
                        last = Instant::now();
                    }
                }
            }
        }
    }

    fn commit(&self, job: &Sealed) -> Result<()> {
        let ops = job.buffer.ops.lock();
        self.backend.update(&mut |b| {
            for e in job.buffer.kvs.iter() {
                let k = RevKey::new(*e.key(), e.value().tombstone);
                b.put(KEY_BUCKET, k.as_bytes(), &e.value().bytes)?;
            }
            for op in ops.iter() {
                match op {
                    BackendOp::Put { bucket, key, value } => b.put(bucket, key, value)?,
                    BackendOp::Delete { bucket, key } => {
                        b.delete(bucket, key)?;
                    }
                }
            }
            b.put(
                META_BUCKET,
                META_CONSISTENT_INDEX,
                &u64_value(job.consistent_index),
            )?;
            b.put(
                META_BUCKET,
                META_CURRENT_REV,
                &u64_value(job.current_rev as u64),
            )
        })?;
        drop(ops);
        self.view.update(|v| {
            let mut buffers = v.buffers.clone();
            assert!(
                Arc::ptr_eq(&buffers[0], &job.buffer),
                "batches commit in the order they were sealed"
            );
            buffers.remove(0);
            View::new(buffers, v.backend_rev.max(job.current_rev))
        });
        Ok(())
    }

    /// Lease IDs for the embedded API: positive, unused, unpredictable
    /// enough not to collide with IDs a client picks.
    pub(crate) fn fresh_lease_id(&self) -> i64 {
        let lessor = self.lessor.lock();
        loop {
            let n = self.next_lease_id.fetch_add(1, Ordering::Relaxed);
            let id = (n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 1) as i64;
            if id != 0 && !lessor.contains(id) {
                return id;
            }
        }
    }

    fn sleep(&self, d: Duration) {
        let mut g = self.sleeper.lock();
        if !self.is_closed() {
            self.sleeper_cv.wait_for(&mut g, d);
        }
    }
}

/// The MVCC key-value store. `Store` is `Sync`: reads, watches and lease
/// queries run concurrently from any thread; writes go through `apply`
/// (raft-committed commands) or `propose` (embedded use), serialized
/// inside.
pub struct Store {
    pub(crate) inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Store {
    /// Opens (or creates) the store at `path`: a file for the B+tree and
    /// redb backends, a directory for LMDB.
    pub fn open(path: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        opts.validate()?;
        let path = path.as_ref().to_path_buf();
        let backend = backend::open(opts.backend, &path, opts.durability)?;
        let started = Instant::now();
        let inner = Arc::new(restore(backend, path, opts)?);
        tracing::info!(
            path = %inner.path.display(),
            keys = inner.index.key_count(),
            revision = inner.current_rev(),
            consistent_index = inner.consistent_index.load(Ordering::Relaxed),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "store opened"
        );
        let store = Store {
            inner,
            threads: Mutex::new(Vec::new()),
        };
        store.start_threads();
        Ok(store)
    }

    fn start_threads(&self) {
        let mut threads = self.threads.lock();
        let spawn = |name: &str, f: fn(&Inner)| {
            let inner = self.inner.clone();
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || f(&inner))
                .expect("spawn store thread")
        };
        threads.push(spawn("mvcc-commit", Inner::commit_loop));
        threads.push(spawn("mvcc-compact", compact::compaction_loop));
        threads.push(spawn("mvcc-watch", watch_loop));
        if self.inner.opts.lease_expiry == LeaseExpiry::Auto {
            threads.push(spawn("mvcc-lease", lease_loop));
        }
    }

    /// Current revision (the revision of the last applied change).
    pub fn current_revision(&self) -> i64 {
        self.inner.current_rev()
    }

    pub fn compact_revision(&self) -> i64 {
        self.inner.compact_rev()
    }

    /// The last raft index applied (or skipped as a no-op).
    pub fn consistent_index(&self) -> u64 {
        self.inner.consistent_index.load(Ordering::Acquire)
    }

    pub fn backend_kind(&self) -> BackendKind {
        self.inner.backend.kind()
    }

    /// A serializable read: local state, no raft, no lock shared with the
    /// apply path. Callable from any number of threads.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        if req.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        let inner = &*self.inner;
        let current = inner.current_rev();
        let guard = crossbeam_epoch::pin();
        let mut reader =
            ValueReader::new(inner.view.load(&guard), &*inner.backend).cached(&inner.cache);
        let resp = range::range(&inner.index, &mut reader, req, current, &inner.compact_rev)?;
        // A compaction that passed the read revision while we read may
        // have removed what we looked at: the answer is not trustworthy.
        let rev = if req.revision <= 0 {
            current
        } else {
            req.revision
        };
        let compact = inner.compact_rev();
        if rev < compact {
            return Err(Error::Compacted {
                compact_revision: compact,
            });
        }
        Ok(resp)
    }

    /// Convenience: the value of one key at the current revision.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        Ok(self
            .range(&RangeRequest {
                key: key.to_vec(),
                ..Default::default()
            })?
            .kvs
            .pop())
    }

    /// Makes everything applied so far durable in the backend.
    pub fn sync(&self) -> Result<()> {
        self.inner.check_failed()?;
        self.inner.sync()
    }

    /// Blocks until compaction at `revision` (or later) is complete in the
    /// backend (`CompactionRequest.physical`).
    pub fn wait_compaction(&self, revision: i64) -> Result<()> {
        let mut c = self.inner.compaction.lock();
        while c.finished < revision {
            self.inner.check_failed()?;
            if c.scheduled < revision {
                return Err(Error::InvalidRequest(format!(
                    "no compaction at or above revision {revision} was applied"
                )));
            }
            self.inner
                .compaction_cv
                .wait_for(&mut c, Duration::from_millis(100));
        }
        Ok(())
    }

    /// What the last finished compaction pass did (None before the first).
    pub fn compaction_stats(&self) -> Option<CompactionStats> {
        self.inner.compaction.lock().last
    }

    pub fn status(&self) -> Result<StoreStatus> {
        Ok(StoreStatus {
            revision: self.inner.current_rev(),
            compact_revision: self.inner.compact_rev(),
            consistent_index: self.consistent_index(),
            db_size_bytes: self.inner.backend.size_bytes()?,
            key_count: self.inner.index.key_count(),
        })
    }

    /// Durations of the backend batch commits so far, in nanoseconds
    /// (etcd's `backend_commit_duration_seconds`).
    pub fn commit_durations_ns(&self) -> hdrhistogram::Histogram<u64> {
        self.inner.commit_ns.lock().clone()
    }

    /// Opens a watch stream.
    pub fn watch_stream(&self) -> WatchStream {
        self.inner.watch.open_stream(&self.inner)
    }

    /// Streams a consistent copy of the backend (raft's snapshot for a
    /// follower far behind) holding at least everything applied so far.
    /// Returns the bytes written and that consistent index; the copy may
    /// hold later commands too, and a store opened from it knows exactly
    /// which (`consistent_index`) and skips them when raft replays. Applies
    /// go on while the copy streams.
    pub fn snapshot_to(&self, out: &mut dyn Write) -> Result<(u64, u64)> {
        let (seq, index) = {
            let mut w = lock_writer(&self.inner)?;
            (self.inner.seal(&mut w), w.consistent_index)
        };
        self.inner.wait_committed(seq)?;
        let n = self.inner.backend.snapshot_to(out)?;
        Ok((n, index))
    }

    /// Commits everything applied and writes a defragmented copy of the
    /// backend to a new file at `path` (etcd's defrag): the caller stops
    /// applying, replaces the store's file with the copy and opens it.
    /// Returns the copy's size in bytes.
    pub fn defragment_into(&self, path: &Path) -> Result<u64> {
        self.sync()?;
        Ok(self.inner.backend.compact_into(path)?)
    }

    /// Replaces whatever is at `path` with a snapshot from `snapshot_to`
    /// and opens it (a follower installing the leader's snapshot: close
    /// the old store first).
    pub fn restore_from_snapshot(
        path: impl AsRef<Path>,
        opts: StoreOptions,
        snapshot: &mut dyn Read,
    ) -> Result<Store> {
        let path = path.as_ref();
        let file = match opts.backend {
            BackendKind::Lmdb => {
                std::fs::create_dir_all(path)?;
                path.join("data.mdb")
            }
            _ => path.to_path_buf(),
        };
        let tmp = file.with_extension("snapshot-tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::copy(snapshot, &mut f)?;
            f.sync_all()?;
        }
        if opts.backend == BackendKind::Lmdb {
            let _ = std::fs::remove_file(path.join("lock.mdb"));
        }
        std::fs::rename(&tmp, &file)?;
        if let Some(dir) = file.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Store::open(path, opts)
    }

    /// Stops the background threads after committing everything applied;
    /// reports a failed final commit.
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<()> {
        let inner = &*self.inner;
        if inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let result = {
            let mut w = inner.writer.lock();
            let seq = inner.seal(&mut w);
            drop(w);
            inner.wait_committed(seq)
        };
        inner.commits.lock().stop = true;
        inner.commit_cv.notify_all();
        inner.compaction_cv.notify_all();
        {
            let _g = inner.sleeper.lock();
            inner.sleeper_cv.notify_all();
        }
        inner.watch.close_all();
        inner.watch.wake_sync();
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        result
    }

    /// Leases due for revocation (for `LeaseExpiry::External`: the raft
    /// leader proposes a `LeaseRevoke` for each).
    pub fn expired_leases(&self) -> Vec<i64> {
        let now = self.inner.opts.clock.now();
        self.inner.lessor.lock().expired(now)
    }

    /// LeaseKeepAlive: restarts the lease's TTL (leader only, not
    /// replicated, as in etcd).
    pub fn lease_keep_alive(&self, id: i64) -> Result<LeaseKeepAliveResponse> {
        let now = self.inner.opts.clock.now();
        let ttl = self.inner.lessor.lock().renew(id, now)?;
        Ok(LeaseKeepAliveResponse {
            header: self.header(),
            id,
            ttl,
        })
    }

    pub fn lease_time_to_live(&self, id: i64, keys: bool) -> Result<LeaseTimeToLiveResponse> {
        let now = self.inner.opts.clock.now();
        let lessor = self.inner.lessor.lock();
        let (ttl, granted_ttl) = lessor.time_to_live(id, now)?;
        Ok(LeaseTimeToLiveResponse {
            header: self.header(),
            id,
            ttl,
            granted_ttl,
            keys: if keys {
                lessor.keys_of(id)?
            } else {
                Vec::new()
            },
        })
    }

    pub fn lease_leases(&self) -> LeaseLeasesResponse {
        LeaseLeasesResponse {
            header: self.header(),
            leases: self.inner.lessor.lock().ids(),
        }
    }

    fn header(&self) -> ResponseHeader {
        ResponseHeader {
            revision: self.inner.current_rev(),
        }
    }

    /// Test and benchmark access to the index.
    pub fn index(&self) -> &TreeIndex {
        &self.inner.index
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "final commit on drop failed");
        }
    }
}

fn watch_loop(inner: &Inner) {
    use super::watch::Pending;
    while !inner.is_closed() {
        let wait = match inner.watch.sync_round(inner) {
            Pending::CatchUp => Duration::from_millis(1),
            // etcd retries victims every 10 ms.
            Pending::Victims => Duration::from_millis(10).min(inner.opts.watch_sync_interval),
            Pending::Nothing => inner.opts.watch_sync_interval,
        };
        inner.watch.wait_for_work(wait);
    }
}

fn lease_loop(inner: &Inner) {
    while !inner.is_closed() {
        inner.sleep(inner.opts.lease_check_interval);
        if inner.is_closed() {
            return;
        }
        let expired = inner.lessor.lock().expired(inner.opts.clock.now());
        for id in expired {
            let cmd = super::command::Command::LeaseRevoke(LeaseRevokeRequest { id });
            match super::apply::propose(inner, &cmd) {
                Ok(_) | Err(Error::LeaseNotFound) => {}
                Err(e) => {
                    tracing::warn!(error = %e, lease = id, "revoking an expired lease failed");
                    if e.is_fatal() {
                        return;
                    }
                }
            }
        }
    }
}

fn read_meta(snap: &dyn ReadSnapshot, key: &[u8]) -> Result<Option<u64>> {
    match snap.get_owned(META_BUCKET, key)? {
        None => Ok(None),
        Some(v) => parse_u64(&v).map(Some).ok_or_else(|| {
            Error::Corrupt(format!(
                "meta {:?} holds {} bytes, not 8",
                String::from_utf8_lossy(key),
                v.len()
            ))
        }),
    }
}

/// Rebuilds the in-memory state from the backend.
fn restore(backend: Box<dyn Backend>, path: PathBuf, opts: StoreOptions) -> Result<Inner> {
    backend.update(&mut |w| {
        w.create_bucket(KEY_BUCKET)?;
        w.create_bucket(META_BUCKET)?;
        w.create_bucket(LEASE_BUCKET)?;
        w.create_bucket(SERVER_BUCKET)
    })?;
    let snap = backend.read()?;
    match read_meta(&*snap, META_FORMAT)? {
        Some(FORMAT_VERSION) => {}
        Some(v) => {
            return Err(Error::Corrupt(format!(
                "MVCC format version {v}; this build reads {FORMAT_VERSION}"
            )))
        }
        None => {
            let mut any = false;
            snap.range(KEY_BUCKET, &[], None, &mut |_, _| {
                any = true;
                false
            })?;
            if any {
                return Err(Error::Corrupt("key bucket without a format version".into()));
            }
            backend.update(&mut |w| w.put(META_BUCKET, META_FORMAT, &u64_value(FORMAT_VERSION)))?;
        }
    }
    let consistent_index = read_meta(&*snap, META_CONSISTENT_INDEX)?.unwrap_or(0);
    let stored_rev = read_meta(&*snap, META_CURRENT_REV)?.unwrap_or(0) as i64;
    let scheduled = read_meta(&*snap, META_SCHEDULED_COMPACT)?.unwrap_or(0) as i64;
    let finished = read_meta(&*snap, META_FINISHED_COMPACT)?.unwrap_or(0) as i64;

    let index = TreeIndex::new();
    let mut key_lease: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut last_rev = 0i64;
    let mut bad: Option<String> = None;
    // Two stages on two threads: this one scans and decodes the key
    // bucket, the other inserts into the index, in batches.
    std::thread::scope(|scope| -> Result<()> {
        let (batches, inbox) = std::sync::mpsc::sync_channel::<RestoreBatch>(4);
        let (spent, recycled) = std::sync::mpsc::channel::<RestoreBatch>();
        let index = &index;
        let inserter = scope.spawn(move || {
            let mut iw = index.writer();
            for mut batch in inbox {
                // In key order (a stable sort keeps each key's revisions in
                // order), consecutive inserts share most of their skiplist
                // search path, which stays in cache.
                let keys = &batch.keys;
                batch
                    .records
                    .sort_by(|a, b| keys[a.key.clone()].cmp(&keys[b.key.clone()]));
                for r in &batch.records {
                    iw.restore(&batch.keys[r.key.clone()], r.entry, r.create, r.version);
                }
                iw.repin();
                let _ = spent.send(batch);
            }
        });
        let mut batch = RestoreBatch::default();
        let scanned = snap.range(KEY_BUCKET, &[], None, &mut |k, v| {
            let Some((rev, tombstone)) = parse_rev_key(k) else {
                bad = Some(format!("key bucket holds a non-revision key {k:?}"));
                return false;
            };
            let kv = match decode_kv(v) {
                Ok(kv) => kv,
                Err(e) => {
                    bad = Some(format!("record of revision {rev}: {e}"));
                    return false;
                }
            };
            let at = batch.keys.len();
            batch.keys.extend_from_slice(kv.key);
            let (create, version) = if tombstone {
                (0, 0)
            } else {
                (kv.create_revision, kv.version)
            };
            batch.records.push(RestoreRecord {
                key: at..batch.keys.len(),
                entry: IndexEntry { rev, tombstone },
                create,
                version,
            });
            if kv.lease != 0 && !tombstone {
                key_lease.insert(kv.key.to_vec(), kv.lease);
            } else if !key_lease.is_empty() {
                key_lease.remove(kv.key);
            }
            last_rev = rev.main;
            if batch.records.len() == RESTORE_BATCH {
                let mut next = recycled.try_recv().unwrap_or_default();
                next.keys.clear();
                next.records.clear();
                let full = std::mem::replace(&mut batch, next);
                if batches.send(full).is_err() {
                    return false;
                }
            }
            true
        });
        if !batch.records.is_empty() {
            let _ = batches.send(batch);
        }
        drop(batches);
        inserter.join().expect("index rebuild thread panicked");
        scanned?;
        Ok(())
    })?;
    if let Some(why) = bad {
        return Err(Error::Corrupt(why));
    }
    let current_rev = last_rev.max(stored_rev).max(scheduled).max(1);

    let now = opts.clock.now();
    let mut lessor = Lessor::new(opts.lease_min_ttl_secs);
    let mut bad = None;
    snap.range(
        LEASE_BUCKET,
        &[],
        None,
        &mut |k, v| match decode_record(v) {
            Ok((id, ttl, remaining)) if k == super::lease::lease_key(id) => {
                lessor.insert(id, ttl, remaining, now);
                true
            }
            Ok((id, ..)) => {
                bad = Some(format!("lease record {id} stored under key {k:?}"));
                false
            }
            Err(e) => {
                bad = Some(format!("lease record under {k:?}: {e}"));
                false
            }
        },
    )?;
    if let Some(why) = bad {
        return Err(Error::Corrupt(why));
    }
    for (key, id) in key_lease {
        if !lessor.attach(&key, id) {
            tracing::warn!(lease = id, key = ?String::from_utf8_lossy(&key), "key attached to a lease that is not stored");
        }
    }
    drop(snap);

    let active = Arc::new(Buffer::default());
    let inner = Inner {
        view: ViewCell::new(View::new(vec![active.clone()], current_rev)),
        cache: ValueCache::new(opts.value_cache_bytes),
        writer: Mutex::new(WriterState {
            active,
            consistent_index,
            current_rev,
            sealed_index: consistent_index,
            sealed_seq: 0,
            scratch: Vec::new(),
        }),
        opts,
        path,
        backend,
        index,
        current_rev: AtomicI64::new(current_rev),
        compact_rev: AtomicI64::new(scheduled),
        consistent_index: AtomicU64::new(consistent_index),
        commits: Mutex::new(CommitQueue::default()),
        commit_cv: Condvar::new(),
        done_cv: Condvar::new(),
        lessor: Mutex::new(lessor),
        watch: WatchHub::new(),
        compaction: Mutex::new(CompactionState {
            scheduled,
            finished: finished.min(scheduled),
            last: None,
        }),
        compaction_cv: Condvar::new(),
        closed: AtomicBool::new(false),
        commit_ns: Mutex::new(
            hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
                .expect("static bounds"),
        ),
        sleeper: Mutex::new(()),
        sleeper_cv: Condvar::new(),
        next_lease_id: AtomicU64::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1),
        ),
    };
    Ok(inner)
}

/// Records handed from the scanning thread to the inserting one.
const RESTORE_BATCH: usize = 32768;

#[derive(Default)]
struct RestoreBatch {
    keys: Vec<u8>,
    records: Vec<RestoreRecord>,
}

struct RestoreRecord {
    key: std::ops::Range<usize>,
    entry: IndexEntry,
    create: i64,
    version: i64,
}

pub(crate) fn lock_writer(inner: &Inner) -> Result<MutexGuard<'_, WriterState>> {
    let w = inner.writer.lock();
    inner.check_failed()?;
    Ok(w)
}
