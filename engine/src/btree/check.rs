//! The offline consistency check: every page below the high-water mark is
//! reachable at most once (the others are free), and the writer's allocator
//! holds exactly the unreachable ones; every checksum matches its link; keys
//! are ordered within pages and within their parents' bounds; all leaves of
//! a tree are at one depth; every branch element's deep bit is right (the
//! free-space walk at open relies on it). The same walk feeds `stats`.

use super::db::{bucket_link, Db};
use super::error::Result;
use super::freelist::Extent;
use super::mapping::{overflow_span, Mapping};
use super::meta::Meta;
use super::node::{LeafVal, PageView};
use super::page::{self, PageRef, KIND_COMMIT, KIND_OVERFLOW};
use super::space::PageSet;
use super::tree::MAX_DEPTH;
use super::tx::ReadTx;

/// Errors beyond this many are counted but not listed.
const ERRORS_LISTED_MAX: usize = 100;

#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    pub txid: u64,
    pub high_water: u64,
    pub pages_reachable: u64,
    /// Of those, pages of the commit chain (records and the reservation).
    pub commit_pages: u64,
    pub pages_free: u64,
    pub buckets: u64,
    pub keys: u64,
    pub error_count: u64,
    pub errors: Vec<String>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.error_count == 0
    }
}

/// Per-tree counts gathered by the walk.
#[derive(Clone, Debug, Default)]
pub(crate) struct TreeCounts {
    pub depth: usize,
    pub keys: u64,
    pub branch_pages: u64,
    pub leaf_pages: u64,
    pub overflow_pages: u64,
}

pub(crate) struct Walk<'a> {
    map: &'a Mapping,
    meta: Meta,
    reached: PageSet,
    pub report: CheckReport,
    pub trees: Vec<(Vec<u8>, TreeCounts)>,
    pub catalog: TreeCounts,
}

impl<'a> Walk<'a> {
    fn error(&mut self, what: String) {
        self.report.error_count += 1;
        if self.report.errors.len() < ERRORS_LISTED_MAX {
            self.report.errors.push(what);
        }
    }

    fn claim(&mut self, pgid: u64, span: u64, what: &str) -> bool {
        if pgid < 2 || pgid.saturating_add(span) > self.meta.high_water {
            self.error(format!(
                "{what} at page {pgid} (+{span}) lies outside [2, {})",
                self.meta.high_water
            ));
            return false;
        }
        for p in pgid..pgid + span {
            if !self.reached.insert(p) {
                self.error(format!("page {p} ({what}) is reachable twice"));
                return false;
            }
        }
        self.report.pages_reachable += span;
        true
    }

    fn span(&mut self, link: &PageRef, span: u64, what: &str) -> Option<&'a [u8]> {
        if !self.claim(link.pgid, span, what) {
            return None;
        }
        let buf = match self.map.raw(link.pgid, span) {
            Ok(b) => b,
            Err(e) => {
                self.error(e.to_string());
                return None;
            }
        };
        if let Err(e) = page::verify(buf, link) {
            self.error(e.to_string());
            return None;
        }
        Some(buf)
    }

    /// Checks the subtree at `link`; returns whether its root is deep
    /// (links to further pages), `None` if it could not be read.
    #[allow(clippy::too_many_arguments)]
    fn tree(
        &mut self,
        link: &PageRef,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        depth: usize,
        counts: &mut TreeCounts,
        catalog: bool,
    ) -> Option<bool> {
        if depth > MAX_DEPTH {
            self.error(format!("page {}: tree deeper than {MAX_DEPTH}", link.pgid));
            return None;
        }
        let buf = self.span(link, 1, "node")?;
        let view = match PageView::new(buf, page::Header::read(buf)) {
            Ok(v) => v,
            Err(e) => {
                self.error(e.to_string());
                return None;
            }
        };
        let pgid = link.pgid;
        let n = view.count();
        let mut keys: Vec<&[u8]> = Vec::with_capacity(n);
        for i in 0..n {
            match view.key(i) {
                Ok(k) => keys.push(k),
                Err(e) => {
                    self.error(e.to_string());
                    return None;
                }
            }
        }
        for w in keys.windows(2) {
            if w[0] >= w[1] {
                self.error(format!("page {pgid}: keys out of order"));
            }
        }
        if let (Some(lo), Some(first)) = (lo, keys.first()) {
            if *first < lo {
                self.error(format!("page {pgid}: key below its parent's bound"));
            }
        }
        if let (Some(hi), Some(last)) = (hi, keys.last()) {
            if *last >= hi {
                self.error(format!(
                    "page {pgid}: key at or above the next sibling's bound"
                ));
            }
        }
        if view.is_leaf() {
            counts.leaf_pages += 1;
            counts.keys += n as u64;
            if counts.depth == 0 {
                counts.depth = depth + 1;
            } else if counts.depth != depth + 1 {
                self.error(format!(
                    "page {pgid}: leaf at depth {} where others are at {}",
                    depth + 1,
                    counts.depth
                ));
            }
            if n == 0 && depth > 0 {
                self.error(format!("page {pgid}: empty non-root leaf"));
            }
            let mut deep = false;
            for (i, key) in keys.iter().enumerate() {
                let val = match view.leaf_entry(i) {
                    Ok((_, v)) => v,
                    Err(e) => {
                        self.error(e.to_string());
                        return None;
                    }
                };
                match val {
                    LeafVal::Overflow { link: o, len } => {
                        deep = true;
                        let span = overflow_span(len as usize, self.map.page_size());
                        counts.overflow_pages += span;
                        if let Some(buf) = self.span(&o, span, "overflow") {
                            if buf[24] != KIND_OVERFLOW {
                                self.error(format!(
                                    "page {}: overflow link to a {} page",
                                    o.pgid,
                                    page::kind_name(buf[24])
                                ));
                            }
                        }
                    }
                    LeafVal::Inline(v) if catalog => match bucket_link(v, pgid) {
                        Ok(root) => {
                            let mut tc = TreeCounts::default();
                            self.tree(&root, None, None, 0, &mut tc, false);
                            self.trees.push((key.to_vec(), tc));
                        }
                        Err(e) => self.error(e.to_string()),
                    },
                    LeafVal::Inline(_) => {}
                }
            }
            Some(deep)
        } else {
            counts.branch_pages += 1;
            if n == 0 {
                self.error(format!("page {pgid}: branch without children"));
            }
            for i in 0..n {
                let (child, deep) = match view.branch_entry(i) {
                    Ok((_, c, d)) => (c, d),
                    Err(e) => {
                        self.error(e.to_string());
                        return None;
                    }
                };
                let child_hi = keys.get(i + 1).copied().or(hi);
                let actual = self.tree(&child, Some(keys[i]), child_hi, depth + 1, counts, catalog);
                // The catalog is walked whole at open; its bits are unused.
                if !catalog && actual.is_some_and(|a| a != deep) {
                    self.error(format!(
                        "page {pgid}: element {i} marks child {} {}deep, it is {}",
                        child.pgid,
                        if deep { "" } else { "not " },
                        if deep { "not" } else { "deep" }
                    ));
                }
            }
            Some(true)
        }
    }
}

/// Walks the whole commit of `rx`.
pub(crate) fn walk<'a>(rx: &'a ReadTx) -> Walk<'a> {
    let snap = rx.snapshot();
    let meta = snap.meta;
    let mut w = Walk {
        map: &snap.map,
        meta,
        reached: PageSet::new(meta.high_water),
        report: CheckReport {
            txid: meta.txid,
            high_water: meta.high_water,
            ..CheckReport::default()
        },
        trees: Vec::new(),
        catalog: TreeCounts::default(),
    };
    let mut catalog = TreeCounts::default();
    w.tree(&meta.catalog, None, None, 0, &mut catalog, true);
    w.catalog = catalog;
    w.commit_chain(&snap.commit_pages);
    w.report.buckets = w.trees.len() as u64;
    w.report.keys = w.trees.iter().map(|(_, t)| t.keys).sum();
    w.report.pages_free = meta.high_water.saturating_sub(2) - w.report.pages_reachable;
    w
}

impl Walk<'_> {
    /// Claims the commit chain's pages: each record since the checkpoint
    /// (checked: a sealed record page of an earlier commit), and the
    /// reservation for the next commit (last).
    fn commit_chain(&mut self, pages: &[Extent]) {
        let Some((reservation, records)) = pages.split_last() else {
            self.error("no reservation for the next commit".into());
            return;
        };
        for r in records {
            if !self.claim(r.start, 1, "commit record") {
                continue;
            }
            let checked = self
                .map
                .raw(r.start, 1)
                .map_err(|e| e.to_string())
                .and_then(|buf| {
                    let h = page::Header::read(buf);
                    if h.kind != KIND_COMMIT || h.pgid != r.start || h.txid > self.meta.txid {
                        return Err(format!(
                            "page {}: expected a commit record, found kind {} page {} txid {}",
                            r.start, h.kind, h.pgid, h.txid
                        ));
                    }
                    match page::checksum(buf) == h.checksum {
                        true => Ok(()),
                        false => Err(format!("page {}: commit record checksum mismatch", r.start)),
                    }
                });
            if let Err(e) = checked {
                self.error(e);
            }
        }
        self.report.commit_pages += records.len() as u64 + reservation.len;
        self.claim(reservation.start, reservation.len, "reservation");
    }

    /// Compares the walk with the writer's allocator: a page is free (or
    /// waiting for readers) exactly when no link reaches it.
    fn compare_allocator(&mut self, free: &PageSet) {
        for p in 2..self.meta.high_water {
            match (self.reached.contains(p), free.contains(p)) {
                (true, true) => self.error(format!(
                    "page {p} is reachable and also free in the allocator"
                )),
                (false, false) => self.error(format!(
                    "page {p} is neither reachable nor free in the allocator (leaked)"
                )),
                _ => {}
            }
        }
    }
}

impl ReadTx {
    /// Verifies every invariant of this snapshot's commit.
    pub fn check(&self) -> CheckReport {
        walk(self).report
    }
}

impl Db {
    /// `check` on the latest commit, and the writer's allocator against it
    /// (waits for an open write transaction to finish).
    pub fn check(&self) -> Result<CheckReport> {
        let state = self.inner.writer.lock();
        let rx = self.begin_read()?;
        assert_eq!(
            rx.txid(),
            state.meta.txid,
            "the writer's commit is published"
        );
        let mut w = walk(&rx);
        if state.recovery.free_space_unknown.is_some() {
            // Open could not rebuild free space: the allocator holds only
            // pages freed since, and unreachable older pages stay unused.
            return Ok(w.report);
        }
        let mut free = PageSet::new(state.file_pages.max(state.meta.high_water));
        let extents = state
            .freelist
            .extents()
            .chain(state.pending.values().flatten().copied());
        for e in extents {
            for p in e.start..e.end() {
                if p >= state.meta.high_water || !free.insert(p) {
                    w.error(format!(
                        "page {p} is free twice or beyond the high-water mark"
                    ));
                }
            }
        }
        w.compare_allocator(&free);
        Ok(w.report)
    }
}
