//! Child process of the B+tree crash test (engine/tests/btree_crash.rs).
//!
//! Usage: btree-crash-child <db path> <single|double> [checkpoint interval]
//!
//! Opens the file, resumes after the commit recorded under the `commit`
//! marker key, and commits forever: commit `n` applies `workload(n)` and
//! sets the marker to `n`. After each commit returns (durable), prints `n`
//! on stdout. The parent SIGKILLs it at a random moment.

use engine::btree::{Db, Options, SyncMode};
use std::io::Write;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("db path");
    let sync = match args.next().as_deref() {
        Some("double") => SyncMode::Double,
        _ => SyncMode::Single,
    };
    let checkpoint_interval_commits = args
        .next()
        .map(|s| s.parse().expect("checkpoint interval"))
        .unwrap_or(Options::default().checkpoint_interval_commits);
    let opts = Options {
        sync,
        initial_size_bytes: 64 * 1024,
        grow_step_min_bytes: 64 * 1024,
        checkpoint_interval_commits,
        ..Options::default()
    };
    let db = open_retrying(&path, opts);
    let mut next = {
        let rx = db.begin_read().expect("read");
        match rx.bucket(crash_workload::BUCKET) {
            Ok(b) => crash_workload::marker(b.get(crash_workload::MARKER).expect("marker")) + 1,
            Err(_) => 1,
        }
    };
    let stdout = std::io::stdout();
    loop {
        let mut tx = db.begin_write().expect("begin");
        tx.create_bucket(crash_workload::BUCKET).expect("bucket");
        for op in crash_workload::workload(next) {
            match op {
                crash_workload::Op::Put(k, v) => {
                    tx.put(crash_workload::BUCKET, &k, &v).expect("put")
                }
                crash_workload::Op::Delete(k) => {
                    tx.delete(crash_workload::BUCKET, &k).expect("delete");
                }
            }
        }
        tx.put(
            crash_workload::BUCKET,
            crash_workload::MARKER,
            &next.to_le_bytes(),
        )
        .expect("marker");
        tx.commit().expect("commit");
        let mut out = stdout.lock();
        writeln!(out, "{next}").expect("stdout");
        out.flush().expect("flush");
        next += 1;
    }
}

/// Opens the file, waiting while another process holds its lock. The parent
/// test runs two crash loops in parallel threads: a fork of the other loop
/// briefly inherits this loop's descriptor (and its flock) until it execs.
fn open_retrying(path: &str, opts: Options) -> Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Db::open(path, opts.clone()) {
            Ok(db) => return db,
            Err(engine::btree::Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::WouldBlock
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => panic!("open: {e}"),
        }
    }
}

#[path = "../../tests/common/crash_workload.rs"]
mod crash_workload;
