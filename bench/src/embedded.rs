//! The `embedded` target: engine::mvcc's `Store` in the ferrobench process,
//! no network, no gRPC, no raft or WAL, to isolate storage from RPC. Every
//! workload runs on it, watch included (the store's own watch streams). Writes
//! are durable at the store's batched backend commits (every 100 ms or
//! 10 000 writes), not per request: compare it with etcd's backend, not with
//! etcd's acknowledged-durable puts.

use crate::target::{Client, EventSink, Op, OpError, Target, WatchGuard};
use engine::mvcc::{self, Store, StoreOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LEASE_TTL_S: i64 = 60;

/// How long creating a stream's watchers may take.
const WATCH_CREATE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct EmbeddedTarget {
    pub store: Arc<Store>,
    dir: PathBuf,
    /// Live heap bytes of the process just before the store was opened
    /// (None without the counting allocator).
    heap_before_open: Option<i64>,
}

/// What the engine holds in memory, measured from outside it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EngineMemory {
    /// Live heap bytes above the process's live heap before the store was
    /// opened (index, write buffer, value cache, watchers, threads' state).
    pub heap_bytes: u64,
    /// Resident pages of the store's files mapped into the process (the
    /// B+tree's read mmap).
    pub mapped_bytes: u64,
}

impl EmbeddedTarget {
    /// Opens (or creates) a store in `dir` with the default options.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let heap_before_open = crate::alloc::live_heap_bytes();
        let store = Store::open(dir.join("db"), StoreOptions::default())
            .map_err(|e| anyhow::anyhow!("opening store in {}: {e}", dir.display()))?;
        Ok(Self {
            store: Arc::new(store),
            dir: dir.to_path_buf(),
            heap_before_open,
        })
    }

    /// The engine's memory now. Meant for the end of a run, once the load
    /// generator's clients and histograms are gone, so the heap growth since
    /// the store was opened is the engine's; call `settle_heap` before this
    /// and before `open`. None without the counting allocator
    /// (`crate::alloc`).
    pub fn engine_memory(&self) -> Option<EngineMemory> {
        let before = self.heap_before_open?;
        let now = crate::alloc::live_heap_bytes()?;
        Some(EngineMemory {
            heap_bytes: (now - before).max(0) as u64,
            mapped_bytes: crate::procstat::mapped_rss_bytes_under(&self.dir),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn db_size_bytes(&self) -> u64 {
        self.store.status().map_or(0, |s| s.db_size_bytes)
    }
}

/// Lets deferred frees happen before the heap is read: the revision index is
/// a crossbeam skiplist, whose removed entries are freed only once every
/// thread has moved past their epoch, from garbage bags kept per thread.
/// Pins and flushes on this thread and, through spawned tasks, on the
/// runtime's workers, until the live heap stops shrinking.
pub async fn settle_heap() {
    let flush = || {
        for _ in 0..256 {
            crossbeam_epoch::pin().flush();
        }
    };
    let mut last = crate::alloc::live_heap_bytes();
    for _ in 0..8 {
        flush();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                tokio::spawn(async move {
                    flush();
                    tokio::task::yield_now().await;
                    flush();
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
        let now = crate::alloc::live_heap_bytes();
        if now >= last {
            break;
        }
        last = now;
    }
}

fn err(e: mvcc::Error) -> OpError {
    OpError::new("Internal", e.to_string())
}

pub struct EmbeddedClient {
    store: Arc<Store>,
    lease: Option<i64>,
}

impl EmbeddedClient {
    fn range(&self, key: Vec<u8>, range_end: Vec<u8>, limit: i64) -> Result<(), OpError> {
        let req = mvcc::RangeRequest {
            key,
            range_end,
            limit,
            ..Default::default()
        };
        self.store.range(&req).map_err(err)?;
        Ok(())
    }

    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), OpError> {
        self.store.put(key, value).map_err(err)?;
        Ok(())
    }
}

impl Client for EmbeddedClient {
    async fn execute(&mut self, op: Op) -> Result<(), OpError> {
        match op {
            Op::Put { key, value } => self.put(key, value),
            // In-process reads are member-local: serializable and
            // linearizable coincide without raft.
            Op::Range {
                key,
                range_end,
                limit,
                ..
            } => self.range(key, range_end, limit),
            Op::TxnPut { puts } => {
                let success = puts
                    .into_iter()
                    .map(|(key, value)| {
                        mvcc::RequestOp::Put(mvcc::PutRequest {
                            key,
                            value,
                            ..Default::default()
                        })
                    })
                    .collect();
                let req = mvcc::TxnRequest {
                    compare: vec![],
                    success,
                    failure: vec![],
                };
                self.store.txn(req).map_err(err)?;
                Ok(())
            }
            Op::Delete { key } => {
                self.store.delete(key).map_err(err)?;
                Ok(())
            }
            Op::ReadModifyWrite { key, value, .. } => {
                self.range(key.clone(), vec![], 0)?;
                self.put(key, value)
            }
            Op::KeepAlive => {
                let id = match self.lease {
                    Some(id) => id,
                    None => {
                        let granted = self.store.lease_grant(LEASE_TTL_S, 0).map_err(err)?;
                        self.lease = Some(granted.id);
                        granted.id
                    }
                };
                self.store.lease_keep_alive(id).map_err(err)?;
                Ok(())
            }
        }
    }
}

impl Target for EmbeddedTarget {
    type Client = EmbeddedClient;

    fn client(&self, _idx: usize) -> EmbeddedClient {
        EmbeddedClient {
            store: self.store.clone(),
            lease: None,
        }
    }

    /// Watchers on the engine's own watch streams (engine::mvcc's watch:
    /// synced/unsynced/victim groups as the server uses them, without
    /// gRPC); events are timed when the consuming task takes them from the
    /// stream's queue.
    async fn watch(
        &self,
        _idx: usize,
        key: Vec<u8>,
        range_end: Vec<u8>,
        watchers: usize,
        mut sink: EventSink,
    ) -> Result<WatchGuard, OpError> {
        let stream = self.store.watch_stream();
        let create = mvcc::WatchCreateRequest {
            key,
            range_end,
            ..Default::default()
        };
        for _ in 0..watchers {
            stream.watch(&create).map_err(err)?;
        }
        let mut created = 0;
        while created < watchers {
            let next = std::future::poll_fn(|cx| stream.poll_recv(cx));
            match tokio::time::timeout(WATCH_CREATE_TIMEOUT, next).await {
                Ok(Some(r)) if r.created => created += 1,
                Ok(Some(r)) if r.canceled => {
                    return Err(OpError::new("Canceled", r.cancel_reason));
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err(OpError::new("Unavailable", "store closed")),
                Err(_) => {
                    return Err(OpError::new(
                        "DeadlineExceeded",
                        format!("{created} of {watchers} watchers created"),
                    ))
                }
            }
        }
        let task = tokio::spawn(async move {
            while let Some(r) = std::future::poll_fn(|cx| stream.poll_recv(cx)).await {
                let arrived = Instant::now();
                for ev in &r.events {
                    sink(&ev.kv.value, arrived);
                }
            }
        });
        Ok(WatchGuard { task })
    }
}
