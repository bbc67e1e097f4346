//! KV: Range, Put, DeleteRange, Txn, Compact.

use std::sync::Arc;

use engine::mvcc::{self, Command};
use proto::etcdserverpb::kv_server::Kv;
use proto::etcdserverpb::*;
use tonic::{Request, Response, Status};

use super::observe;
use crate::convert;
use crate::errors;
use crate::metrics::Metrics;
use crate::node::Node;
use crate::validate;

const SVC: &str = "etcdserverpb.KV";

pub struct KvService {
    pub node: Arc<Node>,
}

impl KvService {
    async fn range(&self, r: RangeRequest) -> Result<RangeResponse, Status> {
        validate::check_range(&r)?;
        if !r.serializable {
            // A learner serves serializable reads only (etcd 3.4).
            self.node.learner_guard()?;
        }
        Metrics::global().range_total.inc();
        if !r.serializable {
            self.node.read_barrier().await?;
        }
        let req = convert::range(r)?;
        let resp = self
            .node
            .store()
            .range(&req)
            .map_err(|e| errors::from_mvcc(&e))?;
        Ok(convert::range_response(resp, self.node.header()))
    }

    async fn put(&self, r: PutRequest) -> Result<PutResponse, Status> {
        self.node.learner_guard()?;
        validate::check_put(&r)?;
        Metrics::global().put_total.inc();
        self.node.check_quota(r.key.len() + r.value.len()).await?;
        match self.node.propose(&Command::Put(convert::put(r))).await? {
            mvcc::Response::Put(p) => Ok(convert::put_response(p, self.node.header())),
            other => Err(errors::unknown(format!("unexpected answer {other:?}"))),
        }
    }

    async fn delete_range(&self, r: DeleteRangeRequest) -> Result<DeleteRangeResponse, Status> {
        self.node.learner_guard()?;
        validate::check_delete(&r)?;
        Metrics::global().delete_total.inc();
        match self
            .node
            .propose(&Command::DeleteRange(convert::delete(r)))
            .await?
        {
            mvcc::Response::DeleteRange(d) => Ok(convert::delete_response(d, self.node.header())),
            other => Err(errors::unknown(format!("unexpected answer {other:?}"))),
        }
    }

    async fn txn(&self, r: TxnRequest) -> Result<TxnResponse, Status> {
        self.node.learner_guard()?;
        validate::check_txn(&r, self.node.cfg.max_txn_ops)?;
        Metrics::global().txn_total.inc();
        if convert::txn_is_read_only(&r) {
            // etcd serves a transaction without writes as a read: after a
            // ReadIndex unless every range in it is serializable.
            if !convert::txn_is_serializable(&r) {
                self.node.read_barrier().await?;
            }
            let t = convert::txn(r)?;
            let resp = self
                .node
                .store()
                .txn_read(&t)
                .map_err(|e| errors::from_mvcc(&e))?;
            let rev = resp.header.revision;
            return Ok(convert::txn_response(resp, self.node.header_at(rev)));
        }
        self.node.check_quota(r.encoded_len_hint()).await?;
        let t = convert::txn(r)?;
        match self.node.propose(&Command::Txn(t)).await? {
            mvcc::Response::Txn(t) => Ok(convert::txn_response(t, self.node.header())),
            other => Err(errors::unknown(format!("unexpected answer {other:?}"))),
        }
    }

    async fn compact(&self, r: CompactionRequest) -> Result<CompactionResponse, Status> {
        self.node.learner_guard()?;
        validate::check_compact(&r)?;
        let cmd = Command::Compact(mvcc::CompactionRequest {
            revision: r.revision,
            physical: r.physical,
        });
        let resp = match self.node.propose(&cmd).await? {
            mvcc::Response::Compact(c) => c,
            other => return Err(errors::unknown(format!("unexpected answer {other:?}"))),
        };
        if r.physical {
            let store = self.node.store();
            let rev = r.revision;
            tokio::task::spawn_blocking(move || store.wait_compaction(rev))
                .await
                .map_err(errors::unknown)?
                .map_err(|e| errors::from_mvcc(&e))?;
        }
        Ok(CompactionResponse {
            header: Some(self.node.header_at(resp.header.revision)),
        })
    }
}

/// The size a txn adds at most, for the quota check.
trait EncodedLenHint {
    fn encoded_len_hint(&self) -> usize;
}

impl EncodedLenHint for TxnRequest {
    fn encoded_len_hint(&self) -> usize {
        prost::Message::encoded_len(self)
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, r: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        observe(SVC, "Range", KvService::range(self, r.into_inner()).await)
    }
    async fn put(&self, r: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        observe(SVC, "Put", KvService::put(self, r.into_inner()).await)
    }
    async fn delete_range(
        &self,
        r: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        observe(
            SVC,
            "DeleteRange",
            KvService::delete_range(self, r.into_inner()).await,
        )
    }
    async fn txn(&self, r: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        observe(SVC, "Txn", KvService::txn(self, r.into_inner()).await)
    }
    async fn compact(
        &self,
        r: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        observe(
            SVC,
            "Compact",
            KvService::compact(self, r.into_inner()).await,
        )
    }
}
