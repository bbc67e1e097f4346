//! `ferrobench gate --baseline A --current B`: per system, cell and metric,
//! a regression verdict with a noise model. The repetitions of each side are
//! resampled (bootstrap, fixed seed) to a 95% confidence interval of the
//! ratio of medians current / baseline; a metric regresses only when the
//! whole interval lies beyond its threshold, so a change inside the noise
//! passes however its point estimate looks.

use crate::results::Results;
use crate::summary::{figures, median};
use clap::Args;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::PathBuf;

/// Bootstrap resamples per metric.
const BOOTSTRAP_ROUNDS: usize = 4000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    HigherIsBetter,
    LowerIsBetter,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    Improved,
    Regressed,
    /// Too few repetitions on a side to judge.
    Skipped,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricVerdict {
    pub system: String,
    pub cell: String,
    pub metric: String,
    pub unit: String,
    pub direction: Direction,
    pub threshold: f64,
    pub baseline_median: f64,
    pub current_median: f64,
    pub ratio: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub verdict: Verdict,
    /// Current repetitions, for exports.
    pub current: Vec<f64>,
}

/// Thresholds per metric, as fractions (0.10 = 10%).
#[derive(Clone, Debug)]
pub struct Thresholds {
    pub throughput: f64,
    pub p50: f64,
    pub p99: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            throughput: 0.10,
            p50: 0.10,
            p99: 0.25,
        }
    }
}

/// The 2.5th and 97.5th percentiles of the bootstrap distribution of
/// median(current*) / median(baseline*).
pub fn bootstrap_ci(baseline: &[f64], current: &[f64], seed: u64) -> (f64, f64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut ratios = Vec::with_capacity(BOOTSTRAP_ROUNDS);
    let mut a = vec![0.0; baseline.len()];
    let mut b = vec![0.0; current.len()];
    for _ in 0..BOOTSTRAP_ROUNDS {
        for x in a.iter_mut() {
            *x = baseline[rng.gen_range(0..baseline.len())];
        }
        for x in b.iter_mut() {
            *x = current[rng.gen_range(0..current.len())];
        }
        ratios.push(median(&b) / median(&a));
    }
    ratios.sort_by(f64::total_cmp);
    let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
    (at(0.025), at(0.975))
}

/// Judges one metric.
#[allow(clippy::too_many_arguments)]
pub fn judge(
    system: &str,
    cell: &str,
    metric: &str,
    unit: &str,
    direction: Direction,
    threshold: f64,
    baseline: &[f64],
    current: &[f64],
) -> MetricVerdict {
    let (bm, cm) = (median(baseline), median(current));
    let ratio = cm / bm;
    let seed = metric
        .bytes()
        .chain(cell.bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
    let (lo, hi, verdict) = if baseline.len() < 2 || current.len() < 2 || bm.is_nan() || bm <= 0.0 {
        (ratio, ratio, Verdict::Skipped)
    } else {
        let (lo, hi) = bootstrap_ci(baseline, current, seed);
        let v = match direction {
            Direction::HigherIsBetter if hi < 1.0 - threshold => Verdict::Regressed,
            Direction::HigherIsBetter if lo > 1.0 + threshold => Verdict::Improved,
            Direction::LowerIsBetter if lo > 1.0 + threshold => Verdict::Regressed,
            Direction::LowerIsBetter if hi < 1.0 - threshold => Verdict::Improved,
            _ => Verdict::Pass,
        };
        (lo, hi, v)
    };
    MetricVerdict {
        system: system.into(),
        cell: cell.into(),
        metric: metric.into(),
        unit: unit.into(),
        direction,
        threshold,
        baseline_median: bm,
        current_median: cm,
        ratio,
        ci_low: lo,
        ci_high: hi,
        verdict,
        current: current.to_vec(),
    }
}

/// Every metric of every (system, cell) present in both result sets.
pub fn compare(baseline: &Results, current: &Results, t: &Thresholds) -> Vec<MetricVerdict> {
    let mut out = Vec::new();
    for cc in &current.cells {
        let Some(bc) = baseline
            .cells
            .iter()
            .find(|c| c.system == cc.system && c.id == cc.id)
        else {
            continue;
        };
        let (fb, fc) = (figures(bc), figures(cc));
        out.push(judge(
            &cc.system,
            &cc.id,
            "throughput",
            "ops/s",
            Direction::HigherIsBetter,
            t.throughput,
            &fb.throughput,
            &fc.throughput,
        ));
        out.push(judge(
            &cc.system,
            &cc.id,
            "latency_p50",
            "µs",
            Direction::LowerIsBetter,
            t.p50,
            &fb.p50_us,
            &fc.p50_us,
        ));
        out.push(judge(
            &cc.system,
            &cc.id,
            "latency_p99",
            "µs",
            Direction::LowerIsBetter,
            t.p99,
            &fb.p99_us,
            &fc.p99_us,
        ));
    }
    out
}

pub fn any_regression(v: &[MetricVerdict]) -> bool {
    v.iter().any(|m| m.verdict == Verdict::Regressed)
}

/// The Markdown verdict table.
pub fn markdown(v: &[MetricVerdict]) -> String {
    let mut out = String::new();
    let regressed = v.iter().filter(|m| m.verdict == Verdict::Regressed).count();
    let _ = writeln!(
        out,
        "# ferrobench gate: {}\n",
        if regressed > 0 {
            format!("**REGRESSION** ({regressed} metric(s))")
        } else {
            "pass".into()
        }
    );
    let _ = writeln!(
        out,
        "Ratio = median(current) / median(baseline); 95% bootstrap CI over repetitions. \
         A metric regresses only when its whole CI lies beyond its threshold.\n"
    );
    let _ = writeln!(
        out,
        "| verdict | system | cell | metric | baseline | current | ratio | 95% CI | threshold |"
    );
    let _ = writeln!(out, "|---|---|---|---|---:|---:|---:|---|---:|");
    for m in v {
        let mark = match m.verdict {
            Verdict::Pass => "✅ pass",
            Verdict::Improved => "🚀 improved",
            Verdict::Regressed => "❌ regressed",
            Verdict::Skipped => "⚪ skipped",
        };
        let sign = if m.direction == Direction::HigherIsBetter {
            "−"
        } else {
            "+"
        };
        let _ = writeln!(
            out,
            "| {mark} | {} | {} | {} | {:.1} {} | {:.1} {} | {:.3} | [{:.3}, {:.3}] | {sign}{:.0}% |",
            m.system, m.cell, m.metric, m.baseline_median, m.unit, m.current_median, m.unit, m.ratio, m.ci_low, m.ci_high, m.threshold * 100.0
        );
    }
    out
}

#[derive(Args, Clone, Debug)]
pub struct GateArgs {
    /// Baseline results (JSON or directory). With --callgrind: the committed
    /// instruction-count baseline JSON.
    #[arg(long)]
    pub baseline: PathBuf,
    /// Current results (JSON or directory). Not used with --callgrind.
    #[arg(long)]
    pub current: Option<PathBuf>,
    #[arg(long, default_value_t = 0.10)]
    pub throughput_threshold: f64,
    #[arg(long, default_value_t = 0.10)]
    pub p50_threshold: f64,
    #[arg(long, default_value_t = 0.25)]
    pub p99_threshold: f64,
    /// Write the Markdown verdict here (it is always printed).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Write the current figures in Bencher Metric Format here.
    #[arg(long)]
    pub bencher: Option<PathBuf>,
    /// Write the current throughput as github-action-benchmark
    /// `customBiggerIsBetter` JSON here, and the latencies
    /// (`customSmallerIsBetter`) next to it as `<name>.smaller.json`.
    #[arg(long)]
    pub github_action_benchmark: Option<PathBuf>,
    /// Deterministic mode: instruction counts of in-process micro-workloads
    /// under valgrind/callgrind against the baseline.
    #[arg(long)]
    pub callgrind: bool,
    /// Callgrind threshold (fraction of instructions).
    #[arg(long, default_value_t = 0.03)]
    pub callgrind_threshold: f64,
    /// With --callgrind: write the measured counts as the new baseline.
    #[arg(long)]
    pub update_baseline: bool,
}

/// `x.json` -> `x.smaller.json`: the latency half of the
/// github-action-benchmark export.
pub fn smaller_path(p: &std::path::Path) -> PathBuf {
    let stem = p
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    p.with_file_name(format!("{stem}.smaller.json"))
}

/// Returns the process exit code: 0 pass, 1 regression.
pub fn main(args: GateArgs) -> anyhow::Result<i32> {
    if args.callgrind {
        return crate::callgrind::gate(&args);
    }
    let current = args
        .current
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("--current is required"))?;
    let (a, b) = (Results::load(&args.baseline)?, Results::load(current)?);
    let t = Thresholds {
        throughput: args.throughput_threshold,
        p50: args.p50_threshold,
        p99: args.p99_threshold,
    };
    let verdicts = compare(&a, &b, &t);
    anyhow::ensure!(
        !verdicts.is_empty(),
        "baseline and current share no (system, cell)"
    );
    let md = markdown(&verdicts);
    print!("{md}");
    if let Some(p) = &args.markdown {
        std::fs::write(p, &md)?;
    }
    if let Some(p) = &args.bencher {
        std::fs::write(
            p,
            serde_json::to_string_pretty(&crate::export::bencher(&verdicts))?,
        )?;
    }
    if let Some(p) = &args.github_action_benchmark {
        let (bigger, smaller) = crate::export::github_action_benchmark(&verdicts);
        std::fs::write(p, serde_json::to_string_pretty(&bigger)?)?;
        std::fs::write(smaller_path(p), serde_json::to_string_pretty(&smaller)?)?;
    }
    Ok(if any_regression(&verdicts) { 1 } else { 0 })
}
