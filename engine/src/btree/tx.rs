//! Read and write transactions, and bucket handles.

use super::commit::{self, CommitInfo, CommitInput, WriterState};
use super::cursor::{self, Cursor, Range, View};
use super::db::{bucket_link, Inner, Snapshot};
use super::error::{Error, Result};
use super::freelist::Extent;
use super::mapping::Mapping;
use super::node::{Child, Node, Val};
use super::options::{inline_fits, max_key_len, MAX_VALUE_LEN};
use super::page::PageRef;
use super::tree::{self, Ctx};
use parking_lot::{ArcMutexGuard, RawMutex};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

/// A consistent, read-only view of one commit. Never blocks the writer and
/// is never blocked by it; pages it can reach are not reused until it drops.
pub struct ReadTx {
    inner: Arc<Inner>,
    snap: Arc<Snapshot>,
}

impl ReadTx {
    pub(crate) fn new(inner: Arc<Inner>, snap: Arc<Snapshot>) -> Self {
        ReadTx { inner, snap }
    }

    pub fn txid(&self) -> u64 {
        self.snap.meta.txid
    }

    pub(crate) fn snapshot(&self) -> &Snapshot {
        &self.snap
    }

    fn catalog(&self) -> Result<View<'_>> {
        Ok(View::Page(self.snap.map.node(&self.snap.meta.catalog)?))
    }

    /// A handle on a bucket, `BucketNotFound` if it does not exist.
    pub fn bucket(&self, name: &[u8]) -> Result<Bucket<'_>> {
        let root = self.bucket_root(name)?;
        self.bucket_at(root)
    }

    /// Where a bucket's tree starts in this snapshot: resolve a name once,
    /// then open it with `bucket_at` without another catalog lookup.
    pub fn bucket_root(&self, name: &[u8]) -> Result<BucketRoot> {
        match cursor::get(&self.snap.map, self.catalog()?, name)? {
            Some(v) => Ok(BucketRoot {
                link: bucket_link(v, self.snap.meta.catalog.pgid)?,
                txid: self.snap.meta.txid,
            }),
            None => Err(Error::BucketNotFound(
                String::from_utf8_lossy(name).into_owned(),
            )),
        }
    }

    /// Opens a bucket resolved by `bucket_root` on this same snapshot.
    pub fn bucket_at(&self, root: BucketRoot) -> Result<Bucket<'_>> {
        assert_eq!(
            root.txid, self.snap.meta.txid,
            "a bucket root is valid only in its own snapshot"
        );
        let map = &*self.snap.map;
        Ok(Bucket {
            map,
            root: View::Page(map.node(&root.link)?),
        })
    }

    pub fn get(&self, bucket: &[u8], key: &[u8]) -> Result<Option<&[u8]>> {
        self.bucket(bucket)?.get(key)
    }

    /// Names of all buckets, in order.
    pub fn buckets(&self) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut c = Cursor::new(&self.snap.map, self.catalog()?);
        let mut e = c.first()?;
        while let Some((name, _)) = e {
            out.push(name.to_vec());
            e = c.next()?;
        }
        Ok(out)
    }
}

impl Drop for ReadTx {
    fn drop(&mut self) {
        let mut shared = self.inner.shared.lock();
        let txid = self.snap.meta.txid;
        let count = shared
            .readers
            .get_mut(&txid)
            .expect("registered in begin_read");
        *count -= 1;
        if *count == 0 {
            shared.readers.remove(&txid);
        }
    }
}

/// A bucket's root in one snapshot (see `ReadTx::bucket_root`).
#[derive(Clone, Copy, Debug)]
pub struct BucketRoot {
    link: PageRef,
    txid: u64,
}

/// One tree of a transaction, for lookups and cursors.
pub struct Bucket<'a> {
    map: &'a Mapping,
    root: View<'a>,
}

impl<'a> Bucket<'a> {
    pub fn get(&self, key: &[u8]) -> Result<Option<&'a [u8]>> {
        cursor::get(self.map, self.root, key)
    }

    pub fn cursor(&self) -> Cursor<'a> {
        Cursor::new(self.map, self.root)
    }

    /// Entries with `start ≤ key < end` (either bound may be open).
    pub fn range(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Range<'a> {
        self.cursor().range(start, end.map(<[u8]>::to_vec))
    }
}

struct OpenBucket {
    root: Child,
    dirty: bool,
}

/// The single write transaction. Changes are visible to its own reads and to
/// nobody else until `commit`; dropping it rolls back.
pub struct WriteTx {
    inner: Arc<Inner>,
    state: ArcMutexGuard<RawMutex, WriterState>,
    map: Arc<Mapping>,
    txid: u64,
    catalog: Child,
    buckets: BTreeMap<Vec<u8>, OpenBucket>,
    freed: Vec<Extent>,
    changed: bool,
}

impl WriteTx {
    pub(crate) fn new(inner: Arc<Inner>, mut state: ArcMutexGuard<RawMutex, WriterState>) -> Self {
        state.release_pending(inner.oldest_reader());
        let map = state.map.clone();
        let meta = state.meta;
        WriteTx {
            inner,
            state,
            map,
            txid: meta.txid + 1,
            catalog: Child::Clean(meta.catalog),
            buckets: BTreeMap::new(),
            freed: Vec::new(),
            changed: false,
        }
    }

    /// The txid this transaction commits as.
    pub fn txid(&self) -> u64 {
        self.txid
    }

    fn check_key(&self, key: &[u8]) -> Result<()> {
        let max = max_key_len(self.inner.page_size);
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if key.len() > max {
            return Err(Error::KeyTooLarge {
                len: key.len(),
                max,
            });
        }
        Ok(())
    }

    fn catalog_lookup(&self, name: &[u8]) -> Result<Option<PageRef>> {
        let root = View::open(&self.map, &self.catalog)?;
        match cursor::get(&self.map, root, name)? {
            Some(v) => Ok(Some(bucket_link(v, 0)?)),
            None => Ok(None),
        }
    }

    fn open_bucket(&mut self, name: &[u8]) -> Result<&mut OpenBucket> {
        if !self.buckets.contains_key(name) {
            let link = self
                .catalog_lookup(name)?
                .ok_or_else(|| Error::BucketNotFound(String::from_utf8_lossy(name).into_owned()))?;
            self.buckets.insert(
                name.to_vec(),
                OpenBucket {
                    root: Child::Clean(link),
                    dirty: false,
                },
            );
        }
        Ok(self.buckets.get_mut(name).expect("inserted above"))
    }

    fn exists(&self, name: &[u8]) -> Result<bool> {
        Ok(self.buckets.contains_key(name) || self.catalog_lookup(name)?.is_some())
    }

    /// Creates an empty bucket; `Ok(false)` if it already exists.
    pub fn create_bucket(&mut self, name: &[u8]) -> Result<bool> {
        let max = max_key_len(self.inner.page_size);
        if name.is_empty() || name.len() > max {
            return Err(Error::BadBucketName {
                len: name.len(),
                max,
            });
        }
        if self.exists(name)? {
            return Ok(false);
        }
        self.buckets.insert(
            name.to_vec(),
            OpenBucket {
                root: Child::Dirty(Box::new(Node::empty_leaf())),
                dirty: true,
            },
        );
        self.changed = true;
        Ok(true)
    }

    /// Deletes a bucket and frees its pages; `Ok(false)` if it did not exist.
    pub fn delete_bucket(&mut self, name: &[u8]) -> Result<bool> {
        let in_catalog = self.catalog_lookup(name)?;
        let root = match (self.buckets.remove(name), in_catalog) {
            (Some(open), _) => open.root,
            (None, Some(link)) => Child::Clean(link),
            (None, None) => return Ok(false),
        };
        let mut ctx = Ctx {
            map: &self.map,
            freed: &mut self.freed,
            page_size: self.inner.page_size,
        };
        if in_catalog.is_some() {
            tree::delete(&mut ctx, &mut self.catalog, name)?;
        }
        tree::free_all(&mut ctx, root, 0)?;
        self.changed = true;
        Ok(true)
    }

    pub fn put(&mut self, bucket: &[u8], key: &[u8], value: &[u8]) -> Result<()> {
        self.check_key(key)?;
        if value.len() > MAX_VALUE_LEN {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max: MAX_VALUE_LEN,
            });
        }
        let page_size = self.inner.page_size;
        let val = if inline_fits(page_size, key.len(), value.len()) {
            Val::Inline(value)
        } else {
            Val::Big(value)
        };
        self.open_bucket(bucket)?;
        let open = self.buckets.get_mut(bucket).expect("opened above");
        let mut ctx = Ctx {
            map: &self.map,
            freed: &mut self.freed,
            page_size,
        };
        tree::insert(&mut ctx, &mut open.root, key, val)?;
        open.dirty = true;
        self.changed = true;
        Ok(())
    }

    /// Removes `key`; `Ok(false)` if it was not there (nothing is copied).
    pub fn delete(&mut self, bucket: &[u8], key: &[u8]) -> Result<bool> {
        if self.get(bucket, key)?.is_none() {
            return Ok(false);
        }
        let page_size = self.inner.page_size;
        self.open_bucket(bucket)?;
        let open = self.buckets.get_mut(bucket).expect("opened above");
        let mut ctx = Ctx {
            map: &self.map,
            freed: &mut self.freed,
            page_size,
        };
        tree::delete(&mut ctx, &mut open.root, key)?;
        open.dirty = true;
        self.changed = true;
        Ok(true)
    }

    fn root_view(&self, bucket: &[u8]) -> Result<View<'_>> {
        match self.buckets.get(bucket) {
            Some(open) => View::open(&self.map, &open.root),
            None => match self.catalog_lookup(bucket)? {
                Some(link) => Ok(View::Page(self.map.node(&link)?)),
                None => Err(Error::BucketNotFound(
                    String::from_utf8_lossy(bucket).into_owned(),
                )),
            },
        }
    }

    /// Reads see this transaction's own changes.
    pub fn get(&self, bucket: &[u8], key: &[u8]) -> Result<Option<&[u8]>> {
        let root = self.root_view(bucket)?;
        cursor::get(&self.map, root, key)
    }

    pub fn bucket(&self, name: &[u8]) -> Result<Bucket<'_>> {
        Ok(Bucket {
            map: &self.map,
            root: self.root_view(name)?,
        })
    }

    /// Makes the changes durable (per the sync mode) and visible to new
    /// readers. A failed commit poisons the database.
    pub fn commit(mut self) -> Result<CommitInfo> {
        if !self.changed {
            return Ok(CommitInfo {
                txid: self.txid - 1,
                ..CommitInfo::default()
            });
        }
        self.inner.check_poisoned()?;
        let result = self.commit_inner();
        if let Err(e) = &result {
            self.inner.poison(e);
        }
        result
    }

    fn commit_inner(&mut self) -> Result<CommitInfo> {
        let buckets = std::mem::take(&mut self.buckets)
            .into_iter()
            .filter(|(_, open)| open.dirty)
            .map(|(name, open)| (name, open.root))
            .collect();
        let input = CommitInput {
            catalog: std::mem::replace(&mut self.catalog, Child::Clean(PageRef::default())),
            buckets,
            freed: std::mem::take(&mut self.freed),
        };
        commit::commit(&self.inner, &mut self.state, self.txid, input)
    }

    /// Discards every change.
    pub fn rollback(self) {}
}
