//! Renders the storage engine comparison (criterion's output of
//! `cargo bench -p bench --bench btree`) as results/btree.md: one table, the
//! ratios the targets are stated in, the machine, the device's own
//! fdatasync latency measured now, and the command that reproduces it.
//!
//! Usage: btree-table <criterion dir> <output.md>

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Median time per iteration and elements per iteration of one benchmark.
struct Measured {
    median_ns: f64,
    low_ns: f64,
    high_ns: f64,
    elements: f64,
}

impl Measured {
    fn ops_per_s(&self) -> f64 {
        self.elements / (self.median_ns / 1e9)
    }
}

fn read(dir: &Path, group: &str, id: &str) -> Result<Option<Measured>> {
    let base = dir.join(group).join(id);
    let est = base.join("new/estimates.json");
    if !est.exists() {
        return Ok(None);
    }
    let est: Value = serde_json::from_str(&std::fs::read_to_string(&est)?)?;
    let bench: Value =
        serde_json::from_str(&std::fs::read_to_string(base.join("new/benchmark.json"))?)?;
    let median = &est["median"];
    let f = |v: &Value| v.as_f64().context("number expected in criterion output");
    let elements = bench["throughput"]["Elements"].as_f64().unwrap_or(1.0);
    Ok(Some(Measured {
        median_ns: f(&median["point_estimate"])?,
        low_ns: f(&median["confidence_interval"]["lower_bound"])?,
        high_ns: f(&median["confidence_interval"]["upper_bound"])?,
        elements,
    }))
}

fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M/s", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k/s", v / 1e3)
    } else {
        format!("{v:.0} /s")
    }
}

fn fmt_time(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// The device's fdatasync latency: median of 200 rewrites of one 4 KiB block.
fn fdatasync_median_us(dir: &Path) -> Result<f64> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("fdatasync-probe");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let block = vec![7u8; 4096];
    file.write_all_at(&block, 0)?;
    file.sync_all()?;
    let mut samples = Vec::with_capacity(200);
    for _ in 0..200 {
        file.write_all_at(&block, 0)?;
        let started = Instant::now();
        file.sync_data()?;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    std::fs::remove_file(&path)?;
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
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

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        bail!("usage: btree-table <criterion dir> <output.md>");
    }
    let dir = PathBuf::from(&args[1]);
    let out = PathBuf::from(&args[2]);
    let engines = ["btree", "redb", "lmdb"];
    let rows = [
        ("random_get", "random point read (1 key)"),
        ("random_range_100", "random range read (100 keys)"),
        (
            "batched_write_1000",
            "batched random writes (1000 per durable commit), keys",
        ),
        ("durable_commit", "individual durable commit (1 put)"),
        (
            "bulk_load",
            "bulk load, random order, 100 k keys per commit, keys",
        ),
    ];
    let fsync_us = fdatasync_median_us(&dir.join("../bench-data"))?;
    let mut md = String::new();
    writeln!(md, "# Storage engines: ferrokv B+tree vs redb vs LMDB\n")?;
    writeln!(md, "Machine: {}. Raw fdatasync of one 4 KiB block on the same disk, measured in this run: median {fsync_us:.0} µs.\n", machine())?;
    writeln!(md, "Reproduce: `make bench` (or `cargo bench -p bench --bench btree -- --quick` then `cargo run --release -p bench --bin btree-table -- target/criterion results/btree.md`). Key count: `BTREE_BENCH_KEYS` (default 1 000 000), 24-byte keys, 150-byte values, page cache warm, all engines through the same `engine::backend` trait.\n")?;
    writeln!(md, "Throughput from criterion's median time per iteration (95% interval of the median in brackets).\n")?;
    writeln!(
        md,
        "| benchmark | btree | redb | lmdb | btree / lmdb | btree / redb |"
    )?;
    writeln!(md, "| --- | --- | --- | --- | --- | --- |")?;
    let mut ratios = std::collections::HashMap::new();
    for (group, label) in rows {
        let m: Vec<Option<Measured>> = engines
            .iter()
            .map(|e| read(&dir, group, e))
            .collect::<Result<_>>()?;
        if m.iter().all(Option::is_none) {
            continue;
        }
        let cell = |x: &Option<Measured>| match x {
            Some(x) => format!(
                "{} ({}) [{}–{}]",
                fmt_rate(x.ops_per_s()),
                fmt_time(x.median_ns / x.elements),
                fmt_time(x.low_ns / x.elements),
                fmt_time(x.high_ns / x.elements)
            ),
            None => "—".into(),
        };
        let ratio = |a: &Option<Measured>, b: &Option<Measured>| match (a, b) {
            (Some(a), Some(b)) => Some(a.ops_per_s() / b.ops_per_s()),
            _ => None,
        };
        let r_lmdb = ratio(&m[0], &m[2]);
        let r_redb = ratio(&m[0], &m[1]);
        ratios.insert(group, (r_lmdb, r_redb));
        let show = |r: Option<f64>| r.map_or("—".to_string(), |r| format!("{r:.2}×"));
        writeln!(
            md,
            "| {label} | {} | {} | {} | {} | {} |",
            cell(&m[0]),
            cell(&m[1]),
            cell(&m[2]),
            show(r_lmdb),
            show(r_redb)
        )?;
    }
    let one = read(&dir, "durable_commit", "btree")?;
    let two = read(&dir, "durable_commit", "btree-2fsync")?;
    writeln!(md)?;
    if let (Some(one), Some(two)) = (&one, &two) {
        writeln!(md, "Commit protocol: one-fsync commit {} ({} per commit), bbolt-style two-fsync commit {} ({} per commit): **{:.2}×** in favour of one fsync.\n",
            fmt_rate(one.ops_per_s()), fmt_time(one.median_ns), fmt_rate(two.ops_per_s()), fmt_time(two.median_ns), one.ops_per_s() / two.ops_per_s())?;
    }
    writeln!(md, "## Targets (read from this run)\n")?;
    let verdict = |ok: bool| if ok { "met" } else { "missed" };
    if let Some((Some(l), Some(r))) = ratios.get("random_get") {
        writeln!(md, "- random reads within 1.25× of LMDB (btree/lmdb ≥ 0.80): {l:.2} — {}; faster than redb: {r:.2}× — {}", verdict(*l >= 0.8), verdict(*r > 1.0))?;
    }
    if let Some((_, Some(r))) = ratios.get("batched_write_1000") {
        writeln!(
            md,
            "- batched writes faster than redb: {r:.2}× — {}",
            verdict(*r > 1.0)
        )?;
    }
    if let (Some(one), Some(two)) = (&one, &two) {
        let x = one.ops_per_s() / two.ops_per_s();
        writeln!(
            md,
            "- individual durable commits ≥ 1.6× faster with one fsync than with two: {x:.2}× — {}",
            verdict(x >= 1.6)
        )?;
    }
    std::fs::create_dir_all(out.parent().unwrap_or(Path::new(".")))?;
    std::fs::write(&out, &md)?;
    print!("{md}");
    Ok(())
}
