//! The WAL's error type: every failure names what went wrong and where.

use std::io;
use std::path::PathBuf;

/// Errors of the write-ahead log. Corruption errors name the segment file
/// and the byte offset inside it; format errors say what was found.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error on {path} ({op}): {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a ferrokv WAL segment (magic {found:#018x})")]
    NotAWal { path: PathBuf, found: u64 },
    #[error(
        "{path}: unsupported WAL format version {found} (this build reads version {supported})"
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// Damage that is not a torn tail: the log cannot be trusted past it.
    #[error("corrupt WAL segment {segment} at byte offset {offset}: {what}")]
    Corrupt {
        segment: PathBuf,
        offset: u64,
        what: String,
    },
    #[error("invalid WAL options: {0}")]
    InvalidOptions(String),
    #[error("record payload of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge { len: usize, max: usize },
    #[error("an append of {len} bytes exceeds the queue limit of {max} bytes")]
    AppendTooLarge { len: usize, max: usize },
    #[error("another process holds the WAL directory {0}")]
    Locked(PathBuf),
    #[error("io_uring is unavailable and was required: {0}")]
    IoUringUnavailable(#[source] io::Error),
    /// A write or fdatasync failed. The WAL never retries: the kernel may
    /// have dropped the dirty pages, so nothing after this point is known
    /// to be durable. Every later append fails with this error too.
    #[error("the WAL failed permanently ({0}); nothing after the failure was made durable; reopen to recover")]
    Failed(String),
    #[error("the WAL is closed")]
    Closed,
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            op,
            source,
        }
    }

    pub(crate) fn corrupt(
        segment: impl Into<PathBuf>,
        offset: u64,
        what: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            segment: segment.into(),
            offset,
            what: what.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why `try_append` did not enqueue.
#[derive(Debug, thiserror::Error)]
pub enum TryAppendError {
    /// The queue is at its bound; retry after some appends became durable.
    #[error("the WAL queue is full")]
    Full,
    #[error(transparent)]
    Wal(#[from] Error),
}
