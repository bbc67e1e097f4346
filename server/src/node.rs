//! One ferrokv member: the MVCC store under `member/snap/db`, the applier,
//! the replicated log, and what every service shares — the response
//! header, proposing a write and waiting for its answer, linearizable read
//! barriers, the backend quota, lease expiry.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use engine::backend::BackendKind as EngineBackend;
use engine::mvcc::{self, Command, LeaseExpiry, Store, StoreOptions};
use proto::etcdserverpb::ResponseHeader;
use tonic::Status;

use crate::apply::{Answer, Applier};
use crate::config::{BackendKind, Config};
use crate::entry::{self, AlarmAction, AlarmChange};
use crate::errors::{self, EtcdError};
use crate::local_log::LocalLog;
use crate::metrics::Metrics;
use crate::replication::{MemberInfo, Replication};

/// etcd's AlarmType NOSPACE.
pub const ALARM_NOSPACE: u8 = 1;

pub struct Node {
    pub cfg: Config,
    pub store: Arc<Store>,
    pub applier: Arc<Applier>,
    pub repl: Arc<dyn Replication>,
    pub member_id: u64,
    pub cluster_id: u64,
    /// How long a request waits for its entry to be applied (etcd: 5 s
    /// plus twice the election timeout).
    pub request_timeout: Duration,
    /// The backend size last measured, for the quota check.
    db_size_bytes: AtomicI64,
    lease_seq: AtomicU64,
}

/// The raft member id of `name` in a cluster bootstrapped with `token`:
/// the same derivation as raftlog's (a hash of token and name, top bit
/// clear, never 0), so every member computes every id from the flags.
pub fn member_id(token: &str, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in token.as_bytes().iter().chain(&[0]).chain(name.as_bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h & (u64::MAX >> 1)).max(1)
}

fn cluster_id(ids: &[u64]) -> u64 {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for id in ids {
        for b in id.to_be_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    (h & (u64::MAX >> 1)).max(1)
}

impl Node {
    /// The store's path inside the data dir, as etcd's: member/snap/db.
    pub fn db_path(cfg: &Config) -> PathBuf {
        cfg.data_dir.join("member").join("snap").join("db")
    }

    pub fn open(cfg: Config) -> anyhow::Result<Arc<Node>> {
        let snap_dir = cfg.data_dir.join("member").join("snap");
        std::fs::create_dir_all(&snap_dir)?;
        std::fs::create_dir_all(cfg.data_dir.join("member").join("wal"))?;
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
        let store = Arc::new(Store::open(Self::db_path(&cfg), opts)?);
        let ids: Vec<u64> = cfg
            .initial_cluster
            .iter()
            .map(|m| member_id(&cfg.initial_cluster_token, &m.name))
            .collect();
        let me = member_id(&cfg.initial_cluster_token, &cfg.name);
        if cfg.initial_cluster.len() > 1 {
            anyhow::bail!(
                "a cluster of {} members needs the raft log (raftlog), which this build does not include yet",
                cfg.initial_cluster.len()
            );
        }
        let applier = Arc::new(Applier::new(store.clone(), me));
        let member = MemberInfo {
            id: me,
            name: cfg.name.clone(),
            peer_urls: cfg
                .initial_advertise_peer_urls
                .iter()
                .map(|u| u.to_string())
                .collect(),
            client_urls: cfg
                .advertise_client_urls
                .iter()
                .map(|u| u.to_string())
                .collect(),
            is_learner: false,
        };
        let repl: Arc<dyn Replication> = Arc::new(LocalLog::start(member, applier.clone()));
        let request_timeout = Duration::from_secs(5) + 2 * cfg.election_timeout;
        Metrics::global()
            .quota_backend_bytes
            .set(cfg.quota_backend_bytes as i64);
        let node = Arc::new(Node {
            cluster_id: cluster_id(&ids),
            member_id: me,
            request_timeout,
            db_size_bytes: AtomicI64::new(0),
            lease_seq: AtomicU64::new(0),
            cfg,
            store,
            applier,
            repl,
        });
        node.refresh_db_size();
        Ok(node)
    }

    /// Background duties: backend size for metrics and quota, expired
    /// leases (the leader proposes their revocation).
    pub fn spawn_background(self: &Arc<Self>) {
        let node = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                node.refresh_db_size();
                if node.repl.status().is_leader() {
                    for id in node.store.expired_leases() {
                        let cmd = Command::LeaseRevoke(mvcc::LeaseRevokeRequest { id });
                        // Nobody waits: request id 0 from origin 0.
                        let _ = node.repl.propose(entry::command(0, 0, &cmd)).await;
                    }
                }
            }
        });
    }

    pub fn refresh_db_size(&self) {
        if let Ok(s) = self.store.status() {
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
            raft_term: self.repl.status().term,
        }
    }

    pub fn header(&self) -> ResponseHeader {
        self.header_at(self.store.current_revision())
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
        let size = self.db_size() as u64;
        if size + cost as u64 <= self.cfg.quota_backend_bytes {
            return Ok(());
        }
        // Measure again before refusing: the cached size may be stale.
        self.refresh_db_size();
        if self.db_size() as u64 + cost as u64 <= self.cfg.quota_backend_bytes {
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
            Answer::Alarm => Err(errors::unknown("unexpected answer")),
        }
    }

    pub async fn propose_alarm(&self, a: AlarmChange) -> Result<(), Status> {
        let Some((id, rx)) = self.applier.waits.register() else {
            return Err(EtcdError::TooManyRequests.into());
        };
        let data = entry::alarm(self.member_id, id, a);
        self.wait(id, data, rx).await.map(|_| ())
    }

    async fn wait(
        &self,
        id: u64,
        data: Vec<u8>,
        rx: tokio::sync::oneshot::Receiver<Answer>,
    ) -> Result<Answer, Status> {
        if let Err(e) = self.repl.propose(data).await {
            self.applier.waits.cancel(id);
            Metrics::global().proposals_failed.inc();
            return Err(e.into());
        }
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(EtcdError::Stopped.into()),
            Err(_) => {
                self.applier.waits.cancel(id);
                Metrics::global().proposals_failed.inc();
                Err(EtcdError::Timeout.into())
            }
        }
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
