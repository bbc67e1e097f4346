//! The database handle: open (create or recover), the reader registry, and
//! the hand-off of snapshots from the writer to new readers.

use super::commit::WriterState;
use super::error::{Error, Result};
use super::freelist::Freelist;
use super::mapping::Mapping;
use super::meta::Meta;
use super::node::{LeafVal, Node};
use super::options::MAX_PAGE_SIZE;
use super::options::{valid_page_size, Options};
use super::page::PageRef;
use super::space;
use super::tree::MAX_DEPTH;
use super::tx::{ReadTx, WriteTx};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A committed tree and the mapping to read it through.
pub(crate) struct Snapshot {
    pub meta: Meta,
    pub map: Arc<Mapping>,
}

pub(crate) struct Shared {
    pub current: Arc<Snapshot>,
    /// Open read transactions by snapshot txid: pages freed by commit `t`
    /// are reused only when no reader holds a snapshot older than `t`.
    pub readers: BTreeMap<u64, usize>,
}

pub(crate) struct Inner {
    pub path: PathBuf,
    pub file: File,
    pub opts: Options,
    pub page_size: usize,
    pub writer: Arc<Mutex<WriterState>>,
    pub shared: Mutex<Shared>,
    pub poisoned: Mutex<Option<String>>,
}

impl Inner {
    pub fn io(&self, source: std::io::Error) -> Error {
        Error::Io {
            path: self.path.clone(),
            source,
        }
    }

    pub fn check_poisoned(&self) -> Result<()> {
        match &*self.poisoned.lock() {
            Some(why) => Err(Error::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    pub fn poison(&self, why: &Error) {
        let mut p = self.poisoned.lock();
        if p.is_none() {
            tracing::error!(path = %self.path.display(), error = %why, "commit failed; refusing further writes");
            *p = Some(why.to_string());
        }
    }

    pub fn oldest_reader(&self) -> Option<u64> {
        self.shared.lock().readers.keys().next().copied()
    }

    pub fn publish(&self, snapshot: Snapshot) {
        self.shared.lock().current = Arc::new(snapshot);
    }
}

/// A B+tree file. Cheap to clone; all clones share one file and one writer.
#[derive(Clone)]
pub struct Db {
    pub(crate) inner: Arc<Inner>,
}

/// What open found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Txid of the commit the file was opened at.
    pub txid: u64,
    /// A newer commit was found torn or unsynced and skipped; says why.
    pub skipped_newer: Option<String>,
    /// The walk that rebuilds free space at open met a damaged page (named
    /// here); the file then reuses no free page until it is compacted.
    pub free_space_unknown: Option<String>,
}

impl Db {
    /// Opens the file at `path`, creating it if missing. An existing file is
    /// opened at its newest intact commit.
    pub fn open(path: impl AsRef<Path>, opts: Options) -> Result<Db> {
        opts.validate()?;
        let path = path.as_ref().to_path_buf();
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        lock_exclusive(&file).map_err(io)?;
        if file.metadata().map_err(io)?.len() == 0 {
            initialize(&file, &opts, &path)?;
        }
        let (meta, map, recovery) = recover(&file, &opts, &path)?;
        // The commit we recovered to may exist only in the page cache (the
        // previous process died before its fsync). Make it durable before a
        // new commit overwrites pages its predecessor still uses.
        file.sync_data().map_err(io)?;
        if let Some(why) = &recovery.skipped_newer {
            tracing::warn!(path = %path.display(), txid = meta.txid, %why, "skipped a torn commit");
        }
        let page_size = meta.page_size as usize;
        let mut recovery = recovery;
        let freelist = match space::reachable(&map, &meta) {
            Ok(used) => Freelist::from_unused(&used, meta.high_water),
            Err(e) => {
                // Never guess: with the reachable set unknown, no page below
                // the high-water mark is reused (the file grows instead),
                // reads of the damaged page report it, and `check` lists it.
                tracing::error!(path = %path.display(), error = %e, "free space not rebuilt; only new pages will be allocated");
                recovery.free_space_unknown = Some(e.to_string());
                Freelist::default()
            }
        };
        let map = Arc::new(map);
        let writer = WriterState::new(meta, freelist, map.clone(), recovery);
        let inner = Inner {
            path,
            file,
            opts: Options { page_size, ..opts },
            page_size,
            writer: Arc::new(Mutex::new(writer)),
            shared: Mutex::new(Shared {
                current: Arc::new(Snapshot { meta, map }),
                readers: BTreeMap::new(),
            }),
            poisoned: Mutex::new(None),
        };
        Ok(Db {
            inner: Arc::new(inner),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn page_size(&self) -> usize {
        self.inner.page_size
    }

    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    /// What open found (the commit used, and any newer torn commit skipped).
    pub fn recovery(&self) -> Recovery {
        self.inner.writer.lock().recovery.clone()
    }

    /// A read transaction on the latest commit. Never waits for the writer.
    pub fn begin_read(&self) -> Result<ReadTx> {
        let snap = {
            let mut shared = self.inner.shared.lock();
            let snap = shared.current.clone();
            *shared.readers.entry(snap.meta.txid).or_default() += 1;
            snap
        };
        Ok(ReadTx::new(self.inner.clone(), snap))
    }

    /// The write transaction; waits while another one is open.
    pub fn begin_write(&self) -> Result<WriteTx> {
        self.inner.check_poisoned()?;
        let state = self.inner.writer.lock_arc();
        self.inner.check_poisoned()?;
        Ok(WriteTx::new(self.inner.clone(), state))
    }

    /// Makes every commit so far durable (after commits in `SyncMode::None`).
    pub fn sync(&self) -> Result<()> {
        self.inner.file.sync_data().map_err(|e| self.inner.io(e))
    }

    /// File size in bytes (including preallocated, unused tail pages).
    pub fn file_size_bytes(&self) -> Result<u64> {
        Ok(self
            .inner
            .file
            .metadata()
            .map_err(|e| self.inner.io(e))?
            .len())
    }
}

fn lock_exclusive(file: &File) -> std::io::Result<()> {
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.kind() == std::io::ErrorKind::WouldBlock {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            "the file is open in another process (flock held)",
        ));
    }
    Err(err)
}

/// Writes a new file: an empty catalog leaf at page 2 and both meta pages.
fn initialize(file: &File, opts: &Options, path: &Path) -> Result<()> {
    let ps = opts.page_size;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let pages = (opts.initial_size_bytes / ps as u64).max(4);
    file.set_len(pages * ps as u64).map_err(io)?;
    let mut leaf = vec![0u8; ps];
    let sum = Node::empty_leaf().encode(&mut leaf, 2, 1);
    file.write_all_at(&leaf, 2 * ps as u64).map_err(io)?;
    for txid in [0u64, 1] {
        let meta = Meta {
            page_size: ps as u32,
            txid,
            catalog: PageRef {
                pgid: 2,
                checksum: sum,
                txid: 1,
            },
            high_water: 3,
        };
        file.write_all_at(&meta.encode(ps), txid * ps as u64)
            .map_err(io)?;
    }
    file.sync_all().map_err(io)?;
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

/// Reads both metas, newest first, and returns the newest whose commit is
/// intact: every page that commit wrote (the pages whose link carries its
/// txid) hashes to the checksum its parent recorded.
fn recover(file: &File, opts: &Options, path: &Path) -> Result<(Meta, Mapping, Recovery)> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = file.metadata().map_err(io)?.len();
    // Reads up to the largest page size; Meta::decode takes what it needs.
    let read = |at: u64| -> Vec<u8> {
        let mut buf = vec![0u8; MAX_PAGE_SIZE.min(len.saturating_sub(at) as usize)];
        match file.read_exact_at(&mut buf, at) {
            Ok(()) => buf,
            Err(_) => Vec::new(),
        }
    };
    let m0 = Meta::decode(&read(0), 0, path);
    let mut sizes = vec![opts.page_size];
    if let Ok(m) = &m0 {
        sizes.insert(0, m.page_size as usize);
    }
    sizes.extend((10..=15).map(|s| 1usize << s));
    let mut m1 = Err(Error::corrupt(1, "meta page 1 not found"));
    for ps in sizes {
        if !valid_page_size(ps) {
            continue;
        }
        m1 = Meta::decode(&read(ps as u64), 1, path);
        if matches!(&m1, Ok(m) if m.page_size as usize == ps) {
            break;
        }
    }
    let mut candidates: Vec<Meta> = [&m0, &m1]
        .into_iter()
        .filter_map(|m| m.as_ref().ok().copied())
        .collect();
    candidates.sort_by_key(|m| std::cmp::Reverse(m.txid));
    if candidates.is_empty() {
        return Err(match (m0, m1) {
            (
                Err(e @ Error::NotABtree { .. }),
                Err(Error::NotABtree { .. }) | Err(Error::Corrupt { .. }),
            ) => e,
            (Err(e @ Error::UnsupportedVersion { .. }), _)
            | (_, Err(e @ Error::UnsupportedVersion { .. })) => e,
            (a, b) => Error::NoValidMeta {
                meta0: a.err().map(|e| e.to_string()).unwrap_or_default(),
                meta1: b.err().map(|e| e.to_string()).unwrap_or_default(),
            },
        });
    }
    let mut skipped: Option<String> = None;
    let mut last_err = None;
    for meta in candidates {
        let ps = meta.page_size as usize;
        let map = Mapping::new(file, len / ps as u64 * ps as u64, ps, path)?;
        match verify_commit(&map, &meta) {
            Ok(()) => {
                return Ok((
                    meta,
                    map,
                    Recovery {
                        txid: meta.txid,
                        skipped_newer: skipped,
                        free_space_unknown: None,
                    },
                ))
            }
            Err(e) => {
                let why = format!("commit {} is incomplete: {e}", meta.txid);
                skipped.get_or_insert(why);
                last_err = Some(e);
            }
        }
    }
    Err(last_err.expect("at least one candidate failed"))
}

/// Verifies the pages written by `meta`'s commit, reached through links that
/// carry its txid. Pages of older commits were verified when those commits
/// were recovered or are verified on first read.
pub(crate) fn verify_commit(map: &Mapping, meta: &Meta) -> Result<()> {
    if meta.high_water > map.pages() {
        return Err(Error::corrupt(
            0,
            format!(
                "commit {} uses {} pages but the file has {}",
                meta.txid,
                meta.high_water,
                map.pages()
            ),
        ));
    }
    verify_links(map, &meta.catalog, meta.txid, true, 0)
}

fn verify_links(
    map: &Mapping,
    link: &PageRef,
    txid: u64,
    catalog: bool,
    depth: usize,
) -> Result<()> {
    if link.txid > txid {
        return Err(Error::corrupt(
            link.pgid,
            format!("linked from commit {txid} with a later txid {}", link.txid),
        ));
    }
    if link.txid != txid {
        return Ok(());
    }
    if depth > MAX_DEPTH {
        return Err(Error::corrupt(
            link.pgid,
            "tree deeper than any valid tree (cycle?)",
        ));
    }
    let view = map.node(link)?;
    for i in 0..view.count() {
        if !view.is_leaf() {
            let (_, child, _) = view.branch_entry(i)?;
            verify_links(map, &child, txid, catalog, depth + 1)?;
            continue;
        }
        match view.leaf_entry(i)?.1 {
            LeafVal::Inline(v) if catalog => {
                let root = bucket_link(v, link.pgid)?;
                verify_links(map, &root, txid, false, 0)?;
            }
            LeafVal::Overflow { link: o, len } if o.txid == txid => {
                map.overflow(&o, len)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Decodes a catalog value (a bucket's root link).
pub(crate) fn bucket_link(value: &[u8], pgid: u64) -> Result<PageRef> {
    if value.len() != super::page::PAGE_REF_LEN {
        return Err(Error::corrupt(
            pgid,
            format!("catalog value of {} bytes", value.len()),
        ));
    }
    Ok(PageRef::decode(value).expect("length checked"))
}
