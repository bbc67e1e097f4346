//! The store's API end to end: put / range / delete / txn / compact with
//! etcd's answers, the batched commit and restart, idempotent apply, the
//! command encoding through `apply_encoded`, snapshots and every backend.

use engine::backend::BackendKind;
use engine::mvcc::*;
use std::time::Duration;

fn opts() -> StoreOptions {
    StoreOptions {
        batch_interval: Duration::from_millis(20),
        ..Default::default()
    }
}

fn range(s: &Store, key: &[u8], end: &[u8], rev: i64) -> RangeResponse {
    s.range(&RangeRequest {
        key: key.to_vec(),
        range_end: end.to_vec(),
        revision: rev,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn put_range_delete_with_etcd_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("db"), opts()).unwrap();
    assert_eq!(s.current_revision(), 1, "a new store starts at revision 1");
    assert_eq!(s.put("a", "1").unwrap().header.revision, 2);
    assert_eq!(s.put("b", "2").unwrap().header.revision, 3);
    let p = s
        .put_request(PutRequest {
            key: b"a".to_vec(),
            value: b"3".to_vec(),
            prev_kv: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(p.header.revision, 4);
    let prev = p.prev_kv.unwrap();
    assert_eq!(
        (prev.value.as_slice(), prev.mod_revision, prev.version),
        (&b"1"[..], 2, 1)
    );
    let a = s.get(b"a").unwrap().unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (2, 4, 2));
    assert_eq!(range(&s, b"a", b"", 3).kvs[0].value, b"1");
    assert_eq!(range(&s, b"a", &[0], 0).count, 2);
    assert_eq!(range(&s, b"a", &[0], 0).header.revision, 4);
    let d = s
        .delete_range(DeleteRangeRequest {
            key: b"a".to_vec(),
            range_end: b"c".to_vec(),
            prev_kv: true,
        })
        .unwrap();
    assert_eq!((d.deleted, d.header.revision, d.prev_kvs.len()), (2, 5, 2));
    assert_eq!(range(&s, b"a", &[0], 0).count, 0);
    assert_eq!(range(&s, b"a", &[0], 4).count, 2);
    // Deleting nothing does not create a revision.
    assert_eq!(s.delete("zz").unwrap().header.revision, 5);
    // Re-creating starts a new generation.
    s.put("a", "x").unwrap();
    let a = s.get(b"a").unwrap().unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (6, 6, 1));
    assert!(matches!(
        s.range(&RangeRequest {
            key: b"a".to_vec(),
            revision: 7,
            ..Default::default()
        }),
        Err(Error::FutureRevision {
            current_revision: 6
        })
    ));
    assert!(matches!(s.put("", "v"), Err(Error::EmptyKey)));
    let e = s
        .put_request(PutRequest {
            key: b"nope".to_vec(),
            ignore_value: true,
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(e.to_string(), "etcdserver: key not found");
    let e = s
        .put_request(PutRequest {
            key: b"k".to_vec(),
            lease: 42,
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(e.to_string(), "lease not found");
    assert_eq!(s.current_revision(), 6, "failed puts create no revision");
}

#[test]
fn txn_compares_branches_and_sees_its_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("db"), opts()).unwrap();
    s.put("k", "v1").unwrap(); // rev 2
    let cmp = |target, result| Compare {
        result,
        target,
        key: b"k".to_vec(),
        range_end: vec![],
    };
    let r = s
        .txn(TxnRequest {
            compare: vec![
                cmp(CompareTarget::Value(b"v1".to_vec()), CompareResult::Equal),
                cmp(CompareTarget::Version(1), CompareResult::Equal),
                cmp(CompareTarget::Mod(3), CompareResult::Less),
                cmp(CompareTarget::Create(1), CompareResult::Greater),
                cmp(CompareTarget::Lease(0), CompareResult::Equal),
            ],
            success: vec![
                RequestOp::Put(PutRequest {
                    key: b"k2".to_vec(),
                    value: b"x".to_vec(),
                    ..Default::default()
                }),
                RequestOp::Range(RangeRequest {
                    key: b"k".to_vec(),
                    range_end: b"l".to_vec(),
                    ..Default::default()
                }),
            ],
            failure: vec![],
        })
        .unwrap();
    assert!(r.succeeded);
    assert_eq!(r.header.revision, 3);
    match &r.responses[1] {
        ResponseOp::Range(rr) => {
            assert_eq!(rr.count, 2, "the range sees the txn's own put");
            assert_eq!(rr.header.revision, 3);
        }
        other => panic!("{other:?}"),
    }
    // A value compare on a missing key is false; failure branch runs.
    let r = s
        .txn(TxnRequest {
            compare: vec![Compare {
                result: CompareResult::NotEqual,
                target: CompareTarget::Value(b"".to_vec()),
                key: b"missing".to_vec(),
                range_end: vec![],
            }],
            success: vec![],
            failure: vec![RequestOp::DeleteRange(DeleteRangeRequest {
                key: b"k".to_vec(),
                ..Default::default()
            })],
        })
        .unwrap();
    assert!(!r.succeeded);
    assert_eq!(r.header.revision, 4);
    // Read-only txn keeps the revision.
    let r = s.txn(TxnRequest::default()).unwrap();
    assert_eq!(r.header.revision, 4);
    // Writing one key twice is refused before anything happens.
    let twice = TxnRequest {
        success: vec![
            RequestOp::Put(PutRequest {
                key: b"d".to_vec(),
                ..Default::default()
            }),
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: b"a".to_vec(),
                range_end: b"z".to_vec(),
                ..Default::default()
            }),
        ],
        ..Default::default()
    };
    assert!(matches!(s.txn(twice), Err(Error::DuplicateKey)));
    // A range at a future revision fails the whole txn.
    let r = s.txn(TxnRequest {
        success: vec![
            RequestOp::Put(PutRequest {
                key: b"z".to_vec(),
                ..Default::default()
            }),
            RequestOp::Range(RangeRequest {
                key: b"z".to_vec(),
                revision: 5,
                ..Default::default()
            }),
        ],
        ..Default::default()
    });
    assert!(matches!(r, Err(Error::FutureRevision { .. })));
    assert_eq!(s.current_revision(), 4);
}

#[test]
fn restart_restores_index_revision_and_consistent_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let hash;
    {
        let s = Store::open(&path, opts()).unwrap();
        for i in 0..500u32 {
            let cmd = Command::Put(PutRequest {
                key: format!("key{:03}", i % 50).into_bytes(),
                value: i.to_le_bytes().to_vec(),
                ..Default::default()
            });
            s.apply(10 + i as u64, &cmd).unwrap().unwrap();
        }
        s.apply(
            600,
            &Command::DeleteRange(DeleteRangeRequest {
                key: b"key01".to_vec(),
                range_end: b"key02".to_vec(),
                prev_kv: false,
            }),
        )
        .unwrap();
        // Replays below the consistent index are no-ops.
        assert!(s
            .apply(15, &Command::Put(PutRequest::default()))
            .unwrap()
            .is_none());
        hash = s.hash_kv(0).unwrap();
        s.close().unwrap();
    }
    let s = Store::open(&path, opts()).unwrap();
    assert_eq!(s.consistent_index(), 600);
    assert_eq!(s.current_revision(), 502);
    assert_eq!(s.hash_kv(0).unwrap(), hash);
    let k = s.get(b"key007").unwrap().unwrap();
    assert_eq!((k.version, k.create_revision), (10, 9));
    assert_eq!(range(&s, b"key", b"kez", 0).count, 40);
    assert_eq!(range(&s, b"key", b"kez", 400).count, 50);
    // Garbage bytes consume their index with a clear error.
    let e = s.apply_encoded(601, &[1, 200]).unwrap_err();
    assert!(e.to_string().contains("unknown tag 200"), "{e}");
    assert_eq!(s.consistent_index(), 601);
}

#[test]
fn unsynced_writes_are_read_from_the_buffer_then_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(
        dir.path().join("db"),
        StoreOptions {
            batch_interval: Duration::from_secs(30),
            batch_limit: 100,
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..250u32 {
        s.put(format!("k{i:04}"), vec![i as u8; 100]).unwrap();
    }
    // 200 writes went out at the limit; 50 are only in the buffer.
    for i in 0..250u32 {
        let kv = s.get(format!("k{i:04}").as_bytes()).unwrap().unwrap();
        assert_eq!(kv.value, vec![i as u8; 100]);
    }
    s.sync().unwrap();
    assert_eq!(range(&s, b"k", b"l", 0).count, 250);
}

#[test]
fn compaction_removes_history_and_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("db"), opts()).unwrap();
    for i in 0..10 {
        s.put("a", format!("{i}")).unwrap(); // revs 2..=11
    }
    s.put("b", "x").unwrap(); // 12
    s.delete("b").unwrap(); // 13
    assert!(matches!(
        s.compact(20, false),
        Err(Error::FutureRevision { .. })
    ));
    s.compact(13, true).unwrap();
    assert!(matches!(
        s.compact(13, false),
        Err(Error::Compacted {
            compact_revision: 13
        })
    ));
    assert!(matches!(
        s.range(&RangeRequest {
            key: b"a".to_vec(),
            revision: 12,
            ..Default::default()
        }),
        Err(Error::Compacted {
            compact_revision: 13
        })
    ));
    assert_eq!(range(&s, b"a", b"", 13).kvs[0].value, b"9");
    assert_eq!(s.index().history(b"a").len(), 1);
    assert!(s.index().history(b"b").is_empty());
    let st = s.status().unwrap();
    assert_eq!((st.revision, st.compact_revision), (13, 13));
}

#[test]
fn every_backend_and_snapshot_restore() {
    for kind in BackendKind::ALL {
        let dir = tempfile::tempdir().unwrap();
        let o = || StoreOptions {
            backend: kind,
            ..opts()
        };
        let s = Store::open(dir.path().join("db"), o()).unwrap();
        for i in 0..100u32 {
            s.put(format!("k{i}"), format!("v{i}")).unwrap();
        }
        let hash = s.hash_kv(0).unwrap();
        let mut snap = Vec::new();
        match s.snapshot_to(&mut snap) {
            Ok((n, index)) => {
                assert_eq!(n as usize, snap.len());
                assert_eq!(index, 100);
                let r = Store::restore_from_snapshot(dir.path().join("copy"), o(), &mut &snap[..])
                    .unwrap();
                assert_eq!(r.hash_kv(0).unwrap(), hash, "{kind:?}");
                assert_eq!(r.consistent_index(), 100);
            }
            Err(Error::Backend(engine::backend::Error::Unsupported(..))) => {}
            Err(e) => panic!("{kind:?}: {e}"),
        }
        drop(s);
        let s = Store::open(dir.path().join("db"), o()).unwrap();
        assert_eq!(s.hash_kv(0).unwrap(), hash, "{kind:?}");
    }
}
