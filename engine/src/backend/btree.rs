//! The own B+tree behind the backend trait.

use super::{Backend, BackendKind, Durability, Error, ReadSnapshot, Result, UpdateFn, WriteBatch};
use crate::btree::{self, BucketRoot, Db, Options, ReadTx, SyncMode, WriteTx};
use std::cell::RefCell;
use std::io::Write;
use std::ops::Bound;
use std::path::Path;

pub struct BtreeBackend {
    db: Db,
}

impl BtreeBackend {
    pub fn open(path: &Path, durability: Durability) -> Result<Self> {
        let sync = match durability {
            Durability::Durable => SyncMode::Single,
            Durability::DurableTwoFsync => SyncMode::Double,
            Durability::NoSync => SyncMode::None,
        };
        let db = Db::open(
            path,
            Options {
                sync,
                ..Options::default()
            },
        )?;
        Ok(BtreeBackend { db })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}

fn bucket_err(e: btree::Error) -> Error {
    match e {
        btree::Error::BucketNotFound(name) => Error::BucketNotFound(name),
        other => Error::Btree(other),
    }
}

/// A read transaction with its buckets' roots resolved once (as redb's
/// opened tables and LMDB's database handles are).
struct Snapshot {
    tx: ReadTx,
    roots: RefCell<Vec<(String, BucketRoot)>>,
}

impl Snapshot {
    fn bucket(&self, name: &str) -> Result<btree::Bucket<'_>> {
        let cached = self
            .roots
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| *r);
        let root = match cached {
            Some(root) => root,
            None => {
                let root = self.tx.bucket_root(name.as_bytes()).map_err(bucket_err)?;
                self.roots.borrow_mut().push((name.to_string(), root));
                root
            }
        };
        Ok(self.tx.bucket_at(root)?)
    }
}

impl ReadSnapshot for Snapshot {
    fn get(&self, bucket: &str, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<bool> {
        match self.bucket(bucket)?.get(key)? {
            Some(v) => {
                f(v);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn range(
        &self,
        bucket: &str,
        start: &[u8],
        end: Option<&[u8]>,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let b = self.bucket(bucket)?;
        let end = end.map_or(Bound::Unbounded, Bound::Excluded);
        for entry in b.range(Bound::Included(start), end) {
            let (k, v) = entry?;
            if !f(k, v) {
                break;
            }
        }
        Ok(())
    }
}

struct Batch<'a>(&'a mut WriteTx);

impl WriteBatch for Batch<'_> {
    fn create_bucket(&mut self, bucket: &str) -> Result<()> {
        self.0.create_bucket(bucket.as_bytes())?;
        Ok(())
    }

    fn put(&mut self, bucket: &str, key: &[u8], value: &[u8]) -> Result<()> {
        self.0
            .put(bucket.as_bytes(), key, value)
            .map_err(bucket_err)
    }

    fn delete(&mut self, bucket: &str, key: &[u8]) -> Result<bool> {
        self.0.delete(bucket.as_bytes(), key).map_err(bucket_err)
    }
}

impl Backend for BtreeBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Btree
    }

    fn read(&self) -> Result<Box<dyn ReadSnapshot>> {
        Ok(Box::new(Snapshot {
            tx: self.db.begin_read()?,
            roots: RefCell::new(Vec::new()),
        }))
    }

    fn update(&self, f: &mut UpdateFn<'_>) -> Result<()> {
        let mut tx = self.db.begin_write()?;
        f(&mut Batch(&mut tx))?;
        tx.commit()?;
        Ok(())
    }

    fn size_bytes(&self) -> Result<u64> {
        Ok(self.db.file_size_bytes()?)
    }

    fn snapshot_to(&self, out: &mut dyn Write) -> Result<u64> {
        Ok(self.db.begin_read()?.write_to(out)?)
    }

    fn compact_into(&self, path: &Path) -> Result<u64> {
        Ok(self.db.compact_into(path)?.bytes_after)
    }
}
