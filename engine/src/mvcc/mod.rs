//! The MVCC key-value store: etcd's data model (revisions, Range, Put,
//! DeleteRange, Txn, Compact, Watch, Lease) over the lock-free revision
//! index and a storage backend.
//!
//! ```no_run
//! use engine::mvcc::{Store, StoreOptions, RangeRequest};
//! let store = Store::open("/tmp/example.db", StoreOptions::default())?;
//! let put = store.put("foo", "bar")?;
//! let got = store.range(&RangeRequest { key: b"foo".to_vec(), ..Default::default() })?;
//! assert_eq!(got.kvs[0].value, b"bar");
//! assert_eq!(got.kvs[0].mod_revision, put.header.revision);
//! # Ok::<(), engine::mvcc::Error>(())
//! ```
//!
//! Writes from raft go through `Store::apply(raft_index, &Command)`
//! (idempotent for indexes at or below the consistent index); the embedded
//! API (`put`, `txn`, ...) goes through `Store::propose`, the same path
//! with indexes generated locally. Reads (`range`, `hash_kv`, lease
//! queries) and watches run concurrently from any thread.

mod apply;
mod buckets;
mod buffer;
mod cache;
mod codec;
mod command;
mod compact;
mod error;
mod hash;
mod kv;
mod lease;
mod options;
mod range;
mod read_txn;
mod revision;
mod rpc;
mod store;
mod txn;
mod watch;

pub use buckets::{KEY_BUCKET, LEASE_BUCKET, META_BUCKET, SERVER_BUCKET};
pub use codec::DecodeError;
pub use command::{Command, Response, COMMAND_FORMAT, TXN_DEPTH_MAX};
pub use error::{Error, Result};
pub use kv::{decode_kv, KeyValue, KvRef};
pub use lease::MAX_LEASE_TTL_SECS;
pub use options::{Clock, LeaseExpiry, ManualClock, StoreOptions, SystemClock};
pub use read_txn::txn_is_read_only;
pub use revision::{parse_rev_key, RevKey, Revision};
pub use rpc::*;
pub use store::Store;
pub use txn::{validate_command, validate_txn};
pub use watch::WatchStream;
