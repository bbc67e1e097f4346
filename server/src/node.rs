//! One ferrokv member: the MVCC store under `member/snap/db`, the applier,
//! the replicated log, and what every service shares — the response
//! header, proposing a write and waiting for its answer, linearizable read
//! barriers, the backend quota, lease expiry.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use engine::backend::BackendKind as EngineBackend;
use engine::mvcc::{self, Command, LeaseExpiry, Store, StoreOptions};
use parking_lot::Mutex;
use proto::etcdserverpb::ResponseHeader;
use raftlog::cluster::{ClusterState as RaftClusterState, InitialCluster, Member as RaftMember};
use tonic::Status;

use crate::apply::{Answer, Applier};
use crate::config::{BackendKind, ClusterState, Config};
use crate::entry::{self, AlarmAction, AlarmChange, Attributes};
use crate::errors::{self, EtcdError};
use crate::metrics::{HistogramFeed, Metrics};
use crate::raft::{Machine, RaftLog};
use crate::replication::Replication;

/// etcd's AlarmType NOSPACE.
pub const ALARM_NOSPACE: u8 = 1;

pub struct Node {
    pub cfg: Config,
    pub applier: Arc<Applier>,
    /// The log (raftlog's node) behind the `Replication` seam.
    pub repl: Arc<dyn Replication>,
    pub raft: Arc<RaftLog>,
    pub member_id: u64,
    pub cluster_id: u64,
    /// How long a request waits for its entry to be applied (etcd: 5 s
    /// plus twice the election timeout).
    pub request_timeout: Duration,
    /// The backend size last measured, for the quota check.
    db_size_bytes: AtomicI64,
    /// Bytes of writes accepted since the backend size was last measured
    /// after a commit (quota check).
    unmeasured_bytes: AtomicU64,
    lease_seq: AtomicU64,
    /// A connection to the leader's client URL (id, channel), for the
    /// requests a follower forwards (LeaseKeepAlive, LeaseTimeToLive,
    /// member changes).
    leader_channel: Mutex<Option<(u64, tonic::transport::Channel)>>,
}

/// The raft member id of a member: raftlog's derivation from the cluster
/// token and the member's name for the members of `--initial-cluster`,
/// and from its first peer URL for members added later (MemberAdd does
/// not carry a name), so every member computes every id from the flags.
pub fn member_id(token: &str, name_or_peer_url: &str) -> u64 {
    raftlog::cluster::member_id(token, name_or_peer_url)
}

/// The cluster id: derived from the cluster token, which every member of
/// a cluster shares (a member that joins later cannot know the initial
/// member list, from which etcd derives it).
pub fn cluster_id(token: &str) -> u64 {
    raftlog::cluster::member_id(token, "\0cluster")
}

/// `member/id`: this member's raft id, written when the data dir is
/// created, so a restart keeps it whatever `--initial-cluster-state` says.
fn resolve_member_id(cfg: &Config, member_dir: &Path) -> anyhow::Result<u64> {
    let path = member_dir.join("id");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = u64::from_str_radix(text.trim(), 16)
                .map_err(|_| anyhow::anyhow!("{}: not a member id: {text:?}", path.display()))?;
            return Ok(id);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let id = match cfg.initial_cluster_state {
        ClusterState::New => member_id(&cfg.initial_cluster_token, &cfg.name),
        ClusterState::Existing => member_id(
            &cfg.initial_cluster_token,
            &cfg.initial_advertise_peer_urls[0].to_string(),
        ),
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{id:x}\n"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(member_dir)?.sync_all()?;
    Ok(id)
}

/// raftlog's view of `--initial-cluster`: every member (ids from names)
/// for a new cluster; only this member when it joins an existing one
/// (it learns the others from the leader).
fn raft_cluster(cfg: &Config, me: u64) -> InitialCluster {
    let token = cfg.initial_cluster_token.clone();
    let mut members: Vec<RaftMember> = match cfg.initial_cluster_state {
        ClusterState::New => cfg
            .initial_cluster
            .iter()
            .map(|m| RaftMember {
                id: member_id(&token, &m.name),
                name: m.name.clone(),
                peer_urls: m.peer_urls.iter().map(|u| u.to_string()).collect(),
            })
            .collect(),
        ClusterState::Existing => vec![],
    };
    if !members.iter().any(|m| m.id == me) {
        members.retain(|m| m.name != cfg.name);
        members.push(RaftMember {
            id: me,
            name: cfg.name.clone(),
            peer_urls: cfg
                .initial_advertise_peer_urls
                .iter()
                .map(|u| u.to_string())
                .collect(),
        });
    }
    members.sort_by_key(|m| m.id);
    InitialCluster { token, members }
}

impl Node {
    /// The store's path inside the data dir, as etcd's: member/snap/db.
    pub fn db_path(cfg: &Config) -> PathBuf {
        cfg.data_dir.join("member").join("snap").join("db")
    }

    pub fn store_options(cfg: &Config) -> StoreOptions {
        let mut opts = StoreOptions {
            backend: match cfg.backend {
                BackendKind::Btree => EngineBackend::Btree,
                BackendKind::Redb => EngineBackend::Redb,
                BackendKind::Lmdb => EngineBackend::Lmdb,
            },
            // The leader proposes revocations of expired leases, so every
            // member deletes the keys at the same log position.
            lease_expiry: LeaseExpiry::External,
            ..StoreOptions::default()
        };
        if let Some(i) = cfg.backend_batch_interval {
            opts.batch_interval = i;
        }
        if let Some(l) = cfg.backend_batch_limit {
            opts.batch_limit = l as usize;
        }
        opts
    }

    /// raftlog's settings from etcd's flags.
    fn raft_config(cfg: &Config, id: u64) -> raftlog::Config {
        let mut r = raftlog::Config::new(id);
        r.tick_interval = cfg.heartbeat_interval;
        r.heartbeat_tick = 1;
        // The flags guarantee election ≥ 5 × heartbeat.
        let ticks = (cfg.election_timeout.as_millis() / cfg.heartbeat_interval.as_millis().max(1))
            .max(2) as usize;
        r.election_tick = ticks;
        r.read_index_retry_ticks = ticks;
        r.snapshot_interval_entries = cfg.snapshot_count.max(1);
        r.compaction_margin_entries = cfg.snapshot_catchup_entries;
        // The server refuses requests over --max-request-bytes itself; the
        // envelope adds a few bytes.
        r.command_bytes_max = cfg.max_request_bytes + 1024;
        r.max_uncommitted_size = r.max_uncommitted_size.max(4 * r.command_bytes_max as u64);
        r
    }

    pub fn open(cfg: Config) -> anyhow::Result<Arc<Node>> {
        let member_dir = cfg.data_dir.join("member");
        std::fs::create_dir_all(member_dir.join("snap"))?;
        std::fs::create_dir_all(member_dir.join("wal"))?;
        let me = resolve_member_id(&cfg, &member_dir)?;
        let store_opts = Self::store_options(&cfg);
        let store = Arc::new(Store::open(Self::db_path(&cfg), store_opts.clone())?);
        let applier = Arc::new(Applier::new(store, Self::db_path(&cfg), store_opts, me));
        applier.reload_server_state().map_err(anyhow::Error::msg)?;
        let cluster = raft_cluster(&cfg, me);
        for m in &cluster.members {
            applier.members.seed(m.id, &m.name, m.peer_urls.clone());
        }
        let listen_peer = cfg.listen_peer_urls[0]
            .socket_addr()
            .map_err(anyhow::Error::msg)?
            .to_string();
        let mut ncfg = raftlog::NodeConfig::new(
            Self::raft_config(&cfg, me),
            &cfg.data_dir,
            cluster,
            &listen_peer,
        );
        ncfg.advertise_peer_url = cfg.initial_advertise_peer_urls[0].to_string();
        // The WAL's writer is fed by the raft loop, one batch per loop
        // turn; spinning for the next batch burns a core's worth of time
        // at moderate load without shortening a round trip (measured).
        ncfg.wal.writer_spin = Duration::ZERO;
        ncfg.wal.waiter_spin = Duration::ZERO;
        ncfg.wal.io = cfg.wal_io.mode();
        ncfg.cluster_state = match cfg.initial_cluster_state {
            ClusterState::New => RaftClusterState::New,
            ClusterState::Existing => RaftClusterState::Existing,
        };
        let machine = Machine::new(applier.clone());
        let raft_node = raftlog::Node::open(ncfg, machine)?;
        let request_timeout = Duration::from_secs(5) + 2 * cfg.election_timeout;
        let raft = Arc::new(RaftLog::new(
            raft_node,
            applier.clone(),
            me,
            request_timeout,
        ));
        Metrics::global()
            .quota_backend_bytes
            .set(cfg.quota_backend_bytes as i64);
        let node = Arc::new(Node {
            cluster_id: cluster_id(&cfg.initial_cluster_token),
            member_id: me,
            request_timeout,
            db_size_bytes: AtomicI64::new(0),
            unmeasured_bytes: AtomicU64::new(0),
            lease_seq: AtomicU64::new(0),
            leader_channel: Mutex::new(None),
            cfg,
            applier,
            repl: raft.clone(),
            raft,
        });
        node.refresh_db_size();
        Ok(node)
    }

    /// The store to serve from.
    pub fn store(&self) -> Arc<Store> {
        self.applier.store()
    }

    /// etcd's publish: announces this member's name and client URLs
    /// through the log, retrying until the entry is applied. A member
    /// serves clients only after that (the log is then replayed and a
    /// leader is known), as etcd does.
    pub async fn publish(&self) {
        let attrs = Attributes {
            member_id: self.member_id,
            name: self.cfg.name.clone(),
            client_urls: self
                .cfg
                .advertise_client_urls
                .iter()
                .map(|u| u.to_string())
                .collect(),
        };
        loop {
            // No leader yet (a start or an election): wait for one rather
            // than for a fixed retry interval.
            while self.repl.leader_id() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            match self.propose_attributes(&attrs).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::info!("publishing member attributes: {}; retrying", e.message());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn propose_attributes(&self, attrs: &Attributes) -> Result<(), Status> {
        let Some((id, rx)) = self.applier.waits.register() else {
            return Err(EtcdError::TooManyRequests.into());
        };
        let data = match entry::attributes(self.member_id, id, attrs) {
            Ok(d) => d,
            Err(e) => {
                self.applier.waits.cancel(id);
                return Err(errors::unknown(e));
            }
        };
        self.wait(id, data, rx).await.map(|_| ())
    }

    /// Background duties: term and leader for headers, WAL fsync metrics,
    /// backend size for metrics and quota, and on the leader lease expiry
    /// (it proposes their revocation) and lease renewal when it takes over.
    pub fn spawn_background(self: &Arc<Self>) {
        let node = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n: u64 = 0;
            let mut was_leader = false;
            let (wal_feed, commit_feed) = (HistogramFeed::default(), HistogramFeed::default());
            let mut last_campaign: Option<tokio::time::Instant> = None;
            loop {
                tick.tick().await;
                n += 1;
                let s = node.raft.refresh();
                if node.raft.node().is_stopped() {
                    // etcd exits when it was removed or its log failed;
                    // answers in flight (the removal's own) go out first.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    match node.raft.node().failure() {
                        Some(why) => {
                            tracing::error!("the raft log stopped: {why}; exiting");
                            std::process::exit(1);
                        }
                        None => {
                            tracing::warn!(
                                "the member has been permanently removed from the cluster; exiting"
                            );
                            std::process::exit(0);
                        }
                    }
                }
                let campaign_due =
                    last_campaign.is_none_or(|t| t.elapsed() >= node.cfg.election_timeout);
                if campaign_due && node.raft.campaign_if_alone(&s) {
                    last_campaign = Some(tokio::time::Instant::now());
                }
                let m = Metrics::global();
                let is_leader = s.leader_id == node.member_id;
                m.has_leader.set((s.leader_id != 0) as i64);
                m.is_leader.set(is_leader as i64);
                m.proposals_committed.set(s.commit_index as i64);
                if is_leader && !was_leader {
                    // etcd's lessor Promote: the new leader's deadlines
                    // start over, since keep-alives went to the old one.
                    let store = node.store();
                    for id in store.lease_leases().leases {
                        let _ = store.lease_keep_alive(id);
                    }
                    m.leader_changes.inc();
                }
                was_leader = is_leader;
                if n.is_multiple_of(50) {
                    node.refresh_db_size();
                    if is_leader {
                        node.revoke_expired_leases().await;
                    }
                }
                if n.is_multiple_of(100) {
                    wal_feed.feed(node.raft.wal_fsync_ns(), &m.wal_fsync_seconds);
                    commit_feed.feed(
                        node.store().commit_durations_ns(),
                        &m.backend_commit_seconds,
                    );
                }
            }
        });
    }

    async fn revoke_expired_leases(&self) {
        for id in self.store().expired_leases() {
            let cmd = Command::LeaseRevoke(mvcc::LeaseRevokeRequest { id });
            // Nobody waits: request id 0 from origin 0.
            let _ = self.repl.propose(entry::command(0, 0, &cmd)).await;
        }
    }

    /// A channel to the leader's first client URL, for the requests a
    /// follower forwards; None when no leader (or its URL) is known.
    pub fn leader_channel(&self) -> Option<tonic::transport::Channel> {
        let leader = self.repl.leader_id();
        if leader == 0 {
            return None;
        }
        let mut cached = self.leader_channel.lock();
        if let Some((id, ch)) = cached.as_ref() {
            if *id == leader {
                return Some(ch.clone());
            }
        }
        let url = self
            .applier
            .members
            .get(leader)?
            .client_urls
            .first()?
            .clone();
        let ch = tonic::transport::Endpoint::from_shared(url)
            .ok()?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .connect_lazy();
        *cached = Some((leader, ch.clone()));
        Some(ch)
    }

    /// etcd 3.4's learner: it serves Status and serializable reads only;
    /// every other RPC is refused with "rpc not supported for learner".
    pub fn learner_guard(&self) -> Result<(), Status> {
        if self.repl.is_learner() {
            return Err(EtcdError::NotSupportedForLearner.into());
        }
        Ok(())
    }

    pub fn is_leader(&self) -> bool {
        self.repl.leader_id() == self.member_id
    }

    pub fn refresh_db_size(&self) {
        if let Ok(s) = self.store().status() {
            self.db_size_bytes
                .store(s.db_size_bytes as i64, Ordering::Relaxed);
            Metrics::global()
                .db_total_size_bytes
                .set(s.db_size_bytes as i64);
            Metrics::global()
                .db_in_use_size_bytes
                .set(s.db_size_bytes as i64);
        }
    }

    pub fn db_size(&self) -> i64 {
        self.db_size_bytes.load(Ordering::Relaxed)
    }

    /// The header of a response at `revision`.
    pub fn header_at(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.repl.term(),
        }
    }

    pub fn header(&self) -> ResponseHeader {
        self.header_at(self.store().current_revision())
    }

    /// Waits until every write committed before the call is applied here
    /// (linearizable reads).
    pub async fn read_barrier(&self) -> Result<(), Status> {
        match tokio::time::timeout(self.request_timeout, self.repl.read_barrier()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                Metrics::global().read_indexes_failed.inc();
                Err(e.into())
            }
            Err(_) => {
                Metrics::global().read_indexes_failed.inc();
                Err(EtcdError::Timeout.into())
            }
        }
    }

    /// etcd's quota check: a write that would take the backend beyond the
    /// quota raises the NOSPACE alarm and is refused; while the alarm is
    /// active, every write that adds data is refused.
    pub async fn check_quota(&self, cost: usize) -> Result<(), Status> {
        if self.applier.alarms.has(ALARM_NOSPACE) {
            return Err(EtcdError::NoSpace.into());
        }
        let quota = self.cfg.quota_backend_bytes;
        // Writes reach the backend file in batches, so its size lags the
        // writes accepted since it was measured: count those too, and once
        // they add up to a sixteenth of the quota (or the sum nears the
        // quota), commit the backend and measure again.
        let unmeasured = self
            .unmeasured_bytes
            .fetch_add(cost as u64, Ordering::Relaxed)
            + cost as u64;
        let size = self.db_size() as u64;
        if size + unmeasured <= quota && unmeasured <= quota / 16 {
            return Ok(());
        }
        let store = self.store();
        let _ = tokio::task::spawn_blocking(move || store.sync()).await;
        self.unmeasured_bytes.store(0, Ordering::Relaxed);
        self.refresh_db_size();
        if self.db_size() as u64 + cost as u64 <= quota {
            return Ok(());
        }
        let a = AlarmChange {
            action: AlarmAction::Activate,
            member_id: self.member_id,
            alarm: ALARM_NOSPACE,
        };
        let _ = self.propose_alarm(a).await;
        Err(EtcdError::NoSpace.into())
    }

    /// Proposes `cmd` and waits for the store's answer.
    pub async fn propose(&self, cmd: &Command) -> Result<mvcc::Response, Status> {
        let Some((id, rx)) = self.applier.waits.register() else {
            return Err(EtcdError::TooManyRequests.into());
        };
        let data = entry::command(self.member_id, id, cmd);
        if data.len() > self.cfg.max_request_bytes {
            self.applier.waits.cancel(id);
            return Err(EtcdError::RequestTooLarge.into());
        }
        match self.wait(id, data, rx).await? {
            Answer::Store(Ok(Some(r))) => Ok(r),
            Answer::Store(Ok(None)) => Err(errors::unknown("entry was applied before")),
            Answer::Store(Err(e)) => Err(errors::from_mvcc(&e)),
            Answer::Done => Err(errors::unknown("unexpected answer")),
        }
    }

    pub async fn propose_alarm(&self, a: AlarmChange) -> Result<(), Status> {
        let Some((id, rx)) = self.applier.waits.register() else {
            return Err(EtcdError::TooManyRequests.into());
        };
        let data = entry::alarm(self.member_id, id, a);
        self.wait(id, data, rx).await.map(|_| ())
    }

    /// Proposes `data` (registered as request `id`) and waits for its
    /// answer, for the log's refusal, or for the request timeout.
    async fn wait(
        &self,
        id: u64,
        data: Vec<u8>,
        mut rx: tokio::sync::oneshot::Receiver<Answer>,
    ) -> Result<Answer, Status> {
        let proposal = self.repl.propose(data);
        tokio::pin!(proposal);
        let deadline = tokio::time::sleep(self.request_timeout);
        tokio::pin!(deadline);
        let mut proposal_done = false;
        let failure: Status = loop {
            tokio::select! {
                biased;
                answer = &mut rx => match answer {
                    Ok(answer) => return Ok(answer),
                    Err(_) => break EtcdError::Stopped.into(),
                },
                r = &mut proposal, if !proposal_done => match r {
                    // Applied: the answer is already in `rx`.
                    Ok(()) => proposal_done = true,
                    Err(e) => break e.into(),
                },
                _ = &mut deadline => break EtcdError::Timeout.into(),
            }
        };
        self.applier.waits.cancel(id);
        Metrics::global().proposals_failed.inc();
        Err(failure)
    }

    /// A lease id for LeaseGrant with ID 0: positive, distinct per member
    /// (etcd's idutil: member bits, time, counter).
    pub fn next_lease_id(&self) -> i64 {
        let seq = self.lease_seq.fetch_add(1, Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let id = ((self.member_id & 0xffff) << 47) ^ ((t & 0xff_ffff_ffff) << 8) ^ seq;
        ((id & (i64::MAX as u64)) as i64).max(1)
    }
}
