//! Lease: Grant and Revoke through the log; KeepAlive (a stream),
//! TimeToLive and Leases answered by the leader's lessor, as etcd does.

use std::pin::Pin;
use std::sync::Arc;

use engine::mvcc::{self, Command};
use proto::etcdserverpb::lease_client::LeaseClient;
use proto::etcdserverpb::lease_server::Lease;
use proto::etcdserverpb::*;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::observe;
use crate::errors::{self, EtcdError};
use crate::metrics::{Metrics, RpcKind};
use crate::node::Node;

const SVC: &str = "etcdserverpb.Lease";

pub struct LeaseService {
    pub node: Arc<Node>,
}

impl LeaseService {
    async fn grant(&self, r: LeaseGrantRequest) -> Result<LeaseGrantResponse, Status> {
        self.node.learner_guard()?;
        self.node.check_quota(0).await?;
        // etcd checks the TTL before proposing.
        if r.ttl > mvcc::MAX_LEASE_TTL_SECS {
            return Err(EtcdError::LeaseTtlTooLarge.into());
        }
        let id = if r.id == 0 {
            self.node.next_lease_id()
        } else {
            r.id
        };
        let cmd = Command::LeaseGrant(mvcc::LeaseGrantRequest { ttl: r.ttl, id });
        match self.node.propose(&cmd).await? {
            mvcc::Response::LeaseGrant(g) => Ok(LeaseGrantResponse {
                header: Some(self.node.header_at(g.header.revision)),
                id: g.id,
                ttl: g.ttl,
                error: g.error,
            }),
            other => Err(errors::unknown(format!("unexpected answer {other:?}"))),
        }
    }

    async fn revoke(&self, r: LeaseRevokeRequest) -> Result<LeaseRevokeResponse, Status> {
        self.node.learner_guard()?;
        let cmd = Command::LeaseRevoke(mvcc::LeaseRevokeRequest { id: r.id });
        match self.node.propose(&cmd).await? {
            mvcc::Response::LeaseRevoke(x) => Ok(LeaseRevokeResponse {
                header: Some(self.node.header_at(x.header.revision)),
            }),
            other => Err(errors::unknown(format!("unexpected answer {other:?}"))),
        }
    }

    async fn time_to_live(
        &self,
        r: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, Status> {
        self.node.learner_guard()?;
        // Only the leader's lessor sees the keep-alives: a follower asks it
        // (etcd forwards LeaseTimeToLive to the leader too).
        if !self.node.is_leader() {
            let ch = self.node.leader_channel().ok_or(EtcdError::NoLeader)?;
            return Ok(LeaseClient::new(ch)
                .lease_time_to_live(r)
                .await?
                .into_inner());
        }
        self.node.read_barrier().await?;
        match self.node.store().lease_time_to_live(r.id, r.keys) {
            Ok(t) => Ok(LeaseTimeToLiveResponse {
                header: Some(self.node.header_at(t.header.revision)),
                id: t.id,
                ttl: t.ttl,
                granted_ttl: t.granted_ttl,
                keys: t.keys,
            }),
            // etcd answers an unknown lease with TTL -1, not an error.
            Err(mvcc::Error::LeaseNotFound) => Ok(LeaseTimeToLiveResponse {
                header: Some(self.node.header()),
                id: r.id,
                ttl: -1,
                granted_ttl: 0,
                keys: vec![],
            }),
            Err(e) => Err(errors::from_mvcc(&e)),
        }
    }

    async fn leases(&self) -> Result<LeaseLeasesResponse, Status> {
        self.node.learner_guard()?;
        self.node.read_barrier().await?;
        let l = self.node.store().lease_leases();
        Ok(LeaseLeasesResponse {
            header: Some(self.node.header_at(l.header.revision)),
            leases: l.leases.into_iter().map(|id| LeaseStatus { id }).collect(),
        })
    }
}

/// One keep-alive: the remaining TTL, or 0 for a lease that does not
/// exist (etcd's answer; clients report it as expired). Only the leader's
/// lessor renews leases: a follower forwards the request to it, as etcd's
/// does.
async fn keep_alive(node: &Node, id: i64) -> Result<LeaseKeepAliveResponse, Status> {
    if !node.is_leader() {
        let ch = node.leader_channel().ok_or(EtcdError::NoLeader)?;
        let req = LeaseKeepAliveRequest { id };
        let mut answers = LeaseClient::new(ch)
            .lease_keep_alive(tokio_stream::once(req))
            .await?
            .into_inner();
        return answers
            .message()
            .await?
            .ok_or_else(|| EtcdError::LeaderChanged.into());
    }
    match node.store().lease_keep_alive(id) {
        Ok(k) => Ok(LeaseKeepAliveResponse {
            header: Some(node.header_at(k.header.revision)),
            id,
            ttl: k.ttl,
        }),
        Err(mvcc::Error::LeaseNotFound) => Ok(LeaseKeepAliveResponse {
            header: Some(node.header()),
            id,
            ttl: 0,
        }),
        Err(e) => Err(errors::from_mvcc(&e)),
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        r: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        observe(SVC, "LeaseGrant", self.grant(r.into_inner()).await)
    }
    async fn lease_revoke(
        &self,
        r: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        observe(SVC, "LeaseRevoke", self.revoke(r.into_inner()).await)
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        r: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        Metrics::global().rpc_started(RpcKind::BidiStream, SVC, "LeaseKeepAlive");
        self.node.learner_guard()?;
        let node = self.node.clone();
        let mut inbound = r.into_inner();
        // Requests are answered in order; an undecodable request or a
        // failed keep-alive ends the stream with its status.
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            while let Some(req) = inbound.next().await {
                let r = match req {
                    Ok(req) => keep_alive(&node, req.id).await,
                    Err(s) => Err(s),
                };
                let failed = r.is_err();
                if let Err(s) = &r {
                    Metrics::global().rpc_handled(
                        RpcKind::BidiStream,
                        SVC,
                        "LeaseKeepAlive",
                        s.code(),
                    );
                }
                if tx.send(r).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn lease_time_to_live(
        &self,
        r: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        observe(
            SVC,
            "LeaseTimeToLive",
            self.time_to_live(r.into_inner()).await,
        )
    }
    async fn lease_leases(
        &self,
        _r: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        observe(SVC, "LeaseLeases", self.leases().await)
    }
}
