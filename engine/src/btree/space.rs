//! Which pages a commit uses. Free space is not written to the file: open
//! rebuilds it as the complement of the pages reachable from the recovered
//! commit (as bbolt's `NoFreelistSync`), so a commit costs nothing for free
//! space however fragmented the file is. The walk reads only the pages that
//! link to other pages — branch pages, and leaves whose parent marks them
//! `deep` (they hold overflow values) — so it touches a small fraction of
//! the file: the leaves are counted from their parents' links unread.

use super::db::bucket_link;
use super::error::{Error, Result};
use super::freelist::Extent;
use super::mapping::{overflow_span, Mapping};
use super::meta::Meta;
use super::node::{LeafVal, PageView};
use super::page::PageRef;
use super::tree::MAX_DEPTH;

/// A set of page ids below a bound, as a bitmap.
pub struct PageSet {
    bits: Vec<u64>,
    len: u64,
}

impl PageSet {
    pub fn new(len: u64) -> PageSet {
        PageSet {
            bits: vec![0; len.div_ceil(64) as usize],
            len,
        }
    }

    #[inline]
    pub fn contains(&self, pgid: u64) -> bool {
        pgid < self.len && self.bits[(pgid / 64) as usize] & (1 << (pgid % 64)) != 0
    }

    /// Adds `pgid`; false if it was already there.
    #[inline]
    pub fn insert(&mut self, pgid: u64) -> bool {
        assert!(pgid < self.len, "page {pgid} beyond the set's bound");
        let word = &mut self.bits[(pgid / 64) as usize];
        let bit = 1 << (pgid % 64);
        let fresh = *word & bit == 0;
        *word |= bit;
        fresh
    }
}

/// Every page `meta`'s commit uses: tree pages of the catalog and of every
/// bucket, overflow spans, and `commit_pages` (the commit records since the
/// last checkpoint and the reservation for the next commit). Pages are
/// checked against their links as they are read. A page outside
/// `[2, high_water)` or used twice is corruption.
pub fn reachable(map: &Mapping, meta: &Meta, commit_pages: &[Extent]) -> Result<PageSet> {
    let mut walk = Reach {
        map,
        used: PageSet::new(meta.high_water),
        high_water: meta.high_water,
    };
    for e in commit_pages {
        walk.claim(e.start, e.len)?;
    }
    walk.claim(meta.catalog.pgid, 1)?;
    walk.node(&meta.catalog, true, 0)?;
    Ok(walk.used)
}

struct Reach<'a> {
    map: &'a Mapping,
    used: PageSet,
    high_water: u64,
}

impl Reach<'_> {
    fn claim(&mut self, pgid: u64, span: u64) -> Result<()> {
        let end = pgid.saturating_add(span);
        if pgid < 2 || end > self.high_water {
            return Err(Error::corrupt(
                pgid,
                format!(
                    "linked span of {span} pages lies outside [2, {})",
                    self.high_water
                ),
            ));
        }
        for p in pgid..end {
            if !self.used.insert(p) {
                return Err(Error::corrupt(p, "page is reachable twice"));
            }
        }
        Ok(())
    }

    /// Reads a page already claimed and claims what it links to.
    fn node(&mut self, link: &PageRef, catalog: bool, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::corrupt(
                link.pgid,
                "tree deeper than any valid tree (cycle?)",
            ));
        }
        let view = self.map.node(link)?;
        if view.is_leaf() {
            return self.leaf(&view, catalog);
        }
        for i in 0..view.count() {
            let (_, child, deep) = view.branch_entry(i)?;
            self.claim(child.pgid, 1)?;
            // Catalog leaves link to bucket roots: the catalog (a handful
            // of pages) is read whole, whatever its deep bits say.
            if deep || catalog {
                self.node(&child, catalog, depth + 1)?;
            }
        }
        Ok(())
    }

    fn leaf(&mut self, view: &PageView<'_>, catalog: bool) -> Result<()> {
        for i in 0..view.count() {
            match view.leaf_entry(i)?.1 {
                LeafVal::Overflow { link, len } => {
                    self.claim(link.pgid, overflow_span(len as usize, self.map.page_size()))?;
                }
                LeafVal::Inline(v) if catalog => {
                    // A bucket root is always read: whether it is deep is
                    // known only from its own header.
                    let root = bucket_link(v, view.header.pgid)?;
                    self.claim(root.pgid, 1)?;
                    self.node(&root, false, 0)?;
                }
                LeafVal::Inline(_) => {}
            }
        }
        Ok(())
    }
}
