//! Human summaries of a results set: a terminal table and `summary.md` (per
//! cell: each system, its ratio against its baseline, and the spread over
//! repetitions).

use crate::results::{Cell, Repetition, Results};
use std::fmt::Write as _;

pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// (max - min) / median, in percent: the spread over repetitions.
pub fn spread_pct(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let lo = xs.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    100.0 * (hi - lo) / median(xs)
}

/// Per-repetition figures of a cell.
pub struct CellFigures {
    pub throughput: Vec<f64>,
    pub p50_us: Vec<f64>,
    pub p99_us: Vec<f64>,
    pub main_op: String,
    pub errors: u64,
    pub cpu_s: Vec<f64>,
    /// Peak RSS of the largest node; for the embedded engine, the engine's
    /// memory (live heap + resident mmap pages) after the run.
    pub rss_mb: Vec<f64>,
    pub db_mb: Vec<f64>,
    /// The memory figure is the embedded engine's, not a process peak.
    pub engine_memory: bool,
}

pub fn figures(cell: &Cell) -> CellFigures {
    let mut f = CellFigures {
        throughput: vec![],
        p50_us: vec![],
        p99_us: vec![],
        main_op: String::new(),
        errors: 0,
        cpu_s: vec![],
        rss_mb: vec![],
        db_mb: vec![],
        engine_memory: false,
    };
    for rep in &cell.repetitions {
        f.throughput.push(rep_rate(rep));
        if let Some((name, op)) = rep.main_op() {
            f.main_op = name.to_string();
            f.p50_us.push(op.latency_us.p50);
            f.p99_us.push(op.latency_us.p99);
        }
        f.errors += rep.errors_total();
        if let Some(s) = &rep.server {
            f.cpu_s.push(s.cpu_s);
            match s.engine_heap_bytes {
                Some(heap) => {
                    f.engine_memory = true;
                    let mapped = s.engine_mapped_bytes.unwrap_or(0);
                    f.rss_mb.push((heap + mapped) as f64 / 1e6);
                }
                None => f.rss_mb.push(s.peak_rss_bytes as f64 / 1e6),
            }
            f.db_mb.push(s.db_size_bytes as f64 / 1e6);
        }
    }
    f
}

/// The rate a cell is judged by: events/s for watch, ops/s otherwise.
pub fn rep_rate(rep: &Repetition) -> f64 {
    rep.events_per_s.unwrap_or(rep.throughput_ops_s)
}

fn fmt_us(us: f64) -> String {
    if us.is_nan() {
        "–".into()
    } else if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else if us < 10.0 {
        // The embedded engine answers in under a microsecond.
        format!("{us:.1} µs")
    } else {
        format!("{us:.0} µs")
    }
}

/// The baseline cell for `cell`: same id, the system's baseline system.
pub fn baseline_of<'a>(results: &'a Results, cell: &Cell) -> Option<&'a Cell> {
    let base = results.system(&cell.system)?.baseline.as_ref()?;
    if *base == cell.system {
        return None;
    }
    results
        .cells
        .iter()
        .find(|c| c.system == *base && c.id == cell.id)
}

/// Fixed-width table for the terminal.
pub fn terminal(results: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<34} {:<10} {:>4} {:>12} {:>7} {:>10} {:>10} {:>10} {:>7}",
        "cell", "system", "reps", "ops/s (med)", "spread", "p50", "p99", "max", "errors"
    );
    for cell in &results.cells {
        let f = figures(cell);
        let max = cell
            .repetitions
            .iter()
            .filter_map(|r| r.main_op().map(|(_, o)| o.latency_us.max))
            .fold(f64::NAN, f64::max);
        let _ = writeln!(
            out,
            "{:<34} {:<10} {:>4} {:>12.0} {:>6.1}% {:>10} {:>10} {:>10} {:>7}",
            cell.id,
            cell.system,
            cell.repetitions.len(),
            median(&f.throughput),
            spread_pct(&f.throughput),
            fmt_us(median(&f.p50_us)),
            fmt_us(median(&f.p99_us)),
            fmt_us(max),
            f.errors
        );
        for rep in cell.repetitions.iter().take(1) {
            for (name, op) in rep
                .ops
                .iter()
                .filter(|(n, _)| Some(n.as_str()) != rep.main_op().map(|m| m.0))
            {
                let _ = writeln!(
                    out,
                    "{:<34} {:<10} {:>4} {:>12} {:>7} {:>10} {:>10} {:>10} {:>7}",
                    format!("  └ {name}"),
                    "",
                    "",
                    op.ok,
                    "",
                    fmt_us(op.latency_us.p50),
                    fmt_us(op.latency_us.p99),
                    fmt_us(op.latency_us.max),
                    op.errors.values().sum::<u64>()
                );
            }
        }
    }
    let m = &results.machine;
    let _ = writeln!(
        out,
        "\nmachine: {} × {} | fdatasync 4 KiB p50 {:.0} µs, p99 {:.0} µs ({})",
        m.cpus, m.cpu_model, m.fdatasync_us_p50, m.fdatasync_us_p99, m.fdatasync_dir
    );
    out
}

/// `summary.md`: per cell, each system, the ratio against its baseline and
/// the spread over repetitions.
pub fn markdown(results: &Results) -> String {
    let mut out = String::new();
    let m = &results.machine;
    let _ = writeln!(out, "# ferrobench: {}\n", results.campaign);
    let _ = writeln!(out, "- created: {}", results.created);
    let _ = writeln!(out, "- command: `{}`", results.command);
    let _ = writeln!(
        out,
        "- machine: {} × {}, {:.1} GiB, kernel {}, ferrobench {}",
        m.cpus,
        m.cpu_model,
        m.memory_bytes as f64 / (1u64 << 30) as f64,
        m.kernel,
        m.ferrobench_commit
    );
    let _ = writeln!(
        out,
        "- fdatasync (4 KiB, {}): p50 {:.0} µs, p99 {:.0} µs",
        m.fdatasync_dir, m.fdatasync_us_p50, m.fdatasync_us_p99
    );
    for s in &results.systems {
        let _ = writeln!(
            out,
            "- system `{}`: {} × {} node(s), version {}{}",
            s.name,
            s.kind,
            s.nodes,
            s.version,
            s.baseline
                .as_ref()
                .map(|b| format!(", ratios against `{b}`"))
                .unwrap_or_default()
        );
    }
    for n in &results.notes {
        let _ = writeln!(out, "- note: {n}");
    }
    let _ = writeln!(
        out,
        "\nRates are ops/s (events/s for watch) in the measured window, median over \
         repetitions; spread = (max − min) / median. Latencies are the medians over \
         repetitions of each repetition's percentile for the main operation. Ratio = \
         median rate ÷ the baseline system's median rate in the same cell (> 1 is faster). \
         Every repetition of every cell ran on an instance started for it alone (fresh data \
         dir), so server CPU (over the run, summed over nodes), peak RSS (during the run, \
         largest node) and DB size (after the run: the cell's preload and writes) belong to \
         that cell. `embedded` shares ferrobench's process with the load generator: its CPU s \
         (¹) is that whole process's, and its memory (²) is not a process peak but what the \
         engine holds after the run: live heap above the level before its store was opened \
         (counted by ferrobench's allocator, load generator gone) plus resident pages of its \
         mmap-ed DB; the process peak RSS, load generator included, is in results.json.\n"
    );
    let _ = writeln!(
        out,
        "| cell | system | reps | rate (median) | spread | ratio | p50 | p99 | p50 ratio | errors | server CPU s | peak RSS MB | DB MB |"
    );
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for cell in &results.cells {
        let f = figures(cell);
        let (ratio, p50_ratio) = match baseline_of(results, cell) {
            Some(b) => {
                let bf = figures(b);
                (
                    format!("{:.2}×", median(&f.throughput) / median(&bf.throughput)),
                    format!("{:.2}×", median(&f.p50_us) / median(&bf.p50_us)),
                )
            }
            None => ("–".into(), "–".into()),
        };
        let embedded = results
            .system(&cell.system)
            .is_some_and(|s| s.kind == "embedded");
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.1}% | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell.id,
            cell.system,
            cell.repetitions.len(),
            median(&f.throughput),
            spread_pct(&f.throughput),
            ratio,
            fmt_us(median(&f.p50_us)),
            fmt_us(median(&f.p99_us)),
            p50_ratio,
            f.errors,
            if f.cpu_s.is_empty() {
                "–".into()
            } else {
                format!(
                    "{:.1}{}",
                    median(&f.cpu_s),
                    if embedded { " ¹" } else { "" }
                )
            },
            if f.rss_mb.is_empty() {
                "–".into()
            } else {
                format!(
                    "{:.0}{}",
                    median(&f.rss_mb),
                    if f.engine_memory { " ²" } else { "" }
                )
            },
            if f.db_mb.is_empty() {
                "–".into()
            } else {
                format!("{:.1}", median(&f.db_mb))
            },
        );
    }
    out
}
