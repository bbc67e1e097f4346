//! Model-based tests of engine::btree against `BTreeMap`: random put /
//! delete / bucket / commit / rollback / reopen sequences, checking every
//! read path (get, forward and backward cursors, seek, ranges) and the full
//! `check` after each commit; plus readers holding stable snapshots while a
//! writer commits, frees and grows the file.

use engine::btree::{Db, Options, SyncMode};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::ops::Bound;

type Model = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

#[derive(Clone, Debug)]
enum Op {
    Put {
        bucket: u8,
        key: u16,
        len: usize,
        fill: u8,
    },
    Delete {
        bucket: u8,
        key: u16,
    },
    CreateBucket(u8),
    DeleteBucket(u8),
    Commit,
    Rollback,
    Reopen,
}

const BUCKETS: u8 = 3;

fn bucket_name(b: u8) -> Vec<u8> {
    format!("bucket-{b}").into_bytes()
}

/// Keys of varying length and shared prefixes, so page splits see uneven
/// entries; a small key space so deletes and overwrites hit.
fn key_bytes(k: u16) -> Vec<u8> {
    let mut key = format!("k{:05}", k).into_bytes();
    key.extend(std::iter::repeat_n(b'x', (k % 7) as usize * 9));
    key
}

fn value_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..64,
        3 => 64usize..400,
        1 => 400usize..3000,   // overflow at 1 KiB pages, inline-ish at 4 KiB
        1 => 3000usize..12000, // multi-page overflow
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (0..BUCKETS, 0u16..400, value_len(), any::<u8>())
            .prop_map(|(bucket, key, len, fill)| Op::Put { bucket, key, len, fill }),
        12 => (0..BUCKETS, 0u16..400).prop_map(|(bucket, key)| Op::Delete { bucket, key }),
        2 => (0..BUCKETS).prop_map(Op::CreateBucket),
        1 => (0..BUCKETS).prop_map(Op::DeleteBucket),
        6 => Just(Op::Commit),
        2 => Just(Op::Rollback),
        1 => Just(Op::Reopen),
    ]
}

fn value(len: usize, fill: u8, key: u16) -> Vec<u8> {
    (0..len)
        .map(|i| fill.wrapping_add((i as u8).wrapping_mul(31)) ^ key as u8)
        .collect()
}

/// Compares every read path of a read transaction with the model.
fn verify(db: &Db, model: &Model) {
    let rx = db.begin_read().unwrap();
    let names = rx.buckets().unwrap();
    assert_eq!(names, model.keys().cloned().collect::<Vec<_>>());
    for (name, kv) in model {
        let b = rx.bucket(name).unwrap();
        // forward
        let mut c = b.cursor();
        let mut got = Vec::new();
        let mut e = c.first().unwrap();
        while let Some((k, v)) = e {
            got.push((k.to_vec(), v.to_vec()));
            e = c.next().unwrap();
        }
        let want: Vec<_> = kv.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "forward scan differs from the model");
        // backward
        let mut back = Vec::new();
        let mut e = c.last().unwrap();
        while let Some((k, _)) = e {
            back.push(k.to_vec());
            e = c.prev().unwrap();
        }
        back.reverse();
        assert_eq!(back, kv.keys().cloned().collect::<Vec<_>>());
        // point reads, seeks and a range, on every tenth key of the space
        for k in (0..400u16).step_by(10) {
            let key = key_bytes(k);
            assert_eq!(b.get(&key).unwrap(), kv.get(&key).map(|v| v.as_slice()));
            let seek = c.seek(&key).unwrap().map(|(k, _)| k.to_vec());
            let want = kv.range(key.clone()..).next().map(|(k, _)| k.clone());
            assert_eq!(seek, want);
            let end = key_bytes(k + 37);
            let got: Vec<Vec<u8>> = b
                .range(Bound::Excluded(&key), Bound::Included(&end))
                .map(|r| r.unwrap().0.to_vec())
                .collect();
            let want: Vec<Vec<u8>> = kv
                .range((Bound::Excluded(key.clone()), Bound::Included(end)))
                .map(|(k, _)| k.clone())
                .collect();
            assert_eq!(got, want);
        }
    }
    let report = rx.check();
    assert!(report.is_ok(), "check failed: {:?}", report.errors);
    let keys: usize = model.values().map(BTreeMap::len).sum();
    assert_eq!(report.keys as usize, keys);
}

fn run(ops: Vec<Op>, page_size: usize, sync: SyncMode, checkpoint_interval_commits: u32) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let opts = Options {
        page_size,
        sync,
        initial_size_bytes: 16 * 1024,
        grow_step_min_bytes: 8 * 1024,
        checkpoint_interval_commits,
        ..Options::default()
    };
    let mut db = Db::open(&path, opts.clone()).unwrap();
    let mut committed: Model = BTreeMap::new();
    let mut working = committed.clone();
    let mut tx = Some(db.begin_write().unwrap());
    for op in ops {
        let w = tx.as_mut().unwrap();
        match op {
            Op::Put {
                bucket,
                key,
                len,
                fill,
            } => {
                let name = bucket_name(bucket);
                let (k, v) = (key_bytes(key), value(len, fill, key));
                let res = w.put(&name, &k, &v);
                match working.get_mut(&name) {
                    Some(kv) => {
                        res.unwrap();
                        kv.insert(k.clone(), v.clone());
                        assert_eq!(
                            w.get(&name, &k).unwrap(),
                            Some(v.as_slice()),
                            "read-your-writes"
                        );
                    }
                    None => assert!(matches!(res, Err(engine::btree::Error::BucketNotFound(_)))),
                }
            }
            Op::Delete { bucket, key } => {
                let name = bucket_name(bucket);
                let k = key_bytes(key);
                let res = w.delete(&name, &k);
                match working.get_mut(&name) {
                    Some(kv) => assert_eq!(res.unwrap(), kv.remove(&k).is_some()),
                    None => assert!(res.is_err()),
                }
                if working.contains_key(&name) {
                    assert_eq!(w.get(&name, &k).unwrap(), None);
                }
            }
            Op::CreateBucket(b) => {
                let name = bucket_name(b);
                let created = w.create_bucket(&name).unwrap();
                assert_eq!(created, !working.contains_key(&name));
                working.entry(name).or_default();
            }
            Op::DeleteBucket(b) => {
                let name = bucket_name(b);
                assert_eq!(
                    w.delete_bucket(&name).unwrap(),
                    working.remove(&name).is_some()
                );
            }
            Op::Commit => {
                tx.take().unwrap().commit().unwrap();
                committed = working.clone();
                verify(&db, &committed);
                let report = db.check().unwrap();
                assert!(report.is_ok(), "allocator check: {:?}", report.errors);
                tx = Some(db.begin_write().unwrap());
            }
            Op::Rollback => {
                tx.take().unwrap().rollback();
                working = committed.clone();
                verify(&db, &committed);
                tx = Some(db.begin_write().unwrap());
            }
            Op::Reopen => {
                drop(tx.take());
                drop(db);
                working = committed.clone();
                db = Db::open(&path, opts.clone()).unwrap();
                verify(&db, &committed);
                let report = db.check().unwrap();
                assert!(
                    report.is_ok(),
                    "allocator check after reopen: {:?}",
                    report.errors
                );
                tx = Some(db.begin_write().unwrap());
            }
        }
    }
    tx.take().unwrap().commit().unwrap();
    drop(db);
    let db = Db::open(&path, opts).unwrap();
    verify(&db, &working);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn btree_matches_model(
        ops in proptest::collection::vec(op(), 1..300),
        small_pages in any::<bool>(),
        durable in proptest::bool::weighted(0.1),
        checkpoint_interval in prop_oneof![Just(1u32), Just(2), Just(5), Just(64)],
    ) {
        let page_size = if small_pages { 1024 } else { 4096 };
        let sync = if durable { SyncMode::Single } else { SyncMode::None };
        let mut ops = ops;
        ops.insert(0, Op::CreateBucket(0));
        CASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        run(ops, page_size, sync, checkpoint_interval);
    }
}

/// The property test really ran its cases (a vacuous run must fail).
#[test]
fn model_case_count() {
    btree_matches_model();
    assert!(CASES.load(std::sync::atomic::Ordering::Relaxed) >= 1000);
}

/// Sequential bulk inserts fill pages (append split) and deleting most keys
/// merges them back; the tree stays valid and compact throughout.
#[test]
fn sequential_load_then_mass_delete() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path().join("db"),
        Options {
            sync: SyncMode::None,
            ..Options::default()
        },
    )
    .unwrap();
    let mut tx = db.begin_write().unwrap();
    tx.create_bucket(b"b").unwrap();
    for i in 0u32..50_000 {
        tx.put(b"b", &i.to_be_bytes(), &[7u8; 100]).unwrap();
    }
    tx.commit().unwrap();
    let stats = db.stats().unwrap();
    let leaf_bytes = stats.buckets[0].leaf_pages * 4096;
    let data_bytes = 50_000 * (4 + 100 + 9);
    assert!(
        leaf_bytes < data_bytes * 110 / 100,
        "append splits leave full pages: {leaf_bytes} bytes of leaves for {data_bytes}"
    );
    let mut tx = db.begin_write().unwrap();
    for i in (0u32..50_000).filter(|i| i % 50 != 0) {
        assert!(tx.delete(b"b", &i.to_be_bytes()).unwrap());
    }
    tx.commit().unwrap();
    let report = db.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.errors);
    assert_eq!(report.keys, 1000);
    let after = db.stats().unwrap();
    eprintln!(
        "leaves: {} before, {} after",
        stats.buckets[0].leaf_pages, after.buckets[0].leaf_pages
    );
    assert!(
        after.buckets[0].leaf_pages * 5 < stats.buckets[0].leaf_pages,
        "merges shrink the tree"
    );
}

/// Readers keep their snapshot, unchanged, while the writer overwrites,
/// deletes (freeing pages) and grows the file past its mapping.
#[test]
fn readers_keep_stable_snapshots_while_the_file_grows() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        initial_size_bytes: 16 * 1024,
        grow_step_min_bytes: 4096,
        sync: SyncMode::None,
        ..Options::default()
    };
    let db = Db::open(dir.path().join("db"), opts).unwrap();
    let mut tx = db.begin_write().unwrap();
    tx.create_bucket(b"b").unwrap();
    for i in 0u32..500 {
        tx.put(b"b", &i.to_be_bytes(), &i.to_le_bytes().repeat(8))
            .unwrap();
    }
    tx.commit().unwrap();
    let size_before = db.file_size_bytes().unwrap();

    let snapshot = |rx: &engine::btree::ReadTx| -> Vec<(Vec<u8>, Vec<u8>)> {
        rx.bucket(b"b")
            .unwrap()
            .range(Bound::Unbounded, Bound::Unbounded)
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.to_vec(), v.to_vec())
            })
            .collect()
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    // Readers that have checked a snapshot: the writer holds its second
    // half of commits until all three run, so every reader overlaps it.
    let running = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        let mut readers = Vec::new();
        for _ in 0..3 {
            readers.push(s.spawn(|| {
                let mut snapshots_checked = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let rx = db.begin_read().unwrap();
                    let first = snapshot(&rx);
                    for _ in 0..5 {
                        std::thread::yield_now();
                        assert!(
                            snapshot(&rx) == first,
                            "snapshot {} changed under a reader",
                            rx.txid()
                        );
                    }
                    assert!(rx.check().is_ok());
                    if snapshots_checked == 0 {
                        running.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    snapshots_checked += 1;
                }
                snapshots_checked
            }));
        }
        for round in 0u32..200 {
            if round == 100 {
                while running.load(std::sync::atomic::Ordering::Relaxed) < 3 {
                    assert!(!readers.iter().any(|r| r.is_finished()), "a reader stopped");
                    std::thread::yield_now();
                }
            }
            let mut tx = db.begin_write().unwrap();
            for i in 0u32..60 {
                let k = (round * 7919 + i * 131) % 3000;
                if i % 4 == 0 {
                    tx.delete(b"b", &k.to_be_bytes()).unwrap();
                } else {
                    tx.put(
                        b"b",
                        &k.to_be_bytes(),
                        &round.to_le_bytes().repeat(1 + (k % 40) as usize),
                    )
                    .unwrap();
                }
            }
            tx.commit().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            assert!(
                r.join().unwrap() > 0,
                "every reader checked at least one snapshot"
            );
        }
    });
    assert!(
        db.file_size_bytes().unwrap() > size_before * 4,
        "the file grew (remapped) during the test"
    );
    assert!(db.check().unwrap().is_ok());
}

static CASES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
