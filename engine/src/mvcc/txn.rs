//! Write transactions: Put, DeleteRange and Txn as etcd's apply.go and
//! mvcc storeTxnWrite execute them. All changes of one transaction share
//! the revision `begin + 1` and get consecutive sub revisions; reads inside
//! the transaction see its earlier changes.
//!
//! A Txn is checked completely before its first write (compares on the
//! state before the transaction, then the puts' preconditions and the
//! ranges' revisions, as etcd's checkRequests), so execution never fails
//! half way and the apply path never panics on a request.

use super::buffer::{Buffer, ValueReader};
use super::error::{Error, Result};
use super::kv::{encode_kv, KeyValue};
use super::lease::Lessor;
use super::range::{self, read_kv};
use super::rpc::*;
use super::store::{Inner, WriterState};
use crate::index::{IndexWriter, KeyRange, Revision};
use parking_lot::MutexGuard;
use std::cmp::Ordering as CmpOrdering;

pub(crate) struct WriteTxn<'a> {
    inner: &'a Inner,
    active: &'a Buffer,
    iw: IndexWriter<'a>,
    reader: ValueReader<'a>,
    pub lessor: MutexGuard<'a, Lessor>,
    begin_rev: i64,
    changes: i64,
    pub events: Vec<Event>,
    scratch: &'a mut Vec<u8>,
}

impl<'a> WriteTxn<'a> {
    pub fn new(
        inner: &'a Inner,
        w: &'a mut WriterState,
        guard: &'a crossbeam_epoch::Guard,
    ) -> Self {
        let begin_rev = w.current_rev;
        WriteTxn {
            inner,
            active: &w.active,
            iw: inner.index.writer(),
            reader: ValueReader::new(inner.view.load(guard), &*inner.backend).cached(&inner.cache),
            lessor: inner.lessor.lock(),
            begin_rev,
            changes: 0,
            events: Vec::new(),
            scratch: &mut w.scratch,
        }
    }

    /// The revision reads inside the transaction see.
    pub fn read_rev(&self) -> i64 {
        self.begin_rev + (self.changes > 0) as i64
    }

    /// The transaction's revision if it changed anything.
    pub fn end_rev(&self) -> i64 {
        self.read_rev()
    }

    pub fn push_op(&mut self, op: super::buffer::BackendOp) {
        self.active.push_op(op);
    }

    pub fn changed(&self) -> bool {
        self.changes > 0
    }

    fn next_rev(&self) -> Revision {
        Revision::new(self.begin_rev + 1, self.changes)
    }

    pub fn get_kv(&mut self, key: &[u8]) -> Result<Option<KeyValue>> {
        match self.inner.index.get(key, self.read_rev()) {
            None => Ok(None),
            Some(r) => read_kv(&mut self.reader, r, true, self.inner.compact_rev_cell()).map(Some),
        }
    }

    pub fn range(&mut self, req: &RangeRequest) -> Result<RangeResponse> {
        let read_rev = self.read_rev();
        range::range(
            &self.inner.index,
            &mut self.reader,
            req,
            read_rev,
            self.inner.compact_rev_cell(),
        )
    }

    /// Put with its preconditions checked (`check_put`).
    pub fn put(&mut self, req: &PutRequest) -> Result<PutResponse> {
        let prev = if req.prev_kv || req.ignore_value || req.ignore_lease {
            self.get_kv(&req.key)?
        } else {
            None
        };
        if (req.ignore_value || req.ignore_lease) && prev.is_none() {
            return Err(Error::KeyNotFound);
        }
        let value = match (&prev, req.ignore_value) {
            (Some(p), true) => &p.value[..],
            _ => &req.value[..],
        };
        let lease = match (&prev, req.ignore_lease) {
            (Some(p), true) => p.lease,
            _ => req.lease,
        };
        let rev = self.next_rev();
        let (create, version) = self.iw.put(&req.key, rev);
        self.scratch.clear();
        encode_kv(
            self.scratch,
            &req.key,
            create,
            rev.main,
            version,
            value,
            lease,
        );
        self.active
            .put_kv(rev, false, self.scratch.as_slice().into());
        if !self.lessor.attach(&req.key, lease) {
            // check_put saw the lease; nothing revokes one mid-apply.
            return Err(Error::Corrupt(format!(
                "lease {lease} vanished during a put"
            )));
        }
        self.changes += 1;
        self.events.push(Event {
            kind: EventType::Put,
            kv: KeyValue {
                key: req.key.clone(),
                create_revision: create,
                mod_revision: rev.main,
                version,
                value: value.to_vec(),
                lease,
            },
            prev_kv: None,
        });
        Ok(PutResponse {
            header: ResponseHeader { revision: rev.main },
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    pub fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let read_rev = self.read_rev();
        let mut keys: Vec<(Vec<u8>, Revision)> = Vec::new();
        self.inner.index.range(
            KeyRange::from_etcd(&req.key, &req.range_end),
            read_rev,
            false,
            |k, r| {
                keys.push((k.to_vec(), r));
                true
            },
        );
        let mut prev_kvs = Vec::new();
        if req.prev_kv {
            for (_, r) in &keys {
                prev_kvs.push(read_kv(
                    &mut self.reader,
                    *r,
                    true,
                    self.inner.compact_rev_cell(),
                )?);
            }
        }
        for (k, _) in &keys {
            self.delete_key(k)?;
        }
        Ok(DeleteRangeResponse {
            header: ResponseHeader {
                revision: self.read_rev(),
            },
            deleted: keys.len() as i64,
            prev_kvs,
        })
    }

    /// Tombstones a live key.
    pub fn delete_key(&mut self, key: &[u8]) -> Result<()> {
        let rev = self.next_rev();
        self.iw
            .tombstone(key, rev)
            .map_err(|_| Error::Corrupt(format!("deleting {key:?}, which is not live")))?;
        self.scratch.clear();
        encode_kv(self.scratch, key, 0, rev.main, 0, &[], 0);
        self.active
            .put_kv(rev, true, self.scratch.as_slice().into());
        self.lessor.detach(key);
        self.changes += 1;
        self.events.push(Event {
            kind: EventType::Delete,
            kv: KeyValue {
                key: key.to_vec(),
                mod_revision: rev.main,
                ..Default::default()
            },
            prev_kv: None,
        });
        Ok(())
    }

    /// Txn (etcd applierV3backend.Txn).
    pub fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse> {
        let mut path = Vec::new();
        self.compare_path(req, &mut path)?;
        let mut at = 0;
        self.check(req, &path, &mut at)?;
        let mut at = 0;
        self.execute(req, &path, &mut at)
    }

    /// The branch every (nested) txn on the executed path takes, evaluated
    /// on the state before the transaction (etcd compareToPath).
    fn compare_path(&mut self, req: &TxnRequest, path: &mut Vec<bool>) -> Result<()> {
        let mut ok = true;
        for c in &req.compare {
            if !self.compare(c)? {
                ok = false;
                break;
            }
        }
        path.push(ok);
        let ops = if ok { &req.success } else { &req.failure };
        for op in ops {
            if let RequestOp::Txn(t) = op {
                self.compare_path(t, path)?;
            }
        }
        Ok(())
    }

    fn compare(&mut self, c: &Compare) -> Result<bool> {
        let resp = self.range(&RangeRequest {
            key: c.key.clone(),
            range_end: c.range_end.clone(),
            ..Default::default()
        })?;
        Ok(compare_range(c, &resp.kvs))
    }

    fn check(&mut self, req: &TxnRequest, path: &[bool], at: &mut usize) -> Result<()> {
        let ops = if path[*at] {
            &req.success
        } else {
            &req.failure
        };
        for op in ops {
            match op {
                RequestOp::Txn(t) => {
                    *at += 1;
                    self.check(t, path, at)?;
                }
                RequestOp::Put(p) => self.check_put(p)?,
                RequestOp::Range(r) => {
                    range::resolve_rev(r.revision, self.begin_rev, self.inner.compact_rev())?;
                }
                RequestOp::DeleteRange(_) => {}
            }
        }
        Ok(())
    }

    /// etcd checkRequestPut, on the state before the transaction.
    pub fn check_put(&mut self, p: &PutRequest) -> Result<()> {
        if (p.ignore_value || p.ignore_lease)
            && self.inner.index.get(&p.key, self.begin_rev).is_none()
        {
            return Err(Error::KeyNotFound);
        }
        if p.lease != 0 && !self.lessor.contains(p.lease) {
            return Err(Error::LeaseNotFound);
        }
        Ok(())
    }

    fn execute(&mut self, req: &TxnRequest, path: &[bool], at: &mut usize) -> Result<TxnResponse> {
        let succeeded = path[*at];
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(self.range(r)?),
                RequestOp::Put(p) => ResponseOp::Put(self.put(p)?),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(self.delete_range(d)?),
                RequestOp::Txn(t) => {
                    *at += 1;
                    ResponseOp::Txn(self.execute(t, path, at)?)
                }
            });
        }
        Ok(TxnResponse {
            header: ResponseHeader {
                revision: self.read_rev(),
            },
            succeeded,
            responses,
        })
    }
}

/// etcd compareKV.
/// etcd applyCompare over the keys the compare's range found: every one
/// must satisfy it; with none, a value compare is false and the others
/// compare against an absent key's zeros.
pub(crate) fn compare_range(c: &Compare, kvs: &[KeyValue]) -> bool {
    if kvs.is_empty() {
        if matches!(c.target, CompareTarget::Value(_)) {
            return false;
        }
        return compare_kv(c, &KeyValue::default());
    }
    kvs.iter().all(|kv| compare_kv(c, kv))
}

pub(crate) fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let ord = match &c.target {
        CompareTarget::Value(v) => kv.value.as_slice().cmp(v.as_slice()),
        CompareTarget::Create(v) => kv.create_revision.cmp(v),
        CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
    };
    match c.result {
        CompareResult::Equal => ord == CmpOrdering::Equal,
        CompareResult::NotEqual => ord != CmpOrdering::Equal,
        CompareResult::Greater => ord == CmpOrdering::Greater,
        CompareResult::Less => ord == CmpOrdering::Less,
    }
}

/// Request checks etcd's server makes before proposing (v3rpc key.go):
/// keys present, and a transaction does not write one key twice (puts are
/// unique, and no put falls in a deleted range), in every branch
/// including nested ones. The apply path runs them too, so a command
/// that skipped them is rejected deterministically instead of misapplied.
pub fn validate_command(cmd: &super::command::Command) -> Result<()> {
    use super::command::Command;
    match cmd {
        Command::Put(p) if p.key.is_empty() => Err(Error::EmptyKey),
        Command::DeleteRange(d) if d.key.is_empty() => Err(Error::EmptyKey),
        Command::Txn(t) => validate_txn(t, usize::MAX),
        _ => Ok(()),
    }
}

/// Txn checks with a bound on operations per branch (etcd's
/// --max-txn-ops, 128 by default; the engine itself sets none).
pub fn validate_txn(t: &TxnRequest, max_ops: usize) -> Result<()> {
    for branch in [&t.success, &t.failure] {
        if branch.len() > max_ops {
            return Err(Error::TooManyOps);
        }
        let mut puts = Vec::new();
        let mut dels = Vec::new();
        collect_writes(branch, &mut puts, &mut dels, max_ops)?;
        puts.sort();
        if puts.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::DuplicateKey);
        }
        for p in &puts {
            if dels
                .iter()
                .any(|(k, e): &(Vec<u8>, Vec<u8>)| KeyRange::from_etcd(k, e).contains(p))
            {
                return Err(Error::DuplicateKey);
            }
        }
    }
    Ok(())
}

fn collect_writes(
    ops: &[RequestOp],
    puts: &mut Vec<Vec<u8>>,
    dels: &mut Vec<(Vec<u8>, Vec<u8>)>,
    max_ops: usize,
) -> Result<()> {
    for op in ops {
        match op {
            RequestOp::Range(r) if r.key.is_empty() => return Err(Error::EmptyKey),
            RequestOp::Range(_) => {}
            RequestOp::Put(p) if p.key.is_empty() => return Err(Error::EmptyKey),
            RequestOp::Put(p) => puts.push(p.key.clone()),
            RequestOp::DeleteRange(d) if d.key.is_empty() => return Err(Error::EmptyKey),
            RequestOp::DeleteRange(d) => dels.push((d.key.clone(), d.range_end.clone())),
            RequestOp::Txn(t) => {
                validate_txn(t, max_ops)?;
                // A nested txn runs one of its branches; the writes of
                // both must not collide with the enclosing branch.
                let mut sputs = Vec::new();
                collect_writes(&t.success, &mut sputs, dels, max_ops)?;
                let mut fputs = Vec::new();
                collect_writes(&t.failure, &mut fputs, dels, max_ops)?;
                for k in fputs {
                    if !sputs.contains(&k) {
                        sputs.push(k);
                    }
                }
                puts.extend(sputs);
            }
        }
    }
    Ok(())
}
