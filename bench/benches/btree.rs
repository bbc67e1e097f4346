//! Storage engine comparison: the own B+tree against redb and LMDB, through
//! the same `engine::backend` trait, on the same data, in one run.
//!
//! Data: `BTREE_BENCH_KEYS` keys (default 1 000 000) of 24 bytes with
//! 150-byte values, inserted in random order. Page cache warm (the machine
//! has far more memory than the files). `make bench` runs this and renders
//! results/btree.md with `btree-table`.

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use engine::backend::{self, Backend, BackendKind, Durability};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BUCKET: &str = "bench";
const KEY_LEN: usize = 24;
const VALUE_LEN: usize = 150;
const LOAD_BATCH_KEYS: usize = 100_000;
const WRITE_BATCH_KEYS: usize = 1000;
const RANGE_KEYS: usize = 100;

fn key_count() -> usize {
    std::env::var("BTREE_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// "key/" and 20 decimal digits, written without formatting machinery so
/// the harness adds as little as possible to every engine's time.
fn key(mut i: u64) -> [u8; KEY_LEN] {
    let mut k = [b'0'; KEY_LEN];
    k[..4].copy_from_slice(b"key/");
    let mut at = KEY_LEN;
    while i > 0 {
        at -= 1;
        k[at] = b'0' + (i % 10) as u8;
        i /= 10;
    }
    k
}

fn value(i: u64, round: u64) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    let seed = (i ^ round.rotate_left(17)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for (j, b) in v.iter_mut().enumerate() {
        *b = (seed >> ((j % 8) * 8)) as u8;
    }
    v
}

/// What the machine was doing while a group ran, and how large each
/// engine's file is: appended as JSON lines to `target/bench-data/btree-run.jsonl`
/// (truncated when the benchmark starts), rendered by `btree-table`. The
/// machine is shared; a reader of the numbers should see how busy it was.
fn note(event: &str, fields: serde_json::Value) {
    use std::io::Write;
    static STARTED: std::sync::Once = std::sync::Once::new();
    let path = data_root().join("btree-run.jsonl");
    STARTED.call_once(|| {
        let _ = std::fs::remove_file(&path);
    });
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let line = serde_json::json!({
        "event": event,
        "loadavg": read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        "cpu_pressure": read("/proc/pressure/cpu").lines().next().unwrap_or("").to_string(),
        "io_pressure": read("/proc/pressure/io").lines().next().unwrap_or("").to_string(),
        "fields": fields,
    });
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    writeln!(f, "{line}").unwrap();
}

/// The device's own fdatasync latency right now: median of 200 rewrites of
/// one 4 KiB block, next to the databases. Recorded before and after the
/// durable-commit group, whose times it bounds from below.
fn note_fdatasync(when: &str) {
    use std::os::unix::fs::FileExt;
    let path = data_root().join("fdatasync-probe");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .unwrap();
    let block = vec![7u8; 4096];
    file.write_all_at(&block, 0).unwrap();
    file.sync_all().unwrap();
    let mut samples: Vec<f64> = (0..200)
        .map(|_| {
            file.write_all_at(&block, 0).unwrap();
            let started = Instant::now();
            file.sync_data().unwrap();
            started.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    std::fs::remove_file(&path).unwrap();
    samples.sort_by(f64::total_cmp);
    note(
        "fdatasync",
        serde_json::json!({"when": when, "median_us": samples[100], "p90_us": samples[180]}),
    );
}

fn note_sizes(when: &str, fx: &Fixture) {
    for (kind, path) in &fx.paths {
        let be = open(path, *kind, Durability::Durable);
        note(
            "size",
            serde_json::json!({"engine": kind.name(), "when": when, "bytes": be.size_bytes().unwrap()}),
        );
    }
}

/// Data lives under target/ (the project's ext4 disk, never tmpfs).
fn data_root() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&root).unwrap();
    root
}

const ENGINES: [BackendKind; 3] = [BackendKind::Btree, BackendKind::Redb, BackendKind::Lmdb];

fn load(be: &dyn Backend, n: usize, seed: u64) {
    let mut order: Vec<u64> = (0..n as u64).collect();
    order.shuffle(&mut SmallRng::seed_from_u64(seed));
    for chunk in order.chunks(LOAD_BATCH_KEYS) {
        be.update(&mut |w| {
            w.create_bucket(BUCKET)?;
            for &i in chunk {
                w.put(BUCKET, &key(i), &value(i, 0))?;
            }
            Ok(())
        })
        .unwrap();
    }
}

/// One loaded database per engine, shared by the read and write benchmarks.
struct Fixture {
    _dir: tempfile::TempDir,
    paths: Vec<(BackendKind, PathBuf)>,
    keys: usize,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir_in(data_root()).unwrap();
        let keys = key_count();
        let mut paths = Vec::new();
        for kind in ENGINES {
            let path = dir.path().join(kind.name());
            let started = Instant::now();
            let be = backend::open(kind, &path, Durability::Durable).unwrap();
            load(be.as_ref(), keys, 1);
            eprintln!(
                "fixture: {} loaded {keys} keys in {:?}",
                kind.name(),
                started.elapsed()
            );
            drop(be);
            if kind == BackendKind::Btree {
                let db = engine::btree::Db::open(&path, engine::btree::Options::default()).unwrap();
                let s = db.stats().unwrap();
                let b = &s.buckets[0];
                eprintln!(
                    "fixture: btree depth {}, {} branch + {} leaf pages, file {} MiB",
                    b.depth,
                    b.branch_pages,
                    b.leaf_pages,
                    s.file_size_bytes >> 20
                );
            }
            paths.push((kind, path));
        }
        let fx = Fixture {
            _dir: dir,
            paths,
            keys,
        };
        note_sizes("after loading", &fx);
        fx
    })
}

fn open(path: &Path, kind: BackendKind, durability: Durability) -> Box<dyn Backend> {
    backend::open(kind, path, durability).unwrap()
}

fn bulk_load(c: &mut Criterion) {
    let n = key_count();
    note("start", serde_json::json!({"group": "bulk_load"}));
    let mut g = c.benchmark_group("bulk_load");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(n as u64));
    for kind in ENGINES {
        g.bench_function(BenchmarkId::from_parameter(kind.name()), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let dir = tempfile::tempdir_in(data_root()).unwrap();
                    let path = dir.path().join("db");
                    let started = Instant::now();
                    let be = backend::open(kind, &path, Durability::Durable).unwrap();
                    load(be.as_ref(), n, 100 + i);
                    drop(be);
                    total += started.elapsed();
                }
                total
            })
        });
    }
    g.finish();
    note("end", serde_json::json!({"group": "bulk_load"}));
}

fn point_reads(c: &mut Criterion) {
    let fx = fixture();
    note("start", serde_json::json!({"group": "random_get"}));
    let mut g = c.benchmark_group("random_get");
    g.throughput(Throughput::Elements(1));
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (kind, path) in &fx.paths {
        let be = open(path, *kind, Durability::Durable);
        let snap = be.read().unwrap();
        let mut rng = SmallRng::seed_from_u64(7);
        g.bench_function(BenchmarkId::from_parameter(kind.name()), |b| {
            b.iter(|| {
                let k = key(rng.gen_range(0..fx.keys as u64));
                let mut len = 0;
                let found = snap.get(BUCKET, &k, &mut |v| len = v.len()).unwrap();
                assert!(found);
                black_box(len)
            })
        });
    }
    g.finish();
    note("end", serde_json::json!({"group": "random_get"}));
}

fn range_reads(c: &mut Criterion) {
    let fx = fixture();
    note("start", serde_json::json!({"group": "random_range_100"}));
    let mut g = c.benchmark_group("random_range_100");
    g.throughput(Throughput::Elements(1));
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (kind, path) in &fx.paths {
        let be = open(path, *kind, Durability::Durable);
        let snap = be.read().unwrap();
        let mut rng = SmallRng::seed_from_u64(8);
        g.bench_function(BenchmarkId::from_parameter(kind.name()), |b| {
            b.iter(|| {
                let start = key(rng.gen_range(0..(fx.keys - RANGE_KEYS) as u64));
                let mut n = 0;
                let mut bytes = 0;
                snap.range(BUCKET, &start, None, &mut |k, v| {
                    n += 1;
                    bytes += k.len() + v.len();
                    n < RANGE_KEYS
                })
                .unwrap();
                assert_eq!(n, RANGE_KEYS);
                black_box(bytes)
            })
        });
    }
    g.finish();
    note("end", serde_json::json!({"group": "random_range_100"}));
}

fn batched_writes(c: &mut Criterion) {
    let fx = fixture();
    note("start", serde_json::json!({"group": "batched_write_1000"}));
    let mut g = c.benchmark_group("batched_write_1000");
    g.throughput(Throughput::Elements(WRITE_BATCH_KEYS as u64));
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for (kind, path) in &fx.paths {
        let be = open(path, *kind, Durability::Durable);
        let mut rng = SmallRng::seed_from_u64(9);
        let mut round = 1;
        g.bench_function(BenchmarkId::from_parameter(kind.name()), |b| {
            b.iter(|| {
                round += 1;
                be.update(&mut |w| {
                    for _ in 0..WRITE_BATCH_KEYS {
                        let i = rng.gen_range(0..fx.keys as u64);
                        w.put(BUCKET, &key(i), &value(i, round))?;
                    }
                    Ok(())
                })
                .unwrap()
            })
        });
    }
    g.finish();
    note("end", serde_json::json!({"group": "batched_write_1000"}));
    note_sizes("after the batched writes", fx);
}

/// One put per durable commit: the engines, and the own B+tree's one-fsync
/// commit against its bbolt-style two-fsync mode on the same file.
fn durable_commits(c: &mut Criterion) {
    let fx = fixture();
    note("start", serde_json::json!({"group": "durable_commit"}));
    note_fdatasync("before the durable commits");
    let mut g = c.benchmark_group("durable_commit");
    g.throughput(Throughput::Elements(1));
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let mut cases: Vec<(String, BackendKind, Durability, &PathBuf)> = fx
        .paths
        .iter()
        .map(|(k, p)| (k.name().to_string(), *k, Durability::Durable, p))
        .collect();
    let btree = &fx.paths[0];
    cases.insert(
        1,
        (
            "btree-2fsync".to_string(),
            btree.0,
            Durability::DurableTwoFsync,
            &btree.1,
        ),
    );
    for (label, kind, durability, path) in cases {
        let be = open(path, kind, durability);
        let mut rng = SmallRng::seed_from_u64(10);
        let mut round = 1_000_000;
        g.bench_function(BenchmarkId::from_parameter(&label), |b| {
            b.iter(|| {
                round += 1;
                let i = rng.gen_range(0..fx.keys as u64);
                be.update(&mut |w| w.put(BUCKET, &key(i), &value(i, round)))
                    .unwrap()
            })
        });
    }
    g.finish();
    note("end", serde_json::json!({"group": "durable_commit"}));
    note_fdatasync("after the durable commits");
    note_sizes("after the durable commits", fx);
}

criterion_group!(
    benches,
    point_reads,
    range_reads,
    batched_writes,
    durable_commits,
    bulk_load
);
/// criterion's `criterion_main!`, plus removing the loaded databases (about
/// 2 GB): the fixture lives in a static, which is never dropped.
fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if let Some(fx) = FIXTURE.get() {
        let _ = std::fs::remove_dir_all(fx._dir.path());
    }
}
