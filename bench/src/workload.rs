//! What a run asks of the system: the operation mix, key and value shapes, and
//! how keys are chosen. Serialized into results JSON and campaign specs.

use serde::{Deserialize, Serialize};

/// The workloads `ferrobench run` knows. YCSB mixes follow the YCSB core
/// workloads A–F (Cooper et al., SoCC 2010), mapped onto etcd operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// Put of one key.
    Put,
    /// Range: one key, or a prefix of 100 keys when `range_limit` > 0.
    Range,
    /// Txn with `txn_ops` puts of distinct keys and no compare.
    TxnPut,
    /// DeleteRange of one key; keys walk the preloaded key space.
    Delete,
    /// Range with probability `read_ratio`, otherwise put.
    Mixed,
    /// 50% read, 50% update; zipfian.
    YcsbA,
    /// 95% read, 5% update; zipfian.
    YcsbB,
    /// 100% read; zipfian.
    YcsbC,
    /// 95% read, 5% insert; reads favour the latest inserts.
    YcsbD,
    /// 95% scan (range with limit 1..=100), 5% insert; zipfian.
    YcsbE,
    /// 50% read, 50% read-modify-write; zipfian.
    YcsbF,
    /// Watchers on a prefix while clients put into it: events/s and
    /// put-to-event latency.
    Watch,
    /// Lease keep-alive round trips, one lease and stream per client.
    LeaseKeepalive,
}

impl WorkloadKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Put => "put",
            Self::Range => "range",
            Self::TxnPut => "txn-put",
            Self::Delete => "delete",
            Self::Mixed => "mixed",
            Self::YcsbA => "ycsb-a",
            Self::YcsbB => "ycsb-b",
            Self::YcsbC => "ycsb-c",
            Self::YcsbD => "ycsb-d",
            Self::YcsbE => "ycsb-e",
            Self::YcsbF => "ycsb-f",
            Self::Watch => "watch",
            Self::LeaseKeepalive => "lease-keepalive",
        }
    }

    /// Workloads that read keys they expect to exist get the key space
    /// written before the run (not measured).
    pub fn needs_preload(self) -> bool {
        !matches!(
            self,
            Self::Put | Self::TxnPut | Self::Watch | Self::LeaseKeepalive
        )
    }

    /// The request distribution YCSB prescribes, used when none is given.
    pub fn default_distribution(self) -> Distribution {
        match self {
            Self::YcsbA | Self::YcsbB | Self::YcsbC | Self::YcsbE | Self::YcsbF => {
                Distribution::Zipfian
            }
            Self::YcsbD => Distribution::Latest,
            _ => Distribution::Uniform,
        }
    }
}

/// How keys are drawn from the key space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Distribution {
    Uniform,
    /// YCSB's scrambled zipfian, theta 0.99.
    Zipfian,
    /// Zipfian over recency: the most recently inserted keys are hottest.
    Latest,
}

/// Range consistency, as etcd's benchmark tool spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Consistency {
    /// Linearizable (raft ReadIndex).
    #[serde(rename = "l")]
    #[value(name = "l")]
    Linearizable,
    /// Serializable (member-local).
    #[serde(rename = "s")]
    #[value(name = "s")]
    Serializable,
}

fn default_key_size() -> usize {
    8
}
fn default_val_size() -> usize {
    256
}
fn default_key_space() -> u64 {
    10_000
}
fn default_txn_ops() -> usize {
    4
}
fn default_read_ratio() -> f64 {
    0.5
}
fn default_consistency() -> Consistency {
    Consistency::Linearizable
}
fn default_watchers() -> usize {
    10
}
fn default_watch_streams() -> usize {
    1
}

/// A workload with every knob; defaults follow etcd's benchmark tool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub kind: WorkloadKind,
    /// Key length in bytes (decimal key index, zero padded).
    #[serde(default = "default_key_size")]
    pub key_size: usize,
    #[serde(default = "default_val_size")]
    pub val_size: usize,
    /// Number of distinct keys.
    #[serde(default = "default_key_space")]
    pub key_space_size: u64,
    /// Walk keys in order instead of drawing them.
    #[serde(default)]
    pub sequential_keys: bool,
    #[serde(default = "default_consistency")]
    pub consistency: Consistency,
    /// For `range`: 0 reads one key; N > 0 reads a 100-key prefix with limit N.
    #[serde(default)]
    pub range_limit: u64,
    #[serde(default = "default_txn_ops")]
    pub txn_ops: usize,
    /// For `mixed`: the share of reads.
    #[serde(default = "default_read_ratio")]
    pub read_ratio: f64,
    /// Overrides the workload's default request distribution.
    #[serde(default)]
    pub distribution: Option<Distribution>,
    /// For `watch`: watchers in all, spread over `watch_streams` streams.
    #[serde(default = "default_watchers")]
    pub watchers: usize,
    #[serde(default = "default_watch_streams")]
    pub watch_streams: usize,
}

impl Workload {
    pub fn new(kind: WorkloadKind) -> Self {
        Self {
            kind,
            key_size: default_key_size(),
            val_size: default_val_size(),
            key_space_size: default_key_space(),
            sequential_keys: false,
            consistency: default_consistency(),
            range_limit: 0,
            txn_ops: default_txn_ops(),
            read_ratio: default_read_ratio(),
            distribution: None,
            watchers: default_watchers(),
            watch_streams: default_watch_streams(),
        }
    }

    pub fn distribution(&self) -> Distribution {
        self.distribution
            .unwrap_or_else(|| self.kind.default_distribution())
    }

    /// Rejects shapes that cannot be run, before any system is started.
    pub fn validate(&self) -> Result<(), String> {
        let digits = self
            .key_space_size
            .max(2)
            .saturating_sub(1)
            .to_string()
            .len();
        if self.key_size < digits.max(3) {
            return Err(format!(
                "key_size {} cannot hold {} distinct keys (needs at least {} bytes)",
                self.key_size,
                self.key_space_size,
                digits.max(3)
            ));
        }
        if self.key_space_size == 0 {
            return Err("key_space_size must be at least 1".into());
        }
        if self.kind == WorkloadKind::Watch && self.val_size < 8 {
            return Err("watch needs val_size >= 8 (the value carries the send time)".into());
        }
        if self.kind == WorkloadKind::TxnPut
            && (self.txn_ops == 0 || self.txn_ops as u64 > self.key_space_size)
        {
            return Err("txn_ops must be in 1..=key_space_size".into());
        }
        if !(0.0..=1.0).contains(&self.read_ratio) {
            return Err("read_ratio must be in [0, 1]".into());
        }
        if self.kind == WorkloadKind::Watch && (self.watchers == 0 || self.watch_streams == 0) {
            return Err("watch needs watchers >= 1 and watch_streams >= 1".into());
        }
        Ok(())
    }

    /// A short label for tables: `put`, `range-s-limit100`, `txn-put-4`.
    pub fn label(&self) -> String {
        match self.kind {
            WorkloadKind::Range => {
                let c = match self.consistency {
                    Consistency::Linearizable => "l",
                    Consistency::Serializable => "s",
                };
                if self.range_limit > 0 {
                    format!("range-{c}-limit{}", self.range_limit)
                } else {
                    format!("range-{c}")
                }
            }
            WorkloadKind::TxnPut => format!("txn-put-{}", self.txn_ops),
            WorkloadKind::Mixed => format!("mixed-r{}", (self.read_ratio * 100.0).round()),
            WorkloadKind::Watch => format!("watch-{}w", self.watchers),
            k => k.name().to_string(),
        }
    }
}

/// How the load is applied. Closed loop unless `rate` is set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// gRPC connections (HTTP/2 channels), spread over the endpoints.
    pub conns: usize,
    /// Concurrent clients, spread over the connections.
    pub clients: usize,
    /// Measured operations (after warm-up); the run ends at whichever of
    /// `total` and `duration_s` comes first.
    pub total: Option<u64>,
    pub duration_s: Option<f64>,
    /// Warm-up before measuring; its operations are not recorded.
    pub warmup_s: f64,
    /// Open loop: requests per second in all, each timed from its intended
    /// start (coordinated-omission correction).
    pub rate: Option<f64>,
}

impl Load {
    pub fn validate(&self) -> Result<(), String> {
        if self.conns == 0 || self.clients == 0 {
            return Err("conns and clients must be at least 1".into());
        }
        if self.total.is_none() && self.duration_s.is_none() {
            return Err("give --total or --duration (or both)".into());
        }
        if let Some(d) = self.duration_s {
            if !(d > 0.0 && d <= 3600.0) {
                return Err("duration must be in (0, 3600] seconds".into());
            }
        }
        if !(0.0..=600.0).contains(&self.warmup_s) {
            return Err("warm-up must be in [0, 600] seconds".into());
        }
        if let Some(r) = self.rate {
            if !(r > 0.0 && r <= 10_000_000.0) {
                return Err("rate must be in (0, 1e7] requests per second".into());
            }
        }
        Ok(())
    }

    pub fn open_loop(&self) -> bool {
        self.rate.is_some()
    }
}
