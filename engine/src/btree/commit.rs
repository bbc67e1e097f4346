//! The writer's state between transactions (last commit, free space,
//! pending frees, the commit chain) and the commit itself: allocate the
//! commit's pages as few contiguous runs as free space allows — starting
//! with the reservation the previous commit made, whose first page takes
//! this commit's record — write the dirty nodes children-first, reserve
//! pages for the next commit, and fdatasync once.

use super::db::{self, Inner, Snapshot};
use super::error::Result;
use super::freelist::{Extent, Freelist};
use super::mapping::{overflow_span, Mapping};
use super::meta::Meta;
use super::node::{Child, Node, Val};
use super::options::SyncMode;
use super::page::{self, Header, PageRef, HEADER_LEN, KIND_COMMIT, KIND_OVERFLOW, PAGE_REF_LEN};
use super::recovery::Recovery;
use super::tree::{self, Ctx};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;

pub(crate) struct WriterState {
    pub meta: Meta,
    pub freelist: Freelist,
    /// Pages freed by commit `txid`, waiting for readers of older snapshots.
    pub pending: BTreeMap<u64, Vec<Extent>>,
    pub map: Arc<Mapping>,
    pub file_pages: u64,
    pub recovery: Recovery,
    /// The commit buffer, kept between commits so its memory is reused.
    pub page_buf: Vec<u8>,
    /// The meta page holding the newest checkpoint.
    pub meta_slot: u64,
    /// Pages of the commit records written since that checkpoint: open
    /// follows them, so they stay in use until the next checkpoint.
    pub records: Vec<u64>,
}

impl WriterState {
    pub fn new(
        meta: Meta,
        freelist: Freelist,
        map: Arc<Mapping>,
        recovery: Recovery,
        meta_slot: u64,
        records: Vec<u64>,
    ) -> Self {
        WriterState {
            file_pages: map.pages(),
            meta,
            freelist,
            pending: BTreeMap::new(),
            map,
            recovery,
            page_buf: Vec::new(),
            meta_slot,
            records,
        }
    }

    /// Moves pending frees that no open snapshot can reach to the freelist:
    /// pages freed by commit `t` were reachable only from snapshots < `t`.
    pub fn release_pending(&mut self, oldest_reader: Option<u64>) {
        let limit = oldest_reader.unwrap_or(u64::MAX);
        let ready: Vec<u64> = self.pending.range(..=limit).map(|(&t, _)| t).collect();
        let mut extents: Vec<Extent> = Vec::new();
        for t in ready {
            extents.extend(self.pending.remove(&t).expect("key listed above"));
        }
        // A commit frees the pages of the paths it copied, often runs that
        // an earlier commit wrote together: merge neighbours first, so the
        // free set sees one insertion per run instead of one per page.
        extents.sort_unstable_by_key(|e| e.start);
        let mut run: Option<Extent> = None;
        for e in extents {
            match &mut run {
                Some(r) if r.end() == e.start => r.len += e.len,
                _ => {
                    if let Some(r) = run.replace(e) {
                        self.freelist.free(r);
                    }
                }
            }
        }
        if let Some(r) = run {
            self.freelist.free(r);
        }
    }
}

/// Counts of one commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitInfo {
    pub txid: u64,
    pub pages_written: u64,
    /// Contiguous runs those pages formed (what the disk sees as separate
    /// writes; a one-key commit is one run, plus one if it is a checkpoint).
    pub write_runs: u64,
    pub pages_freed: u64,
    pub fsyncs: u32,
}

/// Dirty pages buffered before they are written: a commit's pages are
/// gathered, sorted by page id and written in contiguous groups. A large
/// commit writes each full buffer at once and, in the durable sync modes,
/// asks the kernel to start writing it back (`sync_file_range`), so the
/// disk works on the first megabytes while the rest is being encoded and
/// the final fdatasync waits only for the tail.
const BUFFER_BYTES_MAX: usize = 1 << 20;
/// Pages per pwritev call (the kernel's IOV_MAX is 1024).
const IOV_PER_WRITE_MAX: usize = 1024;
/// Pages per write call. The page cache sizes a folio by the write that
/// creates it: large writes leave large folios (up to 2 MiB on ext4), and
/// every later one-page write into one costs work proportional to the folio
/// (measured: 3.5 µs instead of 1 µs per 4 KiB write on Linux 6.18 ext4).
/// Writing at most 32 KiB at a time keeps folios small (a one-key commit,
/// record and five nodes, is still one write).
const WRITE_PAGES_MAX: u64 = 8;
/// Shortest run of free pages a commit's nodes are written to while free
/// space is under `Options::free_space_target_percent`. On the disk
/// measured, a separate write request costs as much as ten or more
/// contiguous pages.
const RUN_PAGES_MIN: u64 = 16;
/// Node groups, allocated apart: pages that die soon (branches, whose
/// copies every commit touching their subtree replaces, and the catalog)
/// and pages that live long (bucket leaves). Written apart, the hot pages
/// free up in whole runs a few commits later instead of leaving holes
/// between long-lived leaves.
const HOT: usize = 0;
const COLD: usize = 1;
/// Pages reserved for the next commit: its record and its first nodes, one
/// contiguous write (a one-key commit on a 1 M-key tree writes five nodes).
/// Larger commits put the rest in runs of their own. Taken from free space
/// down to half this size before the file grows for it.
const RESERVE_PAGES: u64 = 8;

/// Allocates pages for a commit, has them encoded in place in one buffer,
/// and writes them out sorted.
pub(crate) struct PageWriter<'a> {
    pub inner: &'a Inner,
    pub map: &'a Mapping,
    pub freelist: &'a mut Freelist,
    pub txid: u64,
    pub page_size: usize,
    pub high_water: u64,
    pub file_pages: u64,
    pub pages_written: u64,
    pub write_runs: u64,
    pub buf: Vec<u8>,
    /// (page id, offset in `buf`, span) of every buffered page span.
    spans: Vec<(u64, usize, u64)>,
    /// The previous commit's reservation after the record, handed out
    /// first (its leftover is freed by this commit, not returned), and how
    /// much of it is used; how much of it each group may still take.
    reserved: Extent,
    reserved_used: u64,
    quota: [u64; 2],
    /// Per group (`HOT`, `COLD`): runs taken from free space or the tail,
    /// handed out in order; index in `runs` and pages used of that run.
    runs: [Vec<Extent>; 2],
    run_at: [(usize, u64); 2],
}

impl<'a> PageWriter<'a> {
    pub fn new(
        inner: &'a Inner,
        map: &'a Mapping,
        freelist: &'a mut Freelist,
        buf: Vec<u8>,
        txid: u64,
        high_water: u64,
        file_pages: u64,
    ) -> Self {
        PageWriter {
            inner,
            map,
            freelist,
            txid,
            page_size: inner.page_size,
            high_water,
            file_pages,
            pages_written: 0,
            write_runs: 0,
            buf,
            spans: Vec::new(),
            reserved: Extent { start: 0, len: 0 },
            reserved_used: 0,
            quota: [0, 0],
            runs: [Vec::new(), Vec::new()],
            run_at: [(0, 0), (0, 0)],
        }
    }

    /// Plans the pages of this commit's single-page nodes: the reservation
    /// first (the pages after the record), shared by both groups; then, per
    /// group, as few runs of free space as possible, then the file's tail.
    pub fn plan(&mut self, reserved: Extent, nodes: [u64; 2]) -> Result<()> {
        self.reserved = reserved;
        self.reserved_used = 0;
        let hot_in_reserved = nodes[HOT].min(reserved.len);
        let cold_in_reserved = nodes[COLD].min(reserved.len - hot_in_reserved);
        self.quota = [hot_in_reserved, cold_in_reserved];
        // Short runs cost a write request each: they are used only once
        // free pages exceed the target share of the file, which holds the
        // file near `100 / (100 − target)` times its data.
        let free_pct = self.freelist.free_pages() * 100 / self.high_water.max(1);
        let target = self.inner.opts.free_space_target_percent as u64;
        let min_run = if free_pct <= target {
            RUN_PAGES_MIN
        } else if free_pct <= target + 10 {
            RUN_PAGES_MIN / 4
        } else {
            1
        };
        for group in [HOT, COLD] {
            self.runs[group].clear();
            self.run_at[group] = (0, 0);
            let mut left = nodes[group] - self.quota[group];
            left -= self
                .freelist
                .allocate_runs(left, min_run, &mut self.runs[group]);
            if left > 0 {
                let start = self.alloc_tail(left)?;
                self.runs[group].push(Extent { start, len: left });
            }
        }
        Ok(())
    }

    /// The next planned page of `group` (or, past the plan, any free page).
    fn alloc_node(&mut self, group: usize) -> Result<u64> {
        if self.quota[group] > 0 {
            self.quota[group] -= 1;
            let pgid = self.reserved.start + self.reserved_used;
            self.reserved_used += 1;
            return Ok(pgid);
        }
        let (i, used) = self.run_at[group];
        match self.runs[group].get(i) {
            Some(run) => {
                let pgid = run.start + used;
                self.run_at[group] = if used + 1 == run.len {
                    (i + 1, 0)
                } else {
                    (i, used + 1)
                };
                Ok(pgid)
            }
            None => {
                debug_assert!(false, "the plan counted every node");
                self.alloc(1)
            }
        }
    }

    /// Planned pages no node took: (the unused part of the reservation,
    /// pages taken from free space or the tail).
    fn unused(&mut self) -> (Option<Extent>, Vec<Extent>) {
        let mut rest: Vec<Extent> = Vec::new();
        for group in [HOT, COLD] {
            let (i, used) = self.run_at[group];
            for (j, run) in self.runs[group].iter().enumerate().skip(i) {
                let skip = if j == i { used } else { 0 };
                if run.len > skip {
                    rest.push(Extent {
                        start: run.start + skip,
                        len: run.len - skip,
                    });
                }
            }
            self.runs[group].clear();
        }
        let r = self.reserved;
        let reserved = (self.reserved_used < r.len).then(|| Extent {
            start: r.start + self.reserved_used,
            len: r.len - self.reserved_used,
        });
        (reserved, rest)
    }

    /// Reserves pages for the next commit's record and first data pages:
    /// `n` contiguous pages if free space has them, else the longest free
    /// extent of at least half that, else the file's tail.
    fn reserve(&mut self, n: u64) -> Result<Extent> {
        if let Some(e) = self.freelist.allocate_up_to(n, n / 2) {
            return Ok(e);
        }
        let start = self.alloc_tail(n)?;
        Ok(Extent { start, len: n })
    }

    fn alloc_tail(&mut self, n: u64) -> Result<u64> {
        let pgid = self.high_water;
        self.high_water += n;
        if self.high_water > self.file_pages {
            self.grow()?;
        }
        Ok(pgid)
    }

    pub fn alloc(&mut self, n: u64) -> Result<u64> {
        if let Some(pgid) = self.freelist.allocate(n) {
            return Ok(pgid);
        }
        self.alloc_tail(n)
    }

    fn grow(&mut self) -> Result<()> {
        let opts = &self.inner.opts;
        let ps = self.page_size as u64;
        let step = (self.file_pages * ps / 8)
            .clamp(opts.grow_step_min_bytes, opts.grow_step_max_bytes)
            / ps;
        let pages = self.high_water.max(self.file_pages + step.max(1));
        let file = &self.inner.file;
        allocate(file, self.file_pages * ps, (pages - self.file_pages) * ps)
            .map_err(|e| self.inner.io(e))?;
        self.file_pages = pages;
        Ok(())
    }

    /// A zeroed buffer for `span` pages at `pgid`, to be encoded in place
    /// and written by the next `flush`.
    pub fn page_buf(&mut self, pgid: u64, span: u64) -> Result<&mut [u8]> {
        if self.buf.len() >= BUFFER_BYTES_MAX {
            let written = self.flush()?;
            if self.inner.opts.sync != SyncMode::None {
                for (offset, len) in written {
                    start_writeback(&self.inner.file, offset, len).map_err(|e| self.inner.io(e))?;
                }
            }
        }
        let at = self.buf.len();
        self.buf.resize(at + span as usize * self.page_size, 0);
        self.spans.push((pgid, at, span));
        self.pages_written += span;
        Ok(&mut self.buf[at..])
    }

    /// Writes every buffered page, sorted, one pwritev per contiguous group;
    /// returns the byte ranges written, merged where contiguous.
    pub fn flush(&mut self) -> Result<Vec<(u64, u64)>> {
        self.spans.sort_unstable_by_key(|s| s.0);
        let ps = self.page_size;
        let mut written: Vec<(u64, u64)> = Vec::new();
        let mut i = 0;
        while i < self.spans.len() {
            let start = self.spans[i].0;
            let mut end = start + self.spans[i].2;
            let mut j = i + 1;
            while j < self.spans.len()
                && self.spans[j].0 == end
                && j - i < IOV_PER_WRITE_MAX
                && end - start < WRITE_PAGES_MAX
            {
                end += self.spans[j].2;
                j += 1;
            }
            if let Some(next) = self.spans.get(j) {
                assert!(
                    next.0 >= end,
                    "page {} allocated twice in one commit",
                    next.0
                );
            }
            let slices: Vec<&[u8]> = self.spans[i..j]
                .iter()
                .map(|&(_, at, span)| &self.buf[at..at + span as usize * ps])
                .collect();
            let (offset, len) = (start * ps as u64, (end - start) * ps as u64);
            pwritev_all(&self.inner.file, &slices, offset).map_err(|e| self.inner.io(e))?;
            match written.last_mut() {
                Some(last) if last.0 + last.1 == offset => last.1 += len,
                _ => written.push((offset, len)),
            }
            i = j;
        }
        // The page cache now holds exactly the bytes sealed above: readers
        // of this mapping need not hash them again (they still compare each
        // page's header with its link). No snapshot could reach these pages
        // before this commit publishes, so nobody relies on the old bits.
        for &(pgid, _, _) in &self.spans {
            self.map.mark_written(pgid);
        }
        self.buf.clear();
        self.spans.clear();
        self.write_runs += written.len() as u64;
        Ok(written)
    }

    /// Writes a dirty subtree, children first; returns the link to its root
    /// and whether the root is deep (links to further pages). `catalog`:
    /// the catalog's leaves are hot (rewritten by every commit).
    pub fn write_child(&mut self, child: Child, catalog: bool) -> Result<(PageRef, bool)> {
        let mut node = match child {
            // Only bucket and catalog roots arrive here clean; their deep
            // bit is never stored.
            Child::Clean(link) => return Ok((link, true)),
            Child::Dirty(node) => node,
        };
        match node.as_mut() {
            Node::Leaf(leaf) => leaf.write_big(|v| self.write_overflow(v))?,
            Node::Branch(branch) => {
                for e in branch.entries.iter_mut() {
                    if let Child::Dirty(_) = e.child {
                        let child =
                            std::mem::replace(&mut e.child, Child::Clean(PageRef::default()));
                        let (link, deep) = self.write_child(child, catalog)?;
                        e.child = Child::Clean(link);
                        e.deep = deep;
                    }
                }
            }
        }
        let deep = node.is_deep();
        let group = match node.as_ref() {
            Node::Leaf(_) if !catalog => COLD,
            _ => HOT,
        };
        let pgid = self.alloc_node(group)?;
        let txid = self.txid;
        let checksum = node.encode(self.page_buf(pgid, 1)?, pgid, txid);
        let link = PageRef {
            pgid,
            checksum,
            txid: self.txid,
        };
        Ok((link, deep))
    }

    fn write_overflow(&mut self, value: &[u8]) -> Result<PageRef> {
        let span = overflow_span(value.len(), self.page_size);
        let pgid = self.alloc(span)?;
        let txid = self.txid;
        let buf = self.page_buf(pgid, span)?;
        Header::write(buf, pgid, txid, KIND_OVERFLOW, 0, span as u32);
        buf[HEADER_LEN..HEADER_LEN + value.len()].copy_from_slice(value);
        let checksum = page::seal(buf);
        Ok(PageRef {
            pgid,
            checksum,
            txid: self.txid,
        })
    }
}

/// pwritev until every byte of `slices` is at `offset` onwards.
fn pwritev_all(file: &File, slices: &[&[u8]], mut offset: u64) -> std::io::Result<()> {
    let mut iov: Vec<libc::iovec> = slices
        .iter()
        .map(|s| libc::iovec {
            iov_base: s.as_ptr() as *mut libc::c_void,
            iov_len: s.len(),
        })
        .collect();
    let mut first = 0;
    while first < iov.len() {
        // SAFETY: every iovec points into a slice borrowed for this whole
        // call and not mutated meanwhile; the count matches the array; the
        // kernel only reads from them (pwritev).
        let n = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                iov[first..].as_ptr(),
                (iov.len() - first) as libc::c_int,
                offset as libc::off_t,
            )
        };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "pwritev wrote nothing",
            ));
        }
        offset += n as u64;
        let mut left = n as usize;
        while left > 0 {
            let v = &mut iov[first];
            if left >= v.iov_len {
                left -= v.iov_len;
                first += 1;
            } else {
                // SAFETY: advancing within the same slice, `left < iov_len`.
                v.iov_base = unsafe { (v.iov_base as *mut u8).add(left) } as *mut libc::c_void;
                v.iov_len -= left;
                left = 0;
            }
        }
    }
    Ok(())
}

/// Starts writeback of a written range without waiting for it (the commit's
/// fdatasync still makes it durable; this only lets the disk start early).
fn start_writeback(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    // SAFETY: sync_file_range on a descriptor we own; no memory is passed.
    let rc = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        // Not offered by every filesystem; the fdatasync does the work then.
        Some(libc::ENOSYS) | Some(libc::EINVAL) | Some(libc::ESPIPE) => Ok(()),
        _ => Err(err),
    }
}

/// Grows the file with allocated blocks where the filesystem supports it,
/// so later overwrites need no block allocation inside the commit's fsync.
fn allocate(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    // SAFETY: fallocate on a descriptor we own; no memory is passed.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            0,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => file.set_len(offset + len),
        _ => Err(err),
    }
}

/// Everything a commit needs from its transaction.
pub(crate) struct CommitInput {
    pub catalog: Child,
    /// Buckets changed by the transaction, with their (dirty) roots.
    pub buckets: Vec<(Vec<u8>, Child)>,
    pub freed: Vec<Extent>,
}

/// Pages of the dirty nodes under `child` by group (overflow spans not
/// counted), as `write_child` will allocate them.
fn dirty_nodes(child: &Child, catalog: bool, count: &mut [u64; 2]) {
    let Child::Dirty(node) = child else { return };
    match node.as_ref() {
        Node::Leaf(_) if !catalog => count[COLD] += 1,
        Node::Leaf(_) => count[HOT] += 1,
        Node::Branch(b) => {
            count[HOT] += 1;
            for e in &b.entries {
                dirty_nodes(&e.child, catalog, count);
            }
        }
    }
}

/// Writes the commit `txid` and publishes it. On error the caller poisons
/// the database: the in-memory allocator may disagree with the file.
pub(crate) fn commit(
    inner: &Inner,
    state: &mut WriterState,
    txid: u64,
    input: CommitInput,
) -> Result<CommitInfo> {
    let CommitInput {
        mut catalog,
        buckets,
        mut freed,
    } = input;
    let ps = inner.page_size;
    let sync = inner.opts.sync;
    let old = state.meta;
    assert_eq!(txid, old.txid + 1, "commits are consecutive");
    let map = state.map.clone();

    // Bucket roots go into the catalog first as placeholders of their final
    // size: the catalog's shape, and so the number of pages this commit
    // writes, is known before any page is allocated.
    for (name, _) in &buckets {
        let mut ctx = Ctx {
            map: &map,
            freed: &mut freed,
            page_size: ps,
        };
        let placeholder = Val::Inline(&[0u8; PAGE_REF_LEN]);
        tree::insert(&mut ctx, &mut catalog, name, placeholder)?;
    }
    let mut nodes = [0u64; 2];
    for (_, root) in &buckets {
        dirty_nodes(root, false, &mut nodes);
    }
    dirty_nodes(&catalog, true, &mut nodes);

    let buf = std::mem::take(&mut state.page_buf);
    let mut w = PageWriter::new(
        inner,
        &map,
        &mut state.freelist,
        buf,
        txid,
        old.high_water,
        state.file_pages,
    );
    // The record takes the first page of the previous commit's reservation;
    // the nodes follow it there, so a small commit is one contiguous write.
    let record = old.next;
    let reserved = Extent {
        start: old.next + 1,
        len: old.next_len as u64 - 1,
    };
    w.plan(reserved, nodes)?;
    for (name, root) in buckets {
        let (link, _) = w.write_child(root, false)?;
        let mut value = [0u8; PAGE_REF_LEN];
        link.encode(&mut value);
        let mut ctx = Ctx {
            map: &map,
            freed: &mut freed,
            page_size: ps,
        };
        // Replaces the placeholder in place: same size, no split.
        tree::insert(&mut ctx, &mut catalog, &name, Val::Inline(&value))?;
    }
    let (catalog, _) = w.write_child(catalog, true)?;
    let (unused_reserved, unused_taken) = w.unused();
    // Reserved by the previous commit: freed by this one like its other
    // pages. Taken from free space and not used: free as before.
    freed.extend(unused_reserved);
    for e in unused_taken {
        w.freelist.free(e);
    }
    let next = w.reserve(RESERVE_PAGES)?;
    let meta = Meta {
        page_size: ps as u32,
        txid,
        catalog,
        high_water: w.high_water,
        next: next.start,
        next_len: next.len as u32,
    };
    let prev = old.digest();
    let checkpoint =
        state.records.len() as u64 + 1 >= inner.opts.checkpoint_interval_commits as u64;

    let io = |e| inner.io(e);
    let mut fsyncs = 0;
    if sync == SyncMode::Double {
        // bbolt's order: the pages are durable before the record names them.
        w.flush()?;
        inner.file.sync_data().map_err(io)?;
        fsyncs += 1;
    }
    meta.encode_into(w.page_buf(record, 1)?, KIND_COMMIT, record, prev);
    w.flush()?;
    let mut pages_written = w.pages_written;
    let mut write_runs = w.write_runs;
    let mut buf = std::mem::take(&mut w.buf);
    if buf.capacity() > 4 * BUFFER_BYTES_MAX {
        buf = Vec::new();
    }
    let file_pages = w.file_pages;
    drop(w);
    let meta_slot = 1 - state.meta_slot;
    if checkpoint {
        inner
            .file
            .write_all_at(&meta.encode(ps, meta_slot), meta_slot * ps as u64)
            .map_err(io)?;
        pages_written += 1;
        write_runs += 1;
    }
    if sync != SyncMode::None {
        inner.file.sync_data().map_err(io)?;
        fsyncs += 1;
    }

    state.page_buf = buf;
    if checkpoint {
        // Open now starts at this checkpoint: the records before it, and
        // this commit's own, are no longer followed.
        freed.extend(
            state
                .records
                .drain(..)
                .map(|start| Extent { start, len: 1 }),
        );
        freed.push(Extent {
            start: record,
            len: 1,
        });
        state.meta_slot = meta_slot;
    } else {
        state.records.push(record);
    }
    let pages_freed = freed.iter().map(|e| e.len).sum();
    state.pending.insert(txid, freed);
    state.meta = meta;
    if file_pages != state.map.pages() {
        state.file_pages = file_pages;
        state.map = Arc::new(Mapping::new(
            &inner.file,
            file_pages * ps as u64,
            ps,
            &inner.path,
        )?);
    }
    inner.publish(Snapshot {
        meta,
        map: state.map.clone(),
        commit_pages: Arc::new(db::commit_pages(&state.records, &meta)),
    });
    Ok(CommitInfo {
        txid,
        pages_written,
        write_runs,
        pages_freed,
        fsyncs,
    })
}
