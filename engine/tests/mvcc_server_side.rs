//! What the store offers the server that embeds it beyond etcd's KV API:
//! its own state in the server bucket at a raft index (restart, snapshot,
//! idempotent replay), etcd's whole-backend Hash, defragmentation into a
//! fresh file, and the batch commit durations.

use engine::mvcc::*;
use std::time::Duration;

fn opts() -> StoreOptions {
    StoreOptions {
        batch_interval: Duration::from_millis(20),
        ..Default::default()
    }
}

fn put(s: &Store, index: u64, key: &str, value: &str) {
    let cmd = Command::Put(PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..Default::default()
    });
    s.apply(index, &cmd).unwrap().expect("a new index");
}

#[test]
fn server_state_is_written_at_its_index_and_survives_restart_and_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let s = Store::open(&path, opts()).unwrap();
    put(&s, 1, "a", "1");
    let set = vec![
        (b"alarm/x".to_vec(), Some(Vec::new())),
        (b"member/1".to_vec(), Some(b"one".to_vec())),
    ];
    assert!(s.apply_server_state(2, &set).unwrap());
    assert_eq!(s.consistent_index(), 2);
    // A replayed index changes nothing.
    let undo = vec![(b"alarm/x".to_vec(), None)];
    assert!(!s.apply_server_state(2, &undo).unwrap());
    assert!(s
        .apply_server_state(3, &[(b"member/2".to_vec(), Some(b"two".to_vec()))])
        .unwrap());
    assert!(s.apply_server_state(4, &undo).unwrap());
    s.sync().unwrap();
    let expect = vec![
        (b"member/1".to_vec(), b"one".to_vec()),
        (b"member/2".to_vec(), b"two".to_vec()),
    ];
    assert_eq!(s.server_state().unwrap(), expect);
    let mut image = Vec::new();
    let (_, index) = s.snapshot_to(&mut image).unwrap();
    assert_eq!(index, 4);
    drop(s);

    let s = Store::open(&path, opts()).unwrap();
    assert_eq!(s.consistent_index(), 4);
    assert_eq!(s.server_state().unwrap(), expect);
    let other = dir.path().join("restored");
    let r = Store::restore_from_snapshot(&other, opts(), &mut image.as_slice()).unwrap();
    assert_eq!(r.server_state().unwrap(), expect);
    assert_eq!(r.get(b"a").unwrap().unwrap().value, b"1");
}

#[test]
fn hash_covers_the_backend_but_not_the_consistent_index() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path().join("a"), opts()).unwrap();
    let b = Store::open(dir.path().join("b"), opts()).unwrap();
    put(&a, 1, "k", "v");
    put(&b, 7, "k", "v");
    let (ha, ra) = a.hash_backend().unwrap();
    let (hb, rb) = b.hash_backend().unwrap();
    assert_eq!((ha, ra), (hb, rb), "same data at different raft indexes");
    assert!(b
        .apply_server_state(8, &[(b"member/1".to_vec(), Some(b"x".to_vec()))])
        .unwrap());
    assert_ne!(
        b.hash_backend().unwrap().0,
        ha,
        "the server bucket is hashed"
    );
    put(&a, 2, "k", "w");
    assert_ne!(a.hash_backend().unwrap().0, ha, "the key bucket is hashed");
}

#[test]
fn defragmented_copy_is_smaller_and_holds_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("db"), opts()).unwrap();
    let value = "x".repeat(1000);
    let mut index = 0;
    for i in 0..20000 {
        index += 1;
        put(&s, index, &format!("key{i:05}"), &value);
    }
    index += 1;
    s.apply(
        index,
        &Command::DeleteRange(DeleteRangeRequest {
            key: b"key".to_vec(),
            range_end: b"key18000".to_vec(),
            ..Default::default()
        }),
    )
    .unwrap();
    index += 1;
    let rev = s.current_revision();
    s.apply(
        index,
        &Command::Compact(CompactionRequest {
            revision: rev,
            physical: true,
        }),
    )
    .unwrap();
    s.wait_compaction(rev).unwrap();
    s.sync().unwrap();
    let before = s.status().unwrap().db_size_bytes;
    let copy = dir.path().join("copy");
    let after = s.defragment_into(&copy).unwrap();
    assert!(
        after * 2 < before,
        "defragmented copy {after} bytes, original {before} bytes"
    );
    let hash = s.hash_kv(0).unwrap().hash;
    drop(s);
    let c = Store::open(&copy, opts()).unwrap();
    assert_eq!(c.consistent_index(), index);
    assert_eq!(c.hash_kv(0).unwrap().hash, hash);
    assert_eq!(c.get(b"key19999").unwrap().unwrap().value, value.as_bytes());
    assert!(c.get(b"key00001").unwrap().is_none());
}

#[test]
fn batch_commit_durations_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("db"), opts()).unwrap();
    assert_eq!(s.commit_durations_ns().len(), 0);
    put(&s, 1, "a", "1");
    s.sync().unwrap();
    let h = s.commit_durations_ns();
    assert!(!h.is_empty(), "{} commits recorded", h.len());
    assert!(h.min() > 0);
}
