//! Replication benchmark: three nodes on loopback TCP, each with its own
//! engine::wal on the real disk, replicating the KV model. Concurrent
//! proposers (1, 16, 256) submit puts to the leader and wait for each to be
//! committed and applied; the matrix compares `max_inflight_msgs` 1 against
//! 256 (pipelining) and parallel leader persistence on and off.
//!
//! Cells run round-robin for several rounds, each on a fresh cluster, and
//! the table reports per-cell medians, so slow drift of a shared machine
//! spreads over all cells instead of biasing one. Writes a Markdown table
//! (`--out`) with the command that produced it and the raw fdatasync
//! latency of the same disk, measured in the same run.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use raftlog::cluster::{member_id, InitialCluster};
use raftlog::kv::{KvCommand, SharedKv};
use raftlog::raft::StateRole;
use raftlog::{Config, Node, NodeConfig};

#[derive(Parser, Debug, Clone)]
#[command(about = "raftlog replication benchmark (3 nodes on loopback)")]
struct Args {
    /// Measured seconds per cell and round.
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// Unmeasured seconds before each measurement.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    proposers: Vec<usize>,
    #[arg(long, value_delimiter = ',', default_value = "1,256")]
    inflight: Vec<usize>,
    /// Parallel leader persistence settings to compare.
    #[arg(long, value_delimiter = ',', default_value = "on,off")]
    persist: Vec<String>,
    #[arg(long, default_value_t = 256)]
    value_bytes: usize,
    /// `max_size_per_msg` values (KiB) to compare.
    #[arg(long, value_delimiter = ',', default_value = "1024")]
    msg_kib: Vec<u64>,
    /// Emulated one-way network delays (ms) to compare; 0 is plain loopback.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    delay_ms: Vec<f64>,
    /// Where the nodes' data directories go (must be on the disk to measure).
    #[arg(long, default_value = "target/raftlog-bench")]
    dir: PathBuf,
    /// Markdown output; printed to stdout as well.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Clone, Debug)]
struct Cell {
    delay_ms: f64,
    msg_kib: u64,
    proposers: usize,
    inflight: usize,
    parallel: bool,
}

#[derive(Clone, Debug, Default)]
struct Sample {
    ops_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    leader_fsyncs_per_sec: f64,
    entries_per_leader_fsync: f64,
    follower_fsyncs_per_sec: f64,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_cluster(dir: &Path, cell: &Cell) -> anyhow::Result<(Vec<Node>, usize)> {
    let token = "raftlog-bench";
    let names = ["a", "b", "c"];
    let urls: Vec<String> = names
        .iter()
        .map(|_| format!("http://127.0.0.1:{}", free_port()))
        .collect();
    let spec: Vec<String> = names
        .iter()
        .zip(&urls)
        .map(|(n, u)| format!("{n}={u}"))
        .collect();
    let cluster = InitialCluster::parse(&spec.join(","), token)?;
    let mut nodes = Vec::new();
    for (name, url) in names.iter().zip(&urls) {
        let id = member_id(token, name);
        let mut raft = Config::new(id);
        raft.tick_interval = Duration::from_millis(50);
        raft.election_tick = 20;
        raft.max_inflight_msgs = cell.inflight;
        raft.max_size_per_msg = cell.msg_kib << 10;
        raft.parallel_leader_persist = cell.parallel;
        // No snapshots during a measurement.
        raft.snapshot_interval_entries = 10_000_000;
        let mut cfg = NodeConfig::new(
            raft,
            dir.join(name),
            cluster.clone(),
            raftlog::cluster::url_host_port(url),
        );
        cfg.wal.segment_bytes = 256 << 20;
        cfg.emulated_one_way_delay = Duration::from_secs_f64(cell.delay_ms / 1000.0);
        nodes.push(Node::open(cfg, SharedKv::new())?);
    }
    // Elect the first node so every cell measures the same topology.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(l) = nodes
            .iter()
            .position(|n| n.status().role == StateRole::Leader)
        {
            // Let the new leader commit its first entry.
            std::thread::sleep(Duration::from_millis(200));
            return Ok((nodes, l));
        }
        if Instant::now() > deadline {
            bail!("no leader after 20 s");
        }
        let _ = nodes[0].campaign();
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run_cell(args: &Args, cell: &Cell, dir: &Path) -> anyhow::Result<Sample> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    let (nodes, leader) = start_cluster(dir, cell)?;
    let nodes = Arc::new(nodes);
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let value = vec![b'v'; args.value_bytes];
    let mut threads = Vec::new();
    for p in 0..cell.proposers {
        let (nodes, stop, measuring, hist, value) = (
            Arc::clone(&nodes),
            Arc::clone(&stop),
            Arc::clone(&measuring),
            Arc::clone(&hist),
            value.clone(),
        );
        threads.push(std::thread::spawn(move || -> u64 {
            let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let mut done = 0u64;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let cmd = KvCommand::Put {
                    key: format!("p{p}-{}", i % 1000).into_bytes(),
                    value: value.clone(),
                }
                .encode();
                let t0 = Instant::now();
                let ok = nodes[leader]
                    .propose(cmd)
                    .and_then(|w| w.wait_timeout(Duration::from_secs(10)))
                    .is_ok();
                if ok && measuring.load(Ordering::Relaxed) {
                    local
                        .record(t0.elapsed().as_micros().max(1) as u64)
                        .unwrap();
                    done += 1;
                }
            }
            hist.lock().unwrap().add(&local).unwrap();
            done
        }));
    }
    std::thread::sleep(Duration::from_secs_f64(args.warmup_secs));
    let before: Vec<_> = nodes.iter().map(|n| n.wal_metrics()).collect();
    measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(args.secs));
    measuring.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let after: Vec<_> = nodes.iter().map(|n| n.wal_metrics()).collect();
    stop.store(true, Ordering::Relaxed);
    let ops: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let hist = hist.lock().unwrap();
    let fsyncs = |i: usize| (after[i].fsyncs - before[i].fsyncs) as f64;
    let records = |i: usize| (after[i].records - before[i].records) as f64;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let sample = Sample {
        ops_per_sec: ops as f64 / elapsed,
        p50_us: hist.value_at_quantile(0.5) as f64,
        p99_us: hist.value_at_quantile(0.99) as f64,
        leader_fsyncs_per_sec: fsyncs(leader) / elapsed,
        entries_per_leader_fsync: if fsyncs(leader) > 0.0 {
            records(leader) / fsyncs(leader)
        } else {
            0.0
        },
        follower_fsyncs_per_sec: followers.iter().map(|f| fsyncs(*f)).sum::<f64>()
            / followers.len() as f64
            / elapsed,
    };
    match Arc::try_unwrap(nodes) {
        Ok(nodes) => drop(nodes),
        Err(_) => bail!("proposer threads still hold the nodes"),
    }
    let _ = fs::remove_dir_all(dir);
    Ok(sample)
}

/// Median of 4 KiB write + fdatasync on the benchmark's disk.
fn raw_fdatasync_us(dir: &Path) -> anyhow::Result<f64> {
    fs::create_dir_all(dir)?;
    let path = dir.join("fdatasync-probe");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    f.write_all(&vec![0u8; 1 << 20])?;
    f.sync_all()?;
    let mut samples = Vec::new();
    let buf = vec![7u8; 4096];
    let end = Instant::now() + Duration::from_secs(1);
    let mut off = 0u64;
    while Instant::now() < end || samples.len() < 50 {
        use std::os::unix::fs::FileExt;
        let t0 = Instant::now();
        f.write_all_at(&buf, off % (1 << 20))?;
        f.sync_data()?;
        samples.push(t0.elapsed().as_secs_f64() * 1e6);
        off += 4096;
    }
    drop(f);
    fs::remove_file(&path)?;
    Ok(median(&mut samples))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut cells = Vec::new();
    for &delay_ms in &args.delay_ms {
        for &msg_kib in &args.msg_kib {
            for persist in &args.persist {
                let parallel = match persist.as_str() {
                    "on" => true,
                    "off" => false,
                    p => bail!("--persist {p}: expected on or off"),
                };
                for &inflight in &args.inflight {
                    for &proposers in &args.proposers {
                        cells.push(Cell {
                            delay_ms,
                            msg_kib,
                            proposers,
                            inflight,
                            parallel,
                        });
                    }
                }
            }
        }
    }
    let fsync_us = raw_fdatasync_us(&args.dir).context("measuring fdatasync")?;
    eprintln!("raw 4 KiB write + fdatasync median: {fsync_us:.0} µs");
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); cells.len()];
    for round in 0..args.rounds {
        for (i, cell) in cells.iter().enumerate() {
            let s = run_cell(&args, cell, &args.dir.join("run"))?;
            eprintln!(
                "round {round} {cell:?}: {:.0} ops/s p50 {:.0} µs p99 {:.0} µs, leader {:.0} fsyncs/s ({:.1} entries each)",
                s.ops_per_sec, s.p50_us, s.p99_us, s.leader_fsyncs_per_sec, s.entries_per_leader_fsync
            );
            samples[i].push(s);
        }
    }
    let fsync_after = raw_fdatasync_us(&args.dir)?;
    let med =
        |i: usize, f: fn(&Sample) -> f64| median(&mut samples[i].iter().map(f).collect::<Vec<_>>());
    let persist_name = |parallel: bool| if parallel { "parallel" } else { "before send" };
    let same = |a: &Cell, b: &Cell| {
        a.delay_ms == b.delay_ms && a.msg_kib == b.msg_kib && a.proposers == b.proposers
    };
    let mut md = String::new();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    md.push_str(
        "| one-way delay | max msg | leader persist | max_inflight | proposers | ops/s | p50 µs | p99 µs \
         | leader fsyncs/s | entries/leader fsync | follower fsyncs/s |\n",
    );
    md.push_str("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (i, c) in cells.iter().enumerate() {
        md.push_str(&format!(
            "| {} ms | {} KiB | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.0} |\n",
            c.delay_ms,
            c.msg_kib,
            persist_name(c.parallel),
            c.inflight,
            c.proposers,
            med(i, |s| s.ops_per_sec),
            med(i, |s| s.p50_us),
            med(i, |s| s.p99_us),
            med(i, |s| s.leader_fsyncs_per_sec),
            med(i, |s| s.entries_per_leader_fsync),
            med(i, |s| s.follower_fsyncs_per_sec),
        ));
    }
    md.push_str("\nPipelining (max_inflight 256 ÷ 1, throughput medians):\n\n");
    md.push_str("| one-way delay | max msg | leader persist | proposers | ×throughput |\n|---:|---:|---|---:|---:|\n");
    for (i, c) in cells.iter().enumerate().filter(|(_, c)| c.inflight == 1) {
        if let Some(j) = cells
            .iter()
            .position(|d| d.inflight != 1 && d.parallel == c.parallel && same(c, d))
        {
            let ratio = med(j, |s| s.ops_per_sec) / med(i, |s| s.ops_per_sec);
            md.push_str(&format!(
                "| {} ms | {} KiB | {} | {} | {ratio:.2} |\n",
                c.delay_ms,
                c.msg_kib,
                persist_name(c.parallel),
                c.proposers
            ));
        }
    }
    md.push_str("\nParallel leader persistence (on ÷ off, throughput medians):\n\n");
    md.push_str("| one-way delay | max msg | max_inflight | proposers | ×throughput |\n|---:|---:|---:|---:|---:|\n");
    for (i, c) in cells.iter().enumerate().filter(|(_, c)| c.parallel) {
        if let Some(j) = cells
            .iter()
            .position(|d| !d.parallel && d.inflight == c.inflight && same(c, d))
        {
            let ratio = med(i, |s| s.ops_per_sec) / med(j, |s| s.ops_per_sec);
            md.push_str(&format!(
                "| {} ms | {} KiB | {} | {} | {ratio:.2} |\n",
                c.delay_ms, c.msg_kib, c.inflight, c.proposers
            ));
        }
    }
    md.push_str(&format!(
        "\nRaw 4 KiB write + fdatasync on the same disk: median {fsync_us:.0} µs before the matrix, \
         {fsync_after:.0} µs after. {} rounds, {} s measured per cell and round after {} s of warm-up, \
         {} B values.\n\nCommand: `{command}`\n",
        args.rounds, args.secs, args.warmup_secs, args.value_bytes
    ));
    println!("{md}");
    if let Some(out) = &args.out {
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent)?;
        }
        File::create(out)?.write_all(md.as_bytes())?;
    }
    Ok(())
}
