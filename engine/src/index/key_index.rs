//! One key's history of revisions, readable without locks while the single
//! writer appends to it.
//!
//! etcd's `keyIndex` keeps a list of generations, each a list of revisions
//! ended by a tombstone. Here the generations are flattened into one sorted
//! list of entries in which a tombstone entry closes a generation: the
//! visible revision at `rev` is the newest entry with `main ≤ rev`, and the
//! key is absent there if that entry is a tombstone. The two forms answer
//! every query alike.
//!
//! Memory is the point of the layout (the index holds every key of the
//! store): the state is one `AtomicU64` word in the skiplist node, plus a
//! second word with a copy of the newest entry so that a read at the current
//! revision of a key with history does not leave the node.
//!
//! - `0`: no entries (a transient state; readers treat it as absent).
//! - low bit 1: exactly one entry, packed inline (the common case of a key
//!   written once): `word = narrow(entry) << 1 | 1`.
//! - otherwise: a pointer to a `RevBuf`, a single allocation of `u64` words:
//!   a header word (length, capacity step, layout bits), for a *meta* buffer
//!   two more words (the current generation's create revision and the latest
//!   version), then the entries, one word each when they fit the narrow
//!   packing, two words each otherwise.
//!
//! A buffer without meta words holds no tombstone and its first entry
//! created the key, so the create revision is its first entry and the
//! version its length. Only keys that were deleted, or whose generation
//! compaction trimmed, pay the two meta words.
//!
//! The writer appends in place: it stores the entry, then publishes the new
//! length with `Release`; a reader loads the length with `Acquire` and reads
//! only below it, so it always sees a consistent prefix. When the buffer is
//! full (or compaction rewrites the list) the writer builds a new buffer,
//! swaps the word, and frees the old buffer through the epoch collector once
//! no reader pinned before the swap can still hold it.

use super::revision::{IndexEntry, Revision};
use crossbeam_epoch::Guard;
use std::sync::atomic::{AtomicU64, Ordering};

/// Narrow packing: `main << 16 | sub << 1 | tombstone`.
const NARROW_MAIN_LIMIT: i64 = 1 << 48;
const NARROW_SUB_LIMIT: i64 = 1 << 15;
/// Inline words spend one more bit on the tag.
const INLINE_MAIN_LIMIT: i64 = 1 << 47;

/// Header word 0: bits 0..40 length, bits 40..47 capacity step, bit 62
/// meta words present, bit 63 wide entries.
const LEN_MASK: u64 = (1 << 40) - 1;
const STEP_SHIFT: u32 = 40;
const STEP_MASK: u64 = 0x7f;
const META_BIT: u64 = 1 << 62;
const WIDE_BIT: u64 = 1 << 63;
const META_WORDS: usize = 2;

fn pack_narrow(e: IndexEntry) -> Option<u64> {
    debug_assert!(e.rev.main >= 0 && e.rev.sub >= 0);
    if e.rev.main < NARROW_MAIN_LIMIT && e.rev.sub < NARROW_SUB_LIMIT {
        Some((e.rev.main as u64) << 16 | (e.rev.sub as u64) << 1 | e.tombstone as u64)
    } else {
        None
    }
}

fn unpack_narrow(w: u64) -> IndexEntry {
    IndexEntry {
        rev: Revision::new((w >> 16) as i64, ((w >> 1) & 0x7fff) as i64),
        tombstone: w & 1 == 1,
    }
}

fn pack_inline(e: IndexEntry) -> Option<u64> {
    if e.rev.main < INLINE_MAIN_LIMIT {
        pack_narrow(e).map(|n| n << 1 | 1)
    } else {
        None
    }
}

/// Capacity (entries) of growth step `k`: 2, 3, 4, 5, 6, 7, 8, 10, 12,
/// 15, ... (+1, then ×1.25): a history grows with little slack, which is
/// most of its memory, at the price of copying each entry about five times
/// over its life.
const CAPS: [usize; 128] = {
    let mut caps = [0usize; 128];
    let mut cap = 2usize;
    let mut k = 0;
    while k < 128 {
        caps[k] = cap;
        cap += if cap < 8 { 1 } else { cap / 4 };
        if cap > 1 << 39 {
            cap = 1 << 39;
        }
        k += 1;
    }
    caps
};

fn cap_of_step(step: u64) -> usize {
    CAPS[step as usize]
}

fn step_for(len: usize) -> u64 {
    CAPS.partition_point(|&cap| cap < len) as u64
}

/// A snapshot of the entries a reader found.
#[derive(Clone, Copy)]
pub(crate) enum Entries<'g> {
    Empty,
    Inline(IndexEntry),
    Buf {
        /// The words after the header (and meta words).
        slots: &'g [AtomicU64],
        len: usize,
        wide: bool,
    },
}

impl Entries<'_> {
    pub fn len(&self) -> usize {
        match self {
            Entries::Empty => 0,
            Entries::Inline(_) => 1,
            Entries::Buf { len, .. } => *len,
        }
    }

    pub fn get(&self, i: usize) -> IndexEntry {
        debug_assert!(i < self.len());
        match self {
            Entries::Empty => unreachable!("no entries"),
            Entries::Inline(e) => *e,
            Entries::Buf { slots, wide, .. } => read_slot(slots, *wide, i),
        }
    }

    pub fn last(&self) -> Option<IndexEntry> {
        match self.len() {
            0 => None,
            n => Some(self.get(n - 1)),
        }
    }

    /// Number of entries with `main ≤ rev` (entries are sorted).
    pub fn count_at_or_below(&self, rev: i64) -> usize {
        let n = self.len();
        if n == 0 || self.get(n - 1).rev.main <= rev {
            return n;
        }
        let (mut lo, mut hi) = (0, n - 1);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.get(mid).rev.main <= rev {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The live revision visible at `rev`: the newest entry with
    /// `main ≤ rev`, unless it is a tombstone.
    pub fn visible_at(&self, rev: i64) -> Option<Revision> {
        match self.count_at_or_below(rev) {
            0 => None,
            n => {
                let e = self.get(n - 1);
                (!e.tombstone).then_some(e.rev)
            }
        }
    }

    pub fn collect(&self) -> Vec<IndexEntry> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }
}

fn read_slot(slots: &[AtomicU64], wide: bool, i: usize) -> IndexEntry {
    if wide {
        let main = slots[2 * i].load(Ordering::Relaxed);
        let rest = slots[2 * i + 1].load(Ordering::Relaxed);
        IndexEntry {
            rev: Revision::new(main as i64, (rest >> 1) as i64),
            tombstone: rest & 1 == 1,
        }
    } else {
        unpack_narrow(slots[i].load(Ordering::Relaxed))
    }
}

fn write_slot(slots: &[AtomicU64], wide: bool, i: usize, e: IndexEntry) {
    if wide {
        slots[2 * i].store(e.rev.main as u64, Ordering::Relaxed);
        slots[2 * i + 1].store(
            (e.rev.sub as u64) << 1 | e.tombstone as u64,
            Ordering::Relaxed,
        );
    } else {
        let packed = pack_narrow(e).expect("narrow buffer holds only narrow entries");
        slots[i].store(packed, Ordering::Relaxed);
    }
}

/// What the writer needs to know about the latest entry to write the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latest {
    pub rev: Revision,
    /// Main revision that created the current generation.
    pub create_main: i64,
    /// Version of the latest entry (1 for the first put of a generation).
    pub version: i64,
}

/// Whether `entries` with the given generation data can do without meta
/// words: no tombstone, and the first entry created the key.
fn derivable(entries: &[IndexEntry], create_main: i64, version: i64) -> bool {
    !entries.is_empty()
        && entries.iter().all(|e| !e.tombstone)
        && create_main == entries[0].rev.main
        && version == entries.len() as i64
}

pub(crate) struct KeyIndex {
    word: AtomicU64,
    /// The newest entry, narrow-packed, when the key has a buffer and the
    /// entry packs; 0 otherwise. Stored after the entry is in the buffer.
    newest: AtomicU64,
}

impl Drop for KeyIndex {
    fn drop(&mut self) {
        let w = *self.word.get_mut();
        if w != 0 && w & 1 == 0 {
            // SAFETY: a KeyIndex is dropped only when the skiplist finalizes
            // its node, which it defers until no guard that could have seen
            // the node is pinned; no reader can hold this buffer any more.
            unsafe { free_buf(w as *mut AtomicU64) };
        }
    }
}

/// The word for `entries` with room for `extra` more: inline if possible,
/// else a new buffer (with meta words unless they can be derived).
fn build(entries: &[IndexEntry], extra: usize, create_main: i64, version: i64) -> u64 {
    if let [only] = entries {
        if extra == 0 && derivable(entries, create_main, version) {
            if let Some(w) = pack_inline(*only) {
                return w;
            }
        }
    }
    let wide = entries.iter().any(|e| pack_narrow(*e).is_none());
    let meta = !derivable(entries, create_main, version);
    let step = step_for(entries.len() + extra);
    let cap = cap_of_step(step);
    let width = if wide { 2 } else { 1 };
    let head = 1 + if meta { META_WORDS } else { 0 };
    let words: Box<[AtomicU64]> = (0..head + cap * width).map(|_| AtomicU64::new(0)).collect();
    for (i, e) in entries.iter().enumerate() {
        write_slot(&words[head..], wide, i, *e);
    }
    words[0].store(
        entries.len() as u64
            | step << STEP_SHIFT
            | if meta { META_BIT } else { 0 }
            | if wide { WIDE_BIT } else { 0 },
        Ordering::Relaxed,
    );
    if meta {
        words[1].store(create_main as u64, Ordering::Relaxed);
        words[2].store(version as u64, Ordering::Relaxed);
    }
    let ptr = Box::into_raw(words) as *mut AtomicU64;
    debug_assert!(ptr as usize & 7 == 0);
    ptr as u64
}

fn buf_words(header0: u64) -> usize {
    let cap = cap_of_step((header0 >> STEP_SHIFT) & STEP_MASK);
    let width = if header0 & WIDE_BIT != 0 { 2 } else { 1 };
    let head = 1 + if header0 & META_BIT != 0 {
        META_WORDS
    } else {
        0
    };
    head + cap * width
}

/// # Safety
/// `ptr` came from `build` and is not reachable by any reader.
unsafe fn free_buf(ptr: *mut AtomicU64) {
    // SAFETY: the header's capacity and layout bits are fixed at
    // allocation, so they give back the length the box was allocated with.
    unsafe {
        let n = buf_words((*ptr).load(Ordering::Relaxed));
        drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, n)));
    }
}

/// # Safety
/// `ptr` came from `build` and stays allocated for `'g` (the caller holds
/// an epoch guard pinned before it loaded the word).
unsafe fn buf_slice<'g>(ptr: *const AtomicU64) -> &'g [AtomicU64] {
    // SAFETY: see above; the header is initialized before the pointer is
    // published with Release and loaded with Acquire.
    unsafe {
        let n = buf_words((*ptr).load(Ordering::Relaxed));
        std::slice::from_raw_parts(ptr, n)
    }
}

impl KeyIndex {
    pub fn new() -> Self {
        KeyIndex {
            word: AtomicU64::new(0),
            newest: AtomicU64::new(0),
        }
    }

    /// The live revision visible at `rev`; from the copy of the newest
    /// entry when that answers it (reads at the current revision).
    ///
    /// The copy is stored after its entry and before the revision is
    /// published to readers, so a reader at `rev` finds in it the newest
    /// entry with `main ≤ rev` or a newer one, never an older one.
    pub fn visible_at(&self, rev: i64, guard: &Guard) -> Option<Revision> {
        let newest = self.newest.load(Ordering::Acquire);
        if newest != 0 {
            let e = unpack_narrow(newest);
            if e.rev.main <= rev {
                return (!e.tombstone).then_some(e.rev);
            }
        }
        self.entries(guard).visible_at(rev)
    }

    fn buf<'g>(&'g self, _guard: &'g Guard) -> Option<&'g [AtomicU64]> {
        let w = self.word.load(Ordering::Acquire);
        if w == 0 || w & 1 == 1 {
            return None;
        }
        // SAFETY: the buffer is freed only through the epoch collector after
        // the word stopped pointing at it, and `_guard` was pinned before
        // the load above.
        Some(unsafe { buf_slice(w as *const AtomicU64) })
    }

    /// The entries as of now; valid while `guard` is pinned.
    pub fn entries<'g>(&'g self, guard: &'g Guard) -> Entries<'g> {
        let w = self.word.load(Ordering::Acquire);
        if w == 0 {
            return Entries::Empty;
        }
        if w & 1 == 1 {
            return Entries::Inline(unpack_narrow(w >> 1));
        }
        let words = self.buf(guard).expect("pointer word");
        let h = words[0].load(Ordering::Acquire);
        let head = 1 + if h & META_BIT != 0 { META_WORDS } else { 0 };
        Entries::Buf {
            slots: &words[head..],
            len: (h & LEN_MASK) as usize,
            wide: h & WIDE_BIT != 0,
        }
    }

    /// The latest entry with its generation data, if it is a live put.
    /// Writer only (the meta words are not synchronized for readers).
    pub fn latest(&self, guard: &Guard) -> Option<Latest> {
        let entries = self.entries(guard);
        let last = entries.last()?;
        if last.tombstone {
            return None;
        }
        let words = self.buf(guard);
        Some(match words {
            Some(words) if words[0].load(Ordering::Relaxed) & META_BIT != 0 => Latest {
                rev: last.rev,
                create_main: words[1].load(Ordering::Relaxed) as i64,
                version: words[2].load(Ordering::Relaxed) as i64,
            },
            _ => Latest {
                rev: last.rev,
                create_main: entries.get(0).rev.main,
                version: entries.len() as i64,
            },
        })
    }

    /// Appends `entry` (newer than every entry present). `create_main` and
    /// `version` describe the key after the append (0 for a tombstone).
    /// Writer only.
    pub fn append(&self, entry: IndexEntry, create_main: i64, version: i64, guard: &Guard) {
        let entries = self.entries(guard);
        if let Some(last) = entries.last() {
            assert!(
                last.rev < entry.rev,
                "index append out of order: {:?} after {:?}",
                entry.rev,
                last.rev
            );
        }
        if let (Entries::Buf { slots, len, wide }, Some(words)) = (entries, self.buf(guard)) {
            let h = words[0].load(Ordering::Relaxed);
            let cap = cap_of_step((h >> STEP_SHIFT) & STEP_MASK);
            let meta = h & META_BIT != 0;
            let fits = len < cap && (wide || pack_narrow(entry).is_some());
            // Without meta words the buffer must stay derivable.
            let keeps_layout = meta
                || (!entry.tombstone
                    && create_main == entries.get(0).rev.main
                    && version == len as i64 + 1);
            if fits && keeps_layout {
                write_slot(slots, wide, len, entry);
                if meta {
                    words[1].store(create_main as u64, Ordering::Relaxed);
                    words[2].store(version as u64, Ordering::Relaxed);
                }
                words[0].store(h + 1, Ordering::Release);
                self.set_newest(entry);
                return;
            }
        }
        let mut all = entries.collect();
        all.push(entry);
        // Grow by a quarter (a Vec doubles) for less slack; a key's second
        // version gets an exact fit, since most keys stop there.
        let extra = if all.len() > 2 {
            (all.len() / 4).max(1)
        } else {
            0
        };
        self.replace(build(&all, extra, create_main, version), guard);
        self.set_newest(entry);
    }

    /// Records `entry`, just appended, as the newest: after the entry is in
    /// the entries and before the store publishes its revision (the caller
    /// publishes after the index write), so the copy only ever moves
    /// forward and a reader at a published revision never finds an older
    /// entry in it than the newest one at or below that revision. An entry
    /// that does not pack stores 0 (readers then search the entries): the
    /// copy must never be left naming an entry older than the newest.
    fn set_newest(&self, entry: IndexEntry) {
        debug_assert!(entry.rev.main > 0, "revision 0 is the empty copy");
        let packed = pack_narrow(entry).unwrap_or(0);
        self.newest.store(packed, Ordering::Release);
    }

    /// Compacts at `at_rev` (etcd's keyIndex.compact): removes every entry
    /// with `main ≤ at_rev` except the newest of them, and that one too if
    /// it is a tombstone. Pushes the removed entries to `removed`; returns
    /// whether the key has no entries left. Writer only.
    pub fn compact(&self, at_rev: i64, removed: &mut Vec<IndexEntry>, guard: &Guard) -> bool {
        let entries = self.entries(guard);
        let n = entries.count_at_or_below(at_rev);
        if n == 0 {
            return entries.len() == 0;
        }
        let newest = entries.get(n - 1);
        let cut = if newest.tombstone { n } else { n - 1 };
        if cut == 0 {
            return false;
        }
        removed.extend((0..cut).map(|i| entries.get(i)));
        if cut == entries.len() {
            // The caller unlinks the key; readers that still hold the node
            // see the old entries, which agree at every revision ≥ at_rev.
            return true;
        }
        let kept: Vec<IndexEntry> = (cut..entries.len()).map(|i| entries.get(i)).collect();
        let (create_main, version) = match self.latest(guard) {
            Some(l) => (l.create_main, l.version),
            None => (0, 0),
        };
        self.replace(build(&kept, 0, create_main, version), guard);
        false
    }

    fn replace(&self, new: u64, guard: &Guard) {
        let old = self.word.swap(new, Ordering::AcqRel);
        if old != 0 && old & 1 == 0 {
            let ptr = old as usize;
            // SAFETY: the word no longer points at the old buffer, so only
            // readers pinned before the swap can hold it; the collector runs
            // the closure after all of them unpinned.
            unsafe {
                guard.defer_unchecked(move || free_buf(ptr as *mut AtomicU64));
            }
        }
    }

    /// Bytes of the out-of-line buffer (0 for none or inline).
    #[cfg(test)]
    pub fn buffer_bytes(&self, guard: &Guard) -> usize {
        self.buf(guard).map_or(0, |w| w.len() * 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(main: i64, sub: i64) -> IndexEntry {
        IndexEntry {
            rev: Revision::new(main, sub),
            tombstone: false,
        }
    }

    fn tomb(main: i64, sub: i64) -> IndexEntry {
        IndexEntry {
            rev: Revision::new(main, sub),
            tombstone: true,
        }
    }

    #[test]
    fn packing_round_trips_and_rejects_wide_values() {
        for e in [put(1, 0), tomb((1 << 48) - 1, (1 << 15) - 1), put(0, 0)] {
            assert_eq!(unpack_narrow(pack_narrow(e).unwrap()), e);
        }
        assert!(pack_narrow(put(1 << 48, 0)).is_none());
        assert!(pack_narrow(put(5, 1 << 15)).is_none());
        assert!(pack_inline(put(1 << 47, 0)).is_none());
        assert_eq!(pack_inline(put(7, 3)).unwrap() & 1, 1);
    }

    #[test]
    fn capacity_steps_grow_by_a_quarter() {
        let caps: Vec<usize> = (0..12).map(cap_of_step).collect();
        assert_eq!(caps, vec![2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 18, 22]);
        assert_eq!(step_for(1), 0);
        assert_eq!(step_for(9), 7);
        assert_eq!(step_for(10), 7);
        assert_eq!(step_for(11), 8);
        assert_eq!(*CAPS.last().unwrap(), 1 << 39);
    }

    /// The copy of the newest entry answers every revision exactly as a
    /// search of the entries does, through puts, tombstones, an entry too
    /// wide to copy and compaction.
    #[test]
    fn newest_copy_agrees_with_the_entries() {
        let g = crossbeam_epoch::pin();
        let k = KeyIndex::new();
        let check = |k: &KeyIndex, top: i64| {
            for rev in 0..=top {
                assert_eq!(
                    k.visible_at(rev, &g),
                    k.entries(&g).visible_at(rev),
                    "at {rev}"
                );
            }
        };
        k.append(put(2, 0), 2, 1, &g);
        assert_eq!(
            k.newest.load(Ordering::Relaxed),
            pack_narrow(put(2, 0)).unwrap()
        );
        check(&k, 3);
        for v in 2..=20 {
            k.append(put(2 * v, 0), 2, v, &g);
            check(&k, 2 * v + 1);
        }
        k.append(tomb(50, 0), 0, 0, &g);
        assert_eq!(k.visible_at(50, &g), None);
        check(&k, 52);
        k.append(put(60, 1 << 15), 60, 1, &g);
        assert_eq!(
            k.newest.load(Ordering::Relaxed),
            0,
            "a wide entry is not copied"
        );
        assert_eq!(k.visible_at(61, &g), Some(Revision::new(60, 1 << 15)));
        check(&k, 62);
        k.append(put(70, 0), 60, 2, &g);
        check(&k, 72);
        let mut removed = Vec::new();
        assert!(!k.compact(65, &mut removed, &g));
        for rev in 65..=72 {
            assert_eq!(k.visible_at(rev, &g), k.entries(&g).visible_at(rev));
        }
        assert_eq!(k.visible_at(i64::MAX, &g), Some(Revision::new(70, 0)));
    }

    #[test]
    fn append_visible_and_compact() {
        let g = crossbeam_epoch::pin();
        let k = KeyIndex::new();
        k.append(put(2, 0), 2, 1, &g);
        assert!(matches!(k.entries(&g), Entries::Inline(_)));
        k.append(put(4, 1), 2, 2, &g);
        k.append(tomb(6, 0), 0, 0, &g);
        k.append(put(8, 0), 8, 1, &g);
        // A wide entry converts the buffer.
        k.append(put(1 << 50, 1 << 20), 8, 2, &g);
        let e = k.entries(&g);
        assert_eq!(e.len(), 5);
        assert_eq!(e.visible_at(1), None);
        assert_eq!(e.visible_at(3), Some(Revision::new(2, 0)));
        assert_eq!(e.visible_at(5), Some(Revision::new(4, 1)));
        assert_eq!(e.visible_at(6), None);
        assert_eq!(e.visible_at(7), None);
        assert_eq!(e.visible_at(9), Some(Revision::new(8, 0)));
        assert_eq!(
            e.visible_at(i64::MAX),
            Some(Revision::new(1 << 50, 1 << 20))
        );
        assert_eq!(
            k.latest(&g),
            Some(Latest {
                rev: Revision::new(1 << 50, 1 << 20),
                create_main: 8,
                version: 2
            })
        );

        let mut removed = Vec::new();
        assert!(!k.compact(5, &mut removed, &g));
        assert_eq!(removed, vec![put(2, 0)]);
        removed.clear();
        assert!(!k.compact(6, &mut removed, &g));
        assert_eq!(removed, vec![put(4, 1), tomb(6, 0)]);
        assert_eq!(
            k.entries(&g).collect(),
            vec![put(8, 0), put(1 << 50, 1 << 20)]
        );
        removed.clear();
        assert!(!k.compact(100, &mut removed, &g));
        assert_eq!(removed, vec![]);
    }

    #[test]
    fn compaction_to_one_first_version_goes_back_inline() {
        let g = crossbeam_epoch::pin();
        let k = KeyIndex::new();
        k.append(put(2, 0), 2, 1, &g);
        k.append(tomb(3, 0), 0, 0, &g);
        k.append(put(5, 0), 5, 1, &g);
        let mut removed = Vec::new();
        assert!(!k.compact(4, &mut removed, &g));
        assert!(matches!(k.entries(&g), Entries::Inline(e) if e == put(5, 0)));
        assert_eq!(k.latest(&g).unwrap().version, 1);
        // A tombstone as the newest compacted entry empties the key.
        k.append(tomb(6, 0), 0, 0, &g);
        removed.clear();
        assert!(k.compact(6, &mut removed, &g));
        assert_eq!(removed, vec![put(5, 0), tomb(6, 0)]);
    }

    #[test]
    fn meta_words_only_where_the_generation_is_not_derivable() {
        let g = crossbeam_epoch::pin();
        let k = KeyIndex::new();
        k.append(put(2, 0), 2, 1, &g);
        assert_eq!(k.buffer_bytes(&g), 0, "one version is inline");
        k.append(put(3, 0), 2, 2, &g);
        assert_eq!(k.buffer_bytes(&g), 8 + 2 * 8, "header and two entries");
        for v in 3..=10 {
            k.append(put(v + 1, 0), 2, v, &g);
        }
        assert_eq!(k.latest(&g).unwrap().version, 10);
        assert_eq!(k.latest(&g).unwrap().create_main, 2);
        // A tombstone makes the generation data explicit.
        k.append(tomb(20, 0), 0, 0, &g);
        k.append(put(21, 0), 21, 1, &g);
        assert_eq!(
            k.latest(&g).unwrap(),
            Latest {
                rev: Revision::new(21, 0),
                create_main: 21,
                version: 1
            }
        );
        // (rebuilt with the tombstone, room for a quarter more)
        let entries = k.entries(&g).len() - 1;
        assert_eq!(
            k.buffer_bytes(&g),
            (1 + META_WORDS + cap_of_step(step_for(entries + entries / 4))) * 8
        );
        // Compaction that trims a generation keeps its data.
        let k = KeyIndex::new();
        for v in 1..=5 {
            k.append(put(v, 0), 1, v, &g);
        }
        let mut removed = Vec::new();
        k.compact(3, &mut removed, &g);
        assert_eq!(removed.len(), 2);
        assert_eq!(
            k.latest(&g).unwrap(),
            Latest {
                rev: Revision::new(5, 0),
                create_main: 1,
                version: 5
            }
        );
        k.append(put(6, 0), 1, 6, &g);
        assert_eq!(k.latest(&g).unwrap().version, 6);
    }

    #[test]
    fn long_history_keeps_order_and_generation() {
        let g = crossbeam_epoch::pin();
        let k = KeyIndex::new();
        for i in 1..=1000 {
            k.append(put(i, 0), 1, i, &g);
        }
        let e = k.entries(&g);
        assert_eq!(e.len(), 1000);
        for i in 1..=1000 {
            assert_eq!(e.visible_at(i), Some(Revision::new(i, 0)));
        }
        assert_eq!(k.latest(&g).unwrap().version, 1000);
        let mut removed = Vec::new();
        k.compact(990, &mut removed, &g);
        assert_eq!(removed.len(), 989);
        let l = k.latest(&g).unwrap();
        assert_eq!((l.create_main, l.version), (1, 1000));
        assert_eq!(k.entries(&g).len(), 11);
    }
}
