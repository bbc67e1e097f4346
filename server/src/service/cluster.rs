//! Cluster: MemberList from the log's configuration; MemberAdd, Remove,
//! Promote and Update through the log (raft configuration changes), with
//! etcd's checks first.

use std::sync::Arc;

use proto::etcdserverpb::cluster_client::ClusterClient;
use proto::etcdserverpb::cluster_server::Cluster;
use proto::etcdserverpb::*;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::observe;
use crate::config::Url;
use crate::errors::EtcdError;
use crate::node::{member_id, Node};
use crate::replication::{MemberInfo, MembershipChange};

const SVC: &str = "etcdserverpb.Cluster";

pub struct ClusterService {
    pub node: Arc<Node>,
}

fn member(m: MemberInfo) -> Member {
    Member {
        id: m.id,
        name: m.name,
        peer_ur_ls: m.peer_urls,
        client_ur_ls: m.client_urls,
        is_learner: m.is_learner,
    }
}

/// A member has started once it published its name through the log.
fn started_voters(members: &[MemberInfo], except: u64) -> (usize, usize) {
    let voters = members.iter().filter(|m| !m.is_learner && m.id != except);
    let (mut n, mut started) = (0, 0);
    for m in voters {
        n += 1;
        started += !m.name.is_empty() as usize;
    }
    (n, started)
}

/// etcd's strict reconfiguration check (IsReadyToAddVotingMember): after
/// adding a voter, the started voters must still make a quorum — except
/// for the second member of a one-member cluster.
// Written as etcd writes it (quorum = n/2 + 1).
#[allow(clippy::int_plus_one, clippy::manual_div_ceil)]
fn ready_to_add_voter(members: &[MemberInfo]) -> bool {
    let (n, started) = started_voters(members, 0);
    let n = n + 1;
    (started == 1 && n == 2) || started >= n / 2 + 1
}

/// IsReadyToRemoveVotingMember: the remaining started voters make a
/// quorum of the remaining voters.
// Written as etcd writes it (quorum = n/2 + 1).
#[allow(clippy::int_plus_one, clippy::manual_div_ceil)]
fn ready_to_remove_voter(members: &[MemberInfo], id: u64) -> bool {
    if members.iter().any(|m| m.id == id && m.is_learner) {
        return true;
    }
    let (n, started) = started_voters(members, id);
    started >= n / 2 + 1
}

/// IsReadyToPromoteMember: the learner counts as a started voter.
// Written as etcd writes it (quorum = n/2 + 1).
#[allow(clippy::int_plus_one, clippy::manual_div_ceil)]
fn ready_to_promote(members: &[MemberInfo]) -> bool {
    let (n, started) = started_voters(members, 0);
    started + 1 >= (n + 1) / 2 + 1
}

impl ClusterService {
    /// Membership changes are proposed by the leader; a follower forwards
    /// the request to it (raft forwards etcd's conf-change proposals).
    fn leader_client(&self) -> Result<Option<ClusterClient<Channel>>, Status> {
        if self.node.is_leader() {
            return Ok(None);
        }
        let ch = self.node.leader_channel().ok_or(EtcdError::NoLeader)?;
        Ok(Some(ClusterClient::new(ch)))
    }

    fn find(&self, id: u64) -> Result<MemberInfo, Status> {
        self.node
            .repl
            .members()
            .into_iter()
            .find(|m| m.id == id)
            .ok_or_else(|| EtcdError::MemberNotFound.into())
    }

    async fn add(&self, r: MemberAddRequest) -> Result<MemberAddResponse, Status> {
        self.node.learner_guard()?;
        let mut urls = Vec::new();
        for u in &r.peer_ur_ls {
            urls.push(
                Url::parse(u)
                    .map_err(|_| EtcdError::MemberBadUrls)?
                    .to_string(),
            );
        }
        if urls.is_empty() {
            return Err(EtcdError::MemberBadUrls.into());
        }
        if let Some(mut leader) = self.leader_client()? {
            return Ok(leader.member_add(r).await?.into_inner());
        }
        let existing = self.node.repl.members();
        if existing
            .iter()
            .any(|m| m.peer_urls.iter().any(|u| urls.contains(u)))
        {
            return Err(EtcdError::PeerUrlExist.into());
        }
        if !r.is_learner && !ready_to_add_voter(&existing) {
            return Err(EtcdError::MemberNotEnoughStarted.into());
        }
        // The new member's name is not known yet; its id comes from its
        // first peer URL until it starts with its name.
        let id = member_id(&self.node.cfg.initial_cluster_token, &urls[0]);
        let change = MembershipChange::Add {
            id,
            peer_urls: urls.clone(),
            is_learner: r.is_learner,
        };
        let members = self.node.repl.change_membership(change).await?;
        Ok(MemberAddResponse {
            header: Some(self.node.header()),
            member: Some(Member {
                id,
                name: String::new(),
                peer_ur_ls: urls,
                client_ur_ls: vec![],
                is_learner: r.is_learner,
            }),
            members: members.into_iter().map(member).collect(),
        })
    }

    async fn remove(&self, r: MemberRemoveRequest) -> Result<MemberRemoveResponse, Status> {
        self.node.learner_guard()?;
        self.find(r.id)?;
        if r.id == self.node.member_id && self.node.is_leader() {
            // The leader does not propose its own removal: it hands
            // leadership to another voter first, which then removes it.
            let to = self
                .node
                .repl
                .members()
                .into_iter()
                .find(|m| m.id != r.id && !m.is_learner)
                .ok_or(EtcdError::Unhealthy)?;
            self.node.repl.transfer_leadership(to.id).await?;
        }
        if let Some(mut leader) = self.leader_client()? {
            return Ok(leader.member_remove(r).await?.into_inner());
        }
        if !ready_to_remove_voter(&self.node.repl.members(), r.id) {
            return Err(EtcdError::MemberNotEnoughStarted.into());
        }
        let members = self
            .node
            .repl
            .change_membership(MembershipChange::Remove { id: r.id })
            .await?;
        Ok(MemberRemoveResponse {
            header: Some(self.node.header()),
            members: members.into_iter().map(member).collect(),
        })
    }

    async fn promote(&self, r: MemberPromoteRequest) -> Result<MemberPromoteResponse, Status> {
        self.node.learner_guard()?;
        if !self.find(r.id)?.is_learner {
            return Err(EtcdError::MemberNotLearner.into());
        }
        if let Some(mut leader) = self.leader_client()? {
            return Ok(leader.member_promote(r).await?.into_inner());
        }
        if !ready_to_promote(&self.node.repl.members()) {
            return Err(EtcdError::MemberNotEnoughStarted.into());
        }
        let members = self
            .node
            .repl
            .change_membership(MembershipChange::Promote { id: r.id })
            .await?;
        Ok(MemberPromoteResponse {
            header: Some(self.node.header()),
            members: members.into_iter().map(member).collect(),
        })
    }

    async fn update(&self, r: MemberUpdateRequest) -> Result<MemberUpdateResponse, Status> {
        self.node.learner_guard()?;
        self.find(r.id)?;
        for u in &r.peer_ur_ls {
            Url::parse(u).map_err(|_| EtcdError::MemberBadUrls)?;
        }
        // Peer URL updates need the transport to re-dial; not offered.
        Err(EtcdError::NotCapable.into())
    }

    async fn list(&self) -> Result<MemberListResponse, Status> {
        self.node.learner_guard()?;
        Ok(MemberListResponse {
            header: Some(self.node.header()),
            members: self.node.repl.members().into_iter().map(member).collect(),
        })
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        r: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        observe(SVC, "MemberAdd", self.add(r.into_inner()).await)
    }
    async fn member_remove(
        &self,
        r: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        observe(SVC, "MemberRemove", self.remove(r.into_inner()).await)
    }
    async fn member_update(
        &self,
        r: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        observe(SVC, "MemberUpdate", self.update(r.into_inner()).await)
    }
    async fn member_list(
        &self,
        _r: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        observe(SVC, "MemberList", self.list().await)
    }
    async fn member_promote(
        &self,
        r: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        observe(SVC, "MemberPromote", self.promote(r.into_inner()).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u64, started: bool, is_learner: bool) -> MemberInfo {
        MemberInfo {
            id,
            name: if started {
                format!("m{id}")
            } else {
                String::new()
            },
            peer_urls: vec![],
            client_urls: vec![],
            is_learner,
        }
    }

    /// etcd's strict reconfiguration checks (membership/cluster.go).
    #[test]
    fn quorum_of_started_members_is_kept() {
        // The second member of a one-member cluster may always be added.
        assert!(ready_to_add_voter(&[m(1, true, false)]));
        // 1 of 2 started: a third voter would need 2 started.
        assert!(!ready_to_add_voter(&[
            m(1, true, false),
            m(2, false, false)
        ]));
        assert!(ready_to_add_voter(&[m(1, true, false), m(2, true, false)]));
        // Learners do not count.
        assert!(!ready_to_add_voter(&[
            m(1, true, false),
            m(2, false, false),
            m(3, true, true)
        ]));
        let three = [m(1, true, false), m(2, true, false), m(3, false, false)];
        assert!(ready_to_remove_voter(&three, 3));
        assert!(!ready_to_remove_voter(&three, 1));
        assert!(ready_to_remove_voter(
            &[m(1, true, false), m(9, false, true)],
            9
        ));
        // The learner to promote counts as started.
        assert!(ready_to_promote(&[m(1, true, false), m(9, false, true)]));
        assert!(!ready_to_promote(&[
            m(1, true, false),
            m(2, false, false),
            m(3, false, false),
            m(9, false, true)
        ]));
    }
}
