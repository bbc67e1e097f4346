//! The database handle: open (create or recover), the reader registry, and
//! the hand-off of snapshots from the writer to new readers.

use super::commit::WriterState;
use super::error::{Error, Result};
use super::freelist::{Extent, Freelist};
use super::mapping::Mapping;
use super::meta::Meta;
use super::node::Node;
use super::options::Options;
use super::page::PageRef;
use super::recovery::{recover, Recovered, Recovery};
use super::space;
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
    /// Pages the commit chain holds in this commit: the records since the
    /// last checkpoint and the reservation for the next commit.
    pub commit_pages: Arc<Vec<Extent>>,
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
        let len = file.metadata().map_err(io)?.len();
        if len == 0 {
            initialize(&file, &opts, &path)?;
        } else if interrupted_initialization(&file, &opts, len).map_err(io)? {
            tracing::warn!(path = %path.display(), "B+tree file creation was interrupted; creating it again");
            initialize(&file, &opts, &path)?;
        }
        let Recovered {
            meta,
            map,
            mut recovery,
            meta_slot,
            records,
        } = recover(&file, &opts, &path)?;
        // The commit we recovered to may exist only in the page cache (the
        // previous process died before its fsync). Make it durable before a
        // new commit overwrites pages its predecessor still uses.
        file.sync_data().map_err(io)?;
        if let Some(why) = &recovery.skipped_newer {
            tracing::warn!(path = %path.display(), txid = meta.txid, %why, "skipped a torn commit");
        }
        let page_size = meta.page_size as usize;
        let commit_pages = Arc::new(commit_pages(&records, &meta));
        let freelist = match space::reachable(&map, &meta, &commit_pages) {
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
        let writer = WriterState::new(meta, freelist, map.clone(), recovery, meta_slot, records);
        let inner = Inner {
            path,
            file,
            opts: Options { page_size, ..opts },
            page_size,
            writer: Arc::new(Mutex::new(writer)),
            shared: Mutex::new(Shared {
                current: Arc::new(Snapshot {
                    meta,
                    map,
                    commit_pages,
                }),
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

/// The pages a commit chain holds: `records` (one page each) and the
/// reservation `meta` makes for the next commit.
pub(crate) fn commit_pages(records: &[u64], meta: &Meta) -> Vec<Extent> {
    let mut pages: Vec<Extent> = records
        .iter()
        .map(|&start| Extent { start, len: 1 })
        .collect();
    pages.push(Extent {
        start: meta.next,
        len: meta.next_len as u64,
    });
    pages
}

/// Pages reserved for the first commit of a new file.
const FIRST_RESERVATION_PAGES: u32 = 8;

/// Writes a new file: an empty catalog leaf at page 2, a reservation for
/// the first commit after it, and the same commit point in both meta pages.
fn initialize(file: &File, opts: &Options, path: &Path) -> Result<()> {
    let ps = opts.page_size;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let high_water = 3 + FIRST_RESERVATION_PAGES as u64;
    let pages = (opts.initial_size_bytes / ps as u64).max(high_water);
    file.set_len(pages * ps as u64).map_err(io)?;
    let mut leaf = vec![0u8; ps];
    let sum = Node::empty_leaf().encode(&mut leaf, 2, 1);
    file.write_all_at(&leaf, 2 * ps as u64).map_err(io)?;
    let meta = Meta {
        page_size: ps as u32,
        txid: 1,
        catalog: PageRef {
            pgid: 2,
            checksum: sum,
            txid: 1,
        },
        high_water,
        next: 3,
        next_len: FIRST_RESERVATION_PAGES,
    };
    for slot in [0u64, 1] {
        file.write_all_at(&meta.encode(ps, slot), slot * ps as u64)
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

/// Whether the file is what a process killed inside `initialize` leaves:
/// sized, but neither meta page written, so zeros everywhere except perhaps
/// the empty catalog leaf at page 2 (written first). Such a file never held
/// a commit and is created again. Anything else with two blank meta pages
/// (a used file whose meta pages were destroyed) stays an error.
fn interrupted_initialization(file: &File, opts: &Options, len: u64) -> std::io::Result<bool> {
    let ps = opts.page_size as u64;
    if !len.is_multiple_of(ps) || len < 2 * ps {
        return Ok(false);
    }
    let mut leaf = vec![0u8; ps as usize];
    Node::empty_leaf().encode(&mut leaf, 2, 1);
    let mut buf = vec![0u8; ps as usize];
    for pgid in 0..len / ps {
        file.read_exact_at(&mut buf, pgid * ps)?;
        let blank = buf.iter().all(|&b| b == 0);
        if !(blank || (pgid == 2 && buf == leaf)) {
            return Ok(false);
        }
    }
    Ok(true)
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
