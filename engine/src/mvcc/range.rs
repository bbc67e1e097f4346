//! Range, as etcd's apply.go and mvcc rangeKeys define it
//! (rpc.proto RangeRequest):
//!
//! - `revision` ≤ 0 reads at the current revision; above it is a future
//!   revision, below the compacted revision a compacted error.
//! - `count` is the number of keys in the range at the revision, before
//!   `limit` and before the min/max filters.
//! - Without sort and filters, the keys come in ascending key order and
//!   `limit + 1` are fetched to tell `more`. With a sort order or a filter,
//!   everything is fetched, filtered, sorted, then cut to `limit`.
//! - A sort target other than KEY with order NONE sorts ascending.
//! - Ties under a non-key target keep ascending key order (etcd's sort is
//!   not stable, so this is one of its allowed outcomes).

use super::buffer::ValueReader;
use super::error::{Error, Result};
use super::kv::{decode_kv, KeyValue};
use super::rpc::{RangeRequest, RangeResponse, ResponseHeader, SortOrder, SortTarget};
use crate::index::{KeyRange, Revision, TreeIndex};
use std::cmp::Ordering as CmpOrdering;
use std::sync::atomic::{AtomicI64, Ordering};

/// Resolves a requested revision against the view's current revision and
/// the compacted revision.
pub(crate) fn resolve_rev(requested: i64, current: i64, compact: i64) -> Result<i64> {
    if requested > current {
        return Err(Error::FutureRevision {
            current_revision: current,
        });
    }
    let rev = if requested <= 0 { current } else { requested };
    if rev < compact {
        return Err(Error::Compacted {
            compact_revision: compact,
        });
    }
    Ok(rev)
}

/// Reads the KeyValue of live revision `rev`. A revision the index named
/// but storage no longer holds was compacted under the reader.
pub(crate) fn read_kv(
    reader: &mut ValueReader<'_>,
    rev: Revision,
    with_value: bool,
    compact_rev: &AtomicI64,
) -> Result<KeyValue> {
    let kv = reader.get(rev, |bytes| {
        decode_kv(bytes).map(|r| KeyValue {
            key: r.key.to_vec(),
            create_revision: r.create_revision,
            mod_revision: r.mod_revision,
            version: r.version,
            value: if with_value {
                r.value.to_vec()
            } else {
                Vec::new()
            },
            lease: r.lease,
        })
    })?;
    match kv {
        Some(Ok(kv)) => Ok(kv),
        Some(Err(e)) => Err(Error::Corrupt(format!("record of revision {rev}: {e}"))),
        None => {
            let compact = compact_rev.load(Ordering::Acquire);
            if rev.main < compact {
                Err(Error::Compacted {
                    compact_revision: compact,
                })
            } else {
                Err(Error::Corrupt(format!(
                    "revision {rev} is indexed but not stored"
                )))
            }
        }
    }
}

fn needs_everything(req: &RangeRequest) -> bool {
    req.sort_order != SortOrder::None
        || req.sort_target != SortTarget::Key
        || req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0
}

/// Executes `req` on a view whose current revision is `current`.
pub(crate) fn range(
    index: &TreeIndex,
    reader: &mut ValueReader<'_>,
    req: &RangeRequest,
    current: i64,
    compact_rev: &AtomicI64,
) -> Result<RangeResponse> {
    let rev = resolve_rev(req.revision, current, compact_rev.load(Ordering::Acquire))?;
    let header = ResponseHeader { revision: current };
    let keys = KeyRange::from_etcd(&req.key, &req.range_end);
    if req.count_only {
        return Ok(RangeResponse {
            header,
            kvs: Vec::new(),
            more: false,
            count: index.count(keys, rev) as i64,
        });
    }
    let everything = needs_everything(req);
    let fetch = if everything || req.limit <= 0 {
        usize::MAX
    } else {
        (req.limit as usize).saturating_add(1)
    };
    let mut revs: Vec<Revision> = Vec::new();
    let mut count = 0usize;
    index.range(keys, rev, false, |_, r| {
        if revs.len() < fetch {
            revs.push(r);
        }
        count += 1;
        true
    });
    let mut kvs = Vec::with_capacity(revs.len());
    for r in revs {
        kvs.push(read_kv(
            reader,
            r,
            !req.keys_only || everything,
            compact_rev,
        )?);
    }
    prune(&mut kvs, req);
    sort(&mut kvs, req);
    let mut more = false;
    if req.limit > 0 && kvs.len() > req.limit as usize {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value = Vec::new();
        }
    }
    Ok(RangeResponse {
        header,
        kvs,
        more,
        count: count as i64,
    })
}

fn prune(kvs: &mut Vec<KeyValue>, req: &RangeRequest) {
    kvs.retain(|kv| {
        !(req.max_mod_revision != 0 && kv.mod_revision > req.max_mod_revision
            || req.min_mod_revision != 0 && kv.mod_revision < req.min_mod_revision
            || req.max_create_revision != 0 && kv.create_revision > req.max_create_revision
            || req.min_create_revision != 0 && kv.create_revision < req.min_create_revision)
    });
}

fn sort(kvs: &mut [KeyValue], req: &RangeRequest) {
    let order = match (req.sort_order, req.sort_target) {
        (SortOrder::None, SortTarget::Key) => return,
        (SortOrder::None, _) => SortOrder::Ascend,
        (o, _) => o,
    };
    let by = |a: &KeyValue, b: &KeyValue| -> CmpOrdering {
        match req.sort_target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        }
    };
    match order {
        SortOrder::Ascend => kvs.sort_by(by),
        SortOrder::Descend => kvs.sort_by(|a, b| by(b, a)),
        SortOrder::None => unreachable!("mapped above"),
    }
}
