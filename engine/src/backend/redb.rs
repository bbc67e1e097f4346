//! redb behind the backend trait (comparison engine). Buckets are tables of
//! byte keys and byte values.

use super::{Backend, BackendKind, Durability, Error, ReadSnapshot, Result, UpdateFn, WriteBatch};
use redb::{ReadableDatabase, TableDefinition, TableError};
use std::collections::HashMap;
use std::io::Write;
use std::ops::Bound;
use std::path::{Path, PathBuf};

type Table<'a> = TableDefinition<'a, &'static [u8], &'static [u8]>;

fn err(e: impl std::fmt::Display) -> Error {
    Error::Redb(e.to_string())
}

fn table_err(bucket: &str, e: TableError) -> Error {
    match e {
        TableError::TableDoesNotExist(_) => Error::BucketNotFound(bucket.to_string()),
        other => err(other),
    }
}

pub struct RedbBackend {
    db: redb::Database,
    path: PathBuf,
    durability: Durability,
}

impl RedbBackend {
    pub fn open(path: &Path, durability: Durability) -> Result<Self> {
        let db = redb::Database::create(path).map_err(err)?;
        Ok(RedbBackend {
            db,
            path: path.to_path_buf(),
            durability,
        })
    }
}

type ReadTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

struct Snapshot {
    tx: redb::ReadTransaction,
    tables: parking_lot::Mutex<HashMap<String, ReadTable>>,
}

impl Snapshot {
    fn with_table<R>(&self, bucket: &str, f: impl FnOnce(&ReadTable) -> Result<R>) -> Result<R> {
        let mut tables = self.tables.lock();
        if !tables.contains_key(bucket) {
            let t = self
                .tx
                .open_table(Table::new(bucket))
                .map_err(|e| table_err(bucket, e))?;
            tables.insert(bucket.to_string(), t);
        }
        f(&tables[bucket])
    }
}

impl ReadSnapshot for Snapshot {
    fn get(&self, bucket: &str, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<bool> {
        self.with_table(bucket, |t| match t.get(key).map_err(err)? {
            Some(v) => {
                f(v.value());
                Ok(true)
            }
            None => Ok(false),
        })
    }

    fn range(
        &self,
        bucket: &str,
        start: &[u8],
        end: Option<&[u8]>,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        self.with_table(bucket, |t| {
            let end = end.map_or(Bound::Unbounded, Bound::Excluded);
            for entry in t
                .range::<&[u8]>((Bound::Included(start), end))
                .map_err(err)?
            {
                let (k, v) = entry.map_err(err)?;
                if !f(k.value(), v.value()) {
                    break;
                }
            }
            Ok(())
        })
    }
}

struct Batch<'a> {
    tx: &'a redb::WriteTransaction,
    tables: HashMap<String, redb::Table<'a, &'static [u8], &'static [u8]>>,
}

impl<'a> Batch<'a> {
    fn table(
        &mut self,
        bucket: &str,
        create: bool,
    ) -> Result<&mut redb::Table<'a, &'static [u8], &'static [u8]>> {
        if !self.tables.contains_key(bucket) {
            // redb's open_table creates missing tables; only create_bucket may.
            if !create && !self.exists(bucket)? {
                return Err(Error::BucketNotFound(bucket.to_string()));
            }
            let t = self
                .tx
                .open_table(Table::new(bucket))
                .map_err(|e| table_err(bucket, e))?;
            self.tables.insert(bucket.to_string(), t);
        }
        Ok(self.tables.get_mut(bucket).expect("inserted above"))
    }

    fn exists(&self, bucket: &str) -> Result<bool> {
        use redb::TableHandle;
        Ok(self
            .tx
            .list_tables()
            .map_err(err)?
            .any(|t| t.name() == bucket))
    }
}

impl WriteBatch for Batch<'_> {
    fn create_bucket(&mut self, bucket: &str) -> Result<()> {
        self.table(bucket, true).map(|_| ())
    }

    fn put(&mut self, bucket: &str, key: &[u8], value: &[u8]) -> Result<()> {
        self.table(bucket, false)?.insert(key, value).map_err(err)?;
        Ok(())
    }

    fn delete(&mut self, bucket: &str, key: &[u8]) -> Result<bool> {
        Ok(self
            .table(bucket, false)?
            .remove(key)
            .map_err(err)?
            .is_some())
    }
}

impl Backend for RedbBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Redb
    }

    fn read(&self) -> Result<Box<dyn ReadSnapshot>> {
        Ok(Box::new(Snapshot {
            tx: self.db.begin_read().map_err(err)?,
            tables: parking_lot::Mutex::new(HashMap::new()),
        }))
    }

    fn update(&self, f: &mut UpdateFn<'_>) -> Result<()> {
        let mut tx = self.db.begin_write().map_err(err)?;
        let durability = match self.durability {
            Durability::NoSync => redb::Durability::None,
            Durability::Durable | Durability::DurableTwoFsync => redb::Durability::Immediate,
        };
        tx.set_durability(durability).map_err(err)?;
        {
            let mut batch = Batch {
                tx: &tx,
                tables: HashMap::new(),
            };
            f(&mut batch)?;
        }
        tx.commit().map_err(err)
    }

    fn size_bytes(&self) -> Result<u64> {
        Ok(std::fs::metadata(&self.path)?.len())
    }

    fn snapshot_to(&self, _out: &mut dyn Write) -> Result<u64> {
        Err(Error::Unsupported("snapshot streaming", "redb"))
    }
}
