//! A transaction without writes, served as a read (etcd serves a read-only
//! Txn outside raft, after a ReadIndex unless every range in it is
//! serializable): its compares and ranges all see one revision, the
//! current one when it starts, through the lock-free read path — no
//! writer lock, no log entry.

use super::buffer::ValueReader;
use super::error::{Error, Result};
use super::range;
use super::rpc::*;
use super::store::Store;
use super::txn::compare_range;

/// Whether `req` writes nothing in either branch, nested txns included.
pub fn txn_is_read_only(req: &TxnRequest) -> bool {
    req.success.iter().chain(&req.failure).all(|op| match op {
        RequestOp::Range(_) => true,
        RequestOp::Txn(t) => txn_is_read_only(t),
        RequestOp::Put(_) | RequestOp::DeleteRange(_) => false,
    })
}

struct ReadTxn<'a> {
    store: &'a Store,
    reader: ValueReader<'a>,
    rev: i64,
}

impl ReadTxn<'_> {
    fn range(&mut self, req: &RangeRequest) -> Result<RangeResponse> {
        let inner = &*self.store.inner;
        range::range(
            &inner.index,
            &mut self.reader,
            req,
            self.rev,
            inner.compact_rev_cell(),
        )
    }

    /// etcd applyCompare, as `WriteTxn::compare`.
    fn compare(&mut self, c: &Compare) -> Result<bool> {
        let resp = self.range(&RangeRequest {
            key: c.key.clone(),
            range_end: c.range_end.clone(),
            ..Default::default()
        })?;
        Ok(compare_range(c, &resp.kvs))
    }

    fn run(&mut self, req: &TxnRequest) -> Result<TxnResponse> {
        let mut succeeded = true;
        for c in &req.compare {
            if !self.compare(c)? {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(self.range(r)?),
                RequestOp::Txn(t) => ResponseOp::Txn(self.run(t)?),
                RequestOp::Put(_) | RequestOp::DeleteRange(_) => {
                    return Err(Error::InvalidRequest(
                        "a read-only transaction holds a write".into(),
                    ))
                }
            });
        }
        Ok(TxnResponse {
            header: ResponseHeader { revision: self.rev },
            succeeded,
            responses,
        })
    }
}

impl Store {
    /// Executes a transaction that writes nothing (`txn_is_read_only`) at
    /// the current revision, as a read. A range in it below the compacted
    /// revision or above the current one fails as it would through the
    /// log.
    pub fn txn_read(&self, req: &TxnRequest) -> Result<TxnResponse> {
        if !txn_is_read_only(req) {
            return Err(Error::InvalidRequest(
                "txn_read takes only transactions without writes".into(),
            ));
        }
        let inner = &*self.inner;
        let rev = inner.current_rev();
        let guard = crossbeam_epoch::pin();
        let mut t = ReadTxn {
            store: self,
            reader: ValueReader::new(inner.view.load(&guard), &*inner.backend),
            rev,
        };
        let resp = t.run(req)?;
        // A compaction that passed the read revision meanwhile may have
        // removed what was read.
        if rev < inner.compact_rev() {
            return Err(Error::Compacted {
                compact_revision: inner.compact_rev(),
            });
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range_op(key: &[u8]) -> RequestOp {
        RequestOp::Range(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })
    }

    #[test]
    fn read_only_txn_answers_as_the_log_would() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db"), Default::default()).unwrap();
        store.put("a", "1").unwrap();
        store.put("b", "2").unwrap();
        let req = TxnRequest {
            compare: vec![Compare {
                key: b"a".to_vec(),
                target: CompareTarget::Value(b"1".to_vec()),
                result: CompareResult::Equal,
                range_end: vec![],
            }],
            success: vec![
                range_op(b"b"),
                RequestOp::Txn(TxnRequest {
                    compare: vec![Compare {
                        key: b"zz".to_vec(),
                        target: CompareTarget::Version(0),
                        result: CompareResult::Greater,
                        range_end: vec![],
                    }],
                    success: vec![],
                    failure: vec![range_op(b"a")],
                }),
            ],
            failure: vec![range_op(b"a")],
        };
        assert!(txn_is_read_only(&req));
        let read = store.txn_read(&req).unwrap();
        let logged = store.txn(req.clone()).unwrap();
        assert_eq!(read, logged);
        assert!(read.succeeded);
        assert_eq!(read.header.revision, 3);
        let mut writes = req.clone();
        writes.failure.push(RequestOp::Put(PutRequest {
            key: b"c".to_vec(),
            ..Default::default()
        }));
        assert!(!txn_is_read_only(&writes));
        assert!(store.txn_read(&writes).is_err());
    }
}
