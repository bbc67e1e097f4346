//! Concurrency stress: reader threads take multi-key snapshots (ranges at
//! the current revision and at past revisions) while the apply path writes,
//! seals batches, commits them and compacts. Every snapshot must be
//! consistent: the writer moves amounts between accounts in single
//! transactions, so every revision's balances sum to the same total, and a
//! range at revision R must return the same answer every time it is asked
//! (until R is compacted, when it must say so).

use engine::backend::Durability;
use engine::mvcc::*;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ACCOUNTS: u64 = 24;
const START_BALANCE: i64 = 1000;
const TRANSFERS: u64 = 20_000;

fn account(i: u64) -> Vec<u8> {
    format!("acct/{i:02}").into_bytes()
}

fn balance(kv: &KeyValue) -> i64 {
    std::str::from_utf8(&kv.value).unwrap().parse().unwrap()
}

fn all_accounts(rev: i64) -> RangeRequest {
    RangeRequest {
        key: b"acct/".to_vec(),
        range_end: b"acct0".to_vec(),
        revision: rev,
        ..Default::default()
    }
}

#[test]
fn snapshots_stay_consistent_while_the_apply_path_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        Store::open(
            dir.path().join("db"),
            StoreOptions {
                durability: Durability::NoSync,
                batch_interval: Duration::from_millis(3),
                batch_limit: 97,
                compaction_batch_keys: 5,
                compaction_batch_pause: Duration::ZERO,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let init = TxnRequest {
        success: (0..ACCOUNTS)
            .map(|i| {
                RequestOp::Put(PutRequest {
                    key: account(i),
                    value: START_BALANCE.to_string().into_bytes(),
                    ..Default::default()
                })
            })
            .collect(),
        ..Default::default()
    };
    let first = store.txn(init).unwrap().header.revision;
    let total = START_BALANCE * ACCOUNTS as i64;
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<HashMap<i64, RangeResponse>>> = Arc::default();
    let checks = Arc::new(AtomicU64::new(0));

    let readers: Vec<_> = (0..4)
        .map(|t| {
            let (store, stop, seen, checks) =
                (store.clone(), stop.clone(), seen.clone(), checks.clone());
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(t);
                while !stop.load(Ordering::Relaxed) {
                    let current = store.current_revision();
                    let rev = if rng.gen_bool(0.5) {
                        0
                    } else {
                        rng.gen_range(first..=current)
                    };
                    let r = match store.range(&all_accounts(rev)) {
                        Ok(r) => r,
                        Err(Error::Compacted { compact_revision }) => {
                            assert!(rev < compact_revision);
                            continue;
                        }
                        Err(e) => panic!("range at {rev}: {e}"),
                    };
                    let at = if rev == 0 { r.header.revision } else { rev };
                    assert!(r.header.revision >= at);
                    assert_eq!(r.count, ACCOUNTS as i64, "at {at}");
                    assert_eq!(r.kvs.iter().map(balance).sum::<i64>(), total, "at {at}");
                    assert!(r.kvs.iter().all(|kv| kv.mod_revision <= at));
                    // The same revision always reads the same.
                    let mut snap = r.clone();
                    snap.header = ResponseHeader::default();
                    let mut seen = seen.lock().unwrap();
                    match seen.get(&at) {
                        Some(prev) => assert_eq!(*prev, snap, "revision {at} read differently"),
                        None => {
                            seen.insert(at, snap);
                        }
                    }
                    drop(seen);
                    checks.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    for n in 0..TRANSFERS {
        // Readers keep pace (at least one check per 20 transfers, counted
        // every 2000) however the machine schedules them, so their checks
        // interleave with the writes throughout.
        if n % 2000 == 1999 {
            while checks.load(Ordering::Relaxed) < (n + 1) / 20 {
                assert!(!readers.iter().any(|r| r.is_finished()), "a reader stopped");
                std::thread::yield_now();
            }
        }
        let (a, b) = (rng.gen_range(0..ACCOUNTS), rng.gen_range(0..ACCOUNTS));
        if a == b {
            continue;
        }
        let r = store.range(&all_accounts(0)).unwrap();
        let get = |i: u64| r.kvs.iter().find(|kv| kv.key == account(i)).unwrap();
        let (ka, kb) = (get(a), get(b));
        let amount = rng.gen_range(0..=balance(ka).max(0));
        // Guarded by mod revisions, as a client would do it.
        let t = store
            .txn(TxnRequest {
                compare: vec![
                    Compare {
                        result: CompareResult::Equal,
                        target: CompareTarget::Mod(ka.mod_revision),
                        key: account(a),
                        range_end: vec![],
                    },
                    Compare {
                        result: CompareResult::Equal,
                        target: CompareTarget::Mod(kb.mod_revision),
                        key: account(b),
                        range_end: vec![],
                    },
                ],
                success: vec![
                    RequestOp::Put(PutRequest {
                        key: account(a),
                        value: (balance(ka) - amount).to_string().into_bytes(),
                        ..Default::default()
                    }),
                    RequestOp::Put(PutRequest {
                        key: account(b),
                        value: (balance(kb) + amount).to_string().into_bytes(),
                        ..Default::default()
                    }),
                ],
                failure: vec![],
            })
            .unwrap();
        assert!(t.succeeded, "single writer: compares hold");
        if n % 3000 == 2999 {
            let rev = store.current_revision() - 500;
            store.compact(rev, false).unwrap();
            seen.lock().unwrap().retain(|r, _| *r >= rev);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert!(
        checks.load(Ordering::Relaxed) >= 1000,
        "readers ran {} checks",
        checks.load(Ordering::Relaxed)
    );
    let r = store.range(&all_accounts(0)).unwrap();
    assert_eq!(r.kvs.iter().map(balance).sum::<i64>(), total);
}
