//! The B+tree's error type: every failure names what went wrong and where.

use std::io;
use std::path::PathBuf;

/// Errors of the B+tree file. Corruption errors name the page; format errors
/// say what was found instead of what was expected.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a ferrokv B+tree file (magic {found:#018x})")]
    NotABtree { path: PathBuf, found: u64 },
    #[error("{path}: unsupported format version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("corrupt page {pgid}: {what}")]
    Corrupt { pgid: u64, what: String },
    #[error("both meta pages are invalid: meta 0: {meta0}; meta 1: {meta1}")]
    NoValidMeta { meta0: String, meta1: String },
    #[error("bucket {0:?} not found")]
    BucketNotFound(String),
    #[error("key of {len} bytes exceeds the limit of {max} bytes")]
    KeyTooLarge { len: usize, max: usize },
    #[error("empty keys are not allowed")]
    EmptyKey,
    #[error("value of {len} bytes exceeds the limit of {max} bytes")]
    ValueTooLarge { len: usize, max: usize },
    #[error("bucket name of {len} bytes is empty or exceeds the key limit of {max} bytes")]
    BadBucketName { len: usize, max: usize },
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    #[error("the database is read-only")]
    ReadOnly,
    #[error("an earlier commit failed ({0}); the database refuses writes until it is reopened")]
    Poisoned(String),
}

impl Error {
    pub(crate) fn corrupt(pgid: u64, what: impl Into<String>) -> Self {
        Error::Corrupt {
            pgid,
            what: what.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
