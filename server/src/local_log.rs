//! A single member's log: entries are sequenced in arrival order, applied
//! in batches by one thread, made durable with one backend commit per batch
//! (`Store::sync`, one fdatasync for the whole batch), and only then
//! answered. There is no separate WAL: the store's backend commit is the
//! durability point, and its consistent index is the log position.
//!
//! This is the log of a one-member cluster until the server runs on
//! `raftlog`'s node; it gives the same guarantees a one-member raft group
//! gives (every acknowledged write is durable, reads after a barrier see
//! every write acknowledged before it), but it cannot add members.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

use crate::apply::Applier;
use crate::metrics::{Metrics, Timer};
use crate::replication::{
    BoxFut, MemberInfo, MembershipChange, Replication, ReplicationError, ReplicationStatus,
};

/// Entries applied per batch at most (bounds the time one commit holds
/// answers back).
pub const BATCH_ENTRIES_MAX: usize = 4096;
/// Entries queued at most; beyond it proposals are refused.
pub const QUEUE_ENTRIES_MAX: usize = 65_536;

struct Queue {
    entries: VecDeque<Vec<u8>>,
    stopped: bool,
}

pub struct LocalLog {
    member: MemberInfo,
    queue: Arc<(Mutex<Queue>, Condvar)>,
    /// Index of the last entry queued.
    proposed: Arc<AtomicU64>,
    applied: watch::Receiver<u64>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl LocalLog {
    /// Starts the apply thread; the log continues after the store's
    /// consistent index.
    pub fn start(member: MemberInfo, applier: Arc<Applier>) -> LocalLog {
        let start = applier.store.consistent_index();
        let queue = Arc::new((
            Mutex::new(Queue {
                entries: VecDeque::new(),
                stopped: false,
            }),
            Condvar::new(),
        ));
        let proposed = Arc::new(AtomicU64::new(start));
        let (applied_tx, applied) = watch::channel(start);
        let q = queue.clone();
        let thread = std::thread::Builder::new()
            .name("local-log-apply".into())
            .spawn(move || apply_loop(q, applier, start, applied_tx))
            .expect("spawn apply thread");
        Metrics::global().has_leader.set(1);
        Metrics::global().is_leader.set(1);
        LocalLog {
            member,
            queue,
            proposed,
            applied,
            thread: Mutex::new(Some(thread)),
        }
    }

    pub fn stop(&self) {
        {
            let mut q = self.queue.0.lock();
            q.stopped = true;
        }
        self.queue.1.notify_all();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for LocalLog {
    fn drop(&mut self) {
        self.stop();
    }
}

fn apply_loop(
    queue: Arc<(Mutex<Queue>, Condvar)>,
    applier: Arc<Applier>,
    mut index: u64,
    applied: watch::Sender<u64>,
) {
    let m = Metrics::global();
    let mut batch = Vec::with_capacity(BATCH_ENTRIES_MAX);
    let mut deliveries = Vec::with_capacity(BATCH_ENTRIES_MAX);
    loop {
        {
            let (lock, cv) = &*queue;
            let mut q = lock.lock();
            while q.entries.is_empty() && !q.stopped {
                cv.wait(&mut q);
            }
            if q.entries.is_empty() && q.stopped {
                return;
            }
            let n = q.entries.len().min(BATCH_ENTRIES_MAX);
            batch.extend(q.entries.drain(..n));
        }
        for data in batch.drain(..) {
            index += 1;
            match applier.apply(index, &data) {
                Ok(Some(d)) => deliveries.push(d),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!("apply failed, the log stops: {e}");
                    queue.0.lock().stopped = true;
                    return;
                }
            }
        }
        m.proposals_committed.set(index as i64);
        // One backend commit makes the whole batch durable before any of
        // it is acknowledged.
        let synced = {
            let _t = Timer::start(&m.backend_commit_seconds);
            applier.store.sync()
        };
        if let Err(e) = synced {
            tracing::error!("backend commit failed, the log stops: {e}");
            queue.0.lock().stopped = true;
            return;
        }
        for d in deliveries.drain(..) {
            applier.deliver(d);
        }
        let _ = applied.send(index);
    }
}

impl Replication for LocalLog {
    fn propose(&self, entry: Vec<u8>) -> BoxFut<'_, Result<(), ReplicationError>> {
        let r = {
            let (lock, cv) = &*self.queue;
            let mut q = lock.lock();
            if q.stopped {
                Err(ReplicationError::Stopped)
            } else if q.entries.len() >= QUEUE_ENTRIES_MAX {
                Err(ReplicationError::TooManyRequests)
            } else {
                q.entries.push_back(entry);
                self.proposed.fetch_add(1, Ordering::AcqRel);
                cv.notify_one();
                Ok(())
            }
        };
        Box::pin(async move { r })
    }

    fn read_barrier(&self) -> BoxFut<'_, Result<(), ReplicationError>> {
        let target = self.proposed.load(Ordering::Acquire);
        let mut rx = self.applied.clone();
        Box::pin(async move {
            rx.wait_for(|&applied| applied >= target)
                .await
                .map(|_| ())
                .map_err(|_| ReplicationError::Stopped)
        })
    }

    fn status(&self) -> ReplicationStatus {
        let applied = *self.applied.borrow();
        ReplicationStatus {
            member_id: self.member.id,
            leader_id: self.member.id,
            term: 1,
            commit_index: applied,
            applied_index: applied,
            is_learner: false,
        }
    }

    fn members(&self) -> Vec<MemberInfo> {
        vec![self.member.clone()]
    }

    fn change_membership(
        &self,
        _change: MembershipChange,
    ) -> BoxFut<'_, Result<Vec<MemberInfo>, ReplicationError>> {
        Box::pin(async { Err(ReplicationError::NotCapable) })
    }

    fn transfer_leadership(&self, to: u64) -> BoxFut<'_, Result<(), ReplicationError>> {
        let me = self.member.id;
        Box::pin(async move {
            if to == me {
                Ok(())
            } else {
                Err(ReplicationError::Etcd(
                    crate::errors::EtcdError::BadLeaderTransferee,
                ))
            }
        })
    }
}
