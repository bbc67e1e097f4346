//! The deterministic gate: instruction counts (callgrind's `Ir`) of
//! in-process micro-workloads, which do not depend on the machine's load,
//! against a committed baseline. `ferrobench-micro <name>` (a binary of its
//! own, on the plain allocator) runs one workload; `ferrobench gate
//! --callgrind` runs each under valgrind.

use crate::gate::GateArgs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// The micro-workloads, each small enough for valgrind (~50× slower).
pub const MICRO: [&str; 3] = ["btree-insert", "btree-get", "recorder"];

const BTREE_KEYS: u64 = 2000;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Instructions per micro-workload.
    pub instructions: BTreeMap<String, u64>,
    /// How the counts were produced.
    pub note: String,
}

fn btree_fill(dir: &Path) -> anyhow::Result<engine::btree::Db> {
    use engine::btree::{Db, Options};
    let db = Db::open(dir.join("micro.db"), Options::default())?;
    let mut tx = db.begin_write()?;
    tx.create_bucket(b"b")?;
    for i in 0..BTREE_KEYS {
        // A fixed permutation of the keys, so the tree splits deterministically.
        let k = (i * 7919) % BTREE_KEYS;
        tx.put(b"b", &crate::keys::format_key(k, 16), &[0x42; 100])?;
    }
    tx.commit()?;
    Ok(db)
}

/// Runs one micro-workload in this process.
pub fn run_micro(name: &str) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("ferrobench-micro-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = (|| -> anyhow::Result<()> {
        match name {
            "btree-insert" => {
                btree_fill(&dir)?;
            }
            "btree-get" => {
                let db = btree_fill(&dir)?;
                let tx = db.begin_read()?;
                let mut found = 0;
                for k in 0..BTREE_KEYS {
                    found += tx.get(b"b", &crate::keys::format_key(k, 16))?.is_some() as u64;
                }
                anyhow::ensure!(found == BTREE_KEYS, "found {found} of {BTREE_KEYS}");
            }
            "recorder" => {
                let mut h = crate::recorder::new_histogram();
                let mut x = 1u64;
                for _ in 0..200_000 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    h.saturating_record(1000 + (x >> 40));
                }
                let s = crate::recorder::summarize(&h);
                anyhow::ensure!(s.count == 200_000);
            }
            other => anyhow::bail!("unknown micro-workload {other:?} (known: {MICRO:?})"),
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// `Ir` from a callgrind output file's `summary:` (or `totals:`) line.
pub fn parse_instructions(text: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with("summary:"))
        .or_else(|| text.lines().find(|l| l.starts_with("totals:")))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Instructions of one micro-workload under callgrind.
pub fn measure(exe: &Path, name: &str) -> anyhow::Result<u64> {
    let out = std::env::temp_dir().join(format!(
        "ferrobench-callgrind-{}-{name}.out",
        std::process::id()
    ));
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg("--quiet")
        .arg(exe)
        .arg(name)
        .status()
        .map_err(|e| anyhow::anyhow!("running valgrind (make deps installs it): {e}"))?;
    anyhow::ensure!(status.success(), "callgrind run of {name} failed: {status}");
    let text = std::fs::read_to_string(&out)?;
    let _ = std::fs::remove_file(&out);
    parse_instructions(&text)
        .ok_or_else(|| anyhow::anyhow!("no summary line in callgrind output of {name}"))
}

pub fn gate(args: &GateArgs) -> anyhow::Result<i32> {
    // Built beside ferrobench (`cargo build --release -p bench`).
    let exe = std::env::current_exe()?.with_file_name("ferrobench-micro");
    anyhow::ensure!(
        exe.exists(),
        "{} is missing: build it with `cargo build --release -p bench --bin ferrobench-micro`",
        exe.display()
    );
    let mut measured = BTreeMap::new();
    for name in MICRO {
        measured.insert(name.to_string(), measure(&exe, name)?);
    }
    if args.update_baseline {
        let b = Baseline {
            instructions: measured,
            note: "callgrind Ir of `ferrobench-micro <name>`, release profile; refresh with `ferrobench gate --callgrind --update-baseline --baseline <this file>`".into(),
        };
        std::fs::write(&args.baseline, serde_json::to_string_pretty(&b)? + "\n")?;
        eprintln!("wrote {}", args.baseline.display());
        return Ok(0);
    }
    let text = std::fs::read_to_string(&args.baseline)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", args.baseline.display()))?;
    let base: Baseline = serde_json::from_str(&text)?;
    let mut md = String::from("# ferrobench gate (callgrind instruction counts)\n\n| verdict | micro-workload | baseline Ir | current Ir | ratio | threshold |\n|---|---|---:|---:|---:|---:|\n");
    let mut regressed = false;
    for (name, cur) in &measured {
        let Some(&b) = base.instructions.get(name) else {
            let _ = writeln!(md, "| ⚪ new | {name} | – | {cur} | – | – |");
            continue;
        };
        let ratio = *cur as f64 / b as f64;
        let verdict = if ratio > 1.0 + args.callgrind_threshold {
            regressed = true;
            "❌ regressed"
        } else {
            "✅ pass"
        };
        let _ = writeln!(
            md,
            "| {verdict} | {name} | {b} | {cur} | {ratio:.4} | +{:.1}% |",
            args.callgrind_threshold * 100.0
        );
    }
    print!("{md}");
    if let Some(p) = &args.markdown {
        std::fs::write(p, &md)?;
    }
    Ok(if regressed { 1 } else { 0 })
}
