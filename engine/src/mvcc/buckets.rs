//! The backend buckets the store uses and the meta bucket's keys
//! (docs/format.md, "MVCC buckets").

/// Revision key (17/18 bytes, `revision.rs`) → encoded KeyValue (`kv.rs`).
pub const KEY_BUCKET: &str = "key";
/// Store state; each value a u64, little-endian.
pub const META_BUCKET: &str = "meta";
/// Lease ID (8 bytes, big-endian) → encoded lease record (`lease.rs`).
pub const LEASE_BUCKET: &str = "lease";
/// State of the server that embeds the store (alarms, member table), keys
/// and values opaque to the store, written at a raft index like the KV
/// data (`Store::apply_server_state`).
pub const SERVER_BUCKET: &str = "server";

/// Version of the MVCC layout; open refuses any other.
pub const META_FORMAT: &[u8] = b"format";
pub const FORMAT_VERSION: u64 = 1;
/// Last raft index whose effects the commit holds.
pub const META_CONSISTENT_INDEX: &[u8] = b"consistent_index";
/// The store revision at that index.
pub const META_CURRENT_REV: &[u8] = b"current_rev";
/// Last compaction applied (readers refuse revisions below it).
pub const META_SCHEDULED_COMPACT: &[u8] = b"scheduled_compact_rev";
/// Last compaction whose removal from the key bucket completed.
pub const META_FINISHED_COMPACT: &[u8] = b"finished_compact_rev";

pub fn u64_value(v: u64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

pub fn parse_u64(v: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(v.try_into().ok()?))
}
