//! Per-operation-type latency histograms and error counts.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Latencies are recorded in nanoseconds, 3 significant digits, up to 100 s.
const LATENCY_NS_MAX: u64 = 100_000_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("static bounds are valid")
}

/// One operation type's measurements.
#[derive(Clone, Debug)]
pub struct OpRecorder {
    /// Successful operations in the measured window.
    pub latency_ns: Histogram<u64>,
    /// Failed operations in the measured window, by gRPC status code.
    pub errors: BTreeMap<String, u64>,
    /// Successful operations including warm-up (for cross-checks against the
    /// server's own counters, which cannot tell warm-up apart).
    pub ok_all: u64,
}

impl Default for OpRecorder {
    fn default() -> Self {
        Self {
            latency_ns: new_histogram(),
            errors: BTreeMap::new(),
            ok_all: 0,
        }
    }
}

impl OpRecorder {
    pub fn merge(&mut self, other: &OpRecorder) {
        self.latency_ns
            .add(&other.latency_ns)
            .expect("same bounds everywhere");
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += n;
        }
        self.ok_all += other.ok_all;
    }
}

/// Every operation type of one client or run.
#[derive(Clone, Debug, Default)]
pub struct Recorders {
    pub ops: BTreeMap<String, OpRecorder>,
}

impl Recorders {
    pub fn op(&mut self, name: &str) -> &mut OpRecorder {
        if !self.ops.contains_key(name) {
            self.ops.insert(name.to_string(), OpRecorder::default());
        }
        self.ops.get_mut(name).expect("inserted above")
    }

    pub fn merge(&mut self, other: &Recorders) {
        for (name, rec) in &other.ops {
            self.op(name).merge(rec);
        }
    }
}

/// The percentiles every result carries.
pub const PERCENTILES: [(&str, f64); 7] = [
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99_9", 99.9),
    ("p99_99", 99.99),
    ("min", 0.0),
    ("max", 100.0),
];

/// Latency summary in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyUs {
    pub count: u64,
    pub mean: f64,
    pub stdev: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub p99_99: f64,
    pub max: f64,
    /// (percentile, latency µs) pairs for spectrum plots.
    #[serde(default)]
    pub spectrum: Vec<(f64, f64)>,
}

/// Percentiles of the spectrum plot: 0..90 in steps of 10, then each "nine"
/// split into ten steps, up to 99.999.
fn spectrum_points() -> Vec<f64> {
    let mut points: Vec<f64> = (0..9).map(|i| i as f64 * 10.0).collect();
    let mut base = 90.0;
    let mut step = 1.0;
    for _ in 0..4 {
        for i in 0..10 {
            points.push(base + step * i as f64);
        }
        base += step * 9.0;
        step /= 10.0;
    }
    points.push(100.0);
    points
}

pub fn summarize(h: &Histogram<u64>) -> LatencyUs {
    let us = |ns: u64| ns as f64 / 1000.0;
    if h.is_empty() {
        return LatencyUs::default();
    }
    LatencyUs {
        count: h.len(),
        mean: h.mean() / 1000.0,
        stdev: h.stdev() / 1000.0,
        min: us(h.min()),
        p50: us(h.value_at_percentile(50.0)),
        p90: us(h.value_at_percentile(90.0)),
        p99: us(h.value_at_percentile(99.0)),
        p99_9: us(h.value_at_percentile(99.9)),
        p99_99: us(h.value_at_percentile(99.99)),
        max: us(h.max()),
        spectrum: spectrum_points()
            .into_iter()
            .map(|p| (p, us(h.value_at_percentile(p))))
            .collect(),
    }
}

/// HdrHistogram's percentile distribution text (the `.hgrm` format that
/// HdrHistogram's plotter reads), values in milliseconds.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 {
            format!("{:14.2}", 1.0 / (1.0 - q))
        } else {
            format!("{:>14}", "")
        };
        let _ = writeln!(
            out,
            "{:12.3} {:14.12} {:10} {}",
            v.value_iterated_to() as f64 / 1e6,
            q,
            v.count_since_last_iteration(),
            inv
        );
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / 1e6,
        h.stdev() / 1e6
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / 1e6,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        h.distinct_values()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = new_histogram();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let s = summarize(&h);
        assert_eq!(s.count, 1000);
        assert!((s.p50 - 500.0).abs() < 1.0, "{}", s.p50);
        assert!((s.p99 - 990.0).abs() < 1.0, "{}", s.p99);
        assert!(hgrm(&h).contains("Total count    =         1000"));
    }
}
