//! The offline consistency check: every page below the high-water mark is
//! reachable exactly once or free, never both; every checksum matches its
//! link; keys are ordered within pages and within their parents' bounds; all
//! leaves of a tree are at one depth. The same walk feeds `stats`.

use super::db::{bucket_link, Db};
use super::error::Result;
use super::freelist::Freelist;
use super::mapping::{overflow_span, Mapping};
use super::meta::Meta;
use super::node::{LeafVal, PageView};
use super::page::{self, PageRef, KIND_FREELIST, KIND_OVERFLOW};
use super::tree::MAX_DEPTH;
use super::tx::ReadTx;

/// Errors beyond this many are counted but not listed.
const ERRORS_LISTED_MAX: usize = 100;

#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    pub txid: u64,
    pub high_water: u64,
    pub pages_reachable: u64,
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

#[derive(PartialEq, Clone, Copy)]
enum Owner {
    None,
    Reachable,
    Free,
}

pub(crate) struct Walk<'a> {
    map: &'a Mapping,
    meta: Meta,
    owner: Vec<Owner>,
    pub report: CheckReport,
    pub trees: Vec<(Vec<u8>, TreeCounts)>,
    pub catalog: TreeCounts,
    pub freelist_pages: u64,
}

impl<'a> Walk<'a> {
    fn error(&mut self, what: String) {
        self.report.error_count += 1;
        if self.report.errors.len() < ERRORS_LISTED_MAX {
            self.report.errors.push(what);
        }
    }

    fn claim(&mut self, pgid: u64, span: u64, owner: Owner, what: &str) -> bool {
        if pgid < 2 || pgid.saturating_add(span) > self.meta.high_water {
            self.error(format!(
                "{what} at page {pgid} (+{span}) lies outside [2, {})",
                self.meta.high_water
            ));
            return false;
        }
        for p in pgid..pgid + span {
            match self.owner[p as usize] {
                Owner::None => self.owner[p as usize] = owner,
                Owner::Reachable if owner == Owner::Reachable => {
                    self.error(format!("page {p} ({what}) is reachable twice"));
                    return false;
                }
                _ => {
                    self.error(format!("page {p} ({what}) is both free and reachable"));
                    return false;
                }
            }
        }
        if owner == Owner::Reachable {
            self.report.pages_reachable += span;
        } else {
            self.report.pages_free += span;
        }
        true
    }

    fn span(&mut self, link: &PageRef, span: u64, what: &str) -> Option<&'a [u8]> {
        if !self.claim(link.pgid, span, Owner::Reachable, what) {
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

    #[allow(clippy::too_many_arguments)]
    fn tree(
        &mut self,
        link: &PageRef,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        depth: usize,
        counts: &mut TreeCounts,
        catalog: bool,
    ) {
        if depth > MAX_DEPTH {
            self.error(format!("page {}: tree deeper than {MAX_DEPTH}", link.pgid));
            return;
        }
        let Some(buf) = self.span(link, 1, "node") else {
            return;
        };
        let view = match PageView::new(buf, page::Header::read(buf)) {
            Ok(v) => v,
            Err(e) => return self.error(e.to_string()),
        };
        let pgid = link.pgid;
        let n = view.count();
        let mut keys: Vec<&[u8]> = Vec::with_capacity(n);
        for i in 0..n {
            match view.key(i) {
                Ok(k) => keys.push(k),
                Err(e) => return self.error(e.to_string()),
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
            for (i, key) in keys.iter().enumerate() {
                let val = match view.leaf_entry(i) {
                    Ok((_, v)) => v,
                    Err(e) => return self.error(e.to_string()),
                };
                match val {
                    LeafVal::Overflow { link: o, len } => {
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
        } else {
            counts.branch_pages += 1;
            if n == 0 {
                self.error(format!("page {pgid}: branch without children"));
            }
            for i in 0..n {
                let child = match view.branch_entry(i) {
                    Ok((_, c)) => c,
                    Err(e) => return self.error(e.to_string()),
                };
                let child_hi = keys.get(i + 1).copied().or(hi);
                self.tree(&child, Some(keys[i]), child_hi, depth + 1, counts, catalog);
            }
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
        owner: vec![Owner::None; meta.high_water as usize],
        report: CheckReport {
            txid: meta.txid,
            high_water: meta.high_water,
            ..CheckReport::default()
        },
        trees: Vec::new(),
        catalog: TreeCounts::default(),
        freelist_pages: 0,
    };
    let mut catalog = TreeCounts::default();
    w.tree(&meta.catalog, None, None, 0, &mut catalog, true);
    w.catalog = catalog;
    w.report.buckets = w.trees.len() as u64;
    w.report.keys = w.trees.iter().map(|(_, t)| t.keys).sum();
    if meta.freelist.pgid != 0 {
        let span = meta.freelist_span as u64;
        if let Some(buf) = w.span(&meta.freelist, span, "freelist") {
            w.freelist_pages = span;
            if buf[24] != KIND_FREELIST {
                w.error(format!(
                    "page {}: freelist link to a {} page",
                    meta.freelist.pgid,
                    page::kind_name(buf[24])
                ));
            }
            match Freelist::decode(buf, meta.freelist.pgid, meta.high_water) {
                Ok(list) => {
                    for e in list.extents() {
                        w.claim(e.start, e.len, Owner::Free, "free extent");
                    }
                }
                Err(e) => w.error(e.to_string()),
            }
        }
    }
    let leaked: Vec<u64> = (2..meta.high_water)
        .filter(|&p| w.owner[p as usize] == Owner::None)
        .collect();
    for p in leaked {
        w.error(format!("page {p} is neither reachable nor free (leaked)"));
    }
    w
}

impl ReadTx {
    /// Verifies every invariant of this snapshot's commit.
    pub fn check(&self) -> CheckReport {
        walk(self).report
    }
}

impl Db {
    /// `check` on the latest commit.
    pub fn check(&self) -> Result<CheckReport> {
        Ok(self.begin_read()?.check())
    }
}
