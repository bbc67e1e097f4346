//! The revision index and the MVCC store, measured in one run and printed
//! as the table of results/mvcc.md:
//!
//! 1. index get / put / range over 1 M keys: the lock-free skiplist index
//!    against etcd's design, a `RwLock<BTreeMap>` of per-key histories, with
//!    0, 1 and 3 concurrent reader threads;
//! 2. in-process puts as etcd's `benchmark mvcc put` does them (one writer,
//!    random 64-byte keys, 128-byte values, batch interval 100 ms, batch
//!    limit 10 000) and serializable single-key ranges;
//! 3. serializable single-key range throughput on a fresh store and after
//!    1 M writes of history;
//! 4. the time to reopen a store of 1 M keys (index rebuild);
//! 5. index memory per key and per version for 1 M keys.
//!
//! Usage: `cargo bench -p bench --bench mvcc [-- --write results/mvcc.md]`
//! (`make bench-mvcc`). `MVCC_BENCH_KEYS` scales the key counts (default
//! 1 000 000). Timings are medians over rounds, and the two index designs
//! run alternately in each round so that machine noise hits both.

use engine::index::{IndexEntry, KeyRange, Revision, TreeIndex};
use engine::mvcc::{PutRequest, RangeRequest, RequestOp, Store, StoreOptions, TxnRequest};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicIsize, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// mimalloc with a byte counter that is only updated while `COUNTING` is
/// on (the single-threaded memory measurement), so it costs the other
/// measurements one relaxed load per allocation.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATED: AtomicIsize = AtomicIsize::new(0);
static INNER: mimalloc::MiMalloc = mimalloc::MiMalloc;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATED.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to mimalloc.
        unsafe { INNER.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATED.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to mimalloc.
        unsafe { INNER.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATED.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        // SAFETY: forwarded unchanged to mimalloc.
        unsafe { INNER.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const KEY_LEN: usize = 64;
const ROUNDS: usize = 5;

fn scale() -> usize {
    std::env::var("MVCC_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// 64-byte keys in pseudo-random order: 16 hex digits of a hash, padded.
fn key(i: u64) -> [u8; KEY_LEN] {
    let mut k = [b'.'; KEY_LEN];
    let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17) ^ i;
    k[..4].copy_from_slice(b"key/");
    for (j, b) in k[4..20].iter_mut().enumerate() {
        *b = b"0123456789abcdef"[((h >> (60 - 4 * j)) & 0xf) as usize];
    }
    k
}

fn data_root() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&root).unwrap();
    root
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

// ---- 1. index designs ----------------------------------------------------

/// What both designs offer: the store's read and write operations.
trait Index: Sync + Send {
    fn get(&self, key: &[u8], rev: i64) -> Option<Revision>;
    /// Visible keys in `[start, ..)` at `rev`, at most `limit`.
    fn range(&self, start: &[u8], rev: i64, limit: usize) -> usize;
    fn put(&self, key: &[u8], rev: Revision);
}

struct Skiplist(TreeIndex);

impl Index for Skiplist {
    fn get(&self, key: &[u8], rev: i64) -> Option<Revision> {
        self.0.get(key, rev)
    }
    fn range(&self, start: &[u8], rev: i64, limit: usize) -> usize {
        let mut n = 0;
        self.0.range(KeyRange::FromKey(start), rev, false, |_, _| {
            n += 1;
            n < limit
        });
        n
    }
    fn put(&self, key: &[u8], rev: Revision) {
        self.0.writer().put(key, rev);
    }
}

/// etcd's treeIndex: a B-tree of per-key histories behind one RWMutex.
struct LockedBTree(RwLock<BTreeMap<Box<[u8]>, Vec<IndexEntry>>>);

fn visible(entries: &[IndexEntry], rev: i64) -> Option<Revision> {
    let e = entries.iter().rev().find(|e| e.rev.main <= rev)?;
    (!e.tombstone).then_some(e.rev)
}

impl Index for LockedBTree {
    fn get(&self, key: &[u8], rev: i64) -> Option<Revision> {
        visible(self.0.read().unwrap().get(key)?, rev)
    }
    fn range(&self, start: &[u8], rev: i64, limit: usize) -> usize {
        let map = self.0.read().unwrap();
        let mut n = 0;
        for (_, e) in
            map.range::<[u8], _>((std::ops::Bound::Included(start), std::ops::Bound::Unbounded))
        {
            if visible(e, rev).is_some() {
                n += 1;
                if n == limit {
                    break;
                }
            }
        }
        n
    }
    fn put(&self, key: &[u8], rev: Revision) {
        let mut map = self.0.write().unwrap();
        let entry = IndexEntry {
            rev,
            tombstone: false,
        };
        match map.get_mut(key) {
            Some(v) => v.push(entry),
            None => {
                map.insert(key.into(), vec![entry]);
            }
        }
    }
}

struct IndexRow {
    op: &'static str,
    readers: usize,
    ns: [f64; 2],
    background_reads: [f64; 2],
}

/// Times `ops` operations of one kind on the main thread while `readers`
/// threads run random gets; returns (ns per op, background gets per s).
fn time_index_op(
    idx: &Arc<dyn Index>,
    rev: &Arc<AtomicI64>,
    n: u64,
    readers: usize,
    op: &str,
    ops: u64,
    seed: u64,
) -> (f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..readers)
        .map(|t| {
            let (idx, rev, stop, count) = (idx.clone(), rev.clone(), stop.clone(), count.clone());
            std::thread::spawn(move || {
                let mut rng = SmallRng::seed_from_u64(seed ^ ((t as u64 + 1) * 77));
                let mut local = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..64 {
                        std::hint::black_box(
                            idx.get(&key(rng.gen_range(0..n)), rev.load(Ordering::Acquire)),
                        );
                    }
                    local += 64;
                }
                count.fetch_add(local, Ordering::Relaxed);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    let mut rng = SmallRng::seed_from_u64(seed);
    let started = Instant::now();
    let reads_before = count.load(Ordering::Relaxed);
    match op {
        "get" => {
            for _ in 0..ops {
                std::hint::black_box(
                    idx.get(&key(rng.gen_range(0..n)), rev.load(Ordering::Acquire)),
                );
            }
        }
        "range" => {
            for _ in 0..ops {
                std::hint::black_box(idx.range(
                    &key(rng.gen_range(0..n)),
                    rev.load(Ordering::Acquire),
                    100,
                ));
            }
        }
        "put" => {
            for _ in 0..ops {
                let r = rev.load(Ordering::Relaxed) + 1;
                idx.put(&key(rng.gen_range(0..n)), Revision::new(r, 0));
                rev.store(r, Ordering::Release);
            }
        }
        _ => unreachable!(),
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let reads = count.load(Ordering::Relaxed) - reads_before;
    (
        elapsed.as_nanos() as f64 / ops as f64,
        reads as f64 / elapsed.as_secs_f64().max(1e-9),
    )
}

fn bench_index(n: u64) -> (Vec<IndexRow>, [f64; 2]) {
    let designs: Vec<Arc<dyn Index>> = vec![
        Arc::new(Skiplist(TreeIndex::new())),
        Arc::new(LockedBTree(RwLock::new(BTreeMap::new()))),
    ];
    let mut load_ns = [0.0; 2];
    let revs: Vec<Arc<AtomicI64>> = designs
        .iter()
        .map(|_| Arc::new(AtomicI64::new(0)))
        .collect();
    for (d, idx) in designs.iter().enumerate() {
        let started = Instant::now();
        for i in 0..n {
            idx.put(&key(i), Revision::new(i as i64 + 1, 0));
        }
        load_ns[d] = started.elapsed().as_nanos() as f64 / n as f64;
        revs[d].store(n as i64, Ordering::Release);
    }
    let mut rows = Vec::new();
    for readers in [0usize, 1, 3] {
        for (op, ops) in [("get", 300_000u64), ("range", 20_000), ("put", 200_000)] {
            let mut ns = [Vec::new(), Vec::new()];
            let mut bg = [Vec::new(), Vec::new()];
            for round in 0..ROUNDS {
                for d in 0..2 {
                    let (t, r) =
                        time_index_op(&designs[d], &revs[d], n, readers, op, ops, round as u64);
                    ns[d].push(t);
                    bg[d].push(r);
                }
            }
            let row = IndexRow {
                op,
                readers,
                ns: [median(ns[0].clone()), median(ns[1].clone())],
                background_reads: [median(bg[0].clone()), median(bg[1].clone())],
            };
            eprintln!(
                "index {op:5} readers {readers}: skiplist {:.0} ns, btree {:.0} ns",
                row.ns[0], row.ns[1]
            );
            rows.push(row);
        }
    }
    (rows, load_ns)
}

// ---- 2./3. the store -----------------------------------------------------

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir.join("db"), StoreOptions::default()).unwrap()
}

struct PutResult {
    ops_per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

/// etcd's `benchmark mvcc put`: one writer, unique random keys.
fn bench_store_put(total: u64) -> (PutResult, Vec<[u8; KEY_LEN]>, tempfile::TempDir) {
    let dir = tempfile::tempdir_in(data_root()).unwrap();
    let store = open(dir.path());
    let mut rng = SmallRng::seed_from_u64(1);
    let keys: Vec<[u8; KEY_LEN]> = (0..total)
        .map(|_| {
            let mut k = [0u8; KEY_LEN];
            rng.fill(&mut k[..]);
            k
        })
        .collect();
    let value = vec![7u8; 128];
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let started = Instant::now();
    for k in &keys {
        let t = Instant::now();
        store
            .put_request(PutRequest {
                key: k.to_vec(),
                value: value.clone(),
                ..Default::default()
            })
            .unwrap();
        hist.record(t.elapsed().as_nanos() as u64).unwrap();
    }
    store.sync().unwrap();
    let elapsed = started.elapsed();
    store.close().unwrap();
    (
        PutResult {
            ops_per_s: total as f64 / elapsed.as_secs_f64(),
            p50_us: hist.value_at_quantile(0.5) as f64 / 1000.0,
            p99_us: hist.value_at_quantile(0.99) as f64 / 1000.0,
        },
        keys,
        dir,
    )
}

/// Serializable single-key ranges from `threads` threads for `dur`;
/// returns ranges per second.
fn range_throughput(
    store: &Arc<Store>,
    keys: &Arc<Vec<Vec<u8>>>,
    threads: usize,
    dur: Duration,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (store, keys, stop) = (store.clone(), keys.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = SmallRng::seed_from_u64(t as u64 + 5);
                let mut n = 0u64;
                let mut req = RangeRequest::default();
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..32 {
                        req.key.clear();
                        req.key
                            .extend_from_slice(&keys[rng.gen_range(0..keys.len())]);
                        let r = store.range(&req).unwrap();
                        assert_eq!(r.kvs.len(), 1);
                    }
                    n += 32;
                }
                n
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    let n: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    n as f64 / started.elapsed().as_secs_f64()
}

fn median_throughput(store: &Arc<Store>, keys: &Arc<Vec<Vec<u8>>>, threads: usize) -> f64 {
    median(
        (0..ROUNDS)
            .map(|_| range_throughput(store, keys, threads, Duration::from_millis(700)))
            .collect(),
    )
}

struct HistoryResult {
    keys: u64,
    writes: u64,
    fresh: [f64; 2],
    history: [f64; 2],
    ratio: [f64; 2],
    db_fresh_mb: f64,
    db_history_mb: f64,
    compaction: Stall,
}

/// Put latencies of one writer over a stretch of time.
struct Stall {
    baseline: [f64; 3],
    during: [f64; 3],
    compaction_s: f64,
    stats: engine::mvcc::CompactionStats,
}

/// Puts from one thread until `stop`; latency p50 / p99 / max in µs.
fn put_latencies(
    store: &Arc<Store>,
    stop: &Arc<AtomicBool>,
    keys: u64,
) -> std::thread::JoinHandle<[f64; 3]> {
    let (store, stop) = (store.clone(), stop.clone());
    std::thread::spawn(move || {
        let mut hist = Histogram::<u64>::new(3).unwrap();
        let mut rng = SmallRng::seed_from_u64(9);
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            store
                .put(key(rng.gen_range(0..keys)).to_vec(), vec![5u8; 256])
                .unwrap();
            hist.record(t.elapsed().as_nanos() as u64).unwrap();
        }
        [0.5, 0.99, 1.0].map(|q| hist.value_at_quantile(q) as f64 / 1000.0)
    })
}

/// A store with `keys_n` keys written once, in transactions of 1000.
fn load_keys(store: &Store, keys: &[Vec<u8>]) {
    for chunk in keys.chunks(1000) {
        store
            .txn(TxnRequest {
                success: chunk
                    .iter()
                    .map(|k| {
                        RequestOp::Put(PutRequest {
                            key: k.clone(),
                            value: vec![1u8; 256],
                            ..Default::default()
                        })
                    })
                    .collect(),
                ..Default::default()
            })
            .unwrap();
    }
    store.sync().unwrap();
}

fn bench_history(keys_n: u64, writes: u64) -> HistoryResult {
    let keys: Arc<Vec<Vec<u8>>> = Arc::new((0..keys_n).map(|i| key(i).to_vec()).collect());
    // Two stores side by side, measured alternately: one fresh, one with
    // the history, so that machine noise hits both alike.
    let fresh_dir = tempfile::tempdir_in(data_root()).unwrap();
    let fresh = Arc::new(open(fresh_dir.path()));
    load_keys(&fresh, &keys);
    let dir = tempfile::tempdir_in(data_root()).unwrap();
    let store = Arc::new(open(dir.path()));
    load_keys(&store, &keys);
    let db_fresh_mb = fresh.status().unwrap().db_size_bytes as f64 / 1e6;
    let mut rng = SmallRng::seed_from_u64(3);
    for w in 0..writes {
        let k = &keys[rng.gen_range(0..keys.len())];
        store.put(k.clone(), vec![(w % 251) as u8; 256]).unwrap();
    }
    store.sync().unwrap();
    let db_history_mb = store.status().unwrap().db_size_bytes as f64 / 1e6;
    // Short alternating samples, many of them: a burst of load from
    // elsewhere then hits one pair, and the median of the pairs' ratios
    // sets it aside.
    let mut samples = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
    let mut ratios = [Vec::new(), Vec::new()];
    for round in 0..3 * ROUNDS {
        for (t, threads) in [1usize, 2].into_iter().enumerate() {
            let dur = Duration::from_millis(300);
            // Alternate which store goes first.
            let (f, h) = if round % 2 == 0 {
                let f = range_throughput(&fresh, &keys, threads, dur);
                (f, range_throughput(&store, &keys, threads, dur))
            } else {
                let h = range_throughput(&store, &keys, threads, dur);
                (range_throughput(&fresh, &keys, threads, dur), h)
            };
            samples[0][t].push(f);
            samples[1][t].push(h);
            ratios[t].push(h / f);
        }
    }
    let m = |v: &Vec<f64>| median(v.clone());
    let fresh_rate = [m(&samples[0][0]), m(&samples[0][1])];
    let history = [m(&samples[1][0]), m(&samples[1][1])];
    let ratio = [m(&ratios[0]), m(&ratios[1])];
    eprintln!(
        "range fresh {:.0}/{:.0}, after history {:.0}/{:.0} (1/2 threads), median ratio {:.2}/{:.2}",
        fresh_rate[0], fresh_rate[1], history[0], history[1], ratio[0], ratio[1]
    );
    drop(fresh);
    // Compaction of the whole history while a writer puts.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = put_latencies(&store, &stop, keys_n);
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let baseline = writer.join().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = put_latencies(&store, &stop, keys_n);
    let before = store.status().unwrap().revision;
    let started = Instant::now();
    store.compact(before, true).unwrap();
    let compaction_s = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let during = writer.join().unwrap();
    let stats = store.compaction_stats().unwrap();
    eprintln!("{stats:?}");
    eprintln!(
        "compaction {compaction_s:.1} s; put latency p99/max {:.0}/{:.0} µs (baseline {:.0}/{:.0})",
        during[1], during[2], baseline[1], baseline[2]
    );
    HistoryResult {
        keys: keys_n,
        writes,
        fresh: fresh_rate,
        history,
        ratio,
        db_fresh_mb,
        db_history_mb,
        compaction: Stall {
            baseline,
            during,
            compaction_s,
            stats,
        },
    }
}

// ---- 4. rebuild ----------------------------------------------------------

fn bench_rebuild(n: u64) -> (f64, f64, f64) {
    let dir = tempfile::tempdir_in(data_root()).unwrap();
    {
        let store = open(dir.path());
        let value = vec![3u8; 256];
        for start in (0..n).step_by(1000) {
            store
                .txn(TxnRequest {
                    success: (start..(start + 1000).min(n))
                        .map(|i| {
                            RequestOp::Put(PutRequest {
                                key: key(i).to_vec(),
                                value: value.clone(),
                                ..Default::default()
                            })
                        })
                        .collect(),
                    ..Default::default()
                })
                .unwrap();
        }
        store.close().unwrap();
    }
    let mut times = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..3 {
        let cpu0 = process_cpu_s();
        let started = Instant::now();
        let store = open(dir.path());
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        cpu.push((process_cpu_s() - cpu0) * 1000.0);
        assert_eq!(store.index().key_count() as u64, n);
        store.close().unwrap();
    }
    let ms = median(times);
    (ms, median(cpu), n as f64 / (ms / 1000.0))
}

/// CPU time of this process (all threads): what the rebuild itself used,
/// whatever else the machine was doing.
fn process_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

// ---- 5. memory -----------------------------------------------------------

struct MemoryResult {
    per_key: f64,
    per_version: Vec<(u64, f64)>,
    rss_per_key: f64,
    rss_per_version: f64,
}

fn bench_memory(n: u64) -> MemoryResult {
    let idx = TreeIndex::new();
    crossbeam_flush(0);
    let rss0 = rss_bytes();
    ALLOCATED.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let mut rev = 0i64;
    let add_version = |rev: &mut i64| {
        let mut w = idx.writer();
        for i in 0..n {
            *rev += 1;
            w.put(&key(i), Revision::new(*rev, 0));
        }
        drop(w);
        crossbeam_flush(n);
    };
    add_version(&mut rev);
    let one = ALLOCATED.load(Ordering::SeqCst) as f64;
    let rss1 = rss_bytes();
    let mut per_version = Vec::new();
    let mut versions = 1u64;
    for target in [2u64, 5, 10] {
        while versions < target {
            add_version(&mut rev);
            versions += 1;
        }
        let now = ALLOCATED.load(Ordering::SeqCst) as f64;
        // Marginal bytes per version from 1 version per key to `target`.
        per_version.push((target, (now - one) / ((target - 1) * n) as f64));
    }
    let rss10 = rss_bytes();
    COUNTING.store(false, Ordering::SeqCst);
    drop(idx);
    crossbeam_flush(n);
    MemoryResult {
        per_key: one / n as f64 - KEY_LEN as f64,
        per_version,
        rss_per_key: rss1.saturating_sub(rss0) as f64 / n as f64 - KEY_LEN as f64,
        rss_per_version: rss10.saturating_sub(rss1) as f64 / (9 * n) as f64,
    }
}

/// Lets the epoch collector free the buffers retired by appends. Each
/// collection frees at most a few hundred objects and itself retires queue
/// nodes, so it runs a fixed number of times, enough for everything the
/// index retired (`retired` objects).
fn crossbeam_flush(retired: u64) {
    for _ in 0..retired / 64 + 2000 {
        crossbeam_epoch::pin().flush();
    }
}

// ---- report --------------------------------------------------------------

fn rate(ns: f64) -> String {
    let per_s = 1e9 / ns;
    if per_s >= 1e6 {
        format!("{:.2} M/s ({:.0} ns)", per_s / 1e6, ns)
    } else {
        format!("{:.1} k/s ({:.2} µs)", per_s / 1e3, ns / 1e3)
    }
}

fn kps(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M/s", v / 1e6)
    } else {
        format!("{:.1} k/s", v / 1e3)
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{cpu}, {cores} cores; load average at the end of the run: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let write_to = args
        .iter()
        .position(|a| a == "--write")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let n = scale() as u64;
    let started = Instant::now();
    // Quick iterations on one part: MVCC_BENCH_ONLY=memory|index|history|rebuild.
    if let Ok(only) = std::env::var("MVCC_BENCH_ONLY") {
        match only.as_str() {
            "memory" => {
                let m = bench_memory(n);
                eprintln!(
                    "per key {:.1} B, per version {:?}",
                    m.per_key, m.per_version
                );
            }
            "index" => drop(bench_index(n)),
            "history" => drop(bench_history((n / 100).max(100), n)),
            "rebuild" => eprintln!("rebuild {:?} (wall ms, cpu ms, keys/s)", bench_rebuild(n)),
            other => panic!("unknown part {other}"),
        }
        return;
    }

    // Memory first, while nothing else has been allocated and freed.
    eprintln!("index: memory");
    let mem = bench_memory(n);
    eprintln!("index: {n} keys");
    let (index_rows, load_ns) = bench_index(n);
    eprintln!("store: put");
    let (put, _, put_dir) = bench_store_put((n / 5).max(1000));
    let put_keys;
    let range_after_put = {
        let store = Arc::new(open(put_dir.path()));
        let mut rng = SmallRng::seed_from_u64(1);
        put_keys = Arc::new(
            (0..(n / 5).max(1000))
                .map(|_| {
                    let mut k = [0u8; KEY_LEN];
                    rng.fill(&mut k[..]);
                    k.to_vec()
                })
                .collect::<Vec<_>>(),
        );
        [
            median_throughput(&store, &put_keys, 1),
            median_throughput(&store, &put_keys, 2),
        ]
    };
    drop(put_dir);
    eprintln!("store: history");
    let hist = bench_history((n / 100).max(100), n);
    eprintln!("store: rebuild");
    let (rebuild_ms, rebuild_cpu_ms, rebuild_rate) = bench_rebuild(n);

    let mut md = String::new();
    let w = &mut md;
    writeln!(w, "# Revision index and MVCC store").unwrap();
    writeln!(w).unwrap();
    writeln!(w, "Machine: {}.", machine()).unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "Reproduce: `make bench-mvcc` (= `cargo bench -p bench --bench mvcc -- --write results/mvcc.md`). \
         Keys: {n} (`MVCC_BENCH_KEYS`), 64 bytes. Medians of {ROUNDS} rounds; the two index designs alternate \
         within each round. The machine is shared with other engineers' builds and tests, so absolute figures \
         move between runs; the ratios are measured back to back in the same run. Total run time: {:.0} s.",
        started.elapsed().as_secs_f64()
    )
    .unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "## 1. Index: lock-free skiplist vs etcd's `RwLock<BTreeMap>`"
    )
    .unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "{n} keys, one revision each at the start (load: skiplist {:.0} ns/key, RwLock<BTreeMap> {:.0} ns/key). \
         The measured operation runs on one thread while 0, 1 or 3 other threads run random gets; puts add a \
         revision to a random existing key; a range visits 100 keys from a random start. The machine has 2 \
         cores, so with 3 readers the threads share them.",
        load_ns[0], load_ns[1]
    )
    .unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "| operation | concurrent readers | skiplist | RwLock<BTreeMap> | skiplist / btree | background gets (skiplist / btree) |"
    )
    .unwrap();
    writeln!(w, "| --- | ---: | --- | --- | ---: | --- |").unwrap();
    for r in &index_rows {
        writeln!(
            w,
            "| {} | {} | {} | {} | {:.2}× | {} |",
            r.op,
            r.readers,
            rate(r.ns[0]),
            rate(r.ns[1]),
            r.ns[1] / r.ns[0],
            if r.readers == 0 {
                "—".to_string()
            } else {
                format!(
                    "{} / {}",
                    kps(r.background_reads[0]),
                    kps(r.background_reads[1])
                )
            }
        )
        .unwrap();
    }
    writeln!(w).unwrap();
    writeln!(w, "## 2. Store: in-process puts and ranges").unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "etcd's `benchmark mvcc put` shape: one writer, {} unique random 64-byte keys, 128-byte values, \
         B+tree backend with durable commits, batch interval 100 ms, batch limit 10 000.",
        (n / 5).max(1000)
    )
    .unwrap();
    writeln!(w).unwrap();
    writeln!(w, "| measurement | result |").unwrap();
    writeln!(w, "| --- | --- |").unwrap();
    writeln!(
        w,
        "| put throughput (1 writer) | {} (p50 {:.1} µs, p99 {:.1} µs per put) |",
        kps(put.ops_per_s),
        put.p50_us,
        put.p99_us
    )
    .unwrap();
    writeln!(
        w,
        "| serializable single-key range on that store, 1 thread | {} |",
        kps(range_after_put[0])
    )
    .unwrap();
    writeln!(
        w,
        "| serializable single-key range on that store, 2 threads | {} |",
        kps(range_after_put[1])
    )
    .unwrap();
    writeln!(w).unwrap();
    writeln!(w, "## 3. Range throughput: fresh store vs after history").unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "{} keys written once (256-byte values; db {:.1} MB), then {} more puts to random ones of them \
         ({} versions per key on average, no compaction; db {:.1} MB). Serializable single-key ranges of \
         random keys.",
        hist.keys,
        hist.db_fresh_mb,
        hist.writes,
        hist.writes / hist.keys + 1,
        hist.db_history_mb
    )
    .unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "{} samples of 300 ms per store and thread count, the two stores alternating (which one goes first \
         alternates too); throughput is the median of a store's samples, the ratio the median of the ratios \
         of adjacent samples. The value cache (`StoreOptions::value_cache_bytes`, 64 MiB) is on, as by default.",
        3 * ROUNDS
    )
    .unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "| threads | fresh | after {} writes | after / fresh |",
        hist.writes
    )
    .unwrap();
    writeln!(w, "| ---: | --- | --- | ---: |").unwrap();
    for t in 0..2 {
        writeln!(
            w,
            "| {} | {} | {} | {:.2} |",
            t + 1,
            kps(hist.fresh[t]),
            kps(hist.history[t]),
            hist.ratio[t]
        )
        .unwrap();
    }
    writeln!(w).unwrap();
    let c = &hist.compaction;
    writeln!(
        w,
        "Then one compaction at the current revision removes {} revisions ({:.1} s until physically \
         committed) while one thread keeps putting. It took {} steps under the writer lock, {:.0} µs on \
         average; the longest, the longest any put could wait for it, held it {:.1} ms. Put latency p50 / p99 / max: {:.1} / {:.1} / {:.0} µs \
         during the compaction, {:.1} / {:.1} / {:.0} µs in the 2 s before it (a maximum of tens of ms with \
         or without compaction is the loaded machine descheduling the thread).",
        c.stats.removed,
        c.compaction_s,
        c.stats.steps,
        c.stats.step_total_us as f64 / c.stats.steps.max(1) as f64,
        c.stats.step_max_us as f64 / 1000.0,
        c.during[0],
        c.during[1],
        c.during[2],
        c.baseline[0],
        c.baseline[1],
        c.baseline[2]
    )
    .unwrap();
    writeln!(w).unwrap();
    writeln!(w, "## 4. Index rebuild").unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "Reopening a store of {n} keys (64-byte keys, 256-byte values, one revision each): \
         {rebuild_ms:.0} ms wall time ({}), using {rebuild_cpu_ms:.0} ms of CPU time (both rebuild threads: one scans and decodes the key bucket, one inserts into the index); \
         median of 3. This is the whole `Store::open` (scan of the key bucket, decode, index inserts, \
         leases).",
        kps(rebuild_rate).replace("/s", " keys/s")
    )
    .unwrap();
    writeln!(w).unwrap();
    writeln!(w, "## 5. Index memory").unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "Bytes the allocator handed out for the index of {n} keys, counted by a wrapping global allocator \
         (requested sizes; mimalloc's own rounding is in the RSS column). \"Per key\" excludes the 64 key \
         bytes and includes the key's first version, as etcd's c1 does with its first pointer; \"per \
         version\" is the marginal cost of more versions of the same keys."
    )
    .unwrap();
    writeln!(w).unwrap();
    writeln!(w, "| measure | allocated | RSS | etcd (documented) |").unwrap();
    writeln!(w, "| --- | ---: | ---: | ---: |").unwrap();
    writeln!(
        w,
        "| per key, 1 version | {:.1} B | {:.1} B | 120 B |",
        mem.per_key, mem.rss_per_key
    )
    .unwrap();
    for (v, b) in &mem.per_version {
        let rss = if *v == 10 {
            format!("{:.1} B", mem.rss_per_version)
        } else {
            "".to_string()
        };
        writeln!(
            w,
            "| per version, 1 → {v} versions per key | {b:.1} B | {rss} | 30 B |"
        )
        .unwrap();
    }
    writeln!(w).unwrap();
    print!("{md}");
    if let Some(path) = write_to {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(path);
        let previous = std::fs::read_to_string(&path).unwrap_or_default();
        // Keep the hand-written analysis after the generated part.
        let tail = previous
            .find("<!-- analysis -->")
            .map(|i| previous[i..].to_string())
            .unwrap_or_default();
        std::fs::write(&path, format!("{md}{tail}")).unwrap();
        eprintln!("wrote {}", path.display());
    }
}
