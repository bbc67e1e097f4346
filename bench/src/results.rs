//! The results JSON (schema `ferrobench/results/v1`, documented in the
//! README): machine facts, the systems, and per campaign cell the workload,
//! the load and every repetition's figures.

use crate::driver::RunOutcome;
use crate::machine::Machine;
use crate::recorder::{summarize, LatencyUs};
use crate::workload::{Load, Workload};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const SCHEMA: &str = "ferrobench/results/v1";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub schema: String,
    pub campaign: String,
    /// RFC 3339 UTC.
    pub created: String,
    /// The command line that produced this file.
    pub command: String,
    pub machine: Machine,
    pub systems: Vec<SystemInfo>,
    pub cells: Vec<Cell>,
    /// Free-form notes (e.g. "other builds were running").
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SystemInfo {
    pub name: String,
    /// `process` (started by the campaign), `endpoints` (already running),
    /// or `embedded` (in-process engine).
    pub kind: String,
    pub nodes: usize,
    pub version: String,
    /// The command line template the nodes were started with.
    #[serde(default)]
    pub command: String,
    /// The system its ratios are taken against (e.g. `etcd-1`).
    #[serde(default)]
    pub baseline: Option<String>,
}

/// One system × workload × load, over its repetitions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// `workload label / c<clients>` (plus `/ r<rate>` in open loop): the
    /// key that pairs cells of different systems and runs.
    pub id: String,
    pub system: String,
    pub workload: Workload,
    pub load: Load,
    pub repetitions: Vec<Repetition>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OpResult {
    /// Successful operations in the measured window.
    pub ok: u64,
    /// Successful operations including warm-up.
    pub ok_all: u64,
    /// Failed operations in the measured window, by gRPC status code.
    pub errors: BTreeMap<String, u64>,
    pub latency_us: LatencyUs,
    /// Percentile distribution file, relative to the results directory.
    #[serde(default)]
    pub hgrm: String,
}

/// Resource use of the system under test in one repetition of a cell. Every
/// cell runs on an instance started for it alone (fresh data dir), so each
/// figure belongs to that cell: nothing is left from other cells.
///
/// For `process` systems the figures are the nodes' own. For `embedded`
/// the engine shares the ferrobench process with the load generator, so
/// `cpu_s` and `peak_rss_bytes` are that process's (engine and load
/// generator together), and `engine_heap_bytes` / `engine_mapped_bytes`
/// are what the engine alone holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerStats {
    /// CPU seconds (user + system) over the run (warm-up and measured
    /// window), summed over nodes.
    pub cpu_s: f64,
    /// The largest resident set during the run (warm-up and measured
    /// window; VmHWM reset when the run starts, after any preload), of the
    /// largest node.
    pub peak_rss_bytes: u64,
    /// Bytes the processes caused to be written to storage during the run
    /// (/proc/pid/io write_bytes), summed over nodes.
    pub disk_write_bytes: u64,
    /// Backend DB size after the run (Maintenance.Status of the first node;
    /// embedded: the store's status): the cell's preload and writes only.
    pub db_size_bytes: u64,
    /// Bytes of all files in the data dirs after the run, summed over nodes.
    pub data_dir_bytes: u64,
    /// Embedded only: live heap bytes the engine holds after the run (the
    /// process's live heap, counted by ferrobench's allocator, less what it
    /// was before the store was opened; the load generator's clients are
    /// gone by then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_heap_bytes: Option<u64>,
    /// Embedded only: resident pages of the store's mmap-ed files after the
    /// run (/proc/self/smaps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_mapped_bytes: Option<u64>,
}

/// The server's own counters over the run (Prometheus `/metrics` deltas,
/// first node), for checking the load generator's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CrossCheck {
    pub counters: BTreeMap<String, f64>,
    /// Wall time between the two scrapes.
    pub window_s: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Repetition {
    pub index: usize,
    /// Successful operations per second in the measured window, all types.
    pub throughput_ops_s: f64,
    pub measured_s: f64,
    pub wall_s: f64,
    /// Watch runs: events of measured puts received per second, over the
    /// measured window or until the last of them arrived, if later (a watch
    /// path that lags the puts is charged for the delay).
    #[serde(default)]
    pub events_per_s: Option<f64>,
    pub ops: BTreeMap<String, OpResult>,
    #[serde(default)]
    pub server: Option<ServerStats>,
    #[serde(default)]
    pub crosscheck: Option<CrossCheck>,
}

impl Repetition {
    pub fn from_outcome(index: usize, o: &RunOutcome) -> Self {
        let ops = o
            .recorders
            .ops
            .iter()
            .map(|(name, r)| {
                let res = OpResult {
                    ok: r.latency_ns.len(),
                    ok_all: r.ok_all,
                    errors: r.errors.clone(),
                    latency_us: summarize(&r.latency_ns),
                    hgrm: String::new(),
                };
                (name.clone(), res)
            })
            .collect();
        Self {
            index,
            throughput_ops_s: o.throughput,
            measured_s: o.measured_s,
            wall_s: o.wall_s,
            events_per_s: o.events_per_s,
            ops,
            server: None,
            crosscheck: None,
        }
    }

    /// The latency that represents the cell: the workload's main operation
    /// (the first of put, range, txn, read, ... that is present).
    pub fn main_op(&self) -> Option<(&str, &OpResult)> {
        const ORDER: [&str; 10] = [
            "watch-event",
            "put",
            "range",
            "txn",
            "delete",
            "read",
            "scan",
            "rmw",
            "keepalive",
            "update",
        ];
        ORDER
            .iter()
            .find_map(|n| self.ops.get_key_value(*n))
            .or_else(|| self.ops.iter().next())
            .map(|(k, v)| (k.as_str(), v))
    }

    pub fn errors_total(&self) -> u64 {
        self.ops.values().flat_map(|o| o.errors.values()).sum()
    }
}

pub fn cell_id(wl: &Workload, load: &Load) -> String {
    let mut id = format!("{} / c{}", wl.label(), load.clients);
    if let Some(r) = load.rate {
        id.push_str(&format!(" / r{r:.0}"));
    }
    id
}

impl Results {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let file = if path.is_dir() {
            path.join("results.json")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
        let r: Results = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("parsing {}: {e}", file.display()))?;
        anyhow::ensure!(
            r.schema == SCHEMA,
            "{}: schema {:?}, expected {SCHEMA:?}",
            file.display(),
            r.schema
        );
        Ok(r)
    }

    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("results.json"),
            serde_json::to_string_pretty(self)? + "\n",
        )?;
        Ok(())
    }

    pub fn system(&self, name: &str) -> Option<&SystemInfo> {
        self.systems.iter().find(|s| s.name == name)
    }
}
