//! The system a run talks to, behind a trait: an etcd v3 gRPC endpoint list
//! (`grpc.rs`) or the engine in-process. The driver is generic over it, so a
//! new target is one impl of `Target` and `Client`.

use std::future::Future;
use std::time::Instant;

/// One request as the workload issues it.
#[derive(Clone, Debug)]
pub enum Op {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Range `[key, range_end)`; an empty `range_end` reads `key` alone.
    Range {
        key: Vec<u8>,
        range_end: Vec<u8>,
        limit: i64,
        serializable: bool,
    },
    /// One transaction of puts, no compare.
    TxnPut {
        puts: Vec<(Vec<u8>, Vec<u8>)>,
    },
    Delete {
        key: Vec<u8>,
    },
    /// Get the key, then put a new value (YCSB F).
    ReadModifyWrite {
        key: Vec<u8>,
        value: Vec<u8>,
        serializable: bool,
    },
    /// One keep-alive round trip of the client's own lease.
    KeepAlive,
}

/// A failed request, classified by its gRPC status code name (`Unavailable`,
/// `DeadlineExceeded`, ...) so results count errors per code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpError {
    pub code: String,
    pub message: String,
}

impl OpError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl From<tonic::Status> for OpError {
    fn from(s: tonic::Status) -> Self {
        Self::new(format!("{:?}", s.code()), s.message())
    }
}

/// Called for every watch event with its value and the moment its response
/// arrived.
pub type EventSink = Box<dyn FnMut(&[u8], Instant) + Send>;

/// A system under load.
pub trait Target: Send + Sync + 'static {
    type Client: Client;

    /// A handle for client number `idx` (clients are spread over connections).
    fn client(&self, idx: usize) -> Self::Client;

    /// Opens watch stream number `idx` with `watchers` watchers on
    /// `[key, range_end)`; returns once every watcher is created. Events go to
    /// `sink` until the returned guard is dropped.
    fn watch(
        &self,
        idx: usize,
        key: Vec<u8>,
        range_end: Vec<u8>,
        watchers: usize,
        sink: EventSink,
    ) -> impl Future<Output = Result<WatchGuard, OpError>> + Send;
}

/// One client: issues one request at a time.
pub trait Client: Send + 'static {
    fn execute(&mut self, op: Op) -> impl Future<Output = Result<(), OpError>> + Send;
}

/// Keeps a watch stream open; dropping it stops the stream's task.
pub struct WatchGuard {
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}
