//! Watch: every event is delivered exactly once and in revision order —
//! to watchers on the current revision and to watchers started in the
//! past (catch-up from buffers and backend), with range / prefix / single
//! key selections, filters and prev_kv — while the history below them is
//! compacted; a watcher below the compacted revision gets the compacted
//! error with the compact revision; a stream nobody reads blocks neither
//! writes nor other watchers, and still gets everything once it reads.

use engine::backend::Durability;
use engine::mvcc::*;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

fn options() -> StoreOptions {
    StoreOptions {
        durability: Durability::NoSync,
        batch_interval: Duration::from_millis(10),
        batch_limit: 200,
        // Tiny queues: readers fall behind now and then and go through the
        // victim and unsynced paths.
        watch_queue_capacity: 4,
        watch_sync_interval: Duration::from_millis(5),
        watch_catchup_revisions_max: 50,
        watch_response_events_max: 7,
        compaction_batch_keys: 16,
        ..Default::default()
    }
}

/// The writer's own record of what happened: the key space now, and the
/// events of each revision with their previous values.
#[derive(Default)]
struct History {
    state: BTreeMap<Vec<u8>, KeyValue>,
    events: Vec<(i64, Event)>,
}

impl History {
    fn put(&mut self, rev: i64, key: &[u8], value: &[u8]) {
        let prev = self.state.get(key).cloned();
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            value: value.to_vec(),
            lease: 0,
        };
        self.state.insert(key.to_vec(), kv.clone());
        self.events.push((
            rev,
            Event {
                kind: EventType::Put,
                kv,
                prev_kv: prev,
            },
        ));
    }

    fn delete(&mut self, rev: i64, key: &[u8]) {
        let prev = self.state.remove(key);
        assert!(prev.is_some());
        self.events.push((
            rev,
            Event {
                kind: EventType::Delete,
                kv: KeyValue {
                    key: key.to_vec(),
                    mod_revision: rev,
                    ..Default::default()
                },
                prev_kv: prev,
            },
        ));
    }
}

fn key(i: u32) -> Vec<u8> {
    format!("k/{:02}", i).into_bytes()
}

/// One random write through the store, recorded in `h`.
fn random_write(store: &Store, h: &mut History, rng: &mut impl Rng) {
    match rng.gen_range(0..10) {
        0..=5 => {
            let k = key(rng.gen_range(0..40));
            let v = format!("v{}", rng.gen::<u16>()).into_bytes();
            let rev = store.put(k.clone(), v.clone()).unwrap().header.revision;
            h.put(rev, &k, &v);
        }
        6..=7 => {
            // A txn writing several keys in one revision.
            let mut keys: Vec<u32> = (0..rng.gen_range(2..6))
                .map(|_| rng.gen_range(0..40))
                .collect();
            keys.sort();
            keys.dedup();
            let ops = keys
                .iter()
                .map(|&i| {
                    RequestOp::Put(PutRequest {
                        key: key(i),
                        value: vec![b'x'; i as usize % 7],
                        ..Default::default()
                    })
                })
                .collect();
            let r = store
                .txn(TxnRequest {
                    success: ops,
                    ..Default::default()
                })
                .unwrap();
            for &i in &keys {
                h.put(r.header.revision, &key(i), &vec![b'x'; i as usize % 7]);
            }
        }
        _ => {
            let a = rng.gen_range(0..40);
            let b = (a + rng.gen_range(1..5)).min(40);
            let r = store
                .delete_range(DeleteRangeRequest {
                    key: key(a),
                    range_end: key(b),
                    prev_kv: false,
                })
                .unwrap();
            let gone: Vec<Vec<u8>> = h
                .state
                .range(key(a)..key(b))
                .map(|(k, _)| k.clone())
                .collect();
            assert_eq!(r.deleted as usize, gone.len());
            for k in gone {
                h.delete(r.header.revision, &k);
            }
        }
    }
}

struct Spec {
    req: WatchCreateRequest,
}

impl Spec {
    fn expected(&self, h: &History) -> Vec<Event> {
        let end = &self.req.range_end;
        h.events
            .iter()
            .filter(|(rev, _)| *rev >= self.req.start_revision)
            .filter(|(_, e)| {
                let k = &e.kv.key;
                match end.as_slice() {
                    [] => *k == self.req.key,
                    [0] => *k >= self.req.key,
                    e => *k >= self.req.key && k.as_slice() < e,
                }
            })
            .filter(|(_, e)| match e.kind {
                EventType::Put => !self.req.filters.contains(&WatchFilter::NoPut),
                EventType::Delete => !self.req.filters.contains(&WatchFilter::NoDelete),
            })
            .map(|(_, e)| {
                let mut e = e.clone();
                if !self.req.prev_kv {
                    e.prev_kv = None;
                }
                e
            })
            .collect()
    }
}

/// Reads a stream until `n` events arrived (or the deadline); checks that
/// responses hold whole revisions in order.
fn collect(stream: &WatchStream, id: i64, n: usize, deadline: Instant) -> Vec<Event> {
    let mut got = Vec::new();
    let mut last_rev = 0;
    while got.len() < n && Instant::now() < deadline {
        let Some(r) = stream.recv_timeout(Duration::from_millis(50)) else {
            continue;
        };
        if r.created || r.watch_id == -1 || r.events.is_empty() {
            continue;
        }
        assert_eq!(r.watch_id, id);
        assert!(!r.canceled, "unexpected cancel {r:?}");
        let first = r.events[0].kv.mod_revision;
        assert!(
            first > last_rev,
            "revision {first} split or repeated (last {last_rev})"
        );
        for e in &r.events {
            assert!(e.kv.mod_revision >= last_rev);
            last_rev = e.kv.mod_revision;
        }
        assert!(r.header.revision >= last_rev);
        got.extend(r.events);
    }
    got
}

#[test]
fn every_event_once_in_order_across_catch_up_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path().join("db"), options()).unwrap());
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut h = History::default();
    // Some history first, so that past watchers catch up from the backend.
    for _ in 0..600 {
        random_write(&store, &mut h, &mut rng);
    }
    store.sync().unwrap();
    let early = store.current_revision();
    let mut specs = vec![
        // Current-revision watchers.
        Spec {
            req: WatchCreateRequest {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            },
        },
        Spec {
            req: WatchCreateRequest {
                key: key(3),
                prev_kv: true,
                ..Default::default()
            },
        },
        // Past watchers: catch up across backend and buffers.
        Spec {
            req: WatchCreateRequest {
                key: b"k/1".to_vec(),
                range_end: b"k/2".to_vec(),
                start_revision: 50,
                prev_kv: true,
                ..Default::default()
            },
        },
        Spec {
            req: WatchCreateRequest {
                key: key(10),
                range_end: vec![0],
                start_revision: early - 100,
                filters: vec![WatchFilter::NoPut],
                ..Default::default()
            },
        },
        Spec {
            req: WatchCreateRequest {
                key: key(0),
                range_end: key(40),
                start_revision: 55,
                filters: vec![WatchFilter::NoDelete],
                ..Default::default()
            },
        },
    ];
    let streams: Vec<(WatchStream, i64)> = specs
        .iter_mut()
        .map(|s| {
            let st = store.watch_stream();
            let id = st.watch(&s.req).unwrap();
            if s.req.start_revision == 0 {
                // Nothing is written concurrently here: it starts at the
                // next revision.
                s.req.start_revision = store.current_revision() + 1;
            }
            (st, id)
        })
        .collect();
    // Consumers read concurrently with the writes below, until they have
    // as many events as the writer's history says they should.
    let expected_len = Arc::new(std::sync::Mutex::new(vec![usize::MAX; specs.len()]));
    let handles: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, (st, id))| {
            let expected_len = expected_len.clone();
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut got = Vec::new();
                loop {
                    let want = expected_len.lock().unwrap()[i];
                    if got.len() >= want || Instant::now() > deadline {
                        break;
                    }
                    got.extend(collect(
                        &st,
                        id,
                        got.len() + 1,
                        Instant::now() + Duration::from_millis(200),
                    ));
                }
                got
            })
        })
        .collect();
    // Writes continue; compaction removes revisions below every watcher's
    // start (strictly below: a tombstone at exactly the compact revision is
    // gone, as in etcd).
    for i in 0..1500 {
        random_write(&store, &mut h, &mut rng);
        if i == 300 {
            store.compact(40, false).unwrap();
        }
        if i == 900 {
            store.compact(49, false).unwrap();
        }
    }
    {
        let mut e = expected_len.lock().unwrap();
        for (i, s) in specs.iter().enumerate() {
            e[i] = s.expected(&h).len();
        }
    }
    for (i, (t, s)) in handles.into_iter().zip(&specs).enumerate() {
        let got = t.join().unwrap();
        let want = s.expected(&h);
        assert!(!want.is_empty());
        assert_eq!(got.len(), want.len(), "watcher {i}: event count");
        for (j, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "watcher {i}, event {j}");
        }
    }
}

#[test]
fn watcher_below_the_compaction_gets_the_compacted_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("db"), options()).unwrap();
    for i in 0..100u32 {
        store.put(key(i % 10), "v").unwrap();
    }
    store.compact(60, true).unwrap();
    let st = store.watch_stream();
    let id = st
        .watch(&WatchCreateRequest {
            key: key(1),
            start_revision: 30,
            ..Default::default()
        })
        .unwrap();
    let created = st.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(created.created);
    let r = st.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(r.watch_id, id);
    assert!(r.canceled);
    assert_eq!(r.compact_revision, 60);
    assert_eq!(
        r.cancel_reason,
        "mvcc: required revision has been compacted"
    );
    // At the compact revision itself the watch works (etcd's rule).
    let id2 = st
        .watch(&WatchCreateRequest {
            key: key(1),
            start_revision: 60,
            ..Default::default()
        })
        .unwrap();
    let got = collect(&st, id2, 4, Instant::now() + Duration::from_secs(5));
    assert_eq!(
        got.iter().map(|e| e.kv.mod_revision).collect::<Vec<_>>(),
        vec![63, 73, 83, 93]
    );
    assert!(st.cancel(id2));
    assert!(!st.cancel(id2));
    assert!(matches!(
        st.watch(&WatchCreateRequest {
            key: key(1),
            watch_id: 5,
            ..Default::default()
        }),
        Ok(5)
    ));
    assert!(matches!(
        st.watch(&WatchCreateRequest {
            key: key(1),
            watch_id: 5,
            ..Default::default()
        }),
        Err(Error::DuplicateWatchId)
    ));
}

#[test]
fn a_stream_that_never_reads_blocks_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("db"), options()).unwrap();
    let slow = store.watch_stream();
    let slow_id = slow
        .watch(&WatchCreateRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .unwrap();
    let fast = store.watch_stream();
    let fast_id = fast
        .watch(&WatchCreateRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .unwrap();
    let start = store.current_revision();
    let writes = 5000;
    let fast_reader = std::thread::spawn(move || {
        let got = collect(
            &fast,
            fast_id,
            writes,
            Instant::now() + Duration::from_secs(60),
        );
        got.len()
    });
    for i in 0..writes {
        store.put(key(i as u32 % 40), "v").unwrap();
    }
    // Every write went through while the slow stream's queue stayed at its
    // bound (capacity 4 plus the created response).
    assert_eq!(store.current_revision(), start + writes as i64);
    assert!(slow.queued() <= 5, "queued {}", slow.queued());
    assert_eq!(fast_reader.join().unwrap(), writes);
    // Once it reads, it gets every event exactly once.
    let got = collect(
        &slow,
        slow_id,
        writes,
        Instant::now() + Duration::from_secs(60),
    );
    assert_eq!(got.len(), writes);
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.kv.mod_revision, start + 1 + i as i64);
    }
}

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn async_poll_wakes_and_progress_reports_a_safe_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("db"), options()).unwrap();
    store.put("a", "1").unwrap();
    let st = store.watch_stream();
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(matches!(st.poll_recv(&mut cx), Poll::Pending));
    let id = st
        .watch(&WatchCreateRequest {
            key: b"a".to_vec(),
            ..Default::default()
        })
        .unwrap();
    assert!(
        flag.0.load(Ordering::SeqCst),
        "the created response woke the task"
    );
    match st.poll_recv(&mut cx) {
        Poll::Ready(Some(r)) => assert!(r.created && r.watch_id == id),
        other => panic!("{other:?}"),
    }
    flag.0.store(false, Ordering::SeqCst);
    assert!(matches!(st.poll_recv(&mut cx), Poll::Pending));
    let rev = store.put("a", "2").unwrap().header.revision;
    assert!(flag.0.load(Ordering::SeqCst));
    match st.poll_recv(&mut cx) {
        Poll::Ready(Some(r)) => assert_eq!(r.events[0].kv.mod_revision, rev),
        other => panic!("{other:?}"),
    }
    st.request_progress();
    let p = st.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!((p.watch_id, p.header.revision), (-1, rev));
    // A periodic progress notification for a quiet watcher.
    let clock = Arc::new(ManualClock::default());
    let dir2 = tempfile::tempdir().unwrap();
    let s2 = Store::open(
        dir2.path().join("db"),
        StoreOptions {
            clock: clock.clone(),
            watch_progress_interval: Duration::from_secs(60),
            ..options()
        },
    )
    .unwrap();
    let st2 = s2.watch_stream();
    let id2 = st2
        .watch(&WatchCreateRequest {
            key: b"q".to_vec(),
            progress_notify: true,
            ..Default::default()
        })
        .unwrap();
    assert!(st2.recv_timeout(Duration::from_secs(5)).unwrap().created);
    assert!(st2.recv_timeout(Duration::from_millis(100)).is_none());
    clock.advance(Duration::from_secs(61));
    let p = st2.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!((p.watch_id, p.events.len(), p.header.revision), (id2, 0, 1));
    drop(s2);
    // After close the stream ends.
    assert!(st2.recv_timeout(Duration::from_secs(5)).is_none());
    match st2.poll_recv(&mut cx) {
        Poll::Ready(None) => {}
        other => panic!("{other:?}"),
    }
}
