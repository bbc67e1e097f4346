//! Free-space management: free pages as extents, indexed both by start (to
//! coalesce neighbours on free) and by length (best-fit allocation in
//! O(log n)), so a large, fragmented file never costs a linear scan per
//! allocation. Persisted as one freelist span per commit (docs/format.md).

use super::error::{Error, Result};
use super::page::{get_u64, put_u64, Header, HEADER_LEN, KIND_FREELIST};
use std::collections::{BTreeMap, BTreeSet};

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

pub const EXTENT_LEN: usize = 16;
/// Freelist body: extent count (u64), then the extents.
const BODY_HEADER: usize = 8;

#[derive(Clone, Debug, Default)]
pub struct Freelist {
    by_start: BTreeMap<u64, u64>,
    by_len: BTreeSet<(u64, u64)>,
    pages: u64,
}

impl Freelist {
    #[cfg(test)]
    pub fn free_pages(&self) -> u64 {
        self.pages
    }

    pub fn extent_count(&self) -> usize {
        self.by_start.len()
    }

    pub fn extents(&self) -> impl Iterator<Item = Extent> + '_ {
        self.by_start
            .iter()
            .map(|(&start, &len)| Extent { start, len })
    }

    /// Takes `n` contiguous pages: the shortest extent that is long enough,
    /// lowest start among equals (keeps the file dense at its beginning).
    pub fn allocate(&mut self, n: u64) -> Option<u64> {
        assert!(n > 0);
        let &(len, start) = self.by_len.range((n, 0)..).next()?;
        self.remove(start, len);
        if len > n {
            self.insert(start + n, len - n);
        }
        self.pages -= n;
        Some(start)
    }

    /// Returns pages to the free set, merging with free neighbours.
    /// Freeing a page that is already free is a bug (double free) and panics
    /// in debug and release alike: it would hand one page to two owners.
    pub fn free(&mut self, extent: Extent) {
        assert!(extent.len > 0);
        let mut start = extent.start;
        let mut len = extent.len;
        if let Some((&ps, &pl)) = self.by_start.range(..=start).next_back() {
            assert!(ps + pl <= start, "double free of page {start}");
            if ps + pl == start {
                self.remove(ps, pl);
                start = ps;
                len += pl;
            }
        }
        if let Some((&ns, &nl)) = self.by_start.range(start..).next() {
            assert!(ns >= start + len, "double free of page {ns}");
            if ns == start + len {
                self.remove(ns, nl);
                len += nl;
            }
        }
        self.insert(start, len);
        self.pages += extent.len;
    }

    /// Whether any page of `extent` is free.
    #[cfg(test)]
    pub fn overlaps(&self, extent: Extent) -> bool {
        if let Some((&ps, &pl)) = self.by_start.range(..extent.end()).next_back() {
            return ps + pl > extent.start;
        }
        false
    }

    fn insert(&mut self, start: u64, len: u64) {
        self.by_start.insert(start, len);
        self.by_len.insert((len, start));
    }

    fn remove(&mut self, start: u64, len: u64) {
        self.by_start.remove(&start);
        self.by_len.remove(&(len, start));
    }

    /// Pages needed to persist `extents` extents.
    pub fn span_for(extents: usize, page_size: usize) -> u32 {
        (HEADER_LEN + BODY_HEADER + extents * EXTENT_LEN).div_ceil(page_size) as u32
    }

    /// Encodes `extents` into a freelist span of `span` pages at `pgid`.
    pub fn encode(
        extents: &[Extent],
        pgid: u64,
        span: u32,
        txid: u64,
        page_size: usize,
    ) -> Vec<u8> {
        let mut buf = vec![0u8; span as usize * page_size];
        assert!(HEADER_LEN + BODY_HEADER + extents.len() * EXTENT_LEN <= buf.len());
        Header::write(&mut buf, pgid, txid, KIND_FREELIST, 0, span);
        put_u64(&mut buf, HEADER_LEN, extents.len() as u64);
        let mut at = HEADER_LEN + BODY_HEADER;
        for e in extents {
            put_u64(&mut buf, at, e.start);
            put_u64(&mut buf, at + 8, e.len);
            at += EXTENT_LEN;
        }
        buf
    }

    /// Decodes a verified freelist span, rejecting extents outside
    /// `[2, high_water)` or overlapping one another.
    pub fn decode(buf: &[u8], pgid: u64, high_water: u64) -> Result<Freelist> {
        let bad = |what: String| Error::corrupt(pgid, what);
        let count = get_u64(buf, HEADER_LEN);
        let body = (buf.len() - HEADER_LEN - BODY_HEADER) as u64 / EXTENT_LEN as u64;
        if count > body {
            return Err(bad(format!(
                "freelist claims {count} extents, room for {body}"
            )));
        }
        let mut extents = Vec::with_capacity(count as usize);
        let mut at = HEADER_LEN + BODY_HEADER;
        for _ in 0..count {
            let e = Extent {
                start: get_u64(buf, at),
                len: get_u64(buf, at + 8),
            };
            at += EXTENT_LEN;
            if e.len == 0
                || e.start < 2
                || e.start
                    .checked_add(e.len)
                    .is_none_or(|end| end > high_water)
            {
                return Err(bad(format!("free extent {e:?} outside [2, {high_water})")));
            }
            extents.push(e);
        }
        extents.sort_unstable();
        let mut list = Freelist::default();
        for pair in extents.windows(2) {
            if pair[0].end() > pair[1].start {
                return Err(bad(format!(
                    "free extents {:?} and {:?} overlap",
                    pair[0], pair[1]
                )));
            }
        }
        for e in extents {
            list.free(e);
        }
        Ok(list)
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
    #[should_panic(expected = "double free")]
    fn double_free_is_caught() {
        let mut f = Freelist::default();
        f.free(Extent { start: 10, len: 3 });
        f.free(Extent { start: 11, len: 1 });
    }

    #[test]
    fn persisted_roundtrip_rejects_overlap() {
        let extents = [Extent { start: 5, len: 2 }, Extent { start: 9, len: 1 }];
        let buf = Freelist::encode(&extents, 3, 1, 1, 4096);
        let f = Freelist::decode(&buf, 3, 100).unwrap();
        assert_eq!(f.extents().collect::<Vec<_>>(), extents);
        let bad = [Extent { start: 5, len: 5 }, Extent { start: 9, len: 1 }];
        let buf = Freelist::encode(&bad, 3, 1, 1, 4096);
        assert!(Freelist::decode(&buf, 3, 100).is_err());
        assert!(Freelist::decode(&buf, 3, 8).is_err(), "beyond high water");
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
