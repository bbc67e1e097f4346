//! Acceptance 3: the gate's verdicts on synthetic result sets (identical
//! passes, a 20% slowdown beyond the noise fails, a 3% change inside the
//! noise passes), its exit code and exports, and an A/A comparison of two
//! independent measurements of a real campaign cell against etcd that must
//! pass.

use bench::gate::{any_regression, compare, Thresholds, Verdict};
use bench::recorder::LatencyUs;
use bench::results::{Cell, OpResult, Repetition, Results, SystemInfo, SCHEMA};
use bench::workload::{Load, Workload, WorkloadKind};
use std::process::Command;

/// Five repetitions with ±2% noise around the base figures.
const NOISE: [f64; 5] = [1.00, 1.02, 0.98, 1.01, 0.99];

fn results(throughput: f64, p50_us: f64, reps: &[f64]) -> Results {
    let wl = Workload::new(WorkloadKind::Put);
    let load = Load {
        conns: 1,
        clients: 10,
        total: None,
        duration_s: Some(1.0),
        warmup_s: 0.0,
        rate: None,
    };
    let repetitions = reps
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let op = OpResult {
                ok: 1000,
                ok_all: 1000,
                latency_us: LatencyUs {
                    count: 1000,
                    p50: p50_us / n,
                    p99: 4.0 * p50_us / n,
                    ..Default::default()
                },
                ..Default::default()
            };
            Repetition {
                index: i,
                throughput_ops_s: throughput * n,
                ops: [("put".to_string(), op)].into(),
                ..Default::default()
            }
        })
        .collect();
    Results {
        schema: SCHEMA.into(),
        campaign: "synthetic".into(),
        created: String::new(),
        command: String::new(),
        machine: Default::default(),
        systems: vec![SystemInfo {
            name: "sys".into(),
            kind: "process".into(),
            nodes: 1,
            version: "1".into(),
            command: String::new(),
            baseline: None,
        }],
        cells: vec![Cell {
            id: "put / c10".into(),
            system: "sys".into(),
            workload: wl,
            load,
            repetitions,
        }],
        notes: vec![],
    }
}

fn verdict_of(v: &[bench::gate::MetricVerdict], metric: &str) -> Verdict {
    v.iter().find(|m| m.metric == metric).unwrap().verdict
}

#[test]
fn identical_distributions_pass() {
    let a = results(10_000.0, 500.0, &NOISE);
    let v = compare(&a, &a.clone(), &Thresholds::default());
    assert_eq!(v.len(), 3);
    assert!(v.iter().all(|m| m.verdict == Verdict::Pass), "{v:#?}");
}

#[test]
fn twenty_percent_slowdown_beyond_noise_fails() {
    let a = results(10_000.0, 500.0, &NOISE);
    // 20% fewer ops/s and 25% more latency (1 / 0.8), same ±2% noise.
    let b = results(8_000.0, 625.0, &NOISE);
    let v = compare(&a, &b, &Thresholds::default());
    assert_eq!(verdict_of(&v, "throughput"), Verdict::Regressed, "{v:#?}");
    assert_eq!(verdict_of(&v, "latency_p50"), Verdict::Regressed);
    assert!(any_regression(&v));
}

#[test]
fn three_percent_inside_noise_passes() {
    let a = results(10_000.0, 500.0, &NOISE);
    let b = results(9_700.0, 515.0, &NOISE);
    let v = compare(&a, &b, &Thresholds::default());
    assert!(!any_regression(&v), "{v:#?}");
    // The interval does contain the 3% change: the gate saw it and judged
    // it inside the threshold, not that it saw nothing.
    let t = v.iter().find(|m| m.metric == "throughput").unwrap();
    assert!(
        t.ci_low < 0.97 && t.ci_high > 0.95 && t.ci_high < 1.0,
        "{t:#?}"
    );
}

#[test]
fn twenty_percent_drowned_in_noise_passes() {
    // ±30% noise: a 20% drop is not provable with five repetitions.
    let noisy = [1.0, 1.3, 0.7, 1.25, 0.75];
    let a = results(10_000.0, 500.0, &noisy);
    let b = results(8_000.0, 625.0, &noisy);
    let v = compare(&a, &b, &Thresholds::default());
    assert_eq!(verdict_of(&v, "throughput"), Verdict::Pass, "{v:#?}");
}

fn gate_exit(a: &Results, b: &Results, dir: &std::path::Path) -> i32 {
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::create_dir_all(dir.join("b")).unwrap();
    a.save(&dir.join("a")).unwrap();
    b.save(&dir.join("b")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferrobench"))
        .args(["gate", "--baseline"])
        .arg(dir.join("a"))
        .arg("--current")
        .arg(dir.join("b"))
        .arg("--markdown")
        .arg(dir.join("verdict.md"))
        .arg("--bencher")
        .arg(dir.join("bmf.json"))
        .arg("--github-action-benchmark")
        .arg(dir.join("gab.json"))
        .output()
        .unwrap();
    out.status.code().unwrap()
}

#[test]
fn exit_code_markdown_and_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let a = results(10_000.0, 500.0, &NOISE);
    assert_eq!(
        gate_exit(&a, &results(8_000.0, 625.0, &NOISE), tmp.path()),
        1
    );
    let md = std::fs::read_to_string(tmp.path().join("verdict.md")).unwrap();
    assert!(
        md.contains("REGRESSION") && md.contains("regressed"),
        "{md}"
    );
    let bmf: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("bmf.json")).unwrap()).unwrap();
    let t = &bmf["sys/put / c10"]["throughput"];
    assert_eq!(t["value"].as_f64(), Some(8_000.0));
    assert!(
        t["lower_value"].as_f64().unwrap() < 8_000.0
            && t["upper_value"].as_f64().unwrap() > 8_000.0
    );
    let gab: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("gab.json")).unwrap()).unwrap();
    assert_eq!(gab[0]["name"], "sys/put / c10 throughput");
    assert_eq!(gab[0]["unit"], "ops/s");
    let smaller: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("gab.smaller.json")).unwrap())
            .unwrap();
    assert_eq!(smaller.as_array().unwrap().len(), 2);

    assert_eq!(
        gate_exit(&a, &results(9_700.0, 515.0, &NOISE), tmp.path()),
        0
    );
}

/// One A/A campaign: etcd 1-node, put with 8 clients, one repetition of
/// 0.3 s warm-up and 1 s measured, in a ferrobench process of its own.
fn aa_campaign(tmp: &std::path::Path, run: &str) -> Results {
    let spec = tmp.join("aa.toml");
    std::fs::write(
        &spec,
        r#"
name = "aa"
repetitions = 1
warmup_s = 0.3
duration_s = 1.0

[[systems]]
name = "etcd-1"
kind = "process"
command = "etcd --name {name} --data-dir {data_dir} --listen-client-urls {client_url} --advertise-client-urls {client_url} --listen-peer-urls {peer_url} --initial-advertise-peer-urls {peer_url} --initial-cluster {initial_cluster} --initial-cluster-token {cluster_token} --initial-cluster-state new --log-level warn"
version_command = "etcd --version"

[[workloads]]
kind = "put"
clients = [8]
"#,
    )
    .unwrap();
    let dir = tmp.join(run);
    let status = Command::new(env!("CARGO_BIN_EXE_ferrobench"))
        .arg("campaign")
        .arg(&spec)
        .arg("--dir")
        .arg(&dir)
        .arg("--data-dir")
        .arg(tmp.join("data"))
        .arg("--no-progress")
        .status()
        .unwrap();
    assert!(status.success());
    assert!(dir.join("summary.md").exists() && dir.join("plots/throughput.svg").exists());
    let r = Results::load(&dir).unwrap();
    assert_eq!(r.cells.len(), 1);
    assert_eq!(r.cells[0].repetitions.len(), 1);
    r
}

/// A/A: two independent measurements of one real campaign cell (etcd,
/// 1 node, put, 8 clients), each of three campaign runs in a ferrobench
/// process and etcd instance of its own; the runs go A B B A A B so drift
/// of the shared machine falls on both sides alike. `ferrobench gate` must
/// find no regression of B against A.
#[test]
fn a_a_campaign_cell_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sides: [Option<Results>; 2] = [None, None];
    for (i, side) in [0, 1, 1, 0, 0, 1].into_iter().enumerate() {
        let mut r = aa_campaign(tmp.path(), &format!("run{i}"));
        if let Some(all) = &mut sides[side] {
            let mut rep = r.cells[0].repetitions.remove(0);
            rep.index = all.cells[0].repetitions.len();
            all.cells[0].repetitions.push(rep);
        } else {
            sides[side] = Some(r);
        }
    }
    let [Some(a), Some(b)] = sides else {
        unreachable!("both sides ran")
    };
    assert_eq!(a.cells[0].repetitions.len(), 3);
    assert_eq!(b.cells[0].repetitions.len(), 3);
    let v = compare(&a, &b, &Thresholds::default());
    eprintln!("{}", bench::gate::markdown(&v));
    assert!(v.iter().all(|m| m.verdict != Verdict::Skipped));
    assert!(
        !any_regression(&v),
        "A/A run regressed:\n{}",
        bench::gate::markdown(&v)
    );
    // The same verdict through the binary: exit code 0.
    assert_eq!(gate_exit(&a, &b, &tmp.path().join("gate")), 0);
}
