//! Store options with documented defaults and a `validate()` step.

use super::error::{Error, Result};
use crate::backend::{BackendKind, Durability};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where lease deadlines come from (a manual clock makes lease tests exact).
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Instant;
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    base: Instant,
    offset_ns: AtomicU64,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock {
            base: Instant::now(),
            offset_ns: AtomicU64::new(0),
        }
    }
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        self.offset_ns
            .fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + Duration::from_nanos(self.offset_ns.load(Ordering::SeqCst))
    }
}

/// Who revokes expired leases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseExpiry {
    /// A store thread revokes them through the apply path (embedded use).
    Auto,
    /// The owner polls `Store::expired_leases` and proposes revokes (the
    /// raft leader, as etcd's lessor hands expired leases to the server).
    External,
}

#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Default `Btree`.
    pub backend: BackendKind,
    /// Default `Durable` (one fsync per batch commit).
    pub durability: Durability,
    /// A batch of writes is committed to the backend at least this often.
    /// Default 100 ms (etcd's batch interval).
    pub batch_interval: Duration,
    /// ... and as soon as it holds this many writes. Default 10 000 (etcd's
    /// batch limit).
    pub batch_limit: usize,
    /// Sealed batches waiting for their commit before apply waits (the
    /// bound on buffered memory). Default 2.
    pub pending_batches_max: usize,
    /// Bytes of records read from the backend kept in memory by revision,
    /// so that reads of a hot set do not slow down as the history (and the
    /// key bucket) grows. 0 disables it. Default 64 MiB.
    pub value_cache_bytes: usize,
    /// Keys compacted per step, and revisions removed per step (a single
    /// key's history is removed whole); apply waits at most one step.
    /// Default 1000.
    pub compaction_batch_keys: usize,
    /// Pause between compaction steps. Default 1 ms.
    pub compaction_batch_pause: Duration,
    /// Responses a watch stream buffers before its watchers become victims.
    /// Default 1024.
    pub watch_queue_capacity: usize,
    /// How often unsynced and victim watchers are served. Default 100 ms.
    pub watch_sync_interval: Duration,
    /// Quiet time after which a watcher with `progress_notify` gets an empty
    /// response. Default 10 minutes (etcd's).
    pub watch_progress_interval: Duration,
    /// Revisions read from history per catch-up step. Default 1000.
    pub watch_catchup_revisions_max: i64,
    /// Events per response, except that a revision is never split.
    /// Default 1000.
    pub watch_response_events_max: usize,
    /// Shorter lease TTLs are raised to this. Default 2 s (etcd's with its
    /// default election timeout).
    pub lease_min_ttl_secs: i64,
    /// Default `Auto`.
    pub lease_expiry: LeaseExpiry,
    /// How often expiry is checked. Default 500 ms (etcd's).
    pub lease_check_interval: Duration,
    pub clock: Arc<dyn Clock>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            backend: BackendKind::Btree,
            durability: Durability::Durable,
            batch_interval: Duration::from_millis(100),
            batch_limit: 10_000,
            pending_batches_max: 2,
            value_cache_bytes: 64 << 20,
            compaction_batch_keys: 1000,
            compaction_batch_pause: Duration::from_millis(1),
            watch_queue_capacity: 1024,
            watch_sync_interval: Duration::from_millis(100),
            watch_progress_interval: Duration::from_secs(600),
            watch_catchup_revisions_max: 1000,
            watch_response_events_max: 1000,
            lease_min_ttl_secs: 2,
            lease_expiry: LeaseExpiry::Auto,
            lease_check_interval: Duration::from_millis(500),
            clock: Arc::new(SystemClock),
        }
    }
}

impl StoreOptions {
    pub fn validate(&self) -> Result<()> {
        let bad = |why: &str| Err(Error::InvalidOptions(why.to_string()));
        if self.batch_interval.is_zero() || self.batch_interval > Duration::from_secs(60) {
            return bad("batch_interval must be in (0, 60 s]");
        }
        if self.batch_limit == 0 {
            return bad("batch_limit must be positive");
        }
        if self.pending_batches_max == 0 {
            return bad("pending_batches_max must be positive");
        }
        if self.compaction_batch_keys == 0 {
            return bad("compaction_batch_keys must be positive");
        }
        if self.watch_queue_capacity == 0 || self.watch_response_events_max == 0 {
            return bad("watch queue capacity and events per response must be positive");
        }
        if self.watch_catchup_revisions_max <= 0 {
            return bad("watch_catchup_revisions_max must be positive");
        }
        if self.watch_sync_interval.is_zero() || self.lease_check_interval.is_zero() {
            return bad("watch_sync_interval and lease_check_interval must be positive");
        }
        if self.lease_min_ttl_secs <= 0 {
            return bad("lease_min_ttl_secs must be positive");
        }
        Ok(())
    }
}
