//! `ferrobench campaign <spec.toml>`: systems × workloads × concurrency
//! levels × repetitions. Every repetition of every cell runs on an instance
//! started for it alone (new data dir, loopback ports chosen at run time;
//! the embedded engine: a new store), which is stopped afterwards, keeping
//! its log: server CPU, peak RSS, disk writes and DB size then belong to
//! that cell, and no cell inherits the history of another. Within a
//! repetition the cells go in spec order and each runs on every system back
//! to back (the systems' order rotating from cell to cell), so drift on a
//! noisy machine falls on all systems alike. Writes
//! `<out>/<campaign>/<timestamp>/` with results.json, .hgrm files, logs,
//! summary.md and SVG plots.

use crate::embedded::EmbeddedTarget;
use crate::grpc::GrpcTarget;
use crate::results::{
    cell_id, Cell, CrossCheck, Repetition, Results, ServerStats, SystemInfo, SCHEMA,
};
use crate::run::{run_target, safe_name, write_hgrms};
use crate::system::{Running, SystemKind, SystemSpec};
use crate::target::Target;
use crate::workload::{Load, Workload};
use clap::Args;
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

fn default_repetitions() -> usize {
    3
}
fn default_warmup() -> f64 {
    1.0
}
fn default_duration() -> f64 {
    5.0
}

/// A campaign spec (TOML). See the README for every field.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    pub name: String,
    #[serde(default = "default_repetitions")]
    pub repetitions: usize,
    /// Ratios are taken against this system unless a system names its own.
    #[serde(default)]
    pub baseline: Option<String>,
    #[serde(default = "default_warmup")]
    pub warmup_s: f64,
    #[serde(default = "default_duration")]
    pub duration_s: f64,
    #[serde(default)]
    pub notes: Vec<String>,
    pub systems: Vec<SystemSpec>,
    pub workloads: Vec<toml::Table>,
}

/// One `[[workloads]]` entry: a workload plus the loads to run it at.
#[derive(Clone, Debug)]
pub struct WorkloadEntry {
    pub workload: Workload,
    pub clients: Vec<usize>,
    /// Connections; 0 = one per 10 clients (at least one).
    pub conns: usize,
    /// Open-loop rates for a latency-vs-throughput sweep; empty = closed loop.
    pub rates: Vec<f64>,
    pub total: Option<u64>,
    pub duration_s: Option<f64>,
    pub warmup_s: Option<f64>,
    /// Systems this entry runs on; empty = all.
    pub systems: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadPart {
    #[serde(default)]
    clients: Vec<usize>,
    #[serde(default)]
    conns: usize,
    #[serde(default)]
    rates: Vec<f64>,
    total: Option<u64>,
    duration_s: Option<f64>,
    warmup_s: Option<f64>,
    #[serde(default)]
    systems: Vec<String>,
}

const LOAD_KEYS: [&str; 7] = [
    "clients",
    "conns",
    "rates",
    "total",
    "duration_s",
    "warmup_s",
    "systems",
];

impl WorkloadEntry {
    /// Splits a `[[workloads]]` table into its workload and load fields; an
    /// unknown field in either is an error.
    fn parse(table: &toml::Table) -> anyhow::Result<Self> {
        let (mut load, mut wl) = (toml::Table::new(), toml::Table::new());
        for (k, v) in table {
            if LOAD_KEYS.contains(&k.as_str()) {
                load.insert(k.clone(), v.clone());
            } else {
                wl.insert(k.clone(), v.clone());
            }
        }
        let workload: Workload = toml::Value::Table(wl).try_into()?;
        let l: LoadPart = toml::Value::Table(load).try_into()?;
        workload.validate().map_err(anyhow::Error::msg)?;
        Ok(Self {
            workload,
            clients: if l.clients.is_empty() {
                vec![1]
            } else {
                l.clients
            },
            conns: l.conns,
            rates: l.rates,
            total: l.total,
            duration_s: l.duration_s,
            warmup_s: l.warmup_s,
            systems: l.systems,
        })
    }

    /// The loads of this entry: every client count in closed loop, or every
    /// (client count, rate) pair in open loop.
    pub fn loads(&self, spec: &CampaignSpec) -> Vec<Load> {
        let mut loads = Vec::new();
        for &clients in &self.clients {
            let conns = if self.conns > 0 {
                self.conns
            } else {
                clients.div_ceil(10).max(1)
            };
            let base = Load {
                conns,
                clients,
                total: self.total,
                duration_s: if self.total.is_some() {
                    self.duration_s
                } else {
                    Some(self.duration_s.unwrap_or(spec.duration_s))
                },
                warmup_s: self.warmup_s.unwrap_or(spec.warmup_s),
                rate: None,
            };
            if self.rates.is_empty() {
                loads.push(base);
            } else {
                for &r in &self.rates {
                    loads.push(Load {
                        rate: Some(r),
                        ..base.clone()
                    });
                }
            }
        }
        loads
    }

    fn runs_on(&self, system: &str) -> bool {
        self.systems.is_empty() || self.systems.iter().any(|s| s == system)
    }
}

impl CampaignSpec {
    pub fn load(path: &Path) -> anyhow::Result<(Self, Vec<WorkloadEntry>)> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let spec: CampaignSpec =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let entries = spec
            .workloads
            .iter()
            .enumerate()
            .map(|(i, t)| {
                WorkloadEntry::parse(t)
                    .map_err(|e| anyhow::anyhow!("{}: workloads[{i}]: {e}", path.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        spec.validate(&entries)?;
        Ok((spec, entries))
    }

    fn validate(&self, entries: &[WorkloadEntry]) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=100).contains(&self.repetitions),
            "repetitions must be in 1..=100"
        );
        anyhow::ensure!(
            !self.systems.is_empty(),
            "a campaign needs at least one system"
        );
        let mut names = HashSet::new();
        for s in &self.systems {
            s.validate().map_err(anyhow::Error::msg)?;
            anyhow::ensure!(
                names.insert(s.name.clone()),
                "system {} appears twice",
                s.name
            );
        }
        for b in self
            .baseline
            .iter()
            .chain(self.systems.iter().filter_map(|s| s.baseline.as_ref()))
        {
            anyhow::ensure!(
                names.contains(b),
                "baseline {b} is not a system of the campaign"
            );
        }
        for e in entries {
            for s in &e.systems {
                anyhow::ensure!(
                    names.contains(s),
                    "workload {} names unknown system {s}",
                    e.workload.label()
                );
            }
            for l in e.loads(self) {
                l.validate().map_err(anyhow::Error::msg)?;
            }
        }
        Ok(())
    }
}

#[derive(Args, Clone, Debug)]
pub struct CampaignArgs {
    /// The campaign spec, e.g. campaigns/quick.toml.
    pub spec: PathBuf,
    /// Results go to <out>/<campaign>/<timestamp>/.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Exact results directory (overrides --out).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Scratch space for the systems' data dirs (removed afterwards).
    #[arg(long, default_value = "target/ferrobench-data")]
    pub data_dir: PathBuf,
    /// Override the spec's repetitions.
    #[arg(long)]
    pub repetitions: Option<usize>,
    /// Keep the systems' data dirs.
    #[arg(long)]
    pub keep_data: bool,
    #[arg(long)]
    pub no_progress: bool,
}

/// Runs one cell on a running target (preloading first when asked) and
/// fills in the server-side figures: resource use and counter deltas.
#[allow(clippy::too_many_arguments)]
pub async fn run_cell<T: Target>(
    target: &T,
    running: Option<&Running>,
    embedded: Option<&EmbeddedTarget>,
    wl: &Workload,
    load: &Load,
    preload: bool,
    progress: bool,
    index: usize,
) -> anyhow::Result<(Repetition, crate::driver::RunOutcome)> {
    if preload && wl.kind.needs_preload() {
        crate::driver::preload(target, wl, load.clients.min(64)).await?;
    }
    let metrics_addrs: Vec<String> = running.map_or(vec![], |r| {
        r.nodes.iter().filter_map(|n| n.metrics_addr()).collect()
    });
    let scrape = |addrs: &[String]| -> Option<std::collections::BTreeMap<String, f64>> {
        let mut sum = std::collections::BTreeMap::new();
        for a in addrs {
            for (k, v) in crate::metrics::scrape(a).ok()? {
                *sum.entry(k).or_insert(0.0) += v;
            }
        }
        (!addrs.is_empty()).then_some(sum)
    };
    let own_pid = std::process::id();
    let sample = || match running {
        Some(r) => r.sample(),
        None => crate::procstat::sample(own_pid),
    };
    // The peak RSS reported is the run's: whatever start-up and preload
    // reached before is forgotten.
    match running {
        Some(r) => r.reset_peak_rss(),
        None => {
            crate::procstat::reset_peak_rss(own_pid);
        }
    }
    let before = sample();
    let m_before = scrape(&metrics_addrs);
    let t0 = std::time::Instant::now();
    let outcome = run_target(target, wl, load, false, progress).await?;
    let window_s = t0.elapsed().as_secs_f64();
    let m_after = scrape(&metrics_addrs);
    let after = sample();
    let mut rep = Repetition::from_outcome(index, &outcome);
    let db_size_bytes = match (running, embedded) {
        (Some(r), _) => crate::grpc::status(&r.nodes[0].endpoint())
            .await
            .map_or(0, |s| s.db_size as u64),
        (None, Some(e)) => e.db_size_bytes(),
        _ => 0,
    };
    rep.server = Some(ServerStats {
        cpu_s: after.cpu_s - before.cpu_s,
        peak_rss_bytes: after.peak_rss_bytes,
        disk_write_bytes: after.write_bytes.saturating_sub(before.write_bytes),
        db_size_bytes,
        data_dir_bytes: match (running, embedded) {
            (Some(r), _) => r.data_dir_bytes(),
            (None, Some(e)) => crate::procstat::dir_bytes(e.dir()),
            _ => 0,
        },
        engine_heap_bytes: None,
        engine_mapped_bytes: None,
    });
    if let (Some(b), Some(a)) = (m_before, m_after) {
        rep.crosscheck = Some(CrossCheck {
            counters: crate::metrics::delta(&b, &a),
            window_s,
        });
    }
    Ok((rep, outcome))
}

/// Starts `sys` fresh (new data dir; an `endpoints` system is only
/// connected to), runs one repetition of `cell` on it, writes its .hgrm
/// files and stops it, keeping its log unless empty.
#[allow(clippy::too_many_arguments)]
async fn run_on_fresh_instance(
    sys: &SystemSpec,
    cell: &Cell,
    rep: usize,
    sys_data: &Path,
    logs: &Path,
    tag: &str,
    dir: &Path,
    args: &CampaignArgs,
) -> anyhow::Result<Repetition> {
    let progress = !args.no_progress;
    let stem = format!("{}-{}-rep{rep}", sys.name, safe_name(&cell.id));
    let (wl, load) = (&cell.workload, &cell.load);
    match sys.kind {
        SystemKind::Embedded => {
            crate::embedded::settle_heap().await;
            let e = EmbeddedTarget::open(sys_data)?;
            let (mut r, outcome) =
                run_cell(&e, None, Some(&e), wl, load, true, progress, rep).await?;
            write_hgrms(dir, &stem, &outcome, &mut r)?;
            // The load generator's state is gone once its outcome is: what
            // the heap holds above its level before the store opened is
            // the engine's (deferred frees settled both times).
            drop(outcome);
            crate::embedded::settle_heap().await;
            let m = e.engine_memory();
            if let (Some(m), Some(s)) = (m, r.server.as_mut()) {
                s.engine_heap_bytes = Some(m.heap_bytes);
                s.engine_mapped_bytes = Some(m.mapped_bytes);
            }
            Ok(r)
        }
        SystemKind::Process => {
            let mut running = Running::start(sys, sys_data, logs, tag).await?;
            let result = async {
                let t = GrpcTarget::connect(&running.endpoints(), load.conns).await?;
                run_cell(&t, Some(&running), None, wl, load, true, progress, rep).await
            }
            .await;
            running.stop();
            running.remove_empty_logs();
            let (mut r, outcome) = result?;
            write_hgrms(dir, &stem, &outcome, &mut r)?;
            Ok(r)
        }
        SystemKind::Endpoints => {
            let t = GrpcTarget::connect(&sys.endpoints, load.conns).await?;
            let (mut r, outcome) = run_cell(&t, None, None, wl, load, true, progress, rep).await?;
            write_hgrms(dir, &stem, &outcome, &mut r)?;
            Ok(r)
        }
    }
}

/// The 1-minute load average from /proc/loadavg, or "unknown": how busy
/// the machine was besides the campaign is part of its figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// Runs the whole campaign; returns the results directory.
pub async fn main(args: CampaignArgs) -> anyhow::Result<PathBuf> {
    let (mut spec, entries) = CampaignSpec::load(&args.spec)?;
    if let Some(r) = args.repetitions {
        spec.repetitions = r;
    }
    let (created, stamp) = crate::machine::utc_now();
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| args.out.join(&spec.name).join(&stamp));
    std::fs::create_dir_all(&dir)?;
    let data_root = args
        .data_dir
        .join(format!("{}-{}-{}", spec.name, stamp, std::process::id()));
    std::fs::create_dir_all(&data_root)?;
    let machine = crate::machine::collect(&data_root);
    let load_at_start = load_average();
    eprintln!(
        "campaign {}: {} systems, {} workloads, {} repetitions -> {}",
        spec.name,
        spec.systems.len(),
        entries.len(),
        spec.repetitions,
        dir.display()
    );
    let systems: Vec<SystemInfo> = spec
        .systems
        .iter()
        .map(|s| SystemInfo {
            name: s.name.clone(),
            kind: format!("{:?}", s.kind).to_lowercase(),
            nodes: s.nodes,
            version: match s.kind {
                SystemKind::Embedded => format!("ferrokv engine {}", env!("CARGO_PKG_VERSION")),
                _ => s.version(),
            },
            command: s.command.clone(),
            baseline: s.baseline.clone().or_else(|| spec.baseline.clone()),
        })
        .collect();
    // Cells in spec order; `slot` (workload entry, load) orders the runs.
    let mut cells: Vec<Cell> = Vec::new();
    let mut slots: Vec<(usize, usize)> = Vec::new();
    for sys in &spec.systems {
        for (ei, e) in entries.iter().enumerate() {
            if !e.runs_on(&sys.name) {
                continue;
            }
            for (li, load) in e.loads(&spec).into_iter().enumerate() {
                cells.push(Cell {
                    id: cell_id(&e.workload, &load),
                    system: sys.name.clone(),
                    workload: e.workload.clone(),
                    load,
                    repetitions: vec![],
                });
                slots.push((ei, li));
            }
        }
    }
    let mut order: Vec<(usize, usize)> = slots.clone();
    order.sort_unstable();
    order.dedup();
    let logs = dir.join("logs");
    let runs_total = cells.len() * spec.repetitions;
    let mut runs_done = 0;
    // Each repetition walks the cells in spec order and runs each on every
    // system back to back, so a cell's systems are measured close together
    // in time; every run gets an instance of its own.
    let n_sys = spec.systems.len();
    for rep in 0..spec.repetitions {
        for (k, slot) in order.iter().enumerate() {
            // The system order rotates from cell to cell and repetition to
            // repetition, so no system always runs first or always follows
            // the same one.
            let first = (rep + k) % n_sys;
            for sys in spec.systems[first..].iter().chain(&spec.systems[..first]) {
                let Some(ci) =
                    (0..cells.len()).find(|&i| slots[i] == *slot && cells[i].system == sys.name)
                else {
                    continue;
                };
                runs_done += 1;
                eprintln!(
                    "[rep {}/{}, run {runs_done}/{runs_total}] {} {}",
                    rep + 1,
                    spec.repetitions,
                    sys.name,
                    cells[ci].id
                );
                let cell = &mut cells[ci];
                let sys_data = data_root.join(format!("{}-rep{rep}-cell{ci}", sys.name));
                let tag = format!("rep{rep}-{}", safe_name(&cell.id));
                let r = run_on_fresh_instance(sys, cell, rep, &sys_data, &logs, &tag, &dir, &args)
                    .await?;
                cell.repetitions.push(r);
                if !args.keep_data {
                    let _ = std::fs::remove_dir_all(&sys_data);
                }
            }
        }
    }
    if !args.keep_data {
        let _ = std::fs::remove_dir_all(&data_root);
    }
    let mut notes = spec.notes.clone();
    notes.push(format!(
        "1-minute load average {} at the start, {} at the end (the campaign's own load included; {} CPUs)",
        load_at_start,
        load_average(),
        machine.cpus
    ));
    notes.push(format!(
        "load generator and systems share this machine's {} CPUs; other work on the machine adds noise",
        machine.cpus
    ));
    let results = Results {
        schema: SCHEMA.into(),
        campaign: spec.name.clone(),
        created,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine,
        systems,
        cells,
        notes,
    };
    results.save(&dir)?;
    crate::report::render(&results, &dir)?;
    print!("{}", crate::summary::terminal(&results));
    eprintln!("wrote {}", dir.display());
    Ok(dir)
}
