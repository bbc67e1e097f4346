//! Creating a B+tree file is crash safe too. `Db::open` of a missing file
//! sizes it and then writes the empty catalog leaf and both meta pages; a
//! process killed before a meta page reached the page cache leaves a sized
//! file of zeros (perhaps with the leaf). Such a file never held a commit:
//! the next open creates it again instead of refusing it forever (a ferrokv
//! member killed during its first start would otherwise never start from
//! that data dir). A used file whose meta pages were destroyed is still an
//! error, never silently emptied.
//!
//! The kills are real: `btree-crash-child` runs under strace, which
//! delivers SIGKILL at each of the three `pwrite64` calls that create the
//! file (strace is installed by `make deps`).

use engine::btree::{Db, Options};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

/// Opens `path`, checks it, and commits a key that survives a reopen.
fn usable(path: &Path, what: &str) {
    let db = Db::open(path, Options::default()).unwrap_or_else(|e| panic!("{what}: open: {e}"));
    let report = db.check().unwrap();
    assert_eq!(report.error_count, 0, "{what}: {:?}", report.errors);
    let mut tx = db.begin_write().unwrap();
    tx.create_bucket(b"b").unwrap();
    tx.put(b"b", b"k", b"v").unwrap();
    tx.commit().unwrap();
    drop(db);
    let db = Db::open(path, Options::default()).unwrap();
    let rx = db.begin_read().unwrap();
    assert_eq!(rx.get(b"b", b"k").unwrap(), Some(&b"v"[..]), "{what}");
}

#[test]
fn a_sized_file_of_zeros_is_created_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    std::fs::write(
        &path,
        vec![0u8; Options::default().initial_size_bytes as usize],
    )
    .unwrap();
    usable(&path, "zeros");
}

#[test]
fn a_used_file_with_blank_meta_pages_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    usable(&path, "fresh");
    let ps = Options::default().page_size;
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&vec![0u8; 2 * ps], 0).unwrap();
    drop(f);
    assert!(
        Db::open(&path, Options::default()).is_err(),
        "a file with data and no meta page must not be created again"
    );
}

#[test]
fn sigkill_at_each_write_of_a_new_file() {
    let strace = Command::new("strace").arg("-V").output();
    assert!(
        strace.is_ok_and(|o| o.status.success()),
        "strace is missing (make deps installs it)"
    );
    // Creation writes three pages: the catalog leaf, meta page 0, meta page 1.
    for n in 1..=3 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let out = Command::new("strace")
            .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=pwrite64"])
            .arg("-e")
            .arg(format!("inject=pwrite64:signal=KILL:when={n}"))
            .arg(env!("CARGO_BIN_EXE_btree-crash-child"))
            .arg(&path)
            .arg("single")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("Operation not permitted") {
            panic!("strace cannot trace here (ptrace not permitted): {stderr}");
        }
        assert!(
            !out.status.success() && out.stdout.is_empty(),
            "pwrite64 #{n}: the child was killed before its first commit: {stderr}"
        );
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len > 0, "pwrite64 #{n}: the file was sized before the kill");
        usable(&path, &format!("killed at pwrite64 #{n}"));
    }
}
