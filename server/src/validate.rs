//! Request checks made before anything is proposed, in etcd's order and
//! with etcd's errors (etcdserver/api/v3rpc/key.go): an empty key, a value
//! or lease given together with its ignore flag, too many operations in a
//! txn, an empty request op, and a key written twice (or written and
//! deleted) in one txn branch.

use proto::etcdserverpb::{
    request_op, CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};

use crate::errors::EtcdError;

pub fn check_range(r: &RangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

pub fn check_put(r: &PutRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete(r: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// A compaction has nothing to check up front; the store answers
/// compacted / future revision.
pub fn check_compact(_r: &CompactionRequest) -> Result<(), EtcdError> {
    Ok(())
}

/// etcd's checkTxnRequest followed by checkIntervals on both branches.
/// `max_ops` bounds the compares and each branch separately (so a txn may
/// carry 128 compares, 128 success ops and 128 failure ops); nested txns
/// share the budget left by their parent.
pub fn check_txn(r: &TxnRequest, max_ops: usize) -> Result<(), EtcdError> {
    check_txn_ops(r, max_ops)?;
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

fn check_txn_ops(r: &TxnRequest, max_ops: usize) -> Result<(), EtcdError> {
    let ops = r.compare.len().max(r.success.len()).max(r.failure.len());
    if ops > max_ops {
        return Err(EtcdError::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(EtcdError::EmptyKey);
    }
    for op in r.success.iter().chain(&r.failure) {
        check_request_op(op, max_ops - ops)?;
    }
    Ok(())
}

fn check_request_op(op: &RequestOp, max_ops: usize) -> Result<(), EtcdError> {
    match &op.request {
        Some(request_op::Request::RequestRange(r)) => check_range(r),
        Some(request_op::Request::RequestPut(r)) => check_put(r),
        Some(request_op::Request::RequestDeleteRange(r)) => check_delete(r),
        Some(request_op::Request::RequestTxn(r)) => check_txn_ops(r, max_ops),
        // An empty op: etcd answers "key not found".
        None => Err(EtcdError::KeyNotFound),
    }
}

/// A deleted key range: `[start, end)`; `end` None is a single key; an
/// `end` of "\0" reaches to the end of the key space.
#[derive(Clone, Debug)]
struct Interval {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    fn of_delete(key: &[u8], range_end: &[u8]) -> Interval {
        Interval {
            start: key.to_vec(),
            end: (!range_end.is_empty()).then(|| range_end.to_vec()),
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        match &self.end {
            None => key == self.start.as_slice(),
            Some(end) if end.as_slice() == [0] => key >= self.start.as_slice(),
            Some(end) => key >= self.start.as_slice() && key < end.as_slice(),
        }
    }
}

type Puts = std::collections::HashSet<Vec<u8>>;

/// etcd's checkIntervals: within one branch, a key may be put once and
/// must not be both put and deleted; nested txns' success and failure
/// branches may put the same key (only one of them runs). Returns the puts
/// and deletes of this level for the caller's check.
fn check_intervals(ops: &[RequestOp]) -> Result<(Puts, Vec<Interval>), EtcdError> {
    let mut dels: Vec<Interval> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(request_op::Request::RequestDeleteRange(d)) => {
                Some(Interval::of_delete(&d.key, &d.range_end))
            }
            _ => None,
        })
        .collect();
    let deleted = |dels: &[Interval], key: &[u8]| dels.iter().any(|d| d.contains(key));

    let mut puts = Puts::new();
    for op in ops {
        let Some(request_op::Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || deleted(&dels, k) {
                return Err(EtcdError::DuplicateKey);
            }
        }
        for k in &puts_else {
            if (puts.contains(k) && !puts_then.contains(k)) || deleted(&dels, k) {
                return Err(EtcdError::DuplicateKey);
            }
        }
        puts.extend(puts_then);
        puts.extend(puts_else);
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(request_op::Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || deleted(&dels, &p.key) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::etcdserverpb::Compare;

    fn put(k: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: k.as_bytes().to_vec(),
                ..Default::default()
            })),
        }
    }
    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: k.as_bytes().to_vec(),
                    range_end: end.as_bytes().to_vec(),
                    ..Default::default()
                },
            )),
        }
    }
    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            compare: vec![],
            success,
            failure,
        }
    }
    fn nested(t: TxnRequest) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestTxn(t)),
        }
    }

    #[test]
    fn put_checks() {
        let mut p = PutRequest::default();
        assert_eq!(check_put(&p), Err(EtcdError::EmptyKey));
        p.key = b"k".to_vec();
        assert_eq!(check_put(&p), Ok(()));
        p.ignore_value = true;
        p.value = b"v".to_vec();
        assert_eq!(check_put(&p), Err(EtcdError::ValueProvided));
        p.value.clear();
        p.ignore_lease = true;
        p.lease = 5;
        assert_eq!(check_put(&p), Err(EtcdError::LeaseProvided));
    }

    #[test]
    fn txn_op_limit_counts_each_branch_separately() {
        let ops: Vec<RequestOp> = (0..128).map(|i| put(&format!("k{i}"))).collect();
        assert_eq!(check_txn(&txn(ops.clone(), ops.clone()), 128), Ok(()));
        let mut more = ops.clone();
        more.push(put("x"));
        assert_eq!(
            check_txn(&txn(more, vec![]), 128),
            Err(EtcdError::TooManyOps)
        );
        let mut t = txn(vec![], vec![]);
        t.compare = vec![Compare::default()];
        assert_eq!(check_txn(&t, 128), Err(EtcdError::EmptyKey));
        let t = txn(vec![RequestOp { request: None }], vec![]);
        assert_eq!(check_txn(&t, 128), Err(EtcdError::KeyNotFound));
    }

    #[test]
    fn duplicate_keys() {
        assert_eq!(
            check_txn(&txn(vec![put("a"), put("a")], vec![]), 128),
            Err(EtcdError::DuplicateKey)
        );
        // Success and failure are separate branches.
        assert_eq!(check_txn(&txn(vec![put("a")], vec![put("a")]), 128), Ok(()));
        assert_eq!(
            check_txn(&txn(vec![put("b"), del("a", "c")], vec![]), 128),
            Err(EtcdError::DuplicateKey)
        );
        assert_eq!(
            check_txn(&txn(vec![put("c"), del("a", "c")], vec![]), 128),
            Ok(())
        );
        assert_eq!(
            check_txn(&txn(vec![put("z"), del("a", "\0")], vec![]), 128),
            Err(EtcdError::DuplicateKey)
        );
        // Two deletes of the same range are fine.
        assert_eq!(
            check_txn(&txn(vec![del("a", ""), del("a", "")], vec![]), 128),
            Ok(())
        );
        // A nested txn may put the same key in both of its branches ...
        let inner = nested(txn(vec![put("a")], vec![put("a")]));
        assert_eq!(check_txn(&txn(vec![inner.clone()], vec![]), 128), Ok(()));
        // ... but not a key its parent puts too.
        assert_eq!(
            check_txn(&txn(vec![inner, put("a")], vec![]), 128),
            Err(EtcdError::DuplicateKey)
        );
    }
}
