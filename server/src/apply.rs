//! Committed log entry → engine::mvcc. The log calls `Applier::apply` for
//! every committed entry in order (also entries replayed after a restart:
//! the store skips indexes at or below its consistent index). The answer
//! goes to the request waiting for it on this member, if any (a follower
//! applies entries other members proposed; nobody waits for those here).
//!
//! Besides the store, the applier keeps what the server learns from the
//! log: active alarms and the member table (names, peer and client URLs).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use std::path::PathBuf;

use engine::mvcc::{self, Store, StoreOptions};
use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;

use crate::entry::{self, AlarmAction, AlarmChange, Attributes, Body};
use crate::metrics::Metrics;
use crate::server_state;

/// The store a member serves from. A follower that installs a leader's
/// snapshot replaces it whole; readers holding the previous one finish
/// on it (it closes when the last of them lets go).
pub struct StoreCell(RwLock<Arc<Store>>);

impl StoreCell {
    pub fn new(store: Arc<Store>) -> StoreCell {
        StoreCell(RwLock::new(store))
    }

    pub fn load(&self) -> Arc<Store> {
        self.0.read().clone()
    }

    /// Installs `store`; returns the one it replaces.
    pub fn replace(&self, store: Arc<Store>) -> Arc<Store> {
        std::mem::replace(&mut *self.0.write(), store)
    }
}

/// One member as the server knows it: its name and client URLs (from the
/// attributes it published through the log) and its peer URLs (from the
/// configuration change that added it, or `--initial-cluster`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberRecord {
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

/// The member table, by raft id.
#[derive(Default)]
pub struct Members {
    table: Mutex<BTreeMap<u64, MemberRecord>>,
}

impl Members {
    pub fn get(&self, id: u64) -> Option<MemberRecord> {
        self.table.lock().get(&id).cloned()
    }

    pub fn all(&self) -> BTreeMap<u64, MemberRecord> {
        self.table.lock().clone()
    }

    /// A member known from the flags (`--initial-cluster`).
    pub fn seed(&self, id: u64, name: &str, peer_urls: Vec<String>) {
        let mut t = self.table.lock();
        let m = t.entry(id).or_default();
        if m.name.is_empty() {
            m.name = name.to_string();
        }
        if m.peer_urls.is_empty() {
            m.peer_urls = peer_urls;
        }
    }

    /// Sets a member's peer URLs; returns its record after the change.
    pub fn set_peer_urls(&self, id: u64, peer_urls: Vec<String>) -> MemberRecord {
        let mut t = self.table.lock();
        let m = t.entry(id).or_default();
        m.peer_urls = peer_urls;
        m.clone()
    }

    /// Sets a member's name and client URLs; returns its record after.
    pub fn set_attributes(&self, a: &Attributes) -> MemberRecord {
        let mut t = self.table.lock();
        let m = t.entry(a.member_id).or_default();
        m.name = a.name.clone();
        m.client_urls = a.client_urls.clone();
        m.clone()
    }

    pub fn remove(&self, id: u64) {
        self.table.lock().remove(&id);
    }

    fn replace_all(&self, table: BTreeMap<u64, MemberRecord>) {
        *self.table.lock() = table;
    }
}

/// The outcome of one applied entry, for the request that proposed it.
#[derive(Debug)]
pub enum Answer {
    /// The store's answer; `Ok(None)` if the index had been applied before.
    Store(Result<Option<mvcc::Response>, mvcc::Error>),
    /// A server-level entry (alarm, member attributes) was applied.
    Done,
}

/// An answer ready to hand to its waiting request.
pub struct Delivery {
    request_id: u64,
    answer: Answer,
}

/// Requests waiting for their entry to be applied, by request id.
#[derive(Default)]
pub struct Waits {
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
}

/// Bound on requests in flight per member; beyond it a write is refused
/// with "too many requests" instead of queueing without limit.
pub const PENDING_MAX: usize = 100_000;

impl Waits {
    pub fn new() -> Waits {
        Waits {
            // A random start, so a restarted member's ids do not meet the
            // ids of its previous life still in the log.
            next_id: AtomicU64::new(rand_seed()),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// A fresh request id and the receiver of its answer; None when too
    /// many requests are pending.
    pub fn register(&self) -> Option<(u64, oneshot::Receiver<Answer>)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut p = self.pending.lock();
        if p.len() >= PENDING_MAX {
            return None;
        }
        p.insert(id, tx);
        Metrics::global().proposals_pending.set(p.len() as i64);
        Some((id, rx))
    }

    /// Forgets a request that gave up (timeout, refused proposal).
    pub fn cancel(&self, id: u64) {
        let mut p = self.pending.lock();
        p.remove(&id);
        Metrics::global().proposals_pending.set(p.len() as i64);
    }

    fn deliver_all(&self, answers: &mut Vec<Delivery>) {
        if answers.is_empty() {
            return;
        }
        let ready: Vec<_> = {
            let mut p = self.pending.lock();
            let ready = answers
                .drain(..)
                .filter_map(|d| p.remove(&d.request_id).map(|tx| (tx, d.answer)))
                .collect();
            Metrics::global().proposals_pending.set(p.len() as i64);
            ready
        };
        for (tx, answer) in ready {
            let _ = tx.send(answer);
        }
    }

    fn deliver(&self, d: Delivery) {
        let tx = {
            let mut p = self.pending.lock();
            let tx = p.remove(&d.request_id);
            Metrics::global().proposals_pending.set(p.len() as i64);
            tx
        };
        if let Some(tx) = tx {
            let _ = tx.send(d.answer);
        }
    }
}

fn rand_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = t ^ ((std::process::id() as u64) << 32) ^ 0x9e37_79b9_7f4a_7c15;
    // splitmix64 finalizer
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Active alarms: (member, alarm type), as etcd's alarm store.
#[derive(Default)]
pub struct Alarms {
    active: Mutex<BTreeSet<(u64, u8)>>,
}

impl Alarms {
    pub fn list(&self) -> Vec<(u64, u8)> {
        self.active.lock().iter().copied().collect()
    }

    pub fn has(&self, alarm: u8) -> bool {
        self.active.lock().iter().any(|&(_, a)| a == alarm)
    }

    fn replace_all(&self, active: BTreeSet<(u64, u8)>) {
        *self.active.lock() = active;
    }

    fn change(&self, a: AlarmChange) {
        let mut s = self.active.lock();
        match a.action {
            AlarmAction::Activate => {
                s.insert((a.member_id, a.alarm));
            }
            AlarmAction::Deactivate => {
                s.remove(&(a.member_id, a.alarm));
            }
        }
    }
}

/// Applies committed entries to the store.
pub struct Applier {
    pub store: StoreCell,
    /// Where the store lives and how it is opened (to replace it with a
    /// leader's snapshot or a defragmented copy).
    pub db_path: PathBuf,
    pub store_opts: StoreOptions,
    /// Held (shared) while an entry is applied, (exclusive) while the
    /// store is replaced by a defragmented copy.
    pub gate: RwLock<()>,
    pub waits: Arc<Waits>,
    pub alarms: Arc<Alarms>,
    pub members: Members,
    member_id: u64,
    /// Set when the store failed fatally: the member stops applying.
    failed: Mutex<Option<String>>,
}

impl Applier {
    pub fn new(
        store: Arc<Store>,
        db_path: PathBuf,
        store_opts: StoreOptions,
        member_id: u64,
    ) -> Applier {
        Applier {
            store: StoreCell::new(store),
            db_path,
            store_opts,
            gate: RwLock::new(()),
            waits: Arc::new(Waits::new()),
            alarms: Arc::new(Alarms::default()),
            members: Members::default(),
            member_id,
            failed: Mutex::new(None),
        }
    }

    /// The store to read from now.
    pub fn store(&self) -> Arc<Store> {
        self.store.load()
    }

    pub fn member_id(&self) -> u64 {
        self.member_id
    }

    pub fn failure(&self) -> Option<String> {
        self.failed.lock().clone()
    }

    /// Applies the entry committed at `index`. Returns the answer for a
    /// request of this member (deliver it with `deliver`, after whatever
    /// the log must make durable first), or an error when the store cannot
    /// go on (the caller stops the member).
    pub fn apply(&self, index: u64, data: &[u8]) -> Result<Option<Delivery>, String> {
        let m = Metrics::global();
        let store = self.store();
        let e = match entry::decode(data) {
            Ok(e) => e,
            Err(err) => {
                // Not ours (or corrupt): consume the index, answer nobody.
                tracing::warn!(index, "skipping undecodable log entry: {err}");
                store.advance_index(index).map_err(|e| self.fail(&e))?;
                return Ok(None);
            }
        };
        let answer = match e.body {
            Body::Command(bytes) => {
                let r = store.apply_encoded(index, bytes);
                if let Err(err) = &r {
                    if err.is_fatal() {
                        return Err(self.fail(err));
                    }
                }
                Answer::Store(r)
            }
            // Server state: kept in memory and in the store's server
            // bucket. Replayed entries change the memory again: in log
            // order they end in the state the last of them left.
            Body::Alarm(a) => {
                self.alarms.change(a);
                let key = server_state::alarm_key(a.member_id, a.alarm);
                let value = (a.action == AlarmAction::Activate).then(Vec::new);
                self.persist(&store, index, vec![(key, value)])?;
                Answer::Done
            }
            Body::Attributes(a) => {
                let record = self.members.set_attributes(&a);
                self.persist_member(&store, index, a.member_id, Some(&record))?;
                Answer::Done
            }
        };
        m.proposals_applied.set(index as i64);
        Ok((e.origin == self.member_id).then_some(Delivery {
            request_id: e.request_id,
            answer,
        }))
    }

    /// An entry without a server payload (raft's empty entries and
    /// configuration changes) still consumes its index.
    pub fn apply_empty(&self, index: u64) -> Result<(), String> {
        self.store()
            .advance_index(index)
            .map_err(|e| self.fail(&e))?;
        Metrics::global().proposals_applied.set(index as i64);
        Ok(())
    }

    /// A committed configuration change: the member table follows it.
    pub fn apply_membership(
        &self,
        index: u64,
        change: &raftlog::MembershipChange,
    ) -> Result<(), String> {
        use raftlog::MembershipChange as C;
        let store = self.store();
        match change {
            C::AddVoter { id, peer_url } | C::AddLearner { id, peer_url } => {
                let record = self.members.set_peer_urls(*id, vec![peer_url.clone()]);
                self.persist_member(&store, index, *id, Some(&record))?;
            }
            C::Remove { id } => {
                self.members.remove(*id);
                self.persist_member(&store, index, *id, None)?;
            }
            C::PromoteLearner { .. } => {
                store.advance_index(index).map_err(|e| self.fail(&e))?;
            }
        }
        Metrics::global().proposals_applied.set(index as i64);
        Ok(())
    }

    fn persist_member(
        &self,
        store: &Store,
        index: u64,
        id: u64,
        record: Option<&MemberRecord>,
    ) -> Result<(), String> {
        let value = record.map(server_state::encode_member);
        self.persist(store, index, vec![(server_state::member_key(id), value)])
    }

    fn persist(
        &self,
        store: &Store,
        index: u64,
        changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), String> {
        store
            .apply_server_state(index, &changes)
            .map(|_| ())
            .map_err(|e| self.fail(&e))
    }

    /// etcd's defrag on this member: applying stops, the backend is copied
    /// into a fresh file without free space (the B+tree's `compact_into`),
    /// the copy replaces the db file and is opened in place of the store.
    /// Readers of the previous store finish on it; its watch streams end
    /// (clients resume them from their last revision). A backend that
    /// cannot defragment (redb, LMDB) commits what is applied instead.
    /// Returns the db size before and after.
    pub fn defragment(&self) -> Result<(u64, u64), String> {
        let _stopped = self.gate.write();
        let old = self.store();
        let before = old.status().map(|s| s.db_size_bytes).unwrap_or(0);
        let tmp = self.db_path.with_extension("defrag-tmp");
        let _ = std::fs::remove_file(&tmp);
        match old.defragment_into(&tmp) {
            Ok(_) => {}
            Err(mvcc::Error::Backend(engine::backend::Error::Unsupported(..))) => {
                old.sync().map_err(|e| e.to_string())?;
                return Ok((before, before));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(format!("defragmenting: {e}"));
            }
        }
        let swap = || -> std::io::Result<()> {
            std::fs::rename(&tmp, &self.db_path)?;
            if let Some(dir) = self.db_path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        swap().map_err(|e| format!("replacing the db with its defragmented copy: {e}"))?;
        // From here the file holds the copy; a store that cannot open it
        // cannot go on.
        let fresh =
            Store::open(&self.db_path, self.store_opts.clone()).map_err(|e| self.fail(&e))?;
        let after = fresh.status().map(|s| s.db_size_bytes).unwrap_or(0);
        drop(self.store.replace(Arc::new(fresh)));
        Ok((before, after))
    }

    /// Loads alarms and the member table from the store's server bucket
    /// (at open, and after the store was replaced by a leader's snapshot).
    pub fn reload_server_state(&self) -> Result<(), String> {
        let items = self.store().server_state().map_err(|e| self.fail(&e))?;
        let mut alarms = BTreeSet::new();
        let mut members = BTreeMap::new();
        for (k, v) in &items {
            match server_state::decode(k, v) {
                Some(server_state::Item::Alarm { member_id, alarm }) => {
                    alarms.insert((member_id, alarm));
                }
                Some(server_state::Item::Member { id, record }) => {
                    members.insert(id, record);
                }
                None => {
                    tracing::warn!(key = ?String::from_utf8_lossy(k), "unknown server state entry")
                }
            }
        }
        self.alarms.replace_all(alarms);
        self.members.replace_all(members);
        Ok(())
    }

    pub fn deliver(&self, d: Delivery) {
        self.waits.deliver(d);
    }

    /// Hands out (and empties) a run of answers, the waits' lock taken once.
    pub fn deliver_all(&self, answers: &mut Vec<Delivery>) {
        self.waits.deliver_all(answers);
    }

    fn fail(&self, e: &mvcc::Error) -> String {
        let msg = e.to_string();
        tracing::error!("store failed, the member stops applying: {msg}");
        *self.failed.lock() = Some(msg.clone());
        msg
    }
}
