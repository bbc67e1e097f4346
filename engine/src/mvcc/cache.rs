//! A bounded cache of key-bucket records read from the backend, by
//! revision.
//!
//! The newest revision of each key is spread through a key bucket that
//! grows with the history (etcd's layout, ordered by revision), so without
//! it every read of a current value walks B+tree pages of a file that may be
//! a hundred times larger than the live data and no longer fits in the CPU
//! caches. With it, the hot set of values costs one hash lookup whatever the
//! history. A record of a revision never changes, so entries are never
//! stale; compaction only makes some unreachable (readers below the
//! compacted revision are refused), and they age out.
//!
//! Sharded mutexes, each with a second-chance FIFO bounded in bytes.

use super::revision::Revision;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

const SHARDS: usize = 16;
/// Bookkeeping per entry beyond the record itself (map slot, queue slot,
/// Arc header), counted against the capacity.
const ENTRY_OVERHEAD_BYTES: usize = 64;

struct Entry {
    record: Arc<[u8]>,
    referenced: bool,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Revision, Entry>,
    order: VecDeque<Revision>,
    bytes: usize,
}

pub(crate) struct ValueCache {
    shards: Box<[Mutex<Shard>]>,
    shard_capacity_bytes: usize,
}

fn shard_of(rev: Revision) -> usize {
    let h = (rev.main as u64)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(rev.sub as u64);
    (h >> 59) as usize % SHARDS
}

impl ValueCache {
    /// A cache of about `capacity_bytes`; 0 disables it.
    pub fn new(capacity_bytes: usize) -> Self {
        ValueCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_capacity_bytes: capacity_bytes / SHARDS,
        }
    }

    pub fn enabled(&self) -> bool {
        self.shard_capacity_bytes > 0
    }

    pub fn get(&self, rev: Revision) -> Option<Arc<[u8]>> {
        if !self.enabled() {
            return None;
        }
        let mut shard = self.shards[shard_of(rev)].lock();
        let e = shard.map.get_mut(&rev)?;
        e.referenced = true;
        Some(e.record.clone())
    }

    pub fn insert(&self, rev: Revision, record: &[u8]) {
        let cost = record.len() + ENTRY_OVERHEAD_BYTES;
        if !self.enabled() || cost > self.shard_capacity_bytes {
            return;
        }
        let mut guard = self.shards[shard_of(rev)].lock();
        let shard = &mut *guard;
        if shard.map.contains_key(&rev) {
            return;
        }
        while shard.bytes + cost > self.shard_capacity_bytes {
            let Some(old) = shard.order.pop_front() else {
                break;
            };
            let e = shard.map.get_mut(&old).expect("queued entries are mapped");
            if e.referenced {
                e.referenced = false;
                shard.order.push_back(old);
            } else {
                let e = shard.map.remove(&old).expect("checked above");
                shard.bytes -= e.record.len() + ENTRY_OVERHEAD_BYTES;
            }
        }
        shard.map.insert(
            rev,
            Entry {
                record: record.into(),
                referenced: false,
            },
        );
        shard.order.push_back(rev);
        shard.bytes += cost;
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_second_chance() {
        let c = ValueCache::new(SHARDS * 1000);
        let hot = Revision::new(-1, 0);
        c.insert(hot, b"hot");
        for m in 0..1000 {
            c.insert(Revision::new(m, 0), &[m as u8; 100]);
            // Read between inserts, the hot entry keeps its second chance.
            assert!(c.get(hot).is_some(), "hot entry evicted at {m}");
        }
        assert!(c.bytes() <= SHARDS * 1000);
        assert!(c.get(Revision::new(0, 0)).is_none(), "cold entries age out");
        assert_eq!(&*c.get(Revision::new(999, 0)).unwrap(), &[231u8; 100][..]);
        let off = ValueCache::new(0);
        off.insert(Revision::new(1, 0), b"x");
        assert!(off.get(Revision::new(1, 0)).is_none());
    }
}
