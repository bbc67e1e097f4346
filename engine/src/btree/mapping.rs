//! The read-only memory map of the file, shared by every transaction that
//! started while it was current. Growing the file creates a new mapping; an
//! old one lives until its last reader drops it, so remapping never waits
//! for readers and readers never wait for a remap.
//!
//! Checksums are verified the first time a page is read through a mapping
//! and remembered in a bitmap, so hot pages cost one atomic load instead of
//! a hash per access. Pages the writer rewrites (possible only once no
//! snapshot can reach them) are marked verified after the write: the page
//! cache holds the bytes it sealed. Every access, verified or not, compares
//! the page's header (checksum, page id, txid) with its parent's link.

use super::error::{Error, Result};
use super::node::PageView;
use super::page::{self, Header, PageRef, HEADER_LEN, KIND_OVERFLOW};
use memmap2::{Mmap, MmapOptions};
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Mapping {
    mmap: Mmap,
    page_size: usize,
    /// `mmap.len() / page_size`, kept so a bounds check is no division.
    pages: u64,
    verified: Box<[AtomicU64]>,
}

impl Mapping {
    pub fn new(file: &File, len: u64, page_size: usize, path: &Path) -> Result<Mapping> {
        assert!(
            (len as usize).is_multiple_of(page_size),
            "file length is a whole number of pages"
        );
        // SAFETY: the map is read-only and private to this process's view of
        // a file it holds an exclusive flock on (Db::open). Pages reachable
        // from any live snapshot are never rewritten (copy-on-write plus the
        // reader registry), and the file is never shrunk while mapped, so
        // every slice handed out stays valid and unchanged for its lifetime.
        // Tests: btree_model (snapshots stay stable across commits and
        // growth) and btree_crash.
        let mmap = unsafe { MmapOptions::new().len(len as usize).map(file) }.map_err(|source| {
            Error::Io {
                path: path.to_path_buf(),
                source,
            }
        })?;
        #[cfg(unix)]
        let _ = mmap.advise(memmap2::Advice::Random);
        let pages = len / page_size as u64;
        let words = pages.div_ceil(64) as usize;
        let verified = (0..words).map(|_| AtomicU64::new(0)).collect();
        Ok(Mapping {
            mmap,
            page_size,
            pages,
            verified,
        })
    }

    #[inline]
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Prefetches the cache line holding byte `at` of `page` (a slice of
    /// this mapping); a no-op past its end.
    #[inline]
    pub fn prefetch_in(&self, page: &[u8], at: usize) {
        if at < page.len() {
            prefetch_line(page[at..].as_ptr());
        }
    }

    /// `prefetch` for every cache line of page `pgid` (a scan about to
    /// read all of it).
    #[inline]
    pub fn prefetch_page(&self, pgid: u64) {
        if pgid >= self.pages {
            return;
        }
        let page = &self.mmap[pgid as usize * self.page_size..][..self.page_size];
        for line in page.chunks(CACHE_LINE_BYTES) {
            prefetch_line(line.as_ptr());
        }
    }

    /// Asks the CPU to start loading the first cache line of page `pgid`
    /// (its header and slot array) while the caller keeps working: a
    /// lookup announces the pages it may descend into next, so the miss
    /// on the next level (a TLB walk and a DRAM access for a leaf of a
    /// large file) overlaps the rest of the current page's search. A hint
    /// only: nothing is read, verified or trusted here.
    #[inline]
    pub fn prefetch_addr(&self, buf: &[u8], at: usize) {
        let p = buf.as_ptr().wrapping_add(at.min(buf.len() - 1));
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>())
        };
    }
    #[inline]
    pub fn prefetch(&self, pgid: u64) {
        if pgid >= self.pages {
            return;
        }
        prefetch_line(self.mmap[pgid as usize * self.page_size..].as_ptr());
    }

    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// The raw bytes of `span` pages from `pgid`, bounds checked.
    #[inline]
    pub fn raw(&self, pgid: u64, span: u64) -> Result<&[u8]> {
        let end = pgid.checked_add(span).filter(|&e| e <= self.pages());
        match end {
            Some(end) => {
                Ok(&self.mmap[pgid as usize * self.page_size..end as usize * self.page_size])
            }
            None => Err(Error::corrupt(
                pgid,
                format!(
                    "span of {span} pages runs past the end of the file ({} pages)",
                    self.pages()
                ),
            )),
        }
    }

    #[inline]
    fn is_verified(&self, pgid: u64) -> bool {
        let word = &self.verified[(pgid / 64) as usize];
        word.load(Ordering::Acquire) & (1 << (pgid % 64)) != 0
    }

    fn mark_verified(&self, pgid: u64) {
        self.verified[(pgid / 64) as usize].fetch_or(1 << (pgid % 64), Ordering::AcqRel);
    }

    /// Records that the writer just wrote the span starting at `pgid` with
    /// contents it sealed itself (a no-op beyond this mapping's end).
    pub fn mark_written(&self, pgid: u64) {
        if pgid < self.pages() {
            self.mark_verified(pgid);
        }
    }

    /// A span checked against its link: fully hashed on first use; later
    /// uses still compare the stored checksum, page id and txid with the
    /// link (one 24-byte comparison), so a stale parent is caught.
    #[inline]
    fn span(&self, link: &PageRef, span: u64, kind: Option<u8>) -> Result<(&[u8], Header)> {
        let buf = self.raw(link.pgid, span)?;
        let header = Header::read(buf);
        let fresh = !self.is_verified(link.pgid);
        if fresh
            || header.checksum != link.checksum
            || header.pgid != link.pgid
            || header.txid != link.txid
        {
            page::verify(buf, link)?;
            self.mark_verified(link.pgid);
        }
        if kind.is_some_and(|k| k != header.kind) || header.span as u64 != span {
            return Err(self.wrong_kind(link, &header, span, kind));
        }
        Ok((buf, header))
    }

    #[cold]
    fn wrong_kind(&self, link: &PageRef, header: &Header, span: u64, kind: Option<u8>) -> Error {
        match kind {
            Some(kind) if kind != header.kind => Error::corrupt(
                link.pgid,
                format!(
                    "expected a {} page, found kind {}",
                    page::kind_name(kind),
                    header.kind
                ),
            ),
            _ => Error::corrupt(
                link.pgid,
                format!("header spans {} pages, expected {span}", header.span),
            ),
        }
    }

    /// A branch or leaf page.
    pub fn node(&self, link: &PageRef) -> Result<PageView<'_>> {
        let (buf, header) = self.span(link, 1, None)?;
        PageView::new(buf, header)
    }

    /// The bytes of an overflow value of `len` bytes.
    pub fn overflow(&self, link: &PageRef, len: u32) -> Result<&[u8]> {
        let span = overflow_span(len as usize, self.page_size);
        let (buf, _) = self.span(link, span, Some(KIND_OVERFLOW))?;
        Ok(&buf[HEADER_LEN..HEADER_LEN + len as usize])
    }
}

const CACHE_LINE_BYTES: usize = 64;

/// Starts loading the cache line at `line` into L1.
#[inline(always)]
fn prefetch_line(line: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is a hint: it never faults, reads nothing
    // architecturally and has no other effect, whatever the address; every
    // caller passes a pointer into a live slice besides. SSE is part of the
    // x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.cast::<i8>())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = line;
}

/// Pages of an overflow span holding `len` value bytes.
pub fn overflow_span(len: usize, page_size: usize) -> u64 {
    (HEADER_LEN + len).div_ceil(page_size) as u64
}
