//! The deterministic CI gate: callgrind instruction counts of in-process
//! micro-workloads against the committed baseline
//! (results/callgrind/baseline.json). Runs under valgrind, which
//! `make deps` installs.

use std::path::{Path, PathBuf};
use std::process::Command;

fn baseline() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/callgrind/baseline.json")
}

fn gate(baseline: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrobench"))
        .args(["gate", "--callgrind", "--baseline"])
        .arg(baseline)
        .output()
        .expect("ferrobench runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn instruction_counts_within_committed_baseline() {
    let (code, text) = gate(&baseline());
    eprintln!("{text}");
    assert_eq!(code, 0, "callgrind gate regressed against the committed baseline:\n{text}\n\
        (if the extra instructions are intended, refresh it: ferrobench gate --callgrind --update-baseline --baseline results/callgrind/baseline.json)");
    assert_eq!(
        text.matches("✅ pass").count(),
        bench::callgrind::MICRO.len()
    );
}

/// The same measurement against a baseline 10% below it must fail: the gate
/// can say no.
#[test]
fn a_tighter_baseline_fails() {
    let mut b: bench::callgrind::Baseline =
        serde_json::from_str(&std::fs::read_to_string(baseline()).unwrap()).unwrap();
    for v in b.instructions.values_mut() {
        *v = *v * 9 / 10;
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tight.json");
    std::fs::write(&path, serde_json::to_string(&b).unwrap()).unwrap();
    let (code, text) = gate(&path);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("regressed"));
}

#[test]
fn parses_callgrind_summary() {
    let text = "events: Ir\nfl=a\n1 5\nsummary: 12345\ntotals: 12345\n";
    assert_eq!(bench::callgrind::parse_instructions(text), Some(12345));
}
