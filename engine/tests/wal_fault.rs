//! A failed write or fdatasync is permanent, on both I/O paths: the
//! appenders of the failed batch and every later append get an error, and
//! nothing is reported durable after the failure. The fault is injected by
//! issuing that batch's write or fdatasync on an invalid descriptor, so the
//! kernel fails it (EBADF) and the error comes back through the real path:
//! the io_uring completion queue, or the system call's return value.

mod wal_support;

use engine::wal::{Error, Faults, IoMode, Options, Wal};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use wal_support::{check_payload, payload, small, PATHS};

struct Outcomes {
    ok: Vec<(u64, u32, u64)>,
    failed: Vec<u64>,
}

/// Eight threads append until their first error; returns every ticket's
/// outcome as (append seq, stream, n).
fn hammer(wal: &Arc<Wal>) -> Outcomes {
    let out = Arc::new(Mutex::new(Outcomes {
        ok: Vec::new(),
        failed: Vec::new(),
    }));
    let hs: Vec<_> = (0..8u32)
        .map(|s| {
            let (wal, out) = (Arc::clone(wal), Arc::clone(&out));
            std::thread::spawn(move || {
                for n in 0..100_000u64 {
                    let t = match wal.append(n, 1, &payload(s, n)) {
                        Ok(t) => t,
                        Err(Error::Failed(_)) => return,
                        Err(e) => panic!("{e}"),
                    };
                    let seq = t.seq();
                    match t.wait() {
                        Ok(d) => {
                            assert_eq!(d.seq, seq);
                            out.lock().unwrap().ok.push((seq, s, n));
                        }
                        Err(Error::Failed(why)) => {
                            assert!(why.contains("failed"), "{why}");
                            out.lock().unwrap().failed.push(seq);
                            return;
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                panic!("no failure within 100000 appends");
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    Arc::into_inner(out).unwrap().into_inner().unwrap()
}

fn run(io: IoMode, faults: Faults, op: &str, at: u64) {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        faults,
        ..small(io)
    };
    let (wal, _) = Wal::open(dir.path(), opts).unwrap();
    let wal = Arc::new(wal);
    let out = hammer(&wal);
    assert!(!out.failed.is_empty(), "the injected fault was seen");
    let first_failed = *out.failed.iter().min().unwrap();
    let last_ok = out.ok.iter().map(|o| o.0).max().unwrap_or(0);
    assert!(
        last_ok < first_failed,
        "{op}: append {last_ok} reported durable after failed append {first_failed}"
    );
    let m = wal.metrics();
    assert_eq!(m.failures, 1);
    assert_eq!(m.fsyncs, at - 1, "{op}: batches before the failed one");
    assert!(m.appends as usize >= out.ok.len());
    let why = wal.failure().expect("failure recorded");
    assert!(why.contains(op), "{why}");
    // Every later append, barrier and try_append fails at once.
    assert!(matches!(wal.append(1, 1, b"after"), Err(Error::Failed(_))));
    assert!(matches!(wal.sync(), Err(Error::Failed(_))));
    assert!(wal.try_append_batch(&[]).is_err());
    assert_eq!(
        wal.durable_seq(),
        last_ok,
        "{op}: durable_seq stops before the failure"
    );
    let wal = Arc::into_inner(wal).unwrap();
    assert!(matches!(wal.close(), Err(Error::Failed(_))));

    // Reopen without faults: every acknowledged record is there.
    let (wal, rec) = Wal::open(dir.path(), small(io)).unwrap();
    let present: HashSet<(u32, u64)> = rec
        .records
        .iter()
        .map(|r| check_payload(&r.payload).expect("intact"))
        .collect();
    for &(_, s, n) in &out.ok {
        assert!(
            present.contains(&(s, n)),
            "{op}: acknowledged ({s}, {n}) lost"
        );
    }
    if op == "write" {
        // The failed write wrote nothing: the log holds exactly the
        // acknowledged records.
        assert_eq!(present.len(), out.ok.len());
    }
    // And the reopened log takes appends again.
    wal.append(0, 9, b"fresh").unwrap().wait().unwrap();
}

#[test]
fn failed_fdatasync_is_permanent() {
    for io in PATHS {
        for at in [1, 2, 25] {
            run(
                io,
                Faults {
                    fail_sync_at: Some(at),
                    ..Faults::default()
                },
                "fdatasync",
                at,
            );
        }
    }
}

#[test]
fn failed_write_is_permanent() {
    for io in PATHS {
        for at in [1, 25] {
            run(
                io,
                Faults {
                    fail_write_at: Some(at),
                    ..Faults::default()
                },
                "write",
                at,
            );
        }
    }
}
