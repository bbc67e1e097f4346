//! Child process of the MVCC crash test (engine/tests/mvcc_crash.rs).
//!
//! Usage: mvcc-crash-child <store path> <seed> <commands>
//!
//! Opens the store, prints `opened <consistent index>`, then applies
//! commands 1..=<commands> of the stream at their raft indexes — the ones at
//! or below the consistent index are replays the store skips, as after a
//! raft restart. Every 400 new commands it syncs and prints `synced <i>`;
//! at the end it syncs and prints
//! `done <hash> <revision> <compact revision>`. The parent SIGKILLs it at
//! random moments before that.

use engine::mvcc::{LeaseExpiry, Store, StoreOptions};
use std::io::Write;
use std::time::Duration;

#[path = "../../tests/common/mvcc_workload.rs"]
mod mvcc_workload;

/// Every this many new commands the child syncs and prints `synced <i>`:
/// the parent kills only after one, so every kill lands after progress,
/// however slow the disk is.
const SYNC_EVERY: u64 = 400;

pub fn crash_options() -> StoreOptions {
    StoreOptions {
        batch_interval: Duration::from_millis(2),
        batch_limit: 64,
        compaction_batch_keys: 8,
        compaction_batch_pause: Duration::ZERO,
        lease_expiry: LeaseExpiry::External,
        ..Default::default()
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("store path");
    let seed: u64 = args.next().expect("seed").parse().expect("seed");
    let count: u64 = args.next().expect("count").parse().expect("count");
    let store = Store::open(&path, crash_options()).expect("open");
    let mut out = std::io::stdout();
    let opened = store.consistent_index();
    writeln!(out, "opened {opened}").expect("stdout");
    out.flush().expect("flush");
    for i in 1..=count {
        let cmd = mvcc_workload::command(seed, i);
        if let Err(e) = store.apply(i, &cmd) {
            assert!(!e.is_fatal(), "command {i}: {e}");
        }
        if i > opened && (i - opened).is_multiple_of(SYNC_EVERY) && i < count {
            store.sync().expect("sync");
            writeln!(out, "synced {i}").expect("stdout");
            out.flush().expect("flush");
        }
    }
    store.sync().expect("sync");
    let hash = store.hash_kv(0).expect("hash");
    writeln!(
        out,
        "done {} {} {}",
        hash.hash,
        store.current_revision(),
        store.compact_revision()
    )
    .expect("stdout");
    out.flush().expect("flush");
    store.close().expect("close");
}
