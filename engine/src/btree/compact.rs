//! Defragmentation into a fresh file, and streaming a snapshot as a file
//! (what raft sends to a follower that is too far behind).

use super::db::Db;
use super::error::{Error, Result};
use super::freelist::Freelist;
use super::options::{Options, SyncMode};
use super::space;
use super::tx::ReadTx;
use std::io::Write;
use std::path::Path;

/// Keys copied per transaction while compacting: bounds the memory of the
/// dirty tree without making commits (unsynced here) pointlessly small.
const COMPACT_BATCH_KEYS: usize = 100_000;

#[derive(Clone, Debug, Default)]
pub struct CompactInfo {
    pub buckets: u64,
    pub keys: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl Db {
    /// Copies the latest commit into a new file at `path`, keys in order so
    /// pages come out full and contiguous. `path` must not exist.
    pub fn compact_into(&self, path: impl AsRef<Path>) -> Result<CompactInfo> {
        let path = path.as_ref();
        if path.exists() {
            return Err(Error::InvalidOptions(format!(
                "compaction target {} already exists",
                path.display()
            )));
        }
        let rx = self.begin_read()?;
        let opts = Options {
            page_size: self.page_size(),
            sync: SyncMode::None,
            ..self.options().clone()
        };
        let dst = Db::open(path, opts)?;
        let mut info = CompactInfo {
            bytes_before: self.file_size_bytes()?,
            ..CompactInfo::default()
        };
        for name in rx.buckets()? {
            info.buckets += 1;
            let mut tx = dst.begin_write()?;
            tx.create_bucket(&name)?;
            let bucket = rx.bucket(&name)?;
            let mut cursor = bucket.cursor();
            let mut entry = cursor.first()?;
            let mut in_batch = 0;
            while let Some((k, v)) = entry {
                tx.put(&name, k, v)?;
                info.keys += 1;
                in_batch += 1;
                if in_batch == COMPACT_BATCH_KEYS {
                    tx.commit()?;
                    tx = dst.begin_write()?;
                    in_batch = 0;
                }
                entry = cursor.next()?;
            }
            tx.commit()?;
        }
        dst.sync()?;
        info.bytes_after = dst.file_size_bytes()?;
        Ok(info)
    }
}

impl ReadTx {
    /// Writes this snapshot as a complete B+tree file to `out` and returns
    /// the bytes written. Pages that are not part of the snapshot's trees
    /// are written as zeros (the writer may be reusing them). The result
    /// opens at this txid.
    pub fn write_to(&self, out: &mut dyn Write) -> Result<u64> {
        let snap = self.snapshot();
        let meta = snap.meta;
        let ps = meta.page_size as usize;
        let io = |source| Error::Io {
            path: "<snapshot stream>".into(),
            source,
        };
        // Tree pages only: commit records and the reservation are not
        // data; in the copy the snapshot's commit point is a checkpoint (in
        // both meta pages) and its reservation holds zeros, so open finds
        // no record after it.
        let used = space::reachable(&snap.map, &meta, &[])?;
        let free = Freelist::from_unused(&used, meta.high_water);
        for slot in [0, 1] {
            out.write_all(&meta.encode(ps, slot)).map_err(io)?;
        }
        let zeros = vec![0u8; ps];
        let mut pgid = 2;
        let mut extents = free.extents().peekable();
        while pgid < meta.high_water {
            if let Some(e) = extents.peek().copied() {
                if e.start <= pgid {
                    for _ in pgid..e.end() {
                        out.write_all(&zeros).map_err(io)?;
                    }
                    pgid = e.end();
                    extents.next();
                    continue;
                }
            }
            let until = extents.peek().map_or(meta.high_water, |e| e.start);
            out.write_all(snap.map.raw(pgid, until - pgid)?)
                .map_err(io)?;
            pgid = until;
        }
        Ok(meta.high_water * ps as u64)
    }
}
