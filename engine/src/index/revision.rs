//! A revision: the logical clock of the key space, as in etcd.
//!
//! `main` is the store revision a change belongs to (one per write
//! transaction); `sub` orders the changes inside that transaction (0, 1, ...).
//! Both are non-negative; they are `i64` because etcd's API (rpc.proto) uses
//! `int64` for them.

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }
}

impl fmt::Debug for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.main, self.sub)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One entry of a key's history: a put, or a tombstone that ends the key's
/// current generation (a delete).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct IndexEntry {
    pub rev: Revision,
    pub tombstone: bool,
}
