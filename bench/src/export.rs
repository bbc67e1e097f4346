//! Exports of a gate's current figures for CI dashboards: Bencher Metric
//! Format (BMF) and github-action-benchmark's custom JSON.

use crate::gate::{Direction, MetricVerdict};
use serde_json::{json, Map, Value};

/// BMF: `{ "<benchmark>": { "<measure>": { "value", "lower_value",
/// "upper_value" } } }`, one benchmark per system and cell; lower/upper are
/// the min and max over the current repetitions.
pub fn bencher(v: &[MetricVerdict]) -> Value {
    let mut root = Map::new();
    for m in v {
        let name = format!("{}/{}", m.system, m.cell);
        let entry = root.entry(name).or_insert_with(|| json!({}));
        let lo = m.current.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = m.current.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        entry[m.metric.as_str()] = json!({
            "value": m.current_median,
            "lower_value": lo,
            "upper_value": hi,
        });
    }
    Value::Object(root)
}

/// github-action-benchmark custom entries: `[{ "name", "unit", "value",
/// "range", "extra" }]`. The tool takes one direction per file, so this
/// returns two arrays: for `customBiggerIsBetter` (throughput) and for
/// `customSmallerIsBetter` (latencies).
pub fn github_action_benchmark(v: &[MetricVerdict]) -> (Value, Value) {
    let entry = |m: &MetricVerdict| {
        let lo = m.current.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = m.current.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        json!({
            "name": format!("{}/{} {}", m.system, m.cell, m.metric),
            "unit": m.unit,
            "value": m.current_median,
            "range": format!("{:.1}..{:.1}", lo, hi),
            "extra": format!("{} repetitions; ratio to baseline {:.3} (95% CI {:.3}..{:.3})", m.current.len(), m.ratio, m.ci_low, m.ci_high),
        })
    };
    let pick =
        |d: Direction| Value::Array(v.iter().filter(|m| m.direction == d).map(entry).collect());
    (
        pick(Direction::HigherIsBetter),
        pick(Direction::LowerIsBetter),
    )
}
