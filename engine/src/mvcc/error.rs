//! The store's errors. Messages of the errors a client can cause match
//! etcd's (mvcc, lease and etcdserver packages) word for word, so the
//! server can map each variant to etcd's gRPC code and message.

use super::codec::DecodeError;
use crate::backend;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A read or watch below the compacted revision (etcd mvcc.ErrCompacted).
    #[error("mvcc: required revision has been compacted")]
    Compacted { compact_revision: i64 },
    /// A read or compaction above the current revision (mvcc.ErrFutureRev).
    #[error("mvcc: required revision is a future revision")]
    FutureRevision { current_revision: i64 },
    /// lease.ErrLeaseNotFound.
    #[error("lease not found")]
    LeaseNotFound,
    /// lease.ErrLeaseExists.
    #[error("lease already exists")]
    LeaseExists,
    /// lease.ErrLeaseTTLTooLarge.
    #[error("too large lease TTL")]
    LeaseTtlTooLarge,
    /// etcdserver.ErrKeyNotFound: ignore_value / ignore_lease on a missing key.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// rpctypes.ErrEmptyKey.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// rpctypes.ErrDuplicateKey: a txn writes one key twice.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// rpctypes.ErrTooManyOps.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// mvcc.ErrWatcherDuplicateID.
    #[error("mvcc: duplicate watch ID provided on the WatchStream")]
    DuplicateWatchId,
    /// A request that no etcd client could send (bad enum value, ...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A command's bytes do not decode.
    #[error("invalid command encoding: {0}")]
    Decode(#[from] DecodeError),
    /// The storage engine failed. Fatal: the store refuses further writes.
    #[error("backend: {0}")]
    Backend(#[from] backend::Error),
    /// A previous backend failure; nothing is written any more.
    #[error("store failed earlier and refuses writes: {0}")]
    Failed(String),
    /// Stored data that does not decode or is inconsistent.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    #[error("store is closed")]
    Closed,
}

impl Error {
    /// Errors after which the store cannot go on (the server should stop
    /// serving writes); every other error is a deterministic answer to one
    /// request and consumed the request's raft index.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::Backend(_) | Error::Failed(_) | Error::Corrupt(_) | Error::Io(_) | Error::Closed
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
