//! The revision index: for every key, the revisions at which it was written
//! or deleted, as etcd's `treeIndex`/`keyIndex`, on a lock-free skiplist.
//! Readers (get / range / count at any revision) take no lock while the
//! store's apply path writes. Values live in the backend; the index only
//! says which revision of a key to read.

mod key_index;
mod revision;
mod tree;

pub use key_index::Latest;
pub use revision::{IndexEntry, Revision};
pub use tree::{IndexWriter, KeyNotLive, KeyRange, TreeIndex};
