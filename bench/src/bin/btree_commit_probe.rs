//! Where a B+tree commit's time goes, on a file fragmented by random
//! updates: pages and write runs per commit, latency with one fdatasync, two
//! (bbolt's protocol) and none (the CPU alone), the device's own fdatasync,
//! open time, and the file's size. Complements the criterion comparison
//! (`make bench-btree`) with the numbers that explain it.
//!
//! Usage: btree-commit-probe [--dir DIR] [--keys N] [--commits N]
//!
//! Loads `--keys` keys (24-byte keys, 150-byte values, random order, 100 k
//! per commit), applies 200 batches of 1000 random updates, then measures
//! `--commits` one-key commits in each sync mode, interleaved in rounds, and
//! 50 batches of 1000 updates with sync off.

use anyhow::Result;
use clap::Parser;
use engine::btree::{Db, Options, SyncMode};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Directory for the database (on the disk being measured, not tmpfs).
    #[arg(long, default_value = "target/bench-data/commit-probe")]
    dir: PathBuf,
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// One-key commits measured per sync mode and round.
    #[arg(long, default_value_t = 300)]
    commits: u32,
    /// Reuse the database a previous run left (with --keep) instead of
    /// loading a new one: for profiling the measured part alone.
    #[arg(long)]
    reuse: bool,
    /// Keep the database at the end.
    #[arg(long)]
    keep: bool,
    /// Only the batches of 1000 updates (sync off): for profiling.
    #[arg(long)]
    batches_only: bool,
    /// `Options::free_space_target_percent` for the measured part.
    #[arg(long, default_value_t = 50)]
    free_space_target: u32,
    /// Only the one-key commits with sync off, this many: for profiling.
    #[arg(long)]
    nosync_commits_only: Option<u32>,
    /// Batches of 1000 updates measured (sync off).
    #[arg(long, default_value_t = 50)]
    batches: u32,
}

fn key(i: u64) -> Vec<u8> {
    format!("key/{i:020}").into_bytes()
}

/// xorshift64: deterministic, cheap.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn batch(db: &Db, rng: &mut Rng, keys: u64, puts: u64) -> Result<(u64, u64)> {
    let mut tx = db.begin_write()?;
    tx.create_bucket(b"b")?;
    for _ in 0..puts {
        tx.put(b"b", &key(rng.below(keys)), &[7u8; 150])?;
    }
    let info = tx.commit()?;
    Ok((info.pages_written, info.write_runs))
}

fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let path = args.dir.join("db");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let bulk = Options {
        sync: SyncMode::None,
        free_space_target_percent: args.free_space_target,
        ..Options::default()
    };
    if !(args.reuse && path.exists()) {
        let _ = std::fs::remove_file(&path);
        let db = Db::open(&path, bulk.clone())?;
        let started = Instant::now();
        let mut order: Vec<u64> = (0..args.keys).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for chunk in order.chunks(100_000) {
            let mut tx = db.begin_write()?;
            tx.create_bucket(b"b")?;
            for &i in chunk {
                tx.put(b"b", &key(i), &[7u8; 150])?;
            }
            tx.commit()?;
        }
        for _ in 0..200 {
            batch(&db, &mut rng, args.keys, 1000)?;
        }
        db.sync()?;
        println!(
            "loaded {} keys and applied 200 × 1000 random updates in {:.1?}",
            args.keys,
            started.elapsed()
        );
    }
    let started = Instant::now();
    let db = Db::open(&path, Options::default())?;
    let opened = started.elapsed();
    let s = db.stats()?;
    println!(
        "open: {opened:.1?} ({} commit records followed); file {} MiB, high water {} pages, {} free, tree depth {}, {} branch + {} leaf pages",
        db.recovery().records_followed,
        s.file_size_bytes >> 20,
        s.high_water,
        s.free_pages,
        s.buckets[0].depth,
        s.branch_pages,
        s.leaf_pages
    );
    drop(db);
    if args.batches_only {
        return batches(&args, &path, &mut rng, bulk);
    }
    if let Some(n) = args.nosync_commits_only {
        let db = Db::open(&path, bulk)?;
        let t = Instant::now();
        for _ in 0..n {
            let mut tx = db.begin_write()?;
            tx.put(b"b", &key(rng.below(args.keys)), &[9u8; 150])?;
            tx.commit()?;
        }
        println!(
            "{n} one-key commits, sync off: {:.1?} each",
            t.elapsed() / n
        );
        db.sync()?;
        return Ok(());
    }

    let raw = args.dir.join("fdatasync-probe");
    std::fs::write(&raw, vec![0u8; 1 << 20])?;
    let f = std::fs::OpenOptions::new().write(true).open(&raw)?;
    f.sync_all()?;
    let mut samples = Vec::new();
    for _ in 0..200 {
        f.write_all_at(&[1u8; 4096], 4096 * 7)?;
        let t = Instant::now();
        f.sync_data()?;
        samples.push(t.elapsed());
    }
    samples.sort();
    println!(
        "raw fdatasync of one 4 KiB block: median {:.1?}",
        samples[100]
    );
    drop(f);
    std::fs::remove_file(&raw)?;

    // The last round writes a meta page with every commit (checkpoint
    // interval 1), as bbolt does: the commit point at page 0 or 1, away
    // from the data.
    for round in 0..4 {
        let interval = if round == 3 { 1 } else { 64 };
        for mode in [SyncMode::Single, SyncMode::Double, SyncMode::None] {
            let db = Db::open(
                &path,
                Options {
                    sync: mode,
                    checkpoint_interval_commits: interval,
                    ..bulk.clone()
                },
            )?;
            let (mut pages, mut runs, mut fsyncs) = (0, 0, 0);
            let mut times: Vec<Duration> = Vec::new();
            for _ in 0..args.commits {
                let t = Instant::now();
                let mut tx = db.begin_write()?;
                tx.put(b"b", &key(rng.below(args.keys)), &[9u8; 150])?;
                let info = tx.commit()?;
                times.push(t.elapsed());
                pages += info.pages_written;
                runs += info.write_runs;
                fsyncs += info.fsyncs as u64;
            }
            times.sort();
            let n = args.commits as f64;
            println!(
                "round {round} {mode:?}, checkpoint every {interval}: one-key commit median {:.1?}, p90 {:.1?}; per commit {:.1} pages in {:.2} runs, {:.0} fdatasync",
                times[times.len() / 2],
                times[times.len() * 9 / 10],
                pages as f64 / n,
                runs as f64 / n,
                fsyncs as f64 / n
            );
            db.sync()?;
        }
    }

    batches(&args, &path, &mut rng, bulk)
}

fn batches(args: &Args, path: &std::path::Path, rng: &mut Rng, bulk: Options) -> Result<()> {
    let db = Db::open(path, bulk)?;
    let (mut pages, mut runs) = (0, 0);
    let t = Instant::now();
    let n = args.batches.max(1);
    for _ in 0..n {
        let (p, r) = batch(&db, rng, args.keys, 1000)?;
        pages += p;
        runs += r;
    }
    let per = t.elapsed() / n;
    println!(
        "batch of 1000 random updates, sync off: {per:.1?} per commit; {} pages in {} runs per commit",
        pages / n as u64,
        runs / n as u64
    );
    let t = Instant::now();
    for _ in 0..50 {
        let mut tx = db.begin_write()?;
        for _ in 0..1000 {
            tx.put(b"b", &key(rng.below(args.keys)), &[9u8; 150])?;
        }
        tx.rollback();
    }
    println!(
        "the same 1000 updates rolled back instead: {:.1?} (the commit's share is the difference)",
        t.elapsed() / 50
    );
    db.sync()?;
    let s = db.stats()?;
    println!(
        "file {} MiB, high water {} pages, {} free ({:.0} %)",
        s.file_size_bytes >> 20,
        s.high_water,
        s.free_pages,
        s.free_pages as f64 * 100.0 / s.high_water as f64
    );
    drop(db);
    if !args.keep {
        std::fs::remove_file(path)?;
    }
    Ok(())
}
