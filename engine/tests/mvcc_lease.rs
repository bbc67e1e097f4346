//! Leases: grant / revoke / keep-alive / time-to-live / list; expiry and
//! revoke delete the attached keys in one revision and notify watchers;
//! keep-alive extends; leases, their TTLs and attachments survive a
//! restart. Time comes from a manual clock, so no test waits for a TTL.

use engine::backend::Durability;
use engine::mvcc::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn options(clock: &Arc<ManualClock>) -> StoreOptions {
    StoreOptions {
        durability: Durability::NoSync,
        batch_interval: Duration::from_millis(10),
        lease_min_ttl_secs: 1,
        lease_check_interval: Duration::from_millis(5),
        watch_sync_interval: Duration::from_millis(5),
        clock: clock.clone(),
        ..Default::default()
    }
}

fn put_with_lease(s: &Store, key: &str, lease: i64) -> i64 {
    s.put_request(PutRequest {
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
        lease,
        ..Default::default()
    })
    .unwrap()
    .header
    .revision
}

fn wait_until(mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "condition not reached in 10 s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn watch_all(s: &Store) -> WatchStream {
    let st = s.watch_stream();
    st.watch(&WatchCreateRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    })
    .unwrap();
    assert!(st.recv_timeout(Duration::from_secs(5)).unwrap().created);
    st
}

#[test]
fn expiry_deletes_attached_keys_in_one_revision_and_notifies() {
    let clock = Arc::new(ManualClock::default());
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("db"), options(&clock)).unwrap();
    let g = s.lease_grant(10, 0).unwrap();
    assert!(g.id > 0);
    assert_eq!(g.ttl, 10);
    for k in ["a", "b", "c"] {
        put_with_lease(&s, k, g.id);
    }
    put_with_lease(&s, "free", 0);
    let st = watch_all(&s);
    let before = s.current_revision();
    clock.advance(Duration::from_secs(9));
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(s.current_revision(), before, "not expired yet");
    clock.advance(Duration::from_secs(2));
    wait_until(|| s.current_revision() > before);
    assert_eq!(
        s.current_revision(),
        before + 1,
        "one revision for all keys"
    );
    let r = st.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(r.events.len(), 3);
    assert!(r
        .events
        .iter()
        .all(|e| e.kind == EventType::Delete && e.kv.mod_revision == before + 1));
    assert_eq!(
        r.events
            .iter()
            .map(|e| e.kv.key.clone())
            .collect::<Vec<_>>(),
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
    assert!(s.get(b"a").unwrap().is_none());
    assert!(s.get(b"free").unwrap().is_some());
    assert!(matches!(
        s.lease_time_to_live(g.id, false),
        Err(Error::LeaseNotFound)
    ));
    assert!(s.lease_leases().leases.is_empty());
}

#[test]
fn revoke_and_keep_alive() {
    let clock = Arc::new(ManualClock::default());
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("db"), options(&clock)).unwrap();
    let a = s.lease_grant(4, 7).unwrap();
    assert_eq!(a.id, 7);
    assert!(matches!(s.lease_grant(4, 7), Err(Error::LeaseExists)));
    assert!(matches!(
        s.lease_grant(MAX_LEASE_TTL_SECS + 1, 8),
        Err(Error::LeaseTtlTooLarge)
    ));
    assert!(matches!(
        s.propose(&Command::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 0 })),
        Err(Error::LeaseNotFound)
    ));
    // Below the minimum TTL: raised to it.
    assert_eq!(s.lease_grant(0, 9).unwrap().ttl, 1);
    put_with_lease(&s, "x", 7);
    put_with_lease(&s, "y", 7);
    // ignore_lease keeps the lease, lease 0 detaches.
    s.put_request(PutRequest {
        key: b"x".to_vec(),
        value: b"w".to_vec(),
        ignore_lease: true,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.get(b"x").unwrap().unwrap().lease, 7);
    put_with_lease(&s, "y", 0);
    let ttl = s.lease_time_to_live(7, true).unwrap();
    assert_eq!(
        (ttl.ttl, ttl.granted_ttl, ttl.keys),
        (4, 4, vec![b"x".to_vec()])
    );
    assert_eq!(s.lease_leases().leases, vec![7, 9]);

    // Keep-alive extends: 3 s + 3 s > 4 s TTL and the lease lives.
    clock.advance(Duration::from_secs(3));
    assert_eq!(s.lease_keep_alive(7).unwrap().ttl, 4);
    clock.advance(Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(30));
    assert!(s.get(b"x").unwrap().is_some());
    assert_eq!(s.lease_time_to_live(7, false).unwrap().ttl, 1);

    let st = watch_all(&s);
    let before = s.current_revision();
    let r = s.lease_revoke(7).unwrap();
    assert_eq!(r.header.revision, before + 1);
    assert!(s.get(b"x").unwrap().is_none());
    let ev = st.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(ev.events.len(), 1);
    assert_eq!(ev.events[0].kind, EventType::Delete);
    assert!(matches!(s.lease_revoke(7), Err(Error::LeaseNotFound)));
    assert!(matches!(s.lease_keep_alive(7), Err(Error::LeaseNotFound)));
    // Revoking a lease without keys makes no revision.
    // (lease 9, with its 1 s TTL, expired on the way: the background
    // expiry removes it.)
    wait_until(|| s.lease_leases().leases.is_empty());
    s.lease_grant(100, 10).unwrap();
    let rev = s.current_revision();
    s.lease_revoke(10).unwrap();
    assert_eq!(s.current_revision(), rev);
}

#[test]
fn leases_survive_a_restart() {
    let clock = Arc::new(ManualClock::default());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let s = Store::open(&path, options(&clock)).unwrap();
        s.lease_grant(100, 1).unwrap();
        s.lease_grant(1000, 2).unwrap();
        put_with_lease(&s, "k1", 1);
        put_with_lease(&s, "k2", 1);
        put_with_lease(&s, "k3", 2);
        put_with_lease(&s, "k2", 2); // moves k2 to lease 2
        s.delete("k3").unwrap(); // detaches k3
                                 // A checkpoint persists the remaining TTL of lease 2.
        s.propose(&Command::LeaseCheckpoint(LeaseCheckpointRequest {
            checkpoints: vec![LeaseCheckpoint {
                id: 2,
                remaining_ttl: 50,
            }],
        }))
        .unwrap();
        s.close().unwrap();
    }
    let s = Store::open(&path, options(&clock)).unwrap();
    assert_eq!(s.lease_leases().leases, vec![1, 2]);
    let l1 = s.lease_time_to_live(1, true).unwrap();
    assert_eq!(
        (l1.ttl, l1.granted_ttl, l1.keys),
        (100, 100, vec![b"k1".to_vec()])
    );
    let l2 = s.lease_time_to_live(2, true).unwrap();
    assert_eq!(
        (l2.ttl, l2.granted_ttl, l2.keys),
        (50, 1000, vec![b"k2".to_vec()])
    );
    // Expiry after the restart still deletes the restored attachments.
    let before = s.current_revision();
    clock.advance(Duration::from_secs(60));
    wait_until(|| s.lease_leases().leases == vec![1]);
    assert_eq!(s.current_revision(), before + 1);
    assert!(s.get(b"k2").unwrap().is_none());
    assert!(s.get(b"k1").unwrap().is_some());
    drop(s);
    // ... and that revoke is durable too.
    let s = Store::open(&path, options(&clock)).unwrap();
    assert_eq!(s.lease_leases().leases, vec![1]);
    assert!(s.get(b"k2").unwrap().is_none());
}

#[test]
fn external_expiry_leaves_revokes_to_the_owner() {
    let clock = Arc::new(ManualClock::default());
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(
        dir.path().join("db"),
        StoreOptions {
            lease_expiry: LeaseExpiry::External,
            ..options(&clock)
        },
    )
    .unwrap();
    s.lease_grant(5, 3).unwrap();
    put_with_lease(&s, "k", 3);
    clock.advance(Duration::from_secs(6));
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(s.expired_leases(), vec![3]);
    assert!(s.get(b"k").unwrap().is_some(), "nothing revoked by itself");
    assert_eq!(s.lease_time_to_live(3, false).unwrap().ttl, -1);
    // The owner (raft leader) proposes the revoke; followers apply it.
    s.apply(
        s.consistent_index() + 1,
        &Command::LeaseRevoke(LeaseRevokeRequest { id: 3 }),
    )
    .unwrap()
    .unwrap();
    assert!(s.get(b"k").unwrap().is_none());
    assert!(s.expired_leases().is_empty());
}
