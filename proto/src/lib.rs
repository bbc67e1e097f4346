//! The etcd v3 gRPC API, generated at build time from `protos/` (wire
//! compatible with etcd 3.4's `etcdserverpb`, `mvccpb` and `authpb`).
//!
//! Messages, clients (`kv_client::KvClient`, `watch_client::WatchClient`, ...)
//! and servers (`kv_server::KvServer` with the `kv_server::Kv` trait, ...)
//! live in the module named after their protobuf package, so the gRPC paths
//! are etcd's own (`/etcdserverpb.KV/Put`) and etcd's clients work unchanged.

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

/// Stored key-value pairs and watch events (`mvccpb`).
pub mod mvccpb {
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
}

/// Users, roles and permissions (`authpb`).
pub mod authpb {
    include!(concat!(env!("OUT_DIR"), "/authpb.rs"));
}

/// The KV, Watch, Lease, Cluster, Maintenance and Auth services
/// (`etcdserverpb`).
pub mod etcdserverpb {
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
}

/// The range end that selects every key with `prefix` (etcd's
/// `clientv3.GetPrefixRangeEnd`): the prefix with its last byte below 0xff
/// incremented and everything after it dropped; `[0]` ("\0", every key
/// from `prefix` on) when every byte is 0xff.
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
