//! What one small durable append costs the device, on both I/O paths.
//!
//! A segment zero-filled in 1 MiB writes stays in the page cache as large
//! folios; an append of a few hundred bytes into such a folio dirtied all
//! of it, and every fdatasync wrote the whole folio back (1 MiB per 256-byte
//! put, measured on ext4 with kernel 6.18). The WAL drops a segment's cached
//! pages before appending to it. This test counts the bytes the process
//! sent to the device (`/proc/self/io` `write_bytes`) over single-appender
//! durable appends, one fdatasync each. It is alone in its binary, so no
//! other test's writes are counted.

use engine::wal::{Error, IoMode, Options, Wal};
use std::time::Duration;

fn write_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn a_small_append_writes_back_a_few_pages_not_a_folio() {
    const APPENDS: u64 = 500;
    const SEGMENT: u64 = 4 << 20;
    for io in [IoMode::IoUring, IoMode::Portable] {
        // On the build's disk, not a tmpfs (which writes nothing back).
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let opts = Options {
            segment_bytes: SEGMENT,
            queue_bytes_max: 1 << 20,
            record_bytes_max: 64 << 10,
            io,
            ..Options::default()
        };
        let (wal, _) = match Wal::open(dir.path(), opts) {
            Ok(w) => w,
            Err(Error::IoUringUnavailable(e)) => {
                eprintln!("io_uring unavailable here: {e}");
                continue;
            }
            Err(e) => panic!("open: {e}"),
        };
        // The next segment is prepared in the background right after open.
        std::thread::sleep(Duration::from_millis(300));
        let Some(before) = write_bytes() else {
            eprintln!("no /proc/self/io: nothing to measure");
            return;
        };
        let record = vec![0x5au8; 256];
        for n in 1..=APPENDS {
            wal.append_wait(n, 1, &record).unwrap();
        }
        let written = write_bytes().unwrap() - before;
        drop(wal);
        let payload = APPENDS * 256;
        if written < payload {
            // The file system does not account writeback to the process
            // (or holds it back): the measure says nothing here.
            eprintln!(
                "{io:?}: {written} bytes written back for {payload} appended; not measurable here"
            );
            continue;
        }
        // Each fdatasync writes back the page or two the append touched
        // (plus file system metadata); a preallocated segment being
        // prepared meanwhile may add one segment.
        let bound = APPENDS * 16 * 1024 + SEGMENT;
        eprintln!(
            "{io:?}: {APPENDS} appends of 256 B wrote back {written} bytes ({} per append)",
            written / APPENDS
        );
        assert!(
            written <= bound,
            "{io:?}: {written} bytes written back for {APPENDS} appends of 256 B (bound {bound})"
        );
    }
}
