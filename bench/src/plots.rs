//! SVG plots of a results set (plotters, SVG backend only): throughput bars
//! per cell and system, a latency percentile spectrum per cell, and latency
//! against throughput from open-loop rate sweeps. Rates and latencies span
//! decades (the embedded engine beside networked servers), so their axes are
//! logarithmic with a tick at every decade; legends sit beside the plotting
//! area so they hide no data.

use crate::results::{Cell, Results};
use crate::summary::{figures, median, rep_rate};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
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

/// Width of the legend column right of every plot.
const LEGEND_W: u32 = 190;

/// A log axis range snapped out to whole decades, so every decade has a
/// labelled tick (plotters labels a log axis from its first full decade).
/// A little room is left at both ends, so a line at the extreme value is not
/// drawn on the axis itself.
fn decades(lo: f64, hi: f64) -> std::ops::Range<f64> {
    let lo = lo.max(1e-9) * 0.95;
    let hi = hi.max(lo) * 1.05;
    let a = 10f64.powf(lo.log10().floor());
    let mut b = 10f64.powf(hi.log10().ceil());
    if b <= a {
        b = a * 10.0;
    }
    // Just beyond the decades: plotters finds the first labelled decade
    // with a rounded logarithm, which can step over a bound sitting exactly
    // on one.
    a * 0.999..b * 1.001
}

/// Tick labels on a log axis: enough decimals for the value's leading
/// digit and no more (0.001, 0.02, 0.5, 3, 40, 1000).
fn log_tick(v: f64) -> String {
    if v <= 0.0 || !v.is_finite() {
        return String::new();
    }
    let decimals = (-v.log10().floor()).max(0.0) as usize;
    format!("{v:.decimals$}")
}

/// Rates for tick labels: 500, 2k, 10k, 1.5M.
fn rate_tick(v: f64) -> String {
    let (x, unit) = if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let s = format!("{x:.1}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}{unit}")
}

/// Legend entries drawn beside the plotting area, where they cannot hide
/// data: a swatch (filled box, solid or dashed line) and a label.
enum Swatch {
    Box,
    Line(u32),
    Dashed,
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    entries: &[(String, RGBColor, Swatch)],
) -> PlotResult
where
    DB::ErrorType: 'static,
{
    let font = ("sans-serif", 13).into_font();
    for (i, (label, color, swatch)) in entries.iter().enumerate() {
        let y = 50 + 20 * i as i32;
        match swatch {
            Swatch::Box => area.draw(&Rectangle::new([(8, y - 6), (22, y + 6)], color.filled()))?,
            Swatch::Line(w) => area.draw(&PathElement::new(
                vec![(4, y), (26, y)],
                color.stroke_width(*w),
            ))?,
            Swatch::Dashed => {
                for x in [4, 12, 20] {
                    area.draw(&PathElement::new(
                        vec![(x, y), (x + 5, y)],
                        color.stroke_width(1),
                    ))?;
                }
            }
        }
        area.draw(&Text::new(label.clone(), (32, y - 7), font.clone()))?;
    }
    Ok(())
}

/// Grouped bars on a log axis: median rate per cell and system, whiskers
/// min..max over repetitions.
fn throughput_bars(results: &Results, path: &Path) -> PlotResult {
    let ids = closed_loop_ids(results);
    if ids.is_empty() {
        return Ok(());
    }
    let colors = system_colors(results);
    let systems: Vec<&String> = colors.keys().collect();
    let width = 200 + 120 * ids.len() as u32 + LEGEND_W;
    let root = SVGBackend::new(path, (width.max(720), 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot_area, legend_area) = root.split_horizontally(root.dim_in_pixel().0 - LEGEND_W);
    let rates: Vec<f64> = results
        .cells
        .iter()
        .filter(|c| c.load.rate.is_none())
        .flat_map(|c| c.repetitions.iter().map(rep_rate))
        .filter(|r| *r > 0.0)
        .collect();
    let lo = rates.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = rates.iter().cloned().fold(1.0, f64::max);
    let y_range = decades(if lo.is_finite() { lo } else { 1.0 }, hi);
    let floor = y_range.start;
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(
            format!(
                "{}: throughput per cell (median, whiskers min–max)",
                results.campaign
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..ids.len() as f64, y_range.log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_label_formatter(&|v| rate_tick(*v))
        .y_desc("ops/s (watch: events/s), log scale")
        .x_desc("cell: workload / clients")
        .axis_desc_style(("sans-serif", 14))
        .label_style(("sans-serif", 12))
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
                [(x0, floor), (x1, median(&rates).max(floor))],
                color.filled(),
            )))?;
            let lo = rates.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = rates.iter().cloned().fold(0.0, f64::max);
            let xm = (x0 + x1) / 2.0;
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(xm, lo.max(floor)), (xm, hi.max(floor))],
                BLACK,
            )))?;
        }
        // The cell's name under its group, one part per line.
        let (px, py) = chart.backend_coord(&(i as f64 + 0.5, floor));
        let font =
            TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        for (k, part) in id.split(" / ").enumerate() {
            plot_area.draw(&Text::new(
                part.to_string(),
                (px, py + 6 + 14 * k as i32),
                font.clone(),
            ))?;
        }
    }
    let entries: Vec<(String, RGBColor, Swatch)> = systems
        .iter()
        .map(|s| (s.to_string(), colors[*s], Swatch::Box))
        .collect();
    draw_legend(&legend_area, &entries)?;
    root.present()?;
    Ok(())
}

/// Number of nines of a percentile: 90 -> 1, 99 -> 2, 99.9 -> 3.
fn nines(p: f64) -> f64 {
    -(1.0 - (p / 100.0).min(0.99999)).log10()
}

/// What the main operation's latency measures, for titles.
fn op_meaning(op: &str) -> String {
    match op {
        "watch-event" => "watch-event latency (put sent to event received)".into(),
        op => format!("{op} latency"),
    }
}

/// Latency spectrum of one cell id, one line per system (the repetition
/// whose rate is nearest the median).
fn spectrum(results: &Results, id: &str, path: &Path) -> PlotResult {
    let colors = system_colors(results);
    let cells: Vec<&Cell> = results.cells.iter().filter(|c| c.id == id).collect();
    let mut lines = Vec::new();
    let mut op_name = String::new();
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
        if let Some((name, op)) = rep.main_op() {
            op_name = name.to_string();
            let pts: Vec<(f64, f64)> = op
                .latency_us
                .spectrum
                .iter()
                .filter(|(p, _)| *p <= 99.999)
                .map(|(p, us)| (nines(*p), us.max(0.001) / 1000.0))
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
        .fold(0.001, f64::max);
    let ymin = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .fold(f64::INFINITY, f64::min);
    let root = SVGBackend::new(path, (720 + LEGEND_W, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot_area, legend_area) = root.split_horizontally(720);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(
            format!("{id}: {}", op_meaning(&op_name)),
            ("sans-serif", 16),
        )
        .margin(12)
        .margin_right(30)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..5f64, decades(ymin, ymax).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile (%)")
        .y_desc("latency (ms), log scale")
        .x_label_formatter(&|x| {
            match x.round() as i32 {
                0 => "0",
                1 => "90",
                2 => "99",
                3 => "99.9",
                4 => "99.99",
                5 => "99.999",
                _ => "",
            }
            .into()
        })
        .x_labels(6)
        .y_label_formatter(&|v| log_tick(*v))
        .axis_desc_style(("sans-serif", 14))
        .label_style(("sans-serif", 12))
        .draw()?;
    let mut entries = Vec::new();
    for (sys, pts) in lines {
        let color = colors.get(&sys).copied().unwrap_or(BLACK);
        chart.draw_series(LineSeries::new(pts, color.stroke_width(2)))?;
        entries.push((sys, color, Swatch::Line(2)));
    }
    draw_legend(&legend_area, &entries)?;
    root.present()?;
    Ok(())
}

/// Open-loop sweeps: achieved rate against p99 (solid) and p50 (dashed)
/// latency, one pair of lines per system and workload/clients group.
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
    let ymax = groups.values().flatten().map(|p| p.2).fold(0.001, f64::max);
    let ymin = groups
        .values()
        .flatten()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min)
        .max(0.001);
    let root = SVGBackend::new(path, (720 + LEGEND_W + 60, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot_area, legend_area) = root.split_horizontally(720);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(
            "latency against throughput (open loop, coordinated omission corrected)",
            ("sans-serif", 16),
        )
        .margin(12)
        .margin_right(30)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax * 1.1, decades(ymin, ymax).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("achieved ops/s")
        .y_desc("latency (ms), log scale")
        .x_label_formatter(&|v| rate_tick(*v))
        .y_label_formatter(&|v| log_tick(*v))
        .axis_desc_style(("sans-serif", 14))
        .label_style(("sans-serif", 12))
        .draw()?;
    let mut entries = Vec::new();
    for ((sys, label), mut pts) in groups {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let color = colors.get(&sys).copied().unwrap_or(BLACK);
        chart.draw_series(LineSeries::new(
            pts.iter().map(|p| (p.0, p.2)),
            color.stroke_width(2),
        ))?;
        chart.draw_series(DashedLineSeries::new(
            pts.iter().map(|p| (p.0, p.1)),
            6,
            4,
            color.stroke_width(1),
        ))?;
        chart.draw_series(
            pts.iter()
                .map(|p| Circle::new((p.0, p.2), 3, color.filled())),
        )?;
        chart.draw_series(
            pts.iter()
                .map(|p| Circle::new((p.0, p.1), 2, color.stroke_width(1))),
        )?;
        entries.push((format!("{sys} {label} p99"), color, Swatch::Line(2)));
        entries.push((format!("{sys} {label} p50"), color, Swatch::Dashed));
    }
    draw_legend(&legend_area, &entries)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ranges_cover_the_data_in_whole_decades() {
        let r = decades(0.001, 200.0);
        assert!(r.start < 0.001 && r.start > 0.0001 * 0.99, "{r:?}");
        assert!(r.end > 1000.0 && r.end < 1002.0, "{r:?}");
        // A value on a decade gets the decade below, so it is not drawn on
        // the axis.
        let r = decades(0.1, 0.1);
        assert!(r.start < 0.02 && r.end > 1.0, "{r:?}");
    }

    #[test]
    fn tick_labels() {
        assert_eq!(log_tick(0.001), "0.001");
        assert_eq!(log_tick(0.02), "0.02");
        assert_eq!(log_tick(1.0), "1");
        assert_eq!(log_tick(300.0), "300");
        assert_eq!(rate_tick(500.0), "500");
        assert_eq!(rate_tick(1500.0), "1.5k");
        assert_eq!(rate_tick(10_000.0), "10k");
        assert_eq!(rate_tick(2_000_000.0), "2M");
    }

    #[test]
    fn renders_every_plot_of_a_results_set() {
        use crate::recorder::LatencyUs;
        use crate::results::{OpResult, Repetition, SystemInfo};
        use crate::workload::{Load, Workload, WorkloadKind};
        let cell = |system: &str, rate: Option<f64>, ops_s: f64, p50: f64| {
            let op = OpResult {
                ok: 100,
                latency_us: LatencyUs {
                    p50,
                    p99: p50 * 50.0,
                    spectrum: vec![(50.0, p50), (99.0, p50 * 50.0), (99.9, p50 * 100.0)],
                    ..Default::default()
                },
                ..Default::default()
            };
            let load = Load {
                conns: 1,
                clients: 8,
                total: None,
                duration_s: Some(1.0),
                warmup_s: 0.0,
                rate,
            };
            let wl = Workload::new(WorkloadKind::Put);
            Cell {
                id: crate::results::cell_id(&wl, &load),
                system: system.into(),
                workload: wl,
                load,
                repetitions: vec![Repetition {
                    throughput_ops_s: ops_s,
                    ops: [("put".to_string(), op)].into(),
                    ..Default::default()
                }],
            }
        };
        let sys = |name: &str| SystemInfo {
            name: name.into(),
            kind: "process".into(),
            nodes: 1,
            version: "1".into(),
            command: String::new(),
            baseline: None,
        };
        let results = Results {
            schema: crate::results::SCHEMA.into(),
            campaign: "plots".into(),
            created: String::new(),
            command: String::new(),
            machine: Default::default(),
            systems: vec![sys("a"), sys("b")],
            cells: vec![
                cell("a", None, 1_000_000.0, 0.8),
                cell("b", None, 3_000.0, 900.0),
                cell("a", Some(1000.0), 1000.0, 200.0),
                cell("a", Some(4000.0), 4000.0, 300.0),
            ],
            notes: vec![],
        };
        let dir = tempfile::tempdir().unwrap();
        let written = render(&results, dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["throughput.svg", "latency-put_c8.svg", "rate-sweep.svg"]
        );
        // plotters writes each text element's content on a line of its own.
        let has = |svg: &str, text: &str| svg.contains(&format!(">\n{text}\n</text>"));
        let bars = std::fs::read_to_string(&written[0]).unwrap();
        // Axis descriptions with units, both systems in the legend, the
        // cell's name under its bars, decades labelled.
        for text in [
            "ops/s (watch: events/s), log scale",
            "a",
            "b",
            "c8",
            "1M",
            "1k",
        ] {
            assert!(has(&bars, text), "{text} missing from throughput.svg");
        }
        let spectrum = std::fs::read_to_string(&written[1]).unwrap();
        for text in ["latency (ms), log scale", "percentile (%)", "99.9", "0.001"] {
            assert!(has(&spectrum, text), "{text} missing from the spectrum");
        }
    }
}
