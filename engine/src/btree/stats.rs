//! Space and shape statistics, from the same walk as `check`.

use super::db::Db;
use super::error::Result;

#[derive(Clone, Debug, Default)]
pub struct BucketStats {
    pub name: Vec<u8>,
    pub depth: usize,
    pub keys: u64,
    pub branch_pages: u64,
    pub leaf_pages: u64,
    pub overflow_pages: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub txid: u64,
    pub page_size: usize,
    pub file_size_bytes: u64,
    /// Pages below this are in use or free; the rest of the file is unused.
    pub high_water: u64,
    pub meta_pages: u64,
    pub branch_pages: u64,
    pub leaf_pages: u64,
    pub overflow_pages: u64,
    /// Commit records since the last checkpoint, and the pages reserved for
    /// the next commit.
    pub commit_pages: u64,
    /// Pages reserved for the next commit's record and first data pages.
    pub reservation: std::ops::Range<u64>,
    /// Pages below the high-water mark that no link reaches.
    pub free_pages: u64,
    pub buckets: Vec<BucketStats>,
}

impl Db {
    pub fn stats(&self) -> Result<Stats> {
        let rx = self.begin_read()?;
        let w = super::check::walk(&rx);
        let mut s = Stats {
            txid: w.report.txid,
            page_size: self.page_size(),
            file_size_bytes: self.file_size_bytes()?,
            high_water: w.report.high_water,
            meta_pages: 2,
            branch_pages: w.catalog.branch_pages,
            leaf_pages: w.catalog.leaf_pages,
            overflow_pages: 0,
            commit_pages: w.report.commit_pages,
            reservation: {
                let meta = rx.snapshot().meta;
                meta.next..meta.next + meta.next_len as u64
            },
            free_pages: w.report.pages_free,
            buckets: Vec::new(),
        };
        for (name, t) in &w.trees {
            s.branch_pages += t.branch_pages;
            s.leaf_pages += t.leaf_pages;
            s.overflow_pages += t.overflow_pages;
            s.buckets.push(BucketStats {
                name: name.clone(),
                depth: t.depth,
                keys: t.keys,
                branch_pages: t.branch_pages,
                leaf_pages: t.leaf_pages,
                overflow_pages: t.overflow_pages,
            });
        }
        Ok(s)
    }
}
