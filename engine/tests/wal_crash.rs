//! Crash safety with real processes, on both I/O paths: a child appends
//! from nine concurrent streams (blocking waits, pipelined batches, futures,
//! callbacks) and reports every acknowledged (durable) record; the parent
//! SIGKILLs it at random moments. After every kill the log must open, and
//! every acknowledged record must be present, intact, and in its stream's
//! order; records that were not acknowledged may be present too, but only
//! as an unbroken continuation of their stream (nothing torn, nothing out
//! of order, no gaps).
//!
//! `WAL_CRASH_KILLS` sets the kills per path (default 200; the
//! `wal-crash-soak` make target runs more).

mod wal_support;

use engine::wal::{Error, IoMode, Wal};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use wal_support::{check_payload, small};

fn kills() -> usize {
    std::env::var("WAL_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

fn open_retrying(dir: &Path, io: IoMode) -> (Wal, engine::wal::Recovery) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Wal::open(dir, small(io)) {
            Ok(v) => return v,
            Err(Error::Locked(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("open after kill: {e}"),
        }
    }
}

/// Kills per log: then the loop starts a fresh log, so recovery time (which
/// grows with the log) stays bounded and a soak scales linearly.
const KILLS_PER_LOG: usize = 100;

fn crash_loop(io: IoMode, arg: &str, kills: usize, seed: u64) {
    let base = tempfile::tempdir().unwrap();
    let mut dir = base.path().join("log-0");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Highest acknowledged n per stream.
    let mut acked: HashMap<u32, u64> = HashMap::new();
    let (mut torn, mut total_acks, mut late_acks) = (0, 0u64, 0u64);
    for kill in 0..kills {
        if kill > 0 && kill % KILLS_PER_LOG == 0 {
            std::fs::remove_dir_all(&dir).unwrap();
            dir = base.path().join(format!("log-{kill}"));
            acked.clear();
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_wal-crash-child"))
            .arg(&dir)
            .arg(arg)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut it = line.split(' ').map(|v| v.parse::<u64>().unwrap());
                let ack = (it.next().unwrap() as u32, it.next().unwrap());
                if tx.send(ack).is_err() {
                    break;
                }
            }
        });
        let note = |(s, n): (u32, u64), acked: &mut HashMap<u32, u64>| {
            let e = acked.entry(s).or_insert(n);
            *e = (*e).max(n);
        };
        // Wait for a random number of acknowledgements, then a random
        // extra delay so the kill lands anywhere in a write or fdatasync.
        let wait_acks = rng.gen_range(0..300);
        for _ in 0..wait_acks {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(a) => {
                    note(a, &mut acked);
                    total_acks += 1;
                }
                Err(e) => panic!("kill {kill}: child stopped acknowledging: {e}"),
            }
        }
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..2000)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        for a in rx.try_iter() {
            note(a, &mut acked);
            total_acks += 1;
            late_acks += 1;
        }

        let (wal, rec) = open_retrying(&dir, io);
        if rec.torn_tail.is_some() {
            torn += 1;
        }
        let mut next: HashMap<u32, u64> = HashMap::new();
        for (i, r) in rec.records.iter().enumerate() {
            let (s, n) = check_payload(&r.payload).unwrap_or_else(|| {
                panic!("kill {kill}: record {i} (index {}) is damaged", r.index)
            });
            assert_eq!(r.index, n, "kill {kill}: record {i} index");
            let want = next.entry(s).or_insert(0);
            assert_eq!(
                n, *want,
                "kill {kill}: stream {s} out of order or with a gap"
            );
            *want += 1;
        }
        for (s, &n) in &acked {
            let have = next.get(s).copied().unwrap_or(0);
            assert!(
                have > n,
                "kill {kill}: stream {s} acknowledged record {n}, the log has {have} records of it"
            );
        }
        drop(wal);
    }
    assert!(
        total_acks > kills as u64 * 20,
        "the children made progress ({total_acks} acks)"
    );
    eprintln!(
        "{arg}: {kills} kills, {total_acks} acknowledged records ({late_acks} read after the kill), \
         {torn} recoveries truncated a torn tail"
    );
}

#[test]
fn sigkill_while_appending_io_uring() {
    crash_loop(IoMode::IoUring, "io_uring", kills(), 0x3a1_0001);
}

#[test]
fn sigkill_while_appending_portable() {
    crash_loop(IoMode::Portable, "portable", kills(), 0x3a1_0002);
}
