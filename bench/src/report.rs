//! `ferrobench report`: re-renders summary.md and the plots from a results
//! JSON, and compares two runs cell by cell.

use crate::results::Results;
use crate::summary::{figures, median, spread_pct};
use clap::Args;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Args, Clone, Debug)]
pub struct ReportArgs {
    /// A results.json (or the directory holding it).
    pub results: PathBuf,
    /// A second run to compare against the first (the first is the baseline).
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// Where to write summary.md and plots/ (default: next to the JSON).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Writes summary.md and plots for `results` into `dir`.
pub fn render(results: &Results, dir: &Path) -> anyhow::Result<()> {
    let plots = crate::plots::render(results, dir)?;
    let mut md = crate::summary::markdown(results);
    if !plots.is_empty() {
        md.push_str("\n## Plots\n\n");
        for p in plots {
            let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
            let _ = writeln!(md, "![{rel}]({rel})\n");
        }
    }
    std::fs::write(dir.join("summary.md"), md)?;
    Ok(())
}

/// Markdown comparing run `b` with run `a`, per system and cell present in
/// both: median rate and p99 of each, and b / a.
pub fn compare(a: &Results, b: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# ferrobench comparison\n");
    let _ = writeln!(
        out,
        "- A: {} ({}, {})",
        a.campaign, a.created, a.machine.ferrobench_commit
    );
    let _ = writeln!(
        out,
        "- B: {} ({}, {})\n",
        b.campaign, b.created, b.machine.ferrobench_commit
    );
    let _ = writeln!(out, "| system | cell | rate A | rate B | B/A | spread A | spread B | p99 A µs | p99 B µs | p99 B/A |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for cb in &b.cells {
        let Some(ca) = a
            .cells
            .iter()
            .find(|c| c.system == cb.system && c.id == cb.id)
        else {
            continue;
        };
        let (fa, fb) = (figures(ca), figures(cb));
        let (ra, rb) = (median(&fa.throughput), median(&fb.throughput));
        let (pa, pb) = (median(&fa.p99_us), median(&fb.p99_us));
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {:.3} | {:.1}% | {:.1}% | {:.0} | {:.0} | {:.3} |",
            cb.system,
            cb.id,
            ra,
            rb,
            rb / ra,
            spread_pct(&fa.throughput),
            spread_pct(&fb.throughput),
            pa,
            pb,
            pb / pa
        );
    }
    out
}

pub fn main(args: ReportArgs) -> anyhow::Result<()> {
    let results = Results::load(&args.results)?;
    let dir = args.out.clone().unwrap_or_else(|| {
        if args.results.is_dir() {
            args.results.clone()
        } else {
            args.results
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        }
    });
    std::fs::create_dir_all(&dir)?;
    match &args.compare {
        Some(other) => {
            let b = Results::load(other)?;
            let md = compare(&results, &b);
            std::fs::write(dir.join("comparison.md"), &md)?;
            print!("{md}");
        }
        None => {
            render(&results, &dir)?;
            print!("{}", crate::summary::terminal(&results));
            eprintln!("wrote {}", dir.join("summary.md").display());
        }
    }
    Ok(())
}
