//! Crash safety with real processes: a child commits in a loop and reports
//! each acknowledged commit; the parent SIGKILLs it at random moments. After
//! every kill the file must open, pass `check`, and hold exactly the last
//! acknowledged commit or the one after it (which may have completed
//! without being acknowledged) — never a partial one.
//!
//! `BTREE_CRASH_KILLS` sets the number of kills (default 200; the
//! `crash-soak` make target runs more).

mod common;

use common::crash_workload::{expected, marker, BUCKET};
use engine::btree::{Db, Options};
use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn kills() -> usize {
    std::env::var("BTREE_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

fn crash_loop(mode: &str, kills: usize, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut acked = 0u64;
    let mut kills_mid_run = 0;
    let mut model_at = (0u64, expected(0));
    for kill in 0..kills {
        // Checkpoints every commit, every few commits, and rarely: the kill
        // lands in record-only commits and in checkpoints, and recovery
        // follows chains of every length.
        let interval = [1u32, 3, 64][kill % 3];
        let mut child = Command::new(env!("CARGO_BIN_EXE_btree-crash-child"))
            .arg(&path)
            .arg(mode)
            .arg(interval.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line.parse::<u64>().unwrap()).is_err() {
                    break;
                }
            }
        });
        // Wait for a random number of acknowledged commits (0..40), then a
        // random extra delay so the kill lands anywhere inside a commit.
        let wait_acks = rng.gen_range(0..40);
        let mut seen = 0;
        while seen < wait_acks {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(n) => {
                    assert_eq!(n, acked + 1, "commits are acknowledged in order");
                    acked = n;
                    seen += 1;
                }
                Err(e) => panic!("child stopped acknowledging: {e}"),
            }
        }
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..3000)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        for n in rx.try_iter() {
            assert_eq!(n, acked + 1);
            acked = n;
            kills_mid_run += 1;
        }

        let db = Db::open(&path, Options::default())
            .unwrap_or_else(|e| panic!("kill {kill}: open failed: {e}"));
        let report = db.check().unwrap();
        assert!(
            report.is_ok(),
            "kill {kill}: check failed: {:?}",
            report.errors
        );
        let rx = db.begin_read().unwrap();
        let contents: Vec<(Vec<u8>, Vec<u8>)> = match rx.bucket(BUCKET) {
            Ok(b) => b
                .range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
                .map(|r| {
                    let (k, v) = r.unwrap();
                    (k.to_vec(), v.to_vec())
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        let found = marker(
            contents
                .iter()
                .find(|(k, _)| k.as_slice() == common::crash_workload::MARKER)
                .map(|(_, v)| v.as_slice()),
        );
        assert!(
            found == acked || found == acked + 1,
            "kill {kill}: file holds commit {found}, last acknowledged {acked}"
        );
        if model_at.0 != found {
            model_at = (found, expected(found));
        }
        let want: Vec<(Vec<u8>, Vec<u8>)> = model_at
            .1
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert!(
            contents == want,
            "kill {kill}: contents differ from commit {found}"
        );
        acked = found;
    }
    assert!(
        acked > kills as u64,
        "the children made progress ({acked} commits)"
    );
    eprintln!("{mode}: {kills} kills, {acked} commits, {kills_mid_run} acks read after the kill");
}

#[test]
fn sigkill_during_single_fsync_commits() {
    crash_loop("single", kills(), 0x5eed_0001);
}

#[test]
fn sigkill_during_double_fsync_commits() {
    crash_loop("double", kills() / 4, 0x5eed_0002);
}
