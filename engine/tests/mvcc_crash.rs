//! Crash safety of the store with real processes: a child applies a
//! deterministic command stream at raft indexes 1..=N and is SIGKILLed at
//! random moments (in the middle of batch commits, compactions, large
//! values). After every kill the store must open and hold exactly the state
//! of some prefix 1..=ci of the stream, ci being its consistent index: the
//! hash of all revisions, the revision, the compacted revision and the
//! leases equal those of a crash-free run after command ci. The next child
//! replays the stream from index 1 (the store skips what it has), as raft
//! does after a restart; the last one runs to the end, and its final state
//! equals the crash-free run's.
//!
//! `MVCC_CRASH_KILLS` sets the number of kills (default 40).

#[path = "common/mvcc_workload.rs"]
mod mvcc_workload;

use engine::backend::Durability;
use engine::mvcc::{LeaseExpiry, Store, StoreOptions};
use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const COMMANDS: u64 = 8000;
const SEED: u64 = 0x5eed_cafe;

#[derive(Clone, Debug, PartialEq, Eq)]
struct State {
    hash: u32,
    revision: i64,
    compact: i64,
    leases: Vec<i64>,
}

fn state_of(s: &Store) -> State {
    State {
        hash: s.hash_kv(0).unwrap().hash,
        revision: s.current_revision(),
        compact: s.compact_revision(),
        leases: s.lease_leases().leases,
    }
}

fn options(durability: Durability) -> StoreOptions {
    StoreOptions {
        durability,
        batch_interval: Duration::from_millis(2),
        batch_limit: 64,
        compaction_batch_keys: 8,
        compaction_batch_pause: Duration::ZERO,
        lease_expiry: LeaseExpiry::External,
        ..Default::default()
    }
}

/// The crash-free run: the state after every prefix of the stream.
fn reference() -> Vec<State> {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("ref"), options(Durability::NoSync)).unwrap();
    let mut states = vec![state_of(&s)];
    for i in 1..=COMMANDS {
        if let Err(e) = s.apply(i, &mvcc_workload::command(SEED, i)) {
            assert!(!e.is_fatal(), "{e}");
        }
        states.push(state_of(&s));
    }
    states
}

fn kills() -> usize {
    std::env::var("MVCC_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

fn spawn(
    path: &std::path::Path,
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mvcc-crash-child"))
        .arg(path)
        .arg(SEED.to_string())
        .arg(COMMANDS.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// Runs the child on `path` to the end of the stream and checks the
/// final state.
fn finish(path: &std::path::Path, last: &State) {
    let (mut child, lines) = spawn(path);
    let done = lines
        .map(|l| l.unwrap())
        .find(|l| !l.starts_with("opened ") && !l.starts_with("synced "))
        .expect("the child reports done");
    assert!(child.wait().unwrap().success());
    assert_eq!(
        done,
        format!("done {} {} {}", last.hash, last.revision, last.compact)
    );
    let s = Store::open(path, options(Durability::Durable)).unwrap();
    assert_eq!(state_of(&s), *last);
}

#[test]
fn killed_at_random_moments_the_store_holds_an_exact_prefix() {
    let expected = reference();
    let last = &expected[COMMANDS as usize];
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut kills_done = 0;
    let mut mid_run = 0;
    let mut round = 0;
    // Each round kills a child on a fresh store until the stream is
    // through, then lets the last child finish.
    while kills_done < kills() {
        let path = dir.path().join(format!("db{round}"));
        let mut progress = vec![0];
        while kills_done < kills() {
            let (mut child, mut lines) = spawn(&path);
            let opened = lines.next().unwrap().unwrap();
            assert!(opened.starts_with("opened "), "{opened}");
            // After the child's first sync (or its end): the kill then
            // lands after progress, however slow the disk is, anywhere in
            // the next batch commits, compactions or large values.
            let next = lines.next().unwrap().unwrap();
            assert!(
                next.starts_with("synced ") || next.starts_with("done "),
                "{next}"
            );
            std::thread::sleep(Duration::from_micros(rng.gen_range(0..15_000)));
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            kills_done += 1;

            let s = Store::open(&path, options(Durability::Durable))
                .unwrap_or_else(|e| panic!("kill {kills_done}: open failed: {e}"));
            let ci = s.consistent_index();
            assert!(ci <= COMMANDS);
            assert!(ci >= *progress.last().unwrap(), "a commit was lost");
            assert_eq!(
                state_of(&s),
                expected[ci as usize],
                "kill {kills_done}: state after index {ci}"
            );
            s.close().unwrap();
            if ci > *progress.last().unwrap() && ci < COMMANDS {
                mid_run += 1;
            }
            progress.push(ci);
            if ci == COMMANDS {
                break;
            }
        }
        eprintln!("round {round}: consistent index after each kill: {progress:?}");
        finish(&path, last);
        round += 1;
    }
    // Most kills must have landed inside the stream, not after it.
    assert!(
        mid_run >= kills_done / 2,
        "{mid_run} of {kills_done} kills mid-run"
    );
}
