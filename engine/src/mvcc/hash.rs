//! HashKV: a hash of the logical MVCC state for convergence checks
//! between replicas and across restarts (etcd's HashByRev).
//!
//! The hash covers every revision ≤ `rev` that a finished compaction at the
//! current compact revision retains — computed from the index, so it does
//! not depend on how far the physical removal has got — as CRC-32C over,
//! per key in key order and per revision in revision order, the revision
//! key (17/18 bytes) and its stored record.

use super::buffer::ValueReader;
use super::error::{Error, Result};
use super::range::resolve_rev;
use super::revision::RevKey;
use super::rpc::{HashKvResponse, ResponseHeader};
use super::store::Store;

/// Buckets `hash_backend` covers, in name order.
const HASHED_BUCKETS: [&str; 4] = [
    super::buckets::KEY_BUCKET,
    super::buckets::LEASE_BUCKET,
    super::buckets::META_BUCKET,
    super::buckets::SERVER_BUCKET,
];

impl Store {
    /// etcd's Hash: CRC-32C of the whole backend after committing what is
    /// applied — per bucket in name order its name, then every key and
    /// value in key order — leaving out the meta bucket's consistent index
    /// (which differs between replicas holding the same data, as etcd's
    /// `DefaultIgnores`). Returns the hash and the revision it covers.
    pub fn hash_backend(&self) -> Result<(u32, i64)> {
        self.sync()?;
        let rev = self.inner.current_rev();
        let snap = self.inner.backend.read()?;
        let mut crc = 0u32;
        for bucket in HASHED_BUCKETS {
            crc = crc32c::crc32c_append(crc, bucket.as_bytes());
            snap.range(bucket, &[], None, &mut |k, v| {
                let ignored = bucket == super::buckets::META_BUCKET
                    && k == super::buckets::META_CONSISTENT_INDEX;
                if !ignored {
                    crc = crc32c::crc32c_append(crc, k);
                    crc = crc32c::crc32c_append(crc, v);
                }
                true
            })?;
        }
        Ok((crc, rev))
    }

    /// Hash of all revisions up to `revision` (0: current).
    pub fn hash_kv(&self, revision: i64) -> Result<HashKvResponse> {
        let inner = &*self.inner;
        let current = inner.current_rev();
        let compact = inner.compact_rev();
        let rev = resolve_rev(revision, current, compact)?;
        let guard = crossbeam_epoch::pin();
        let mut reader = ValueReader::new(inner.view.load(&guard), &*inner.backend);
        let mut crc = 0u32;
        let mut failure: Option<Error> = None;
        inner.index.for_each_key(|_, entries| {
            // Entries a complete compaction at `compact` keeps.
            let below = entries.partition_point(|e| e.rev.main <= compact);
            let keep_from = match below {
                0 => 0,
                n if entries[n - 1].tombstone => n,
                n => n - 1,
            };
            for e in &entries[keep_from..] {
                if e.rev.main > rev {
                    break;
                }
                let key = RevKey::new(e.rev, e.tombstone);
                crc = crc32c::crc32c_append(crc, key.as_bytes());
                let got = if e.tombstone {
                    // Tombstone records are not read through the index;
                    // their content is fixed by key and revision.
                    Ok(Some(()))
                } else {
                    reader.get(e.rev, |v| crc = crc32c::crc32c_append(crc, v))
                };
                match got {
                    Ok(Some(())) => {}
                    Ok(None) => {
                        failure = Some(Error::Corrupt(format!(
                            "revision {} is indexed but not stored",
                            e.rev
                        )));
                        return false;
                    }
                    Err(e) => {
                        failure = Some(e);
                        return false;
                    }
                }
            }
            true
        });
        if let Some(e) = failure {
            if inner.compact_rev() > compact {
                return Err(Error::Compacted {
                    compact_revision: inner.compact_rev(),
                });
            }
            return Err(e);
        }
        Ok(HashKvResponse {
            header: ResponseHeader { revision: current },
            hash: crc,
            compact_revision: compact,
        })
    }
}
