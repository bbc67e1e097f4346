//! SVG plots of a results set (plotters, SVG backend only): throughput bars
//! per cell and system, a latency percentile spectrum per cell, and latency
//! against throughput from open-loop rate sweeps.

use crate::results::{Cell, Results};
use crate::summary::{figures, median, rep_rate};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

type PlotResult = Result<(), Box<dyn std::error::Error>>;

/// Achieved ops/s, p50 ms, p99 ms of one open-loop cell.
type SweepPoint = (f64, f64, f64);

fn system_colors(results: &Results) -> BTreeMap<String, RGBColor> {
    results
        .systems
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.clone(), PALETTE[i % PALETTE.len()]))
        .collect()
}

fn closed_loop_ids(results: &Results) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for c in results.cells.iter().filter(|c| c.load.rate.is_none()) {
        if !ids.contains(&c.id) {
            ids.push(c.id.clone());
        }
    }
    ids
}

/// Grouped bars: median rate per cell and system, whiskers min..max.
fn throughput_bars(results: &Results, path: &Path) -> PlotResult {
    let ids = closed_loop_ids(results);
    if ids.is_empty() {
        return Ok(());
    }
    let colors = system_colors(results);
    let systems: Vec<&String> = colors.keys().collect();
    let width = (240 + 110 * ids.len()) as u32;
    let root = SVGBackend::new(path, (width.max(640), 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = results
        .cells
        .iter()
        .flat_map(|c| c.repetitions.iter().map(rep_rate))
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: throughput (ops/s; watch: events/s)", results.campaign),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(90)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..ids.len() as f64, 0f64..max * 1.1)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("ops/s")
        .draw()?;
    let slot = 0.8 / systems.len() as f64;
    for (i, id) in ids.iter().enumerate() {
        for (j, sys) in systems.iter().enumerate() {
            let Some(cell) = results
                .cells
                .iter()
                .find(|c| &c.id == id && &&c.system == sys)
            else {
                continue;
            };
            let rates: Vec<f64> = cell.repetitions.iter().map(rep_rate).collect();
            let (x0, x1) = (
                i as f64 + 0.1 + slot * j as f64,
                i as f64 + 0.1 + slot * (j as f64 + 1.0),
            );
            let color = colors[*sys];
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x0, 0.0), (x1, median(&rates))],
                color.filled(),
            )))?;
            let lo = rates.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = rates.iter().cloned().fold(0.0, f64::max);
            let xm = (x0 + x1) / 2.0;
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(xm, lo), (xm, hi)],
                BLACK,
            )))?;
        }
        chart.draw_series(std::iter::once(Text::new(
            id.clone(),
            (i as f64 + 0.05, -max * 0.04),
            ("sans-serif", 11)
                .into_font()
                .transform(FontTransform::Rotate90),
        )))?;
    }
    for sys in &systems {
        let color = colors[*sys];
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
            .label(sys.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Number of nines of a percentile: 90 -> 1, 99 -> 2, 99.9 -> 3.
fn nines(p: f64) -> f64 {
    -(1.0 - (p / 100.0).min(0.99999)).log10()
}

/// Latency spectrum of one cell id, one line per system (first repetition
/// with the median rate).
fn spectrum(results: &Results, id: &str, path: &Path) -> PlotResult {
    let colors = system_colors(results);
    let cells: Vec<&Cell> = results.cells.iter().filter(|c| c.id == id).collect();
    let mut lines = Vec::new();
    for cell in &cells {
        let f = figures(cell);
        let mid = median(&f.throughput);
        let Some(rep) = cell.repetitions.iter().min_by(|a, b| {
            (rep_rate(a) - mid)
                .abs()
                .total_cmp(&(rep_rate(b) - mid).abs())
        }) else {
            continue;
        };
        if let Some((_, op)) = rep.main_op() {
            let pts: Vec<(f64, f64)> = op
                .latency_us
                .spectrum
                .iter()
                .filter(|(p, _)| *p <= 99.999)
                .map(|(p, us)| (nines(*p), us.max(1.0) / 1000.0))
                .collect();
            lines.push((cell.system.clone(), pts));
        }
    }
    if lines.is_empty() {
        return Ok(());
    }
    let ymax = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .fold(0.01, f64::max);
    let ymin = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .fold(f64::INFINITY, f64::min);
    let root = SVGBackend::new(path, (640, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("latency by percentile: {id}"), ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..5f64, (ymin * 0.8..ymax * 1.2).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| match x.round() as i32 {
            0 => "0".into(),
            n => format!("{}", 100.0 - 100.0 * 10f64.powi(-n)),
        })
        .x_labels(6)
        .draw()?;
    for (sys, pts) in lines {
        let color = colors.get(&sys).copied().unwrap_or(BLACK);
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
            .label(sys)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 12, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Open-loop sweeps: achieved rate against p99 (and p50) latency, one line
/// per system and workload/clients group.
fn rate_sweep(results: &Results, path: &Path) -> PlotResult {
    let colors = system_colors(results);
    // (system, workload/clients) -> [(rate, p50 ms, p99 ms)]
    let mut groups: BTreeMap<(String, String), Vec<SweepPoint>> = BTreeMap::new();
    for c in results.cells.iter().filter(|c| c.load.rate.is_some()) {
        let f = figures(c);
        let key = (
            c.system.clone(),
            format!("{} / c{}", c.workload.label(), c.load.clients),
        );
        groups.entry(key).or_default().push((
            median(&f.throughput),
            median(&f.p50_us) / 1000.0,
            median(&f.p99_us) / 1000.0,
        ));
    }
    if groups.is_empty() {
        return Ok(());
    }
    let xmax = groups.values().flatten().map(|p| p.0).fold(1.0, f64::max);
    let ymax = groups.values().flatten().map(|p| p.2).fold(0.01, f64::max);
    let ymin = groups
        .values()
        .flatten()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min)
        .max(0.001);
    let root = SVGBackend::new(path, (640, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "latency against throughput (open loop, corrected)",
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..xmax * 1.1, (ymin * 0.8..ymax * 1.5).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("achieved ops/s")
        .y_desc("latency (ms)")
        .draw()?;
    for ((sys, label), mut pts) in groups {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let color = colors.get(&sys).copied().unwrap_or(BLACK);
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.2)),
                color.stroke_width(2),
            ))?
            .label(format!("{sys} {label} p99"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 12, y)], color.stroke_width(2))
            });
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.1)),
                color.stroke_width(1),
            ))?
            .label(format!("{sys} {label} p50"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 12, y)], color.stroke_width(1))
            });
        chart.draw_series(
            pts.iter()
                .map(|p| Circle::new((p.0, p.2), 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Writes every plot into `dir/plots/`; returns the files written.
pub fn render(results: &Results, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let plots = dir.join("plots");
    std::fs::create_dir_all(&plots)?;
    let mut written = Vec::new();
    let err = |e: Box<dyn std::error::Error>| anyhow::anyhow!("plotting: {e}");
    let p = plots.join("throughput.svg");
    throughput_bars(results, &p).map_err(err)?;
    written.push(p);
    for id in closed_loop_ids(results) {
        let p = plots.join(format!("latency-{}.svg", crate::run::safe_name(&id)));
        spectrum(results, &id, &p).map_err(err)?;
        written.push(p);
    }
    if results.cells.iter().any(|c| c.load.rate.is_some()) {
        let p = plots.join("rate-sweep.svg");
        rate_sweep(results, &p).map_err(err)?;
        written.push(p);
    }
    Ok(written.into_iter().filter(|p| p.exists()).collect())
}
