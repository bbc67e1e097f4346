//! ferrokv's storage engine.
//!
//! Layers, bottom up: `btree` (the mmap copy-on-write B+tree file), `backend`
//! (the trait the MVCC store writes through, with the B+tree and the comparison
//! engines behind it), `index` (the lock-free revision index) and `mvcc`
//! (etcd's data model on top). Nothing here knows about raft or gRPC.

pub mod backend;
pub mod btree;
pub mod index;
pub mod mvcc;
pub mod wal;
