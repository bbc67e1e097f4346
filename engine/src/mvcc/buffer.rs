//! Writes on their way to the backend, and the view readers take of them.
//!
//! Every apply writes into the *active* buffer. A batch commit *seals* it
//! (a fresh buffer becomes active) and a committer thread writes the sealed
//! buffer to the backend in one transaction. Until that commit is visible,
//! readers find the buffer's entries through the published `View`: the
//! buffers not yet committed plus the revision the backend holds. A reader
//! looks a revision up in the buffers if it is newer than `backend_rev`,
//! else in a backend snapshot — no read buffer is copied per request (etcd
//! 3.4 copies its whole txReadBuffer for every concurrent read txn).
//!
//! Buffers are immutable once sealed and the key-bucket entries of the
//! active one are only ever added (`SkipMap`, lock-free for readers), so a
//! reader may hold a view as long as it likes.

use super::buckets::KEY_BUCKET;
use super::cache::ValueCache;
use super::error::{Error, Result};
use super::revision::{RevKey, Revision};
use crate::backend::{Backend, ReadSnapshot};
use crossbeam_epoch::{Atomic, Guard, Owned};
use crossbeam_skiplist::SkipMap;
use parking_lot::{Mutex, MutexGuard};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// A write to a bucket other than the key bucket's new revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BackendOp {
    Put {
        bucket: &'static str,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        bucket: &'static str,
        key: Vec<u8>,
    },
}

pub(crate) struct KvSlot {
    pub tombstone: bool,
    pub bytes: Box<[u8]>,
}

#[derive(Default)]
pub(crate) struct Buffer {
    /// New key-bucket entries by revision (encoded KeyValue).
    pub kvs: SkipMap<Revision, KvSlot>,
    /// Other writes, in order, committed after `kvs` in the same
    /// transaction (compaction deletes, lease records, meta).
    pub ops: Mutex<Vec<BackendOp>>,
    /// Writes so far (`kvs` + `ops`), for the batch limit.
    pub write_count: AtomicUsize,
}

impl Buffer {
    pub fn put_kv(&self, rev: Revision, tombstone: bool, bytes: Box<[u8]>) {
        self.kvs.insert(rev, KvSlot { tombstone, bytes });
        self.write_count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn push_op(&self, op: BackendOp) {
        self.ops.lock().push(op);
        self.write_count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn writes(&self) -> usize {
        self.write_count.load(Ordering::Relaxed)
    }
}

/// Backend snapshots a view keeps for its readers to share.
const SNAPSHOT_SLOTS: usize = 8;

pub(crate) struct View {
    /// Buffers not yet committed, oldest first; the last one is active.
    pub buffers: Vec<Arc<Buffer>>,
    /// Every revision ≤ this is in the backend's latest commit (or was
    /// compacted away); newer ones are in `buffers`.
    pub backend_rev: i64,
    /// Snapshots of a commit at least as new as `backend_rev`, opened on
    /// first use and reused by the readers of this view (one at a time per
    /// slot), so that a read does not register a backend reader of its
    /// own. They close when the view is replaced (within a batch interval),
    /// not when the epoch collector gets to the view: a snapshot keeps the
    /// backend's file open and its pages from reuse.
    snapshots: [Mutex<Option<Box<dyn ReadSnapshot>>>; SNAPSHOT_SLOTS],
    /// Set when the view was replaced: its slots stay empty from then on.
    retired: AtomicBool,
}

impl View {
    pub fn new(buffers: Vec<Arc<Buffer>>, backend_rev: i64) -> Self {
        View {
            buffers,
            backend_rev,
            snapshots: Default::default(),
            retired: AtomicBool::new(false),
        }
    }

    /// Closes the view's snapshots without waiting for readers: a slot in
    /// use is emptied by its reader when it lets go (`ValueReader::drop`
    /// checks the flag after unlocking). Readers that still hold the view
    /// open private snapshots from now on.
    fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
        for slot in &self.snapshots {
            if let Some(mut s) = slot.try_lock() {
                drop(s.take());
            }
        }
    }
}

/// The published view: readers load it without a lock; the writer and the
/// committer replace it under `publish`.
pub(crate) struct ViewCell {
    current: Atomic<View>,
    publish: Mutex<()>,
}

impl ViewCell {
    pub fn new(view: View) -> Self {
        ViewCell {
            current: Atomic::new(view),
            publish: Mutex::new(()),
        }
    }

    pub fn load<'g>(&self, guard: &'g Guard) -> &'g View {
        let shared = self.current.load(Ordering::Acquire, guard);
        // SAFETY: the cell always holds a view (set in `new`, replaced in
        // `update`), and a replaced view is destroyed only after every guard
        // pinned before the replacement is gone.
        unsafe { shared.deref() }
    }

    /// Replaces the view with `f(current)`.
    pub fn update(&self, f: impl FnOnce(&View) -> View) {
        let _lock = self.publish.lock();
        let guard = crossbeam_epoch::pin();
        let next = f(self.load(&guard));
        let old = self
            .current
            .swap(Owned::new(next), Ordering::AcqRel, &guard);
        // SAFETY: the cell held `old` until the swap, and it is destroyed
        // only after the guards pinned before the swap are gone.
        unsafe {
            old.deref().retire();
            guard.defer_destroy(old)
        };
    }
}

impl Drop for ViewCell {
    fn drop(&mut self) {
        // SAFETY: dropping the cell means no reader can reach it any more.
        unsafe {
            let guard = crossbeam_epoch::unprotected();
            let cur = self
                .current
                .swap(crossbeam_epoch::Shared::null(), Ordering::AcqRel, guard);
            if !cur.is_null() {
                drop(cur.into_owned());
            }
        }
    }
}

/// A backend snapshot borrowed from a view's slot, or opened privately
/// when every slot is busy.
enum Snap<'g> {
    Slot(usize, MutexGuard<'g, Option<Box<dyn ReadSnapshot>>>),
    Own(Box<dyn ReadSnapshot>),
}

impl Snap<'_> {
    fn get(&self) -> &dyn ReadSnapshot {
        match self {
            Snap::Slot(_, g) => g.as_deref().expect("filled before use"),
            Snap::Own(s) => &**s,
        }
    }
}

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Each thread starts looking at its own slot.
    static SLOT_HINT: usize = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
}

/// Reads values by revision through one view, using a backend snapshot
/// only if a revision is not in the buffers.
pub(crate) struct ValueReader<'g> {
    pub view: &'g View,
    backend: &'g dyn Backend,
    snapshot: Option<Snap<'g>>,
    cache: Option<&'g ValueCache>,
}

impl<'g> ValueReader<'g> {
    pub fn new(view: &'g View, backend: &'g dyn Backend) -> Self {
        ValueReader {
            view,
            backend,
            snapshot: None,
            cache: None,
        }
    }

    /// Point reads go through `cache` (not scans: a history scan would
    /// push the hot values out).
    pub fn cached(mut self, cache: &'g ValueCache) -> Self {
        self.cache = Some(cache);
        self
    }

    fn snapshot(&mut self) -> Result<&dyn ReadSnapshot> {
        if self.snapshot.is_none() {
            let hint = SLOT_HINT.with(|h| *h);
            let mut snap = None;
            for i in 0..SNAPSHOT_SLOTS {
                let at = (hint + i) % SNAPSHOT_SLOTS;
                let Some(mut slot) = self.view.snapshots[at].try_lock() else {
                    continue;
                };
                if slot.is_none() {
                    // Checked under the slot lock: a retired view's slots
                    // stay empty.
                    if self.view.retired.load(Ordering::SeqCst) {
                        break;
                    }
                    *slot = Some(self.backend.read()?);
                }
                snap = Some(Snap::Slot(at, slot));
                break;
            }
            self.snapshot = Some(match snap {
                Some(s) => s,
                None => Snap::Own(self.backend.read()?),
            });
        }
        Ok(self.snapshot.as_ref().expect("opened above").get())
    }

    /// Calls `f` with the stored record of live revision `rev`; Ok(None) if
    /// the revision is not stored (compacted).
    pub fn get<R>(&mut self, rev: Revision, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        if rev.main > self.view.backend_rev {
            for b in self.view.buffers.iter().rev() {
                if let Some(e) = b.kvs.get(&rev) {
                    return Ok(Some(f(&e.value().bytes)));
                }
            }
            return Err(Error::Corrupt(format!(
                "revision {rev} is newer than the backend ({}) but in no buffer",
                self.view.backend_rev
            )));
        }
        let cache = self.cache;
        if let Some(record) = cache.and_then(|c| c.get(rev)) {
            return Ok(Some(f(&record)));
        }
        let key = RevKey::new(rev, false);
        let mut f = Some(f);
        let mut out = None;
        self.snapshot()?.get(KEY_BUCKET, key.as_bytes(), &mut |v| {
            if let Some(c) = cache {
                c.insert(rev, v);
            }
            out = Some((f.take().expect("called once"))(v))
        })?;
        Ok(out)
    }

    /// Calls `f(revision, tombstone, record)` for every stored entry with
    /// `from ≤ main ≤ to`, in revision order, until it returns false.
    pub fn scan(
        &mut self,
        from: i64,
        to: i64,
        f: &mut dyn FnMut(Revision, bool, &[u8]) -> bool,
    ) -> Result<()> {
        if from > to {
            return Ok(());
        }
        let backend_rev = self.view.backend_rev;
        let mut go_on = true;
        if from <= backend_rev {
            let end = to.min(backend_rev) + 1;
            let (start, end) = (RevKey::start_of(from), RevKey::start_of(end));
            let mut bad = None;
            self.snapshot()?.range(
                KEY_BUCKET,
                start.as_bytes(),
                Some(end.as_bytes()),
                &mut |k, v| match super::revision::parse_rev_key(k) {
                    Some((rev, tomb)) => {
                        go_on = f(rev, tomb, v);
                        go_on
                    }
                    None => {
                        bad = Some(k.to_vec());
                        false
                    }
                },
            )?;
            if let Some(k) = bad {
                return Err(Error::Corrupt(format!(
                    "key bucket holds a non-revision key {k:?}"
                )));
            }
        }
        if !go_on || to <= backend_rev {
            return Ok(());
        }
        let lo = Revision::new(from.max(backend_rev + 1), 0);
        let hi = Revision::new(to.saturating_add(1), 0);
        for b in &self.view.buffers {
            for e in b.kvs.range(lo..hi) {
                if !f(*e.key(), e.value().tombstone, &e.value().bytes) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

impl Drop for ValueReader<'_> {
    fn drop(&mut self) {
        if let Some(Snap::Slot(at, guard)) = self.snapshot.take() {
            drop(guard);
            // After unlocking: if the view was retired meanwhile, `retire`
            // may have found this slot busy and left it to us.
            if self.view.retired.load(Ordering::SeqCst) {
                if let Some(mut s) = self.view.snapshots[at].try_lock() {
                    drop(s.take());
                }
            }
        }
    }
}
