//! WAL group-commit benchmark: appenders 1, 16, 256, 1024 × record sizes
//! 64 B, 256 B, 4 KiB, on the io_uring path and the portable path, cells of
//! the two paths run back to back. Each cell reports records/s, MB/s,
//! fsyncs/s, records per fsync, p50/p99 time-to-durable as the appender sees
//! it (from the `append` call to the return of `Ticket::wait`), and the
//! device's raw fdatasync latency measured right before the cell. The table
//! and the targets of issue 3 go to results/wal.md.
//!
//! Usage: cargo bench -p bench --bench wal -- [--quick] [--secs S]
//!        [--out FILE] [--dir DIR]
//!
//! Appenders are OS threads in a closed loop: append one record, wait for
//! it to be durable, repeat.

use engine::wal::{IoMode, IoPath, Options, Preallocate, Wal};
use hdrhistogram::Histogram;
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const APPENDERS: [usize; 4] = [1, 16, 256, 1024];
const SIZES: [usize; 3] = [64, 256, 4096];
/// How appenders wait: OS threads in `Wal::append_wait`, or tokio
/// tasks awaiting the ticket on a 2-worker runtime (how a gRPC server
/// drives the WAL: thousands of clients are tasks, not threads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Model {
    Threads,
    Tasks,
}

impl Model {
    fn name(self) -> &'static str {
        match self {
            Model::Threads => "threads",
            Model::Tasks => "tokio tasks",
        }
    }
}

/// Samples of `raw_sync_vs_uring`: (CPU hogs, (sync p50, sync p99, io_uring
/// p50, io_uring p99)).
type Handoff = (usize, (f64, f64, f64, f64));

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

struct Args {
    secs: f64,
    rounds: usize,
    warmup_secs: f64,
    out: Option<PathBuf>,
    dir: Option<PathBuf>,
    /// `--only SIZE:APPENDERS`: run just these cells (exploration; no file).
    only: Vec<(usize, usize)>,
}

fn parse_args() -> Args {
    let mut a = Args {
        secs: 1.0,
        rounds: 5,
        warmup_secs: 0.3,
        out: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../results/wal.md")),
        dir: None,
        only: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => a.rounds = 1,
            "--rounds" => a.rounds = it.next().and_then(|v| v.parse().ok()).expect("--rounds N"),
            "--secs" => a.secs = it.next().and_then(|v| v.parse().ok()).expect("--secs S"),
            "--out" => a.out = it.next().map(PathBuf::from),
            "--no-out" => a.out = None,
            "--dir" => a.dir = it.next().map(PathBuf::from),
            "--only" => {
                let v = it.next().expect("--only SIZE:APPENDERS");
                let (s, n) = v.split_once(':').expect("SIZE:APPENDERS");
                a.only.push((s.parse().unwrap(), n.parse().unwrap()));
                a.out = None;
            }
            _ => {} // cargo passes --bench
        }
    }
    a
}

#[derive(Clone, Debug)]
struct Cell {
    model: Model,
    path: IoPath,
    prealloc: Preallocate,
    size: usize,
    appenders: usize,
    records_per_s: f64,
    mb_per_s: f64,
    fsyncs_per_s: f64,
    records_per_fsync: f64,
    ttd_p50_us: f64,
    ttd_p99_us: f64,
    /// Writer-side write + fdatasync of one batch (the WAL's own fsync
    /// histogram), median.
    wal_fsync_p50_us: f64,
    /// Share of the cell's fsyncs issued by appender threads in `append_wait`.
    leader_share: f64,
    raw_p50_us: f64,
    raw_p99_us: f64,
}

/// The device's own latency for what the WAL does per batch, without the
/// WAL: a sequential `pwrite` of `size` bytes into a zero-filled,
/// preallocated file, then `fdatasync`. Returns `n` samples in µs.
fn raw_fdatasync(dir: &Path, size: usize, n: usize) -> Vec<f64> {
    let path = dir.join(format!("raw-fdatasync-{size}"));
    let span = 8u64 << 20;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    if file.metadata().unwrap().len() < span {
        let zeros = vec![0u8; 1 << 20];
        for i in 0..8 {
            file.write_all_at(&zeros, i << 20).unwrap();
        }
        file.sync_all().unwrap();
    }
    let buf = vec![0x5au8; size];
    let mut at = (n as u64 * size as u64 * 7) % span;
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        if at + size as u64 > span {
            at = 0;
        }
        let t = Instant::now();
        file.write_all_at(&buf, at).unwrap();
        file.sync_data().unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        at += size as u64;
    }
    lat
}

fn p50_p99(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[v.len() * 99 / 100])
}

/// The two ways to make one small write durable, without the WAL,
/// interleaved sample by sample: `pwrite` + `fdatasync` on this thread, and
/// an io_uring `WRITE` linked to `FSYNC(DATASYNC)` (the fsync always runs on
/// an io-wq kernel worker, one more thread hand-off). With `hogs` threads
/// spinning meanwhile, to show what that hand-off costs when the CPUs are
/// busy (as they are with many appenders). Returns (sync p50, p99, uring
/// p50, p99) in µs.
fn raw_sync_vs_uring(dir: &Path, hogs: usize, n: usize) -> (f64, f64, f64, f64) {
    use io_uring::{opcode, squeue, types, IoUring};
    use std::os::fd::AsRawFd;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinners: Vec<_> = (0..hogs)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            })
        })
        .collect();
    let path = dir.join("raw-uring");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let span = 8u64 << 20;
    let zeros = vec![0u8; 1 << 20];
    for i in 0..8 {
        file.write_all_at(&zeros, i << 20).unwrap();
    }
    file.sync_all().unwrap();
    let mut ring = IoUring::new(8).unwrap();
    let buf = vec![0x5au8; 256];
    let (mut sync, mut uring) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut at = 0u64;
    for _ in 0..n {
        at = (at + 512) % span;
        let t = Instant::now();
        file.write_all_at(&buf, at).unwrap();
        file.sync_data().unwrap();
        sync.push(t.elapsed().as_secs_f64() * 1e6);
        at = (at + 512) % span;
        let t = Instant::now();
        let w = opcode::Write::new(types::Fd(file.as_raw_fd()), buf.as_ptr(), buf.len() as u32)
            .offset(at)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(1);
        let f = opcode::Fsync::new(types::Fd(file.as_raw_fd()))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(2);
        // SAFETY: `buf` outlives the request: both completions are reaped
        // below before the next iteration.
        unsafe { ring.submission().push_multiple(&[w, f]).unwrap() };
        let mut got = 0;
        while got < 2 {
            ring.submit_and_wait(2 - got).unwrap();
            for cqe in ring.completion() {
                assert!(cqe.result() >= 0, "io_uring op failed: {}", cqe.result());
                got += 1;
            }
        }
        uring.push(t.elapsed().as_secs_f64() * 1e6);
    }
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        s.join().unwrap();
    }
    let (a, b) = p50_p99(sync);
    let (c, d) = p50_p99(uring);
    (a, b, c, d)
}

/// The btree benchmark's definition, for comparison: rewrite one 4 KiB
/// block in place, then fdatasync.
fn raw_overwrite_4k(dir: &Path, n: usize) -> f64 {
    let path = dir.join("raw-overwrite");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let block = vec![7u8; 4096];
    file.write_all_at(&block, 0).unwrap();
    file.sync_all().unwrap();
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        file.write_all_at(&block, 0).unwrap();
        file.sync_data().unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    lat.sort_by(f64::total_cmp);
    lat[n / 2]
}

type Latencies = Histogram<u64>;

fn latency_hist() -> Latencies {
    Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap()
}

/// Runs one cell; returns (records/s, fsyncs/s, records per fsync,
/// appender-side latency histogram, WAL write+fsync p50 in µs, share of
/// fsyncs by appender threads).
fn run_cell(
    wal: &Arc<Wal>,
    rt: &tokio::runtime::Runtime,
    model: Model,
    size: usize,
    appenders: usize,
    args: &Args,
) -> (f64, f64, f64, Latencies, f64, f64) {
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let measured = Arc::new(AtomicU64::new(0));
    // Threads use `append_wait` (they may write their batch themselves);
    // WAL_BENCH_TICKET_WAIT=1 makes them use `append(..)?.wait()` instead.
    let ticket_wait = std::env::var("WAL_BENCH_TICKET_WAIT").is_ok_and(|v| v == "1");
    let mut threads = Vec::new();
    let mut tasks = Vec::new();
    for t in 0..appenders {
        let (wal, phase, measured) = (Arc::clone(wal), Arc::clone(&phase), Arc::clone(&measured));
        let payload = vec![t as u8 | 1; size];
        match model {
            Model::Threads => threads.push(
                std::thread::Builder::new()
                    .stack_size(128 << 10)
                    .spawn(move || {
                        let (mut hist, mut n, mut mine) = (latency_hist(), 0u64, 0u64);
                        loop {
                            let p = phase.load(Ordering::Relaxed);
                            if p == STOP {
                                break;
                            }
                            let started = Instant::now();
                            if ticket_wait {
                                wal.append(n, 1, &payload).unwrap().wait().unwrap();
                            } else {
                                wal.append_wait(n, 1, &payload).unwrap();
                            }
                            if p == MEASURE && phase.load(Ordering::Relaxed) == MEASURE {
                                hist.saturating_record(started.elapsed().as_nanos() as u64);
                                mine += 1;
                            }
                            n += 1;
                        }
                        measured.fetch_add(mine, Ordering::Relaxed);
                        hist
                    })
                    .unwrap(),
            ),
            Model::Tasks => tasks.push(rt.spawn(async move {
                let (mut hist, mut n, mut mine) = (latency_hist(), 0u64, 0u64);
                loop {
                    let p = phase.load(Ordering::Relaxed);
                    if p == STOP {
                        break;
                    }
                    let started = Instant::now();
                    wal.append(n, 1, &payload).unwrap().await.unwrap();
                    if p == MEASURE && phase.load(Ordering::Relaxed) == MEASURE {
                        hist.saturating_record(started.elapsed().as_nanos() as u64);
                        mine += 1;
                    }
                    n += 1;
                }
                measured.fetch_add(mine, Ordering::Relaxed);
                hist
            })),
        }
    }
    std::thread::sleep(Duration::from_secs_f64(args.warmup_secs));
    let before = wal.metrics();
    phase.store(MEASURE, Ordering::Relaxed);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(args.secs));
    phase.store(STOP, Ordering::Relaxed);
    let window = t0.elapsed().as_secs_f64();
    let after = wal.metrics();
    let mut hist = latency_hist();
    for t in threads {
        hist.add(t.join().unwrap()).unwrap();
    }
    for t in tasks {
        hist.add(rt.block_on(t).unwrap()).unwrap();
    }
    let records = measured.load(Ordering::Relaxed) as f64;
    let fsyncs = (after.fsyncs - before.fsyncs) as f64;
    let leader = (after.leader_fsyncs - before.leader_fsyncs) as f64;
    let wal_records = (after.records - before.records) as f64;
    // The WAL's own write+fsync histogram over the window.
    let mut fs = after.fsync_ns.clone();
    fs.subtract(&before.fsync_ns).unwrap();
    (
        records / window,
        fsyncs / window,
        if fsyncs > 0.0 {
            wal_records / fsyncs
        } else {
            0.0
        },
        hist,
        fs.value_at_quantile(0.5) as f64 / 1e3,
        if fsyncs > 0.0 { leader / fsyncs } else { 0.0 },
    )
}

fn options(io: IoMode, prealloc: Preallocate) -> Options {
    let d = Options::default();
    let us = |var: &str, default: Duration| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(default, Duration::from_micros)
    };
    Options {
        io,
        preallocate: prealloc,
        writer_spin: us("WAL_WRITER_SPIN_US", d.writer_spin),
        waiter_spin: us("WAL_WAITER_SPIN_US", d.waiter_spin),
        // Exploration only: WAL_OVERLAP=always|never overrides the writer's
        // per-batch choice.
        overlap: match std::env::var("WAL_OVERLAP").as_deref() {
            Ok("always") => Some(true),
            Ok("never") => Some(false),
            _ => None,
        },
        ..d
    }
}

#[allow(clippy::too_many_arguments)]
fn cell(
    wal: &Arc<Wal>,
    rt: &tokio::runtime::Runtime,
    model: Model,
    dir: &Path,
    prealloc: Preallocate,
    size: usize,
    appenders: usize,
    args: &Args,
) -> Cell {
    // The reference brackets the cell: half of the samples right before
    // it, half right after.
    let mut raw = raw_fdatasync(dir, size, 150);
    let (records_per_s, fsyncs_per_s, records_per_fsync, hist, wal_fsync_p50_us, leader_share) =
        run_cell(wal, rt, model, size, appenders, args);
    raw.extend(raw_fdatasync(dir, size, 150));
    let (raw_p50_us, raw_p99_us) = p50_p99(raw);
    let c = Cell {
        model,
        path: wal.io_path(),
        prealloc,
        size,
        appenders,
        records_per_s,
        mb_per_s: records_per_s * size as f64 / 1e6,
        fsyncs_per_s,
        records_per_fsync,
        ttd_p50_us: hist.value_at_quantile(0.5) as f64 / 1e3,
        ttd_p99_us: hist.value_at_quantile(0.99) as f64 / 1e3,
        wal_fsync_p50_us,
        leader_share,
        raw_p50_us,
        raw_p99_us,
    };
    eprintln!(
        "{:>11} {:>8} {:>9?} {:>5} B × {:>4}: {:>10.0} rec/s {:>7.1} MB/s {:>8.0} fsync/s {:>7.1} rec/fsync p50 {:>8.1} µs p99 {:>9.1} µs | wal fsync p50 {:>6.1} µs | raw p50 {:>6.1} p99 {:>6.1} µs",
        c.model.name(), c.path.name(), c.prealloc, c.size, c.appenders, c.records_per_s, c.mb_per_s, c.fsyncs_per_s,
        c.records_per_fsync, c.ttd_p50_us, c.ttd_p99_us, c.wal_fsync_p50_us, c.raw_p50_us, c.raw_p99_us
    );
    c
}

/// The median of each figure over the rounds of one cell.
fn median_cell(rounds: &[Cell]) -> Cell {
    let med = |f: &dyn Fn(&Cell) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Cell {
        records_per_s: med(&|c| c.records_per_s),
        mb_per_s: med(&|c| c.mb_per_s),
        fsyncs_per_s: med(&|c| c.fsyncs_per_s),
        records_per_fsync: med(&|c| c.records_per_fsync),
        ttd_p50_us: med(&|c| c.ttd_p50_us),
        ttd_p99_us: med(&|c| c.ttd_p99_us),
        wal_fsync_p50_us: med(&|c| c.wal_fsync_p50_us),
        leader_share: med(&|c| c.leader_share),
        raw_p50_us: med(&|c| c.raw_p50_us),
        raw_p99_us: med(&|c| c.raw_p99_us),
        ..rounds[0].clone()
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
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {} GiB RAM, Linux {}",
        mem_kb / (1 << 20),
        kernel.trim()
    )
}

/// The file system and block device under `dir`.
fn storage(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or(dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let best = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && dir.starts_with(f[1])).then(|| {
                (
                    f[0].to_string(),
                    f[1].to_string(),
                    f[2].to_string(),
                    f[3].to_string(),
                )
            })
        })
        .max_by_key(|m| m.1.len());
    let Some((dev, mnt, fs, opts)) = best else {
        return "unknown".into();
    };
    let name = dev.rsplit('/').next().unwrap_or("").to_string();
    let q = |f: &str| {
        std::fs::read_to_string(format!("/sys/block/{name}/queue/{f}"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into())
    };
    format!(
        "{dev} ({fs}, mounted on {mnt} with {opts}); logical sector {} B, physical {} B, rotational {}, write cache \"{}\"",
        q("logical_block_size"),
        q("physical_block_size"),
        q("rotational"),
        q("write_cache")
    )
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn fmt_us(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

fn main() {
    let args = parse_args();
    let tmp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).unwrap();
            d.clone()
        }
        None => {
            tmp = tempfile::Builder::new()
                .prefix("wal-bench")
                .tempdir_in(std::env::temp_dir())
                .unwrap();
            tmp.path().to_path_buf()
        }
    };
    let load_before = loadavg();
    let started = Instant::now();
    let overwrite_before = raw_overwrite_4k(&dir, 300);
    let mut handoff = Vec::new();
    for hogs in [0, 2, 0, 2] {
        let r = raw_sync_vs_uring(&dir, hogs, 500);
        eprintln!("raw sync vs io_uring, {hogs} CPU hogs: {r:?}");
        handoff.push((hogs, r));
    }

    let mut wals = Vec::new();
    for (name, io) in [
        ("io_uring", IoMode::IoUring),
        ("portable", IoMode::Portable),
    ] {
        let (wal, _) = Wal::open(dir.join(name), options(io, Preallocate::ZeroFill)).unwrap();
        wals.push(Arc::new(wal));
    }
    assert_eq!(
        wals[0].io_path(),
        IoPath::IoUring,
        "io_uring must be available for this benchmark"
    );
    // Let the spare segments finish preallocating before measuring.
    std::thread::sleep(Duration::from_secs(1));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    // rounds[r] holds every cell of round r; the table shows medians.
    let mut all: Vec<Cell> = Vec::new();
    for round in 0..args.rounds {
        eprintln!("round {} of {}", round + 1, args.rounds);
        for model in [Model::Threads, Model::Tasks] {
            for size in SIZES {
                for appenders in APPENDERS {
                    if !args.only.is_empty() && !args.only.contains(&(size, appenders)) {
                        continue;
                    }
                    // Back to back, alternating which path goes first.
                    let order: Vec<usize> = if (round + size + appenders) % 2 == 0 {
                        vec![0, 1]
                    } else {
                        vec![1, 0]
                    };
                    for i in order {
                        all.push(cell(
                            &wals[i],
                            &rt,
                            model,
                            &dir,
                            Preallocate::ZeroFill,
                            size,
                            appenders,
                            &args,
                        ));
                        // Every full segment is garbage once the cell is
                        // measured (record indexes here are per appender,
                        // so any index releases them): five rounds would
                        // otherwise keep tens of GB of segments.
                        wals[i].release_to(u64::MAX).unwrap();
                    }
                }
            }
        }
    }
    drop(wals);
    let mut cells = Vec::new();
    for model in [Model::Threads, Model::Tasks] {
        for size in SIZES {
            for appenders in APPENDERS {
                for path in [IoPath::IoUring, IoPath::Portable] {
                    let rounds: Vec<Cell> = all
                        .iter()
                        .filter(|c| {
                            c.model == model
                                && c.path == path
                                && c.size == size
                                && c.appenders == appenders
                        })
                        .cloned()
                        .collect();
                    if !rounds.is_empty() {
                        cells.push(median_cell(&rounds));
                    }
                }
            }
        }
    }
    if !args.only.is_empty() {
        return;
    }
    // Why segments are zero-filled: the same cells with fallocate only.
    let (fwal, _) = Wal::open(
        dir.join("fallocate"),
        options(IoMode::IoUring, Preallocate::Fallocate),
    )
    .unwrap();
    let fwal = Arc::new(fwal);
    std::thread::sleep(Duration::from_secs(1));
    let mut falloc = Vec::new();
    for appenders in [1, 256] {
        falloc.push(cell(
            &fwal,
            &rt,
            Model::Threads,
            &dir,
            Preallocate::Fallocate,
            256,
            appenders,
            &args,
        ));
    }
    drop(fwal);
    let overwrite_after = raw_overwrite_4k(&dir, 300);
    let load_after = loadavg();
    let md = render(
        &args,
        &handoff,
        &dir,
        &cells,
        &falloc,
        overwrite_before,
        overwrite_after,
        &load_before,
        &load_after,
        started.elapsed(),
    );
    print!("{md}");
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        std::fs::write(out, &md).unwrap();
        eprintln!("wrote {}", out.display());
    }
}

fn find(cells: &[Cell], model: Model, path: IoPath, size: usize, appenders: usize) -> &Cell {
    cells
        .iter()
        .find(|c| c.model == model && c.path == path && c.size == size && c.appenders == appenders)
        .expect("cell")
}

#[allow(clippy::too_many_arguments)]
fn render(
    args: &Args,
    handoff: &[Handoff],
    dir: &Path,
    cells: &[Cell],
    falloc: &[Cell],
    overwrite_before: f64,
    overwrite_after: f64,
    load_before: &str,
    load_after: &str,
    took: Duration,
) -> String {
    let mut md = String::new();
    let w = &mut md;
    writeln!(
        w,
        "# WAL group commit: io_uring vs portable (pwritev + fdatasync)\n"
    )
    .unwrap();
    writeln!(w, "Machine: {}.  ", machine()).unwrap();
    writeln!(w, "Storage: {}.  ", storage(dir)).unwrap();
    writeln!(
        w,
        "Load average (1/5/15 min) before / after the run: {load_before} / {load_after}. The machine is shared with other \
         engineers' builds and tests, so figures move by tens of percent between runs; every figure below is the median of \
         {} rounds, and the io_uring and portable cells of a row ran back to back in each round. The run took {:.0} s.\n",
        args.rounds,
        took.as_secs_f64()
    )
    .unwrap();
    writeln!(
        w,
        "Reproduce: `make bench-wal` (= `cargo bench -p bench --bench wal -- --secs {} --rounds {}`), which rewrites this file.\n",
        args.secs, args.rounds
    )
    .unwrap();
    writeln!(
        w,
        "Each cell: N appenders in a closed loop (append one record, wait until it is durable, repeat) for {:.1} s after {:.1} s \
         of warm-up, default options (64 MiB zero-filled segments, 16 MiB queue bound, 50 µs spins). Appenders are either OS \
         threads calling `Wal::append_wait` (which writes the batch itself when no write is in progress), or tokio tasks awaiting the ticket on a 2-worker runtime (a gRPC server's \
         clients are tasks). *To durable* is measured by the appender, from the `append` call until the wait returns. \
         *WAL write+fsync* is the writer's own duration of one batch's write and fdatasync (the `fsync_ns` metric). \
         *Raw fdatasync* is the device without the WAL, measured around the cell (150 samples right before it, 150 right \
         after): sequential `pwrite`s of the record size into a zero-filled file, each followed by `fdatasync`. For reference, rewriting one 4 KiB block in \
         place + fdatasync (results/btree.md's definition) took a median of {overwrite_before:.0} µs before the run and \
         {overwrite_after:.0} µs after it.\n",
        args.secs, args.warmup_secs
    )
    .unwrap();
    for model in [Model::Threads, Model::Tasks] {
        writeln!(w, "## Appenders as {}\n", model.name()).unwrap();
        writeln!(
            w,
            "| record | appenders | path | records/s | MB/s | fsyncs/s | records/fsync | p50 to durable | p99 to durable | WAL write+fsync p50 | raw fdatasync p50 / p99 |"
        )
        .unwrap();
        writeln!(
            w,
            "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        )
        .unwrap();
        for size in SIZES {
            for appenders in APPENDERS {
                for path in [IoPath::IoUring, IoPath::Portable] {
                    let c = find(cells, model, path, size, appenders);
                    writeln!(
                        w,
                        "| {} B | {} | {} | {} | {:.1} | {} | {:.1} | {} | {} | {} | {} / {} |",
                        size,
                        appenders,
                        path.name(),
                        fmt_rate(c.records_per_s),
                        c.mb_per_s,
                        fmt_rate(c.fsyncs_per_s),
                        c.records_per_fsync,
                        fmt_us(c.ttd_p50_us),
                        fmt_us(c.ttd_p99_us),
                        fmt_us(c.wal_fsync_p50_us),
                        fmt_us(c.raw_p50_us),
                        fmt_us(c.raw_p99_us)
                    )
                    .unwrap();
                }
            }
        }
        writeln!(w).unwrap();
    }
    writeln!(w, "## io_uring's extra hand-off, without the WAL\n").unwrap();
    writeln!(
        w,
        "One 256-byte write made durable, 500 times each way, interleaved sample by sample: `pwrite` + `fdatasync` \
         on the calling thread, and an io_uring `WRITE` linked to `FSYNC(DATASYNC)` waited for with \
         `io_uring_enter`. Linux runs the fsync on an io-wq kernel worker, so the io_uring way has one more thread \
         hand-off; with two threads spinning on the two cores meanwhile (as many appenders do), that worker waits \
         for a CPU.\n"
    )
    .unwrap();
    writeln!(w, "| CPU hogs | pwrite + fdatasync p50 / p99 | io_uring write → fsync p50 / p99 | io_uring ÷ sync, p50 |").unwrap();
    writeln!(w, "| ---: | ---: | ---: | ---: |").unwrap();
    for (hogs, (a, b, c, d)) in handoff {
        writeln!(
            w,
            "| {hogs} | {} / {} | {} / {} | {:.2}× |",
            fmt_us(*a),
            fmt_us(*b),
            fmt_us(*c),
            fmt_us(*d),
            c / a
        )
        .unwrap();
    }
    writeln!(w).unwrap();
    writeln!(w, "## Zero-filled vs fallocated segments\n").unwrap();
    writeln!(w, "Segments preallocated with `fallocate` only (etcd's choice: unwritten extents, so the first fdatasync after \
         each write also commits the extent conversion), io_uring, threads, 256 B, one round:\n").unwrap();
    writeln!(w, "| appenders | records/s | fsyncs/s | p50 to durable | p99 to durable | raw fdatasync p50 | zero-filled: p50 to durable (table above) |").unwrap();
    writeln!(w, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |").unwrap();
    for c in falloc {
        let z = find(cells, Model::Threads, IoPath::IoUring, 256, c.appenders);
        writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} |",
            c.appenders,
            fmt_rate(c.records_per_s),
            fmt_rate(c.fsyncs_per_s),
            fmt_us(c.ttd_p50_us),
            fmt_us(c.ttd_p99_us),
            fmt_us(c.raw_p50_us),
            fmt_us(z.ttd_p50_us)
        )
        .unwrap();
    }

    writeln!(w, "\n## Targets of issue 3, read from this run\n").unwrap();
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    for model in [Model::Threads, Model::Tasks] {
        writeln!(w, "Appenders as {}:\n", model.name()).unwrap();
        for path in [IoPath::IoUring, IoPath::Portable] {
            for size in SIZES {
                let c = find(cells, model, path, size, 1);
                let r = c.ttd_p50_us / c.raw_p50_us;
                writeln!(
                    w,
                    "- 1 appender, {size} B, {}: p50 to durable {} = {r:.2}× raw fdatasync ({}) — target ≤ 1.3×: {}",
                    path.name(),
                    fmt_us(c.ttd_p50_us),
                    fmt_us(c.raw_p50_us),
                    verdict(r <= 1.3)
                )
                .unwrap();
            }
        }
        for path in [IoPath::IoUring, IoPath::Portable] {
            let one = find(cells, model, path, 256, 1);
            let many = find(cells, model, path, 256, 256);
            let x = many.records_per_s / one.records_per_s;
            let p99 = many.ttd_p99_us / many.raw_p50_us;
            writeln!(
                w,
                "- 256 appenders × 256 B, {}: {} records/s = {x:.1}× the 1-appender throughput (target ≥ 30×: {}); p99 to durable {} = {p99:.1}× raw fdatasync p50 (target ≤ 4×: {}; against the device's own p99 of {} in the same cell: {:.1}×)",
                path.name(),
                fmt_rate(many.records_per_s),
                verdict(x >= 30.0),
                fmt_us(many.ttd_p99_us),
                verdict(p99 <= 4.0),
                fmt_us(many.raw_p99_us),
                many.ttd_p99_us / many.raw_p99_us
            )
            .unwrap();
        }
        writeln!(
            w,
            "- io_uring ≥ portable, records/s io_uring ÷ portable by appenders:"
        )
        .unwrap();
        for size in SIZES {
            let mut parts = Vec::new();
            for appenders in APPENDERS {
                let u = find(cells, model, IoPath::IoUring, size, appenders);
                let p = find(cells, model, IoPath::Portable, size, appenders);
                let r = u.records_per_s / p.records_per_s;
                parts.push(format!(
                    "{appenders}: {r:.2}×{}",
                    if r >= 1.0 { "" } else { " (below)" }
                ));
            }
            writeln!(w, "  - {size} B — {}", parts.join(", ")).unwrap();
        }
        writeln!(w).unwrap();
    }
    notes(w, cells, handoff);
    md
}

/// Explanations, with this run's figures.
fn notes(w: &mut String, cells: &[Cell], handoff: &[Handoff]) {
    let ratio_of = |hogs: usize| {
        let v: Vec<f64> = handoff
            .iter()
            .filter(|h| h.0 == hogs)
            .map(|h| h.1 .2 / h.1 .0)
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    writeln!(w, "## Notes\n").unwrap();
    for model in [Model::Threads, Model::Tasks] {
        let mut below = Vec::new();
        for size in SIZES {
            for appenders in APPENDERS {
                let u = find(cells, model, IoPath::IoUring, size, appenders);
                let p = find(cells, model, IoPath::Portable, size, appenders);
                if u.records_per_s < p.records_per_s {
                    below.push(format!(
                        "{size} B × {appenders} ({:.2}×)",
                        u.records_per_s / p.records_per_s
                    ));
                }
            }
        }
        writeln!(
            w,
            "- **io_uring vs portable, {}**: io_uring is below the portable path in {} of 12 cells{}.",
            model.name(),
            below.len(),
            if below.is_empty() { String::new() } else { format!(": {}", below.join(", ")) }
        )
        .unwrap();
    }
    writeln!(
        w,
        "- **Why io_uring is not ahead everywhere.** A WAL batch is a buffered write plus an fdatasync, and io_uring \
         runs the fsync on an io-wq worker thread: in this run, without the WAL, the linked write → fsync took \
         {:.2}× the time of `pwrite` + `fdatasync` (p50) on idle CPUs and {:.2}× with two CPU hogs (table above). \
         Every batch pays that hand-off once. What io_uring can buy is overlap: the writer thread may tell the \
         previous batch's appenders while the next batch is in flight. It does so only when telling them costs \
         more than an fsync (measured as it runs), because overlapping splits closed-loop appenders into two \
         groups that alternate, each waiting for two fsyncs; and on two cores the notifications compete for the \
         same CPUs as the appenders, so the overlap buys little. Share of batches written by appender threads \
         in `append_wait` themselves (threads, 256 B, io_uring), by appenders: {}; the rest are written by the \
         writer thread. On this 2-core machine the appenders, the writer, the io-wq worker and the other \
         engineers' builds compete for two CPUs, and cell-to-cell noise (see the raw fdatasync columns) is as \
         large as the differences. What would change it: writes that complete without a worker, i.e. \
         sector-aligned `O_DIRECT` writes with `RWF_DSYNC` on a device with FUA (this virtio disk reports none, so \
         the kernel adds a flush), or more cores, so that the overlap runs beside the appenders rather than \
         in their place.",
        ratio_of(0),
        ratio_of(2),
        APPENDERS
            .iter()
            .map(|&n| format!("{n}: {:.0} %", find(cells, Model::Threads, IoPath::IoUring, 256, n).leader_share * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    )
    .unwrap();
    writeln!(
        w,
        "- **1 appender.** A thread in `append_wait` that finds no write in progress writes its batch itself, so a \
         lone appender pays no thread hand-off: its time to durable is the device's write + fdatasync plus the \
         framing (on io_uring, plus the io-wq hand-off). A tokio task cannot block, so its batch goes through the \
         writer thread and it pays a waker round trip to its runtime."
    )
    .unwrap();
    writeln!(
        w,
        "- **Scaling and p99.** The 30× target compares 256 appenders with one; throughput per appender is bounded \
         by one fdatasync, so the ratio is the batching factor (records per fsync) times how well the fsync \
         rate holds. OS threads cost a context switch per record to wake; 256 and 1024 threads on two cores \
         measure the scheduler more than the WAL, which is why the tokio-task rows matter for a server. The p99 \
         target is stated against the device's median; on this shared disk the device's own p99 (raw column) is \
         tens of times its median, and a batch that waits behind one slow fdatasync shows it in the WAL's p99."
    )
    .unwrap();
}
