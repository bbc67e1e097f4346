//! The storage interface the MVCC store writes through, and its
//! implementations: the own B+tree (default) and, for comparison, redb and
//! LMDB (heed). `ferrokv --backend btree|redb|lmdb` picks one, so a campaign
//! compares storage engines end to end and not only in micro-benchmarks.
//!
//! Reads hand borrowed slices to a callback (zero-copy on every engine);
//! writes happen inside `update`, one transaction per call, which is the
//! shape of etcd's batch tx: the MVCC layer buffers and flushes in batches.

mod btree;
mod lmdb;
mod redb;

use std::io::Write;
use std::path::Path;
use std::str::FromStr;

pub use self::btree::BtreeBackend;
pub use self::lmdb::LmdbBackend;
pub use self::redb::RedbBackend;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Btree(#[from] crate::btree::Error),
    #[error("redb: {0}")]
    Redb(String),
    #[error("lmdb: {0}")]
    Lmdb(#[from] heed::Error),
    #[error("bucket {0:?} not found")]
    BucketNotFound(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0} is not supported by the {1} backend")]
    Unsupported(&'static str, &'static str),
    #[error("unknown backend {0:?} (expected btree, redb or lmdb)")]
    UnknownBackend(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    Btree,
    Redb,
    Lmdb,
}

impl BackendKind {
    pub const ALL: [BackendKind; 3] = [BackendKind::Btree, BackendKind::Redb, BackendKind::Lmdb];

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Btree => "btree",
            BackendKind::Redb => "redb",
            BackendKind::Lmdb => "lmdb",
        }
    }
}

impl FromStr for BackendKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "btree" => Ok(BackendKind::Btree),
            "redb" => Ok(BackendKind::Redb),
            "lmdb" => Ok(BackendKind::Lmdb),
            other => Err(Error::UnknownBackend(other.to_string())),
        }
    }
}

/// How commits reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Each commit is durable when `update` returns.
    Durable,
    /// The own B+tree's bbolt-style two-fsync commit (others: `Durable`).
    DurableTwoFsync,
    /// No fsync per commit (bulk loads; the WAL provides durability).
    NoSync,
}

/// A consistent view of one commit, usable from another thread.
pub trait ReadSnapshot: Send {
    /// Calls `f` with the value of `key` if present; returns whether it was.
    fn get(&self, bucket: &str, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<bool>;

    /// Calls `f` for each entry with `start ≤ key < end` (`end` None: to the
    /// end of the bucket) in key order, until `f` returns false.
    fn range(
        &self,
        bucket: &str,
        start: &[u8],
        end: Option<&[u8]>,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()>;

    /// Copies the value out (convenience over `get`).
    fn get_owned(&self, bucket: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut out = None;
        self.get(bucket, key, &mut |v| out = Some(v.to_vec()))?;
        Ok(out)
    }
}

/// The changes of one `update` call.
pub trait WriteBatch {
    /// Creates the bucket if it does not exist.
    fn create_bucket(&mut self, bucket: &str) -> Result<()>;
    fn put(&mut self, bucket: &str, key: &[u8], value: &[u8]) -> Result<()>;
    /// Returns whether the key existed.
    fn delete(&mut self, bucket: &str, key: &[u8]) -> Result<bool>;
}

pub type UpdateFn<'a> = dyn FnMut(&mut dyn WriteBatch) -> Result<()> + 'a;

pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;

    /// A snapshot of the latest commit.
    fn read(&self) -> Result<Box<dyn ReadSnapshot>>;

    /// Runs `f` in one write transaction and commits it; an error from `f`
    /// rolls everything back.
    fn update(&self, f: &mut UpdateFn<'_>) -> Result<()>;

    /// Bytes the engine occupies on disk.
    fn size_bytes(&self) -> Result<u64>;

    /// Streams a consistent copy of the database that the same backend can
    /// open as a file (what raft sends to a follower far behind). Returns the
    /// bytes written.
    fn snapshot_to(&self, out: &mut dyn Write) -> Result<u64>;

    /// Writes a defragmented copy of the latest commit to a new file at
    /// `path` that the same backend opens (etcd's defrag). Returns the
    /// copy's size in bytes.
    fn compact_into(&self, _path: &Path) -> Result<u64> {
        Err(Error::Unsupported("defragmentation", self.kind().name()))
    }
}

/// Opens (or creates) a backend at `path`: a file for btree and redb, a
/// directory for LMDB.
pub fn open(kind: BackendKind, path: &Path, durability: Durability) -> Result<Box<dyn Backend>> {
    Ok(match kind {
        BackendKind::Btree => Box::new(BtreeBackend::open(path, durability)?),
        BackendKind::Redb => Box::new(RedbBackend::open(path, durability)?),
        BackendKind::Lmdb => Box::new(LmdbBackend::open(path, durability)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same sequence against every backend gives the same answers.
    #[test]
    fn every_backend_behaves_alike() {
        for kind in BackendKind::ALL {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(kind.name());
            let be = open(kind, &path, Durability::NoSync).unwrap();
            be.update(&mut |w| {
                w.create_bucket("b")?;
                for i in 0u32..2000 {
                    w.put(
                        "b",
                        &i.to_be_bytes(),
                        &vec![i as u8; (i % 50) as usize * 100],
                    )?;
                }
                assert!(w.delete("b", &7u32.to_be_bytes())?);
                assert!(!w.delete("b", &7u32.to_be_bytes())?);
                Ok(())
            })
            .unwrap();
            let snap = be.read().unwrap();
            // A failed update rolls back and leaves the snapshot alone.
            let failed = be.update(&mut |w| {
                w.put("b", &1u32.to_be_bytes(), b"changed")?;
                Err(Error::Unsupported("test", "test"))
            });
            assert!(failed.is_err());
            assert_eq!(
                snap.get_owned("b", &7u32.to_be_bytes()).unwrap(),
                None,
                "{kind:?}"
            );
            assert_eq!(
                snap.get_owned("b", &9u32.to_be_bytes()).unwrap(),
                Some(vec![9u8; 900]),
                "{kind:?}"
            );
            let mut keys = Vec::new();
            snap.range(
                "b",
                &100u32.to_be_bytes(),
                Some(&110u32.to_be_bytes()),
                &mut |k, _| {
                    keys.push(u32::from_be_bytes(k.try_into().unwrap()));
                    keys.len() < 5
                },
            )
            .unwrap();
            assert_eq!(keys, vec![100, 101, 102, 103, 104], "{kind:?}");
            let mut n = 0;
            snap.range("b", &[], None, &mut |_, _| {
                n += 1;
                true
            })
            .unwrap();
            assert_eq!(n, 1999, "{kind:?}");
            assert_eq!(
                be.read()
                    .unwrap()
                    .get_owned("b", &1u32.to_be_bytes())
                    .unwrap(),
                Some(vec![1u8; 100])
            );
            assert!(
                matches!(
                    snap.get("missing", b"k", &mut |_| {}),
                    Err(Error::BucketNotFound(_))
                ),
                "{kind:?}"
            );
            assert!(be.size_bytes().unwrap() > 0);
        }
    }

    #[test]
    fn btree_snapshot_stream_opens_as_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let be = open(
            BackendKind::Btree,
            &dir.path().join("db"),
            Durability::Durable,
        )
        .unwrap();
        be.update(&mut |w| {
            w.create_bucket("b")?;
            w.put("b", b"k", b"v")
        })
        .unwrap();
        let mut out = Vec::new();
        let n = be.snapshot_to(&mut out).unwrap();
        assert_eq!(n as usize, out.len());
        std::fs::write(dir.path().join("copy"), &out).unwrap();
        let copy = open(
            BackendKind::Btree,
            &dir.path().join("copy"),
            Durability::Durable,
        )
        .unwrap();
        assert_eq!(
            copy.read().unwrap().get_owned("b", b"k").unwrap(),
            Some(b"v".to_vec())
        );
    }
}
