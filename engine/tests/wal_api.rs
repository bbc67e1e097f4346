//! The WAL's API on both I/O paths: appends from threads, async tasks and
//! callbacks, reopen, segment rolls, release, barriers, backpressure, limits.

mod wal_support;

use engine::wal::{
    Error, Faults, IoMode, IoPath, Options, Record, RecordRef, Recovery, TryAppendError, Wal,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use wal_support::{check_payload, payload, small, PATHS};

fn expect_path(wal: &Wal, io: IoMode) {
    match io {
        IoMode::IoUring => assert_eq!(wal.io_path(), IoPath::IoUring),
        IoMode::Portable => assert_eq!(wal.io_path(), IoPath::Portable),
        IoMode::Auto => {}
    }
}

#[test]
fn io_uring_is_the_default_where_it_works() {
    let dir = tempfile::tempdir().unwrap();
    let forced = Wal::open(dir.path().join("a"), small(IoMode::IoUring));
    let (auto, _) = Wal::open(dir.path().join("b"), small(IoMode::Auto)).unwrap();
    match forced {
        Ok((w, _)) => {
            assert_eq!(w.io_path(), IoPath::IoUring);
            assert_eq!(
                auto.io_path(),
                IoPath::IoUring,
                "Auto must pick io_uring when it works"
            );
        }
        Err(Error::IoUringUnavailable(e)) => {
            eprintln!("io_uring unavailable here ({e}); Auto falls back");
            assert_eq!(auto.io_path(), IoPath::Portable);
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn threads_append_and_reopen_returns_everything_in_order() {
    for io in PATHS {
        let dir = tempfile::tempdir().unwrap();
        let threads = 8u32;
        let per_thread = 300u64;
        {
            let (wal, rec) = Wal::open(dir.path(), small(io)).unwrap();
            expect_path(&wal, io);
            assert!(rec.records.is_empty());
            let wal = Arc::new(wal);
            let hs: Vec<_> = (0..threads)
                .map(|t| {
                    let wal = Arc::clone(&wal);
                    std::thread::spawn(move || {
                        let mut last = 0;
                        for n in 0..per_thread {
                            let d = wal
                                .append(n, t as u8, &payload(t, n))
                                .unwrap()
                                .wait()
                                .unwrap();
                            assert!(d.seq > last, "a thread's appends are ordered");
                            last = d.seq;
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            let m = wal.metrics();
            assert_eq!(m.records, threads as u64 * per_thread);
            assert_eq!(m.appends, threads as u64 * per_thread);
            assert!(m.fsyncs > 0 && m.fsyncs <= m.records);
            assert_eq!(m.records_per_fsync.len(), m.fsyncs);
            assert_eq!(m.time_to_durable_ns.len(), m.appends);
            assert!(m.segment_rolls > 0, "64 KiB segments must roll");
            assert_eq!(wal.durable_seq(), threads as u64 * per_thread);
            Arc::into_inner(wal).unwrap().close().unwrap();
        }
        let (wal, rec) = Wal::open(dir.path(), small(io)).unwrap();
        assert!(rec.torn_tail.is_none(), "{:?}", rec.torn_tail);
        assert_eq!(rec.records.len() as u64, threads as u64 * per_thread);
        let mut next: HashMap<u32, u64> = HashMap::new();
        for r in &rec.records {
            let (t, n) = check_payload(&r.payload).expect("intact payload");
            assert_eq!(r.kind as u32, t);
            assert_eq!(r.index, n);
            let want = next.entry(t).or_insert(0);
            assert_eq!(n, *want, "thread {t} records in order");
            *want += 1;
        }
        let segs = wal.segments();
        assert!(segs.len() > 2);
        assert_eq!(
            segs.iter().map(|s| s.records).sum::<u64>(),
            rec.records.len() as u64
        );
        drop(wal);
    }
}

#[test]
fn append_wait_writes_itself_or_joins_the_group() {
    for io in PATHS {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), small(io)).unwrap();
        // Alone, a synchronous appender writes its own batches.
        for n in 0..200u64 {
            let d = wal.append_wait(n, 100, &payload(100, n)).unwrap();
            assert_eq!(d.seq, n + 1);
        }
        assert_eq!(wal.metrics().fsyncs, 200);
        // Mixed with ticket appenders and other synchronous ones.
        let wal = Arc::new(wal);
        let hs: Vec<_> = (0..8u32)
            .map(|t| {
                let wal = Arc::clone(&wal);
                std::thread::spawn(move || {
                    for n in 0..200u64 {
                        if t % 2 == 0 {
                            wal.append_wait(n, t as u8, &payload(t, n)).unwrap();
                        } else {
                            wal.append(n, t as u8, &payload(t, n))
                                .unwrap()
                                .wait()
                                .unwrap();
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let m = wal.metrics();
        assert_eq!(m.records, 200 + 8 * 200);
        assert!(m.fsyncs < m.records, "concurrent appends share fsyncs");
        Arc::into_inner(wal).unwrap().close().unwrap();
        let (_wal, rec) = Wal::open(dir.path(), small(io)).unwrap();
        let mut next: HashMap<u32, u64> = HashMap::new();
        for r in &rec.records {
            let (t, n) = check_payload(&r.payload).expect("intact");
            let want = next.entry(t).or_insert(0);
            assert_eq!(n, *want);
            *want += 1;
        }
        assert_eq!(rec.records.len(), 1800);
    }
}

#[test]
fn appends_continue_after_reopen_and_release_drops_old_segments() {
    for io in PATHS {
        let dir = tempfile::tempdir().unwrap();
        let mut index = 0u64;
        for round in 0..3 {
            let (wal, rec) = Wal::open(dir.path(), small(io)).unwrap();
            assert_eq!(rec.records.len() as u64, index, "round {round}");
            for r in &rec.records {
                assert_eq!(check_payload(&r.payload), Some((0, r.index)));
            }
            for _ in 0..200 {
                index += 1;
                wal.append(index, 1, &payload(0, index))
                    .unwrap()
                    .wait()
                    .unwrap();
            }
        }
        let (wal, rec) = Wal::open(dir.path(), small(io)).unwrap();
        assert_eq!(rec.records.len(), 600);
        let before = wal.segments();
        let cut = 450;
        let released = wal.release_to(cut).unwrap();
        let after = wal.segments();
        assert!(released > 0);
        assert_eq!(after.len(), before.len() - released);
        assert!(before[..released].iter().all(|s| s.max_index < cut));
        assert!(after[0].max_index >= cut);
        assert!(!before[0].path.exists());
        drop(wal);
        let (_wal, rec) = Wal::open(dir.path(), small(io)).unwrap();
        let first = rec.records[0].index;
        assert!(first <= cut, "records from {cut} on are kept");
        let idx: Vec<u64> = rec.records.iter().map(|r| r.index).collect();
        assert_eq!(idx, (first..=600).collect::<Vec<_>>());
    }
}

#[test]
fn release_never_drops_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small(IoMode::Auto)).unwrap();
    for i in 1..=10 {
        wal.append(i, 1, b"x").unwrap().wait().unwrap();
    }
    assert_eq!(wal.release_to(u64::MAX).unwrap(), 0);
    assert_eq!(wal.segments().len(), 1);
}

struct ThreadWaker(std::thread::Thread);
impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A minimal executor: the WAL's tickets need no runtime.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn tickets_are_futures_and_callbacks() {
    for io in PATHS {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), small(io)).unwrap();
        // Async: many appends in flight from one task, awaited in order.
        let durable = block_on(async {
            let tickets: Vec<_> = (0..100u64)
                .map(|i| wal.append(i, 2, &payload(2, i)).unwrap())
                .collect();
            let mut seqs = Vec::new();
            for t in tickets {
                seqs.push(t.await.unwrap().seq);
            }
            seqs
        });
        assert!(durable.windows(2).all(|w| w[0] < w[1]));
        // Callbacks, as a raft driver's on_persist_ready would use them.
        let (tx, rx) = mpsc::channel();
        for i in 100..200u64 {
            let tx = tx.clone();
            wal.append(i, 2, &payload(2, i))
                .unwrap()
                .on_durable(move |r| tx.send((i, r.map(|d| d.seq))).unwrap());
        }
        let mut got: Vec<(u64, u64)> = (0..100)
            .map(|_| {
                let (i, r) = rx.recv_timeout(Duration::from_secs(20)).unwrap();
                (i, r.unwrap())
            })
            .collect();
        got.sort();
        assert!(
            got.windows(2).all(|w| w[0].1 < w[1].1),
            "durable in append order"
        );
        // A barrier completes after everything before it.
        let last = wal.append(500, 2, b"last").unwrap();
        let barrier = wal.sync().unwrap().wait().unwrap();
        assert!(last.is_done() || barrier.seq > 0);
        assert!(barrier.seq > last.wait().unwrap().seq);
        drop(wal);
        let (_wal, rec) = Wal::open(dir.path(), small(io)).unwrap();
        assert_eq!(rec.records.len(), 201);
    }
}

#[test]
fn batches_are_atomic_units_in_one_segment() {
    for io in PATHS {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), small(io)).unwrap();
        let payloads: Vec<Vec<u8>> = (0..40u64).map(|i| payload(3, i)).collect();
        for round in 0..20u64 {
            let recs: Vec<RecordRef> = payloads
                .iter()
                .enumerate()
                .map(|(i, p)| RecordRef {
                    index: round * 100 + i as u64,
                    kind: 3,
                    payload: p,
                })
                .collect();
            wal.append_batch(&recs).unwrap().wait().unwrap();
        }
        let segs = wal.segments();
        assert!(segs.len() > 1);
        drop(wal);
        let (_wal, rec) = Wal::open(dir.path(), small(io)).unwrap();
        assert_eq!(rec.records.len(), 800);
        for s in &segs {
            // Every batch of 40 lies inside one segment.
            assert_eq!(
                s.records % 40,
                0,
                "segment {} holds {} records",
                s.seq,
                s.records
            );
        }
    }
}

#[test]
fn queue_bound_applies_backpressure() {
    for io in PATHS {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            queue_bytes_max: 4096,
            record_bytes_max: 1024,
            faults: Faults {
                delay_each_write: Duration::from_millis(2),
                ..Faults::default()
            },
            ..small(io)
        };
        let (wal, _) = Wal::open(dir.path(), opts).unwrap();
        let wal = Arc::new(wal);
        let refused = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..8u32)
            .map(|t| {
                let wal = Arc::clone(&wal);
                let refused = Arc::clone(&refused);
                std::thread::spawn(move || {
                    let p = vec![t as u8; 500];
                    let mut tickets = Vec::new();
                    for i in 0..40u64 {
                        match wal.try_append_batch(&[RecordRef {
                            index: i,
                            kind: 1,
                            payload: &p,
                        }]) {
                            Ok(t) => tickets.push(t),
                            Err(TryAppendError::Full) => {
                                refused.fetch_add(1, Ordering::Relaxed);
                                tickets.push(wal.append(i, 1, &p).unwrap());
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                    for t in tickets {
                        t.wait().unwrap();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let m = wal.metrics();
        assert!(
            m.queue_bytes_high_water <= 4096,
            "queue bound exceeded: {}",
            m.queue_bytes_high_water
        );
        assert!(
            refused.load(Ordering::Relaxed) > 0,
            "a slow writer must fill the queue"
        );
        assert_eq!(m.records, 320);
    }
}

#[test]
fn limits_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small(IoMode::Auto);
    let (wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
    let big = vec![0u8; opts.record_bytes_max + 1];
    assert!(matches!(
        wal.append(1, 1, &big),
        Err(Error::RecordTooLarge { .. })
    ));
    let ok = vec![0u8; opts.record_bytes_max];
    let many: Vec<RecordRef> = (0..5)
        .map(|i| RecordRef {
            index: i,
            kind: 1,
            payload: &ok,
        })
        .collect();
    assert!(matches!(
        wal.append_batch(&many),
        Err(Error::AppendTooLarge { .. })
    ));
    assert!(matches!(
        Wal::open(dir.path(), opts.clone()),
        Err(Error::Locked(_))
    ));
    let bad = Options {
        segment_bytes: 5000,
        ..opts
    };
    assert!(matches!(
        Wal::open(dir.path().join("x"), bad),
        Err(Error::InvalidOptions(_))
    ));
    let foreign = tempfile::tempdir().unwrap();
    std::fs::write(
        foreign.path().join(engine::wal::format::file_name(1)),
        vec![0x42u8; 8192],
    )
    .unwrap();
    assert!(matches!(
        Wal::open(foreign.path(), small(IoMode::Auto)),
        Err(Error::NotAWal { .. })
    ));
}

#[test]
fn superseded_applies_raft_truncation() {
    let r = |index, kind| Record {
        index,
        kind,
        payload: vec![index as u8, kind],
    };
    // Entries 1..=5, a hard state, then a conflicting suffix from 3.
    let recs = vec![
        r(1, 1),
        r(2, 1),
        r(3, 1),
        r(4, 1),
        r(9, 2),
        r(5, 1),
        r(3, 1),
        r(4, 1),
        r(1, 2),
    ];
    let out = Recovery::superseded(recs, |k| k == 1);
    let got: Vec<(u64, u8)> = out.iter().map(|r| (r.index, r.kind)).collect();
    assert_eq!(got, vec![(1, 1), (2, 1), (9, 2), (3, 1), (4, 1), (1, 2)]);
}
