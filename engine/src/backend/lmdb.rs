//! LMDB (through heed) behind the backend trait (comparison engine). Buckets
//! are named databases of byte keys and byte values.
//!
//! heed 0.23 hands out database handles only through a transaction that
//! commits (`create_databases_and_commit`), so every `update` runs inside
//! one: handles of buckets it opens or creates become `'static` on commit
//! and are cached for readers.

use super::{Backend, BackendKind, Durability, Error, ReadSnapshot, Result, UpdateFn, WriteBatch};
use heed::types::Bytes;
use heed::{
    CommitOrAbort, CommitToken, CompactionOption, DatabaseOpener, Env, EnvFlags, EnvOpenOptions,
    OnCommit, RoTxn, RwTxn, WithoutTls,
};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::io::Write;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

type Db<'e> = heed::Database<'e, Bytes, Bytes>;
type Handles = HashMap<String, Db<'static>>;

/// Virtual address space reserved for the map (not disk, not memory).
const MAP_SIZE_BYTES: usize = 64 << 30;
const BUCKETS_MAX: u32 = 64;

pub struct LmdbBackend {
    env: Env<WithoutTls>,
    handles: Arc<RwLock<Handles>>,
}

/// Buckets opened or created by one update, made `'static` by its commit.
struct Opened<'e>(Vec<(String, Db<'e>)>);

impl OnCommit for Opened<'_> {
    type Committed = Vec<(String, Db<'static>)>;
    fn on_commit(self, token: &CommitToken) -> Self::Committed {
        self.0
            .into_iter()
            .map(|(name, db)| (name, db.on_commit(token)))
            .collect()
    }
}

impl LmdbBackend {
    pub fn open(path: &Path, durability: Durability) -> Result<Self> {
        std::fs::create_dir_all(path)?;
        let mut opts = EnvOpenOptions::new().read_txn_without_tls();
        opts.map_size(MAP_SIZE_BYTES).max_dbs(BUCKETS_MAX);
        if durability == Durability::NoSync {
            // SAFETY: NO_SYNC trades durability of recent commits for speed;
            // the caller chose it explicitly (bulk loads).
            unsafe { opts.flags(EnvFlags::NO_SYNC | EnvFlags::NO_META_SYNC) };
        }
        // SAFETY: heed requires that an environment is opened once per
        // process and that nothing else modifies its files; each backend
        // owns its directory.
        let env = unsafe { opts.open(path)? };
        let backend = LmdbBackend {
            env,
            handles: Arc::new(RwLock::new(HashMap::new())),
        };
        backend.open_existing()?;
        Ok(backend)
    }

    /// Opens the handles of buckets created by earlier runs: their names are
    /// the keys of LMDB's unnamed database.
    fn open_existing(&self) -> Result<()> {
        let rtxn = self.env.read_txn()?;
        let opened = self
            .env
            .open_databases_and_commit(
                rtxn,
                |opener, rtxn| -> Result<CommitOrAbort<Opened<'_>, ()>> {
                    let mut out = Vec::new();
                    let Some(main) = opener
                        .database_options()
                        .types::<Bytes, Bytes>()
                        .open(rtxn)?
                    else {
                        return Ok(CommitOrAbort::Commit(Opened(out)));
                    };
                    let names: Vec<String> = main
                        .iter(rtxn)?
                        .filter_map(|e| {
                            e.ok().and_then(|(k, _)| String::from_utf8(k.to_vec()).ok())
                        })
                        .collect();
                    for name in names {
                        if let Some(db) = opener
                            .database_options()
                            .types::<Bytes, Bytes>()
                            .name(&name)
                            .open(rtxn)?
                        {
                            out.push((name, db));
                        }
                    }
                    Ok(CommitOrAbort::Commit(Opened(out)))
                },
            )?
            .unwrap_commit();
        self.handles.write().extend(opened);
        Ok(())
    }
}

struct Snapshot {
    tx: RoTxn<'static, WithoutTls>,
    handles: Arc<RwLock<Handles>>,
}

impl Snapshot {
    fn db(&self, bucket: &str) -> Result<Db<'static>> {
        self.handles
            .read()
            .get(bucket)
            .copied()
            .ok_or_else(|| Error::BucketNotFound(bucket.to_string()))
    }
}

impl ReadSnapshot for Snapshot {
    fn get(&self, bucket: &str, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<bool> {
        match self.db(bucket)?.get(&self.tx, key)? {
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
        let end = end.map_or(Bound::Unbounded, Bound::Excluded);
        // LMDB rejects empty keys, also as a seek target: "" is the start.
        let start = if start.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Included(start)
        };
        for entry in self.db(bucket)?.range(&self.tx, &(start, end))? {
            let (k, v) = entry?;
            if !f(k, v) {
                break;
            }
        }
        Ok(())
    }
}

struct Batch<'a, 'e> {
    opener: &'a DatabaseOpener<'e, WithoutTls>,
    tx: &'a mut RwTxn<'e>,
    known: &'a Handles,
    opened: Vec<(String, Db<'e>)>,
}

impl<'e> Batch<'_, 'e> {
    fn db(&mut self, bucket: &str) -> Result<Db<'e>> {
        if let Some(db) = self.known.get(bucket) {
            return Ok(*db);
        }
        if let Some((_, db)) = self.opened.iter().find(|(n, _)| n == bucket) {
            return Ok(*db);
        }
        Err(Error::BucketNotFound(bucket.to_string()))
    }
}

impl WriteBatch for Batch<'_, '_> {
    fn create_bucket(&mut self, bucket: &str) -> Result<()> {
        if self.db(bucket).is_ok() {
            return Ok(());
        }
        let db = self
            .opener
            .database_options()
            .types::<Bytes, Bytes>()
            .name(bucket)
            .create(self.tx)?;
        self.opened.push((bucket.to_string(), db));
        Ok(())
    }

    fn put(&mut self, bucket: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let db = self.db(bucket)?;
        db.put(self.tx, key, value)?;
        Ok(())
    }

    fn delete(&mut self, bucket: &str, key: &[u8]) -> Result<bool> {
        let db = self.db(bucket)?;
        Ok(db.delete(self.tx, key)?)
    }
}

impl Backend for LmdbBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Lmdb
    }

    fn read(&self) -> Result<Box<dyn ReadSnapshot>> {
        Ok(Box::new(Snapshot {
            tx: self.env.clone().static_read_txn()?,
            handles: self.handles.clone(),
        }))
    }

    fn update(&self, f: &mut UpdateFn<'_>) -> Result<()> {
        let known = self.handles.read().clone();
        let wtxn = self.env.write_txn()?;
        let opened = self
            .env
            .create_databases_and_commit(
                wtxn,
                |opener, tx| -> Result<CommitOrAbort<Opened<'_>, ()>> {
                    let mut batch = Batch {
                        opener,
                        tx,
                        known: &known,
                        opened: Vec::new(),
                    };
                    f(&mut batch)?;
                    Ok(CommitOrAbort::Commit(Opened(batch.opened)))
                },
            )?
            .unwrap_commit();
        if !opened.is_empty() {
            self.handles.write().extend(opened);
        }
        Ok(())
    }

    fn size_bytes(&self) -> Result<u64> {
        Ok(self.env.real_disk_size()?)
    }

    fn snapshot_to(&self, out: &mut dyn Write) -> Result<u64> {
        let dir = tempfile::tempdir_in(self.env.path())?;
        let path = dir.path().join("data.mdb");
        let mut file = self.env.copy_to_path(&path, CompactionOption::Disabled)?;
        use std::io::Seek;
        file.rewind()?;
        Ok(std::io::copy(&mut file, out)?)
    }
}
