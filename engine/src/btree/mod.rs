//! A single-file, page-based, copy-on-write B+tree in the style of
//! bbolt/LMDB: named buckets, one writer and any number of snapshot-isolated
//! readers over a read-only mmap, and a commit that needs one fdatasync
//! because every page is checksummed and every link carries its child's
//! checksum (a Merkle tree, as redb's "1PC+C"). The file format and the
//! crash-safety argument are in docs/format.md.
//!
//! ```no_run
//! use engine::btree::{Db, Options};
//! let db = Db::open("/tmp/example.db", Options::default())?;
//! let mut tx = db.begin_write()?;
//! tx.create_bucket(b"key")?;
//! tx.put(b"key", b"a", b"1")?;
//! tx.commit()?;
//! let rx = db.begin_read()?;
//! assert_eq!(rx.get(b"key", b"a")?, Some(&b"1"[..]));
//! # Ok::<(), engine::btree::Error>(())
//! ```

mod check;
mod commit;
mod compact;
mod cursor;
mod db;
mod error;
mod freelist;
mod mapping;
mod meta;
mod node;
mod options;
mod page;
mod recovery;
mod space;
mod stats;
mod tree;
mod tx;

pub use check::CheckReport;
pub use commit::CommitInfo;
pub use compact::CompactInfo;
pub use cursor::{Cursor, Range};
pub use db::Db;
pub use error::{Error, Result};
pub use options::{max_key_len, Options, SyncMode, MAX_VALUE_LEN};
pub use recovery::Recovery;
pub use stats::{BucketStats, Stats};
pub use tx::{Bucket, BucketRoot, ReadTx, WriteTx};

pub(crate) use options::valid_page_size;
