//! Free-space management: free pages as extents, indexed by length (best
//! fit and longest-first allocation in O(log n)) and by both ends in hash
//! maps (coalescing with neighbours on free in O(1)), so neither a large,
//! fragmented file nor a commit freeing thousands of scattered pages costs
//! a linear scan. A bitmap of free pages catches a double free. Not
//! persisted: open rebuilds it as the complement of the pages reachable from
//! the recovered commit (space.rs, docs/format.md).

use super::space::PageSet;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// A run of `len` pages starting at `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Extent {
    pub start: u64,
    pub len: u64,
}

impl Extent {
    pub fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// Hashes a page number: keys are plain integers, so a multiply and a fold
/// spread them as well as SipHash does, at a fraction of the cost.
#[derive(Default)]
pub struct PageHasher(u64);

impl Hasher for PageHasher {
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^ (h >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type PageMap = HashMap<u64, u64, BuildHasherDefault<PageHasher>>;

#[derive(Clone, Debug, Default)]
pub struct Freelist {
    /// start → length
    by_start: PageMap,
    /// end (exclusive) → start
    by_end: PageMap,
    by_len: BTreeSet<(u64, u64)>,
    /// One bit per page, set while the page is free.
    free_bits: Vec<u64>,
    pages: u64,
}

impl Freelist {
    pub fn free_pages(&self) -> u64 {
        self.pages
    }

    #[cfg(test)]
    pub fn extent_count(&self) -> usize {
        self.by_start.len()
    }

    /// Every free extent, by start.
    pub fn extents(&self) -> impl Iterator<Item = Extent> {
        let mut all: Vec<Extent> = self
            .by_start
            .iter()
            .map(|(&start, &len)| Extent { start, len })
            .collect();
        all.sort_unstable();
        all.into_iter()
    }

    /// Takes `n` contiguous pages: the shortest extent that is long enough,
    /// lowest start among equals (keeps the file dense at its beginning).
    pub fn allocate(&mut self, n: u64) -> Option<u64> {
        assert!(n > 0);
        let &(_, start) = self.by_len.range((n, 0)..).next()?;
        Some(self.allocate_at(start, n).start)
    }

    /// Takes up to `n` pages as few runs as it can, appending them to
    /// `out`: the best fit if one extent holds them all, otherwise the
    /// longest extents first, none shorter than `min_run`. Returns the pages
    /// taken; the caller gets the rest elsewhere (the file's tail).
    /// Contiguous runs matter: a commit's pages are written and synced one
    /// request per run, and a request costs as much as tens of pages.
    pub fn allocate_runs(&mut self, n: u64, min_run: u64, out: &mut Vec<Extent>) -> u64 {
        if n == 0 {
            return 0;
        }
        if let Some(start) = self.allocate(n) {
            out.push(Extent { start, len: n });
            return n;
        }
        let mut taken = 0;
        while taken < n {
            let Some(&(len, start)) = self.by_len.iter().next_back() else {
                break;
            };
            if len < min_run.max(1) {
                break;
            }
            let len = len.min(n - taken);
            let got = self.allocate_at(start, len);
            out.push(got);
            taken += len;
        }
        taken
    }

    /// Takes `n` pages if one extent holds them (best fit), or else the
    /// start of the longest extent if it has at least `min` pages.
    pub fn allocate_up_to(&mut self, n: u64, min: u64) -> Option<Extent> {
        if let Some(start) = self.allocate(n) {
            return Some(Extent { start, len: n });
        }
        let &(len, start) = self.by_len.iter().next_back()?;
        if len < min.max(1) {
            return None;
        }
        Some(self.allocate_at(start, len.min(n)))
    }

    /// Takes the first `n` pages of the free extent starting at `start`.
    fn allocate_at(&mut self, start: u64, n: u64) -> Extent {
        let len = *self
            .by_start
            .get(&start)
            .expect("a free extent starts here");
        assert!(n > 0 && n <= len);
        self.remove(start, len);
        if len > n {
            self.insert(start + n, len - n);
        }
        self.pages -= n;
        self.mark(Extent { start, len: n }, false);
        Extent { start, len: n }
    }

    /// Returns pages to the free set, merging with free neighbours.
    /// Freeing a page that is already free is a bug (double free) and panics
    /// in debug and release alike: it would hand one page to two owners.
    pub fn free(&mut self, extent: Extent) {
        assert!(extent.len > 0);
        self.mark(extent, true);
        let mut start = extent.start;
        let mut len = extent.len;
        if let Some(&left) = self.by_end.get(&start) {
            let left_len = start - left;
            self.remove(left, left_len);
            start = left;
            len += left_len;
        }
        if let Some(&right_len) = self.by_start.get(&extent.end()) {
            self.remove(extent.end(), right_len);
            len += right_len;
        }
        self.insert(start, len);
        self.pages += extent.len;
    }

    /// Sets (free) or clears (allocated) the pages' bits; a page freed twice
    /// or allocated while not free is a bug.
    fn mark(&mut self, e: Extent, free: bool) {
        let words = e.end().div_ceil(64) as usize;
        if self.free_bits.len() < words {
            self.free_bits.resize(words.next_power_of_two(), 0);
        }
        for p in e.start..e.end() {
            let (w, bit) = ((p / 64) as usize, 1u64 << (p % 64));
            let was_free = self.free_bits[w] & bit != 0;
            assert!(was_free != free, "double free of page {p}");
            self.free_bits[w] ^= bit;
        }
    }

    /// Whether any page of `extent` is free.
    #[cfg(test)]
    pub fn overlaps(&self, extent: Extent) -> bool {
        (extent.start..extent.end()).any(|p| {
            self.free_bits
                .get((p / 64) as usize)
                .is_some_and(|w| w & (1 << (p % 64)) != 0)
        })
    }

    fn insert(&mut self, start: u64, len: u64) {
        self.by_start.insert(start, len);
        self.by_end.insert(start + len, start);
        self.by_len.insert((len, start));
    }

    fn remove(&mut self, start: u64, len: u64) {
        self.by_start.remove(&start);
        self.by_end.remove(&(start + len));
        self.by_len.remove(&(len, start));
    }

    /// The free set of a file whose pages `[2, high_water)` are free
    /// unless `used` marks them.
    pub fn from_unused(used: &PageSet, high_water: u64) -> Freelist {
        let mut list = Freelist::default();
        let mut p = 2;
        while p < high_water {
            if used.contains(p) {
                p += 1;
                continue;
            }
            let start = p;
            while p < high_water && !used.contains(p) {
                p += 1;
            }
            list.free(Extent {
                start,
                len: p - start,
            });
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn best_fit_and_coalescing() {
        let mut f = Freelist::default();
        f.free(Extent { start: 10, len: 1 });
        f.free(Extent { start: 20, len: 5 });
        f.free(Extent { start: 11, len: 2 }); // merges with 10
        assert_eq!(f.extent_count(), 2);
        assert_eq!(f.free_pages(), 8);
        assert_eq!(f.allocate(4), Some(20));
        assert_eq!(f.allocate(3), Some(10));
        assert_eq!(f.allocate(2), None);
        assert_eq!(f.allocate(1), Some(24));
        assert_eq!(f.free_pages(), 0);
    }

    #[test]
    fn runs_prefer_one_extent_then_the_longest() {
        let mut f = Freelist::default();
        for (start, len) in [(10, 3), (20, 8), (40, 5), (60, 1)] {
            f.free(Extent { start, len });
        }
        let mut out = Vec::new();
        assert_eq!(f.allocate_runs(4, 2, &mut out), 4);
        assert_eq!(out, [Extent { start: 40, len: 4 }], "best fit");
        out.clear();
        assert_eq!(f.allocate_runs(12, 2, &mut out), 11);
        assert_eq!(
            out,
            [Extent { start: 20, len: 8 }, Extent { start: 10, len: 3 }],
            "longest first, none below the minimum run"
        );
        assert_eq!(f.free_pages(), 2);
        assert_eq!(f.allocate_up_to(5, 2), None);
        assert_eq!(f.allocate_up_to(5, 1), Some(Extent { start: 60, len: 1 }));
    }

    #[test]
    #[should_panic(expected = "double free")]
    fn double_free_is_caught() {
        let mut f = Freelist::default();
        f.free(Extent { start: 10, len: 3 });
        f.free(Extent { start: 11, len: 1 });
    }

    #[test]
    fn rebuilt_from_unused_pages() {
        let mut used = PageSet::new(12);
        for p in [2, 3, 6, 11] {
            assert!(used.insert(p));
        }
        assert!(!used.insert(6), "a second insert reports the page");
        let f = Freelist::from_unused(&used, 12);
        assert_eq!(
            f.extents().collect::<Vec<_>>(),
            [Extent { start: 4, len: 2 }, Extent { start: 7, len: 4 }]
        );
        assert_eq!(f.free_pages(), 6);
    }

    proptest! {
        /// The allocator never hands out a page twice and accounts every page.
        #[test]
        fn allocations_are_disjoint(ops in proptest::collection::vec((any::<bool>(), 1u64..6), 1..200)) {
            let mut f = Freelist::default();
            f.free(Extent { start: 2, len: 500 });
            let mut owned: Vec<Extent> = Vec::new();
            for (alloc, n) in ops {
                if alloc || owned.is_empty() {
                    if let Some(start) = f.allocate(n) {
                        let e = Extent { start, len: n };
                        prop_assert!(!f.overlaps(e));
                        for o in &owned {
                            prop_assert!(o.end() <= e.start || e.end() <= o.start);
                        }
                        owned.push(e);
                    }
                } else {
                    let e = owned.swap_remove(n as usize % owned.len());
                    f.free(e);
                }
                let held: u64 = owned.iter().map(|e| e.len).sum();
                prop_assert_eq!(held + f.free_pages(), 500);
            }
        }
    }
}
