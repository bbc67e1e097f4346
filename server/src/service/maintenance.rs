//! Maintenance: Alarm (NOSPACE at the backend quota), Status, Defragment,
//! Hash, HashKV, Snapshot (the backend streamed in chunks), MoveLeader.

use std::pin::Pin;
use std::sync::Arc;

use proto::etcdserverpb::maintenance_server::Maintenance;
use proto::etcdserverpb::*;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::observe;
use crate::entry::{AlarmAction, AlarmChange};
use crate::errors::{self, EtcdError};
use crate::metrics::{Metrics, RpcKind};
use crate::node::Node;
use crate::snapshot;

const SVC: &str = "etcdserverpb.Maintenance";

pub struct MaintenanceService {
    pub node: Arc<Node>,
}

impl MaintenanceService {
    async fn alarm(&self, r: AlarmRequest) -> Result<AlarmResponse, Status> {
        self.node.learner_guard()?;
        let action = match r.action {
            0 => None,
            1 => Some(AlarmAction::Activate),
            2 => Some(AlarmAction::Deactivate),
            v => {
                return Err(Status::invalid_argument(format!(
                    "etcdserver: invalid alarm action {v}"
                )))
            }
        };
        if let Some(action) = action {
            let alarm = u8::try_from(r.alarm)
                .ok()
                .filter(|a| (1..=2).contains(a))
                .ok_or_else(|| Status::invalid_argument("etcdserver: invalid alarm type"))?;
            let change = AlarmChange {
                action,
                member_id: r.member_id,
                alarm,
            };
            self.node.propose_alarm(change).await?;
        }
        let alarms = self
            .node
            .applier
            .alarms
            .list()
            .into_iter()
            .map(|(member_id, alarm)| AlarmMember {
                member_id,
                alarm: alarm as i32,
            })
            .collect();
        Ok(AlarmResponse {
            header: Some(self.node.header()),
            alarms,
        })
    }

    async fn status(&self) -> Result<StatusResponse, Status> {
        let st = self.node.repl.status();
        self.node.refresh_db_size();
        let mut errs = Vec::new();
        for (_, a) in self.node.applier.alarms.list() {
            errs.push(format!(
                "memberID:{} alarm:{}",
                self.node.member_id,
                alarm_name(a)
            ));
        }
        if let Some(f) = self.node.applier.failure() {
            errs.push(f);
        }
        Ok(StatusResponse {
            header: Some(self.node.header()),
            version: crate::ETCD_API_VERSION.to_string(),
            db_size: self.node.db_size(),
            leader: st.leader_id,
            raft_index: st.commit_index,
            raft_term: st.term,
            raft_applied_index: st.applied_index,
            errors: errs,
            db_size_in_use: self.node.db_size(),
            is_learner: st.is_learner,
        })
    }

    async fn defragment(&self) -> Result<DefragmentResponse, Status> {
        self.node.learner_guard()?;
        // Local to this member, as etcd's: its applying pauses while the
        // backend is copied into a fresh file without free space.
        let applier = self.node.applier.clone();
        let (before, after) = tokio::task::spawn_blocking(move || applier.defragment())
            .await
            .map_err(errors::unknown)?
            .map_err(errors::unknown)?;
        tracing::info!(before, after, "defragmented the backend");
        self.node.refresh_db_size();
        Ok(DefragmentResponse {
            header: Some(self.node.header()),
        })
    }

    async fn hash_kv(&self, revision: i64) -> Result<HashKvResponse, Status> {
        self.node.learner_guard()?;
        let store = self.node.store();
        let h = tokio::task::spawn_blocking(move || store.hash_kv(revision))
            .await
            .map_err(errors::unknown)?
            .map_err(|e| errors::from_mvcc(&e))?;
        Ok(HashKvResponse {
            header: Some(self.node.header_at(h.header.revision)),
            hash: h.hash,
            compact_revision: h.compact_revision,
        })
    }

    async fn move_leader(&self, r: MoveLeaderRequest) -> Result<MoveLeaderResponse, Status> {
        self.node.learner_guard()?;
        if !self.node.repl.members().iter().any(|m| m.id == r.target_id) {
            return Err(EtcdError::BadLeaderTransferee.into());
        }
        self.node.repl.transfer_leadership(r.target_id).await?;
        Ok(MoveLeaderResponse {
            header: Some(self.node.header()),
        })
    }
}

fn alarm_name(a: u8) -> &'static str {
    match a {
        1 => "NOSPACE",
        2 => "CORRUPT",
        _ => "NONE",
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, r: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        observe(
            SVC,
            "Alarm",
            MaintenanceService::alarm(self, r.into_inner()).await,
        )
    }
    async fn status(&self, _r: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        observe(SVC, "Status", MaintenanceService::status(self).await)
    }
    async fn defragment(
        &self,
        _r: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        observe(
            SVC,
            "Defragment",
            MaintenanceService::defragment(self).await,
        )
    }
    async fn hash(&self, _r: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        // etcd's Hash: the whole backend (every bucket), not HashKV.
        let store = self.node.store();
        let r = match self.node.learner_guard() {
            Err(e) => Err(e),
            Ok(()) => tokio::task::spawn_blocking(move || store.hash_backend())
                .await
                .map_err(errors::unknown)
                .and_then(|r| r.map_err(|e| errors::from_mvcc(&e))),
        }
        .map(|(hash, rev)| HashResponse {
            header: Some(self.node.header_at(rev)),
            hash,
        });
        observe(SVC, "Hash", r)
    }
    async fn hash_kv(&self, r: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        observe(
            SVC,
            "HashKV",
            MaintenanceService::hash_kv(self, r.into_inner().revision).await,
        )
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        _r: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Metrics::global().rpc_started(RpcKind::ServerStream, SVC, "Snapshot");
        self.node.learner_guard()?;
        let s = snapshot::stream(self.node.clone()).await?;
        Ok(Response::new(s))
    }

    async fn move_leader(
        &self,
        r: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        observe(
            SVC,
            "MoveLeader",
            MaintenanceService::move_leader(self, r.into_inner()).await,
        )
    }
}
