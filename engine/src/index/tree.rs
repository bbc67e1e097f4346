//! The revision index: `key → KeyIndex` on a lock-free skiplist.
//!
//! etcd keeps its index in a B-tree behind a `sync.RWMutex`, so every read
//! takes the lock and the apply loop waits for readers (and they for it).
//! Here readers traverse a `crossbeam_skiplist` and each key's history
//! (`KeyIndex`) without any lock, under an epoch guard; the single writer
//! (the store's apply path, or compaction between applies) holds an
//! `IndexWriter`, which serializes writers among themselves only.
//!
//! A reader at revision `rev` sees exactly the state as of `rev` provided
//! every write with revision ≤ `rev` completed before the reader started,
//! which the store guarantees by publishing a revision only after its index
//! writes (see `mvcc::store`).

use super::key_index::{KeyIndex, Latest};
use super::revision::{IndexEntry, Revision};
use crossbeam_epoch::Guard;
use crossbeam_skiplist::base::SkipList;
use parking_lot::{Mutex, MutexGuard};
use std::ops::Bound;

/// A key range as etcd's requests express it (`key` / `range_end`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRange<'a> {
    /// Exactly this key.
    Single(&'a [u8]),
    /// `start ≤ key < end`.
    Range(&'a [u8], &'a [u8]),
    /// Every key ≥ `start`.
    FromKey(&'a [u8]),
}

impl<'a> KeyRange<'a> {
    /// Maps etcd's encoding: an empty `range_end` means the single key,
    /// `"\0"` means every key ≥ `key` (rpc.proto RangeRequest.range_end).
    pub fn from_etcd(key: &'a [u8], range_end: &'a [u8]) -> Self {
        match range_end {
            [] => KeyRange::Single(key),
            [0] => KeyRange::FromKey(key),
            end => KeyRange::Range(key, end),
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match *self {
            KeyRange::Single(s) => k == s,
            KeyRange::Range(s, e) => s <= k && k < e,
            KeyRange::FromKey(s) => s <= k,
        }
    }

    fn bounds(&self) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
        match *self {
            KeyRange::Single(s) => (Bound::Included(s), Bound::Included(s)),
            KeyRange::Range(s, e) => (Bound::Included(s), Bound::Excluded(e)),
            KeyRange::FromKey(s) => (Bound::Included(s), Bound::Unbounded),
        }
    }

    fn is_empty(&self) -> bool {
        matches!(*self, KeyRange::Range(s, e) if s >= e)
    }
}

pub struct TreeIndex {
    map: SkipList<Box<[u8]>, KeyIndex>,
    writer: Mutex<()>,
}

impl Default for TreeIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl TreeIndex {
    pub fn new() -> Self {
        TreeIndex {
            map: SkipList::new(crossbeam_epoch::default_collector().clone()),
            writer: Mutex::new(()),
        }
    }

    /// Number of keys (approximate while a writer runs).
    pub fn key_count(&self) -> usize {
        self.map.len()
    }

    /// The live revision of `key` at `rev`.
    pub fn get(&self, key: &[u8], rev: i64) -> Option<Revision> {
        let guard = crossbeam_epoch::pin();
        let entry = self.map.get(key, &guard)?;
        entry.value().visible_at(rev, &guard)
    }

    /// Calls `f(key, revision)` for each key in `range` live at `rev`, in
    /// key order (descending if `reverse`), until `f` returns false.
    pub fn range(
        &self,
        range: KeyRange<'_>,
        rev: i64,
        reverse: bool,
        mut f: impl FnMut(&[u8], Revision) -> bool,
    ) {
        if range.is_empty() {
            return;
        }
        let guard = crossbeam_epoch::pin();
        if let KeyRange::Single(k) = range {
            if let Some(r) = self.get(k, rev) {
                f(k, r);
            }
            return;
        }
        let iter = self.map.range::<[u8], _>(range.bounds(), &guard);
        let mut visit = |e: crossbeam_skiplist::base::Entry<'_, '_, Box<[u8]>, KeyIndex>| match e
            .value()
            .visible_at(rev, &guard)
        {
            Some(r) => f(e.key(), r),
            None => true,
        };
        if reverse {
            for e in iter.rev() {
                if !visit(e) {
                    break;
                }
            }
        } else {
            for e in iter {
                if !visit(e) {
                    break;
                }
            }
        }
    }

    /// Number of keys in `range` live at `rev`.
    pub fn count(&self, range: KeyRange<'_>, rev: i64) -> usize {
        let mut n = 0;
        self.range(range, rev, false, |_, _| {
            n += 1;
            true
        });
        n
    }

    /// Every entry of `key`'s history, oldest first.
    pub fn history(&self, key: &[u8]) -> Vec<IndexEntry> {
        let guard = crossbeam_epoch::pin();
        match self.map.get(key, &guard) {
            Some(e) => e.value().entries(&guard).collect(),
            None => Vec::new(),
        }
    }

    /// Calls `f(key, history)` for every key in order, until it returns
    /// false (hashing, checks, tests).
    pub fn for_each_key(&self, mut f: impl FnMut(&[u8], &[IndexEntry]) -> bool) {
        let guard = crossbeam_epoch::pin();
        let mut buf = Vec::new();
        for e in self.map.iter(&guard) {
            buf.clear();
            let entries = e.value().entries(&guard);
            buf.extend((0..entries.len()).map(|i| entries.get(i)));
            if !buf.is_empty() && !f(e.key(), &buf) {
                break;
            }
        }
    }

    /// Takes the writer role. Writers exclude each other; readers never
    /// wait for them.
    pub fn writer(&self) -> IndexWriter<'_> {
        IndexWriter {
            index: self,
            _lock: self.writer.lock(),
            guard: crossbeam_epoch::pin(),
        }
    }
}

/// The single writer of a `TreeIndex`.
pub struct IndexWriter<'a> {
    index: &'a TreeIndex,
    _lock: MutexGuard<'a, ()>,
    guard: Guard,
}

/// Why a tombstone could not be written.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyNotLive;

impl IndexWriter<'_> {
    /// The latest live revision of `key` with its generation's create
    /// revision and version, or None if the key is absent now.
    pub fn latest(&self, key: &[u8]) -> Option<Latest> {
        let e = self.index.map.get(key, &self.guard)?;
        e.value().latest(&self.guard)
    }

    /// Records a put of `key` at `rev` (newer than anything recorded);
    /// returns the key's create revision and version after it.
    pub fn put(&mut self, key: &[u8], rev: Revision) -> (i64, i64) {
        let entry = IndexEntry {
            rev,
            tombstone: false,
        };
        match self.index.map.get(key, &self.guard) {
            Some(e) => {
                let ki = e.value();
                let (create_main, version) = match ki.latest(&self.guard) {
                    Some(l) => (l.create_main, l.version + 1),
                    None => (rev.main, 1),
                };
                ki.append(entry, create_main, version, &self.guard);
                (create_main, version)
            }
            None => {
                self.insert(key, entry, rev.main, 1);
                (rev.main, 1)
            }
        }
    }

    /// Records a delete of the live `key` at `rev`.
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> Result<(), KeyNotLive> {
        let e = self.index.map.get(key, &self.guard).ok_or(KeyNotLive)?;
        let ki = e.value();
        if ki.latest(&self.guard).is_none() {
            return Err(KeyNotLive);
        }
        let entry = IndexEntry {
            rev,
            tombstone: true,
        };
        ki.append(entry, 0, 0, &self.guard);
        Ok(())
    }

    /// Rebuild from the key bucket: appends `entry` with the generation data
    /// stored in its KeyValue. Entries arrive in revision order.
    pub fn restore(&mut self, key: &[u8], entry: IndexEntry, create_main: i64, version: i64) {
        match self.index.map.get(key, &self.guard) {
            Some(e) => e.value().append(entry, create_main, version, &self.guard),
            None => self.insert(key, entry, create_main, version),
        }
    }

    fn insert(&mut self, key: &[u8], entry: IndexEntry, create_main: i64, version: i64) {
        let ki = KeyIndex::new();
        ki.append(entry, create_main, version, &self.guard);
        self.index
            .map
            .insert(key.into(), ki, &self.guard)
            .release(&self.guard);
    }

    /// Compacts up to `max_keys` keys at `at_rev`, starting at `from`
    /// (inclusive); stops early once it removed `max_keys` entries, so a
    /// step stays short also over long histories. Removed entries go to
    /// `removed`. Returns the key to continue from, or None when the end of
    /// the index was reached.
    pub fn compact(
        &mut self,
        at_rev: i64,
        from: &[u8],
        max_keys: usize,
        removed: &mut Vec<IndexEntry>,
    ) -> Option<Vec<u8>> {
        assert!(max_keys > 0);
        let removed_before = removed.len();
        let mut emptied: Vec<Box<[u8]>> = Vec::new();
        let mut next = None;
        let keys = self
            .index
            .map
            .range::<[u8], _>((Bound::Included(from), Bound::Unbounded), &self.guard);
        for (seen, e) in keys.enumerate() {
            if seen == max_keys || removed.len() - removed_before >= max_keys {
                next = Some(e.key().to_vec());
                break;
            }
            if e.value().compact(at_rev, removed, &self.guard) {
                emptied.push(e.key().clone());
            }
        }
        for k in emptied {
            if let Some(e) = self.index.map.remove(&*k, &self.guard) {
                e.release(&self.guard);
            }
        }
        // Let the collector free replaced buffers and unlinked nodes now
        // rather than whenever this thread pins next.
        self.guard.flush();
        next
    }

    /// Re-pins the epoch guard so that memory retired so far can be freed
    /// (a long-lived writer calls this between batches).
    pub fn repin(&mut self) {
        self.guard.repin();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(m: i64) -> Revision {
        Revision::new(m, 0)
    }

    #[test]
    fn get_range_count_at_revisions() {
        let idx = TreeIndex::new();
        {
            let mut w = idx.writer();
            assert_eq!(w.put(b"a", rev(1)), (1, 1));
            assert_eq!(w.put(b"b", rev(2)), (2, 1));
            assert_eq!(w.put(b"a", rev(3)), (1, 2));
            w.tombstone(b"b", rev(4)).unwrap();
            assert_eq!(w.tombstone(b"b", rev(5)), Err(KeyNotLive));
            assert_eq!(w.put(b"b", rev(5)), (5, 1));
            assert_eq!(w.put(b"c", rev(6)), (6, 1));
        }
        assert_eq!(idx.get(b"a", 2), Some(rev(1)));
        assert_eq!(idx.get(b"a", 6), Some(rev(3)));
        assert_eq!(idx.get(b"b", 4), None);
        assert_eq!(idx.get(b"zz", 6), None);
        let all = KeyRange::FromKey(b"\0");
        assert_eq!(idx.count(all, 3), 2);
        assert_eq!(idx.count(all, 4), 1);
        assert_eq!(idx.count(all, 6), 3);
        assert_eq!(idx.count(KeyRange::Range(b"b", b"c"), 6), 1);
        assert_eq!(idx.count(KeyRange::Range(b"c", b"b"), 6), 0);
        let mut keys = Vec::new();
        idx.range(all, 6, true, |k, r| {
            keys.push((k.to_vec(), r.main));
            true
        });
        assert_eq!(
            keys,
            vec![(b"c".to_vec(), 6), (b"b".to_vec(), 5), (b"a".to_vec(), 3)]
        );
    }

    #[test]
    fn compaction_in_batches_removes_dead_keys() {
        let idx = TreeIndex::new();
        let mut w = idx.writer();
        for i in 0..100u32 {
            let k = i.to_be_bytes();
            w.put(&k, rev(1 + 2 * i as i64));
            if i % 2 == 0 {
                w.tombstone(&k, rev(2 + 2 * i as i64)).unwrap();
            }
        }
        let mut removed = Vec::new();
        let mut from = Vec::new();
        let mut batches = 0;
        loop {
            batches += 1;
            match w.compact(1000, &from, 7, &mut removed) {
                Some(next) => from = next,
                None => break,
            }
        }
        assert_eq!(batches, 15);
        // 50 deleted keys lose put + tombstone; 50 live keys keep their put.
        assert_eq!(removed.len(), 100);
        drop(w);
        assert_eq!(idx.key_count(), 50);
        assert_eq!(idx.count(KeyRange::FromKey(b""), 1000), 50);
    }
}
