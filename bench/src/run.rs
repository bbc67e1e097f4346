//! `ferrobench run`: one workload against a list of etcd v3 endpoints (or the
//! embedded engine), with a terminal summary and optional results files.

use crate::driver::{self, RunOutcome};
use crate::grpc::GrpcTarget;
use crate::recorder::hgrm;
use crate::results::{cell_id, Cell, Repetition, Results, SystemInfo, SCHEMA};
use crate::target::Target;
use crate::workload::{Consistency, Distribution, Load, Workload, WorkloadKind};
use clap::Args;
use std::path::{Path, PathBuf};

/// Flags modeled on etcd's `benchmark` tool.
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Comma-separated etcd v3 endpoints (host:port).
    #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    #[arg(long, default_value = "put")]
    pub workload: WorkloadKind,
    /// gRPC connections.
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Measured operations (after warm-up).
    #[arg(long)]
    pub total: Option<u64>,
    /// Measured seconds (after warm-up).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Warm-up seconds, run but not recorded.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Open loop at this many requests per second (coordinated omission
    /// corrected); closed loop when absent.
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    #[arg(long, default_value_t = 10_000)]
    pub key_space_size: u64,
    #[arg(long)]
    pub sequential_keys: bool,
    /// l (linearizable) or s (serializable).
    #[arg(long, default_value = "l")]
    pub consistency: Consistency,
    /// Range: 0 reads one key, N > 0 reads a 100-key prefix with limit N.
    #[arg(long, default_value_t = 0)]
    pub range_limit: u64,
    #[arg(long, default_value_t = 4)]
    pub txn_ops: usize,
    #[arg(long, default_value_t = 0.5)]
    pub read_ratio: f64,
    #[arg(long)]
    pub distribution: Option<Distribution>,
    #[arg(long, default_value_t = 10)]
    pub watchers: usize,
    #[arg(long, default_value_t = 1)]
    pub watch_streams: usize,
    /// Skip writing the key space before read/delete workloads.
    #[arg(long)]
    pub no_preload: bool,
    /// Write results.json and .hgrm files here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No live progress line.
    #[arg(long)]
    pub no_progress: bool,
}

impl RunArgs {
    pub fn workload(&self) -> Workload {
        Workload {
            kind: self.workload,
            key_size: self.key_size,
            val_size: self.val_size,
            key_space_size: self.key_space_size,
            sequential_keys: self.sequential_keys,
            consistency: self.consistency,
            range_limit: self.range_limit,
            txn_ops: self.txn_ops,
            read_ratio: self.read_ratio,
            distribution: self.distribution,
            watchers: self.watchers,
            watch_streams: self.watch_streams,
        }
    }

    pub fn load(&self) -> Load {
        let duration_s = match (self.total, self.duration) {
            (None, None) => Some(10.0),
            (_, d) => d,
        };
        Load {
            conns: self.conns,
            clients: self.clients,
            total: self.total,
            duration_s,
            warmup_s: self.warmup,
            rate: self.rate,
        }
    }
}

/// Preloads when the workload needs it, then runs it.
pub async fn run_target<T: Target>(
    target: &T,
    wl: &Workload,
    load: &Load,
    preload: bool,
    progress: bool,
) -> anyhow::Result<RunOutcome> {
    if preload && wl.kind.needs_preload() {
        driver::preload(target, wl, load.clients.min(64)).await?;
    }
    driver::run(target, wl, load, progress).await
}

/// Writes one `.hgrm` per operation of a repetition under `dir/hgrm/` and
/// records the relative paths in `rep`.
pub fn write_hgrms(
    dir: &Path,
    stem: &str,
    outcome: &RunOutcome,
    rep: &mut Repetition,
) -> anyhow::Result<()> {
    let sub = dir.join("hgrm");
    std::fs::create_dir_all(&sub)?;
    for (op, r) in &outcome.recorders.ops {
        let name = format!("{stem}-{op}.hgrm");
        std::fs::write(sub.join(&name), hgrm(&r.latency_ns))?;
        if let Some(o) = rep.ops.get_mut(op) {
            o.hgrm = format!("hgrm/{name}");
        }
    }
    Ok(())
}

pub fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .split('_')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

pub async fn main(args: RunArgs) -> anyhow::Result<()> {
    let wl = args.workload();
    let load = args.load();
    wl.validate().map_err(anyhow::Error::msg)?;
    load.validate().map_err(anyhow::Error::msg)?;
    let target = GrpcTarget::connect(&args.endpoints, args.conns).await?;
    let version = match crate::grpc::status(&args.endpoints[0]).await {
        Ok(s) => s.version,
        Err(_) => "unknown".into(),
    };
    let outcome = run_target(&target, &wl, &load, !args.no_preload, !args.no_progress).await?;
    let mut rep = Repetition::from_outcome(0, &outcome);
    let system = SystemInfo {
        name: "endpoints".into(),
        kind: "endpoints".into(),
        nodes: args.endpoints.len(),
        version,
        command: args.endpoints.join(","),
        baseline: None,
    };
    let out_dir = args.out.clone();
    if let Some(dir) = &out_dir {
        write_hgrms(dir, &safe_name(&wl.label()), &outcome, &mut rep)?;
    }
    let cell = Cell {
        id: cell_id(&wl, &load),
        system: system.name.clone(),
        workload: wl,
        load,
        repetitions: vec![rep],
    };
    let data_dir = out_dir.clone().unwrap_or_else(std::env::temp_dir);
    let results = Results {
        schema: SCHEMA.into(),
        campaign: "run".into(),
        created: crate::machine::utc_now().0,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: crate::machine::collect(&data_dir),
        systems: vec![system],
        cells: vec![cell],
        notes: vec![],
    };
    print!("{}", crate::summary::terminal(&results));
    if let Some(dir) = &out_dir {
        results.save(dir)?;
        eprintln!("wrote {}", dir.join("results.json").display());
    }
    Ok(())
}
