//! A commit left half on disk, and damaged pages: open falls back to the
//! previous commit when the newest one is incomplete, and a damaged page of
//! an older commit is an error naming the page, never garbage or a panic.
//! Commits are tested in both shapes: a commit record only (between
//! checkpoints), and a checkpoint (record and meta page).

use engine::btree::{Db, Error, Options};
use std::collections::BTreeMap;
use std::path::Path;

type Contents = BTreeMap<Vec<u8>, Vec<u8>>;

const PS: usize = 4096;

fn contents(db: &Db) -> Contents {
    let rx = db.begin_read().unwrap();
    rx.bucket(b"b")
        .unwrap()
        .range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
        .map(|r| {
            let (k, v) = r.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

/// Commit 2 fills a bucket (many leaves, branches, overflow values); returns
/// the file bytes and contents after it, then applies commit 3 (a scattered
/// update touching many pages) and returns the bytes after that.
fn two_commits(path: &Path) -> (Vec<u8>, Contents, Vec<u8>, Contents) {
    two_commits_with(path, Options::default())
}

/// Options under which commit 3 writes only its record, or also a meta page.
fn shapes() -> [(&'static str, Options); 2] {
    [
        ("record", Options::default()),
        (
            "checkpoint",
            Options {
                checkpoint_interval_commits: 1,
                ..Options::default()
            },
        ),
    ]
}

/// The pages holding commit 3's commit point: its record, and the meta page
/// if it wrote one.
fn commit_point_pages(new: &[u8], changed: &[usize]) -> Vec<usize> {
    changed
        .iter()
        .copied()
        .filter(|&p| {
            let page = &new[p * PS..(p + 1) * PS];
            p < 2 || (page[24] == 6 && u64::from_le_bytes(page[16..24].try_into().unwrap()) == 3)
        })
        .collect()
}

fn two_commits_with(path: &Path, opts: Options) -> (Vec<u8>, Contents, Vec<u8>, Contents) {
    let db = Db::open(path, opts.clone()).unwrap();
    let mut tx = db.begin_write().unwrap();
    tx.create_bucket(b"b").unwrap();
    for i in 0u32..3000 {
        let len = if i % 97 == 0 { 9000 } else { 60 };
        tx.put(b"b", format!("key{i:05}").as_bytes(), &vec![i as u8; len])
            .unwrap();
    }
    tx.commit().unwrap();
    let before = contents(&db);
    drop(db);
    let bytes_before = std::fs::read(path).unwrap();
    let db = Db::open(path, opts).unwrap();
    let mut tx = db.begin_write().unwrap();
    for i in (0u32..3000).step_by(211) {
        tx.put(
            b"b",
            format!("key{i:05}").as_bytes(),
            &vec![0xee; if i % 2 == 0 { 7000 } else { 80 }],
        )
        .unwrap();
    }
    tx.delete(b"b", b"key00001").unwrap();
    let info = tx.commit().unwrap();
    assert!(info.pages_written > 10, "commit 3 touches many pages");
    let after = contents(&db);
    drop(db);
    let bytes_after = std::fs::read(path).unwrap();
    (bytes_before, before, bytes_after, after)
}

/// Pages whose bytes differ (a page beyond the end of a file reads as zeros:
/// growing the file alone changes nothing).
fn changed_pages(a: &[u8], b: &[u8]) -> Vec<usize> {
    let pages = a.len().max(b.len()) / PS;
    let zero = [0u8; PS];
    let page =
        |f: &[u8], p: usize| -> Vec<u8> { f.get(p * PS..(p + 1) * PS).unwrap_or(&zero).to_vec() };
    (0..pages).filter(|&p| page(a, p) != page(b, p)).collect()
}

fn restore_page(file: &mut [u8], old: &[u8], p: usize) {
    let range = p * PS..(p + 1) * PS;
    match old.get(range.clone()) {
        Some(src) => file[range].copy_from_slice(src),
        None => file[range].fill(0), // the page did not exist before the commit
    }
}

#[test]
fn commit_with_some_pages_unwritten_falls_back() {
    for (shape, opts) in shapes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (old, before, new, after) = two_commits_with(&path, opts.clone());
        let changed = changed_pages(&old, &new);
        let points = commit_point_pages(&new, &changed);
        assert_eq!(
            points.len(),
            if shape == "record" { 1 } else { 2 },
            "{shape}"
        );
        let data: Vec<usize> = changed
            .iter()
            .copied()
            .filter(|p| !points.contains(p))
            .collect();
        assert!(data.len() > 10);

        // The intact commit opens at txid 3 with the new contents.
        std::fs::write(&path, &new).unwrap();
        let db = Db::open(&path, opts.clone()).unwrap();
        assert_eq!(db.recovery().txid, 3);
        assert_eq!(contents(&db), after);
        drop(db);

        // Each page of the commit missing on its own (commit point written):
        // fall back.
        let mut cases: Vec<Vec<usize>> = data.iter().map(|&p| vec![p]).collect();
        // ... and every other page missing, and all but one.
        cases.push(data.iter().copied().step_by(2).collect());
        cases.push(data[1..].to_vec());
        for missing in cases {
            let mut torn = new.clone();
            for &p in &missing {
                restore_page(&mut torn, &old, p);
            }
            std::fs::write(&path, &torn).unwrap();
            let db = Db::open(&path, opts.clone()).unwrap();
            let rec = db.recovery();
            assert_eq!(
                rec.txid, 2,
                "{shape}: pages {missing:?} missing must fall back to commit 2"
            );
            assert!(rec.skipped_newer.is_some());
            assert_eq!(contents(&db), before);
            let report = db.check().unwrap();
            assert!(report.is_ok(), "{:?}", report.errors);
            // The file stays writable: the next commit reuses txid 3 cleanly.
            let mut tx = db.begin_write().unwrap();
            tx.put(b"b", b"after-recovery", b"ok").unwrap();
            assert_eq!(tx.commit().unwrap().txid, 3);
            assert!(db.check().unwrap().is_ok());
            drop(db);
            let db = Db::open(&path, opts.clone()).unwrap();
            assert_eq!(db.recovery().txid, 3);
            assert_eq!(
                db.begin_read()
                    .unwrap()
                    .get(b"b", b"after-recovery")
                    .unwrap(),
                Some(&b"ok"[..])
            );
        }

        // Pages written but no commit point: the previous commit, silently.
        let mut torn = new.clone();
        for &p in &points {
            restore_page(&mut torn, &old, p);
        }
        std::fs::write(&path, &torn).unwrap();
        let db = Db::open(&path, opts.clone()).unwrap();
        assert_eq!(db.recovery().txid, 2, "{shape}");
        assert_eq!(db.recovery().skipped_newer, None, "{shape}");
        assert_eq!(contents(&db), before);
        drop(db);

        // A checkpoint's commit point is written twice (record and meta
        // page): either copy alone commits.
        if points.len() == 2 {
            for &p in &points {
                let mut torn = new.clone();
                restore_page(&mut torn, &old, p);
                std::fs::write(&path, &torn).unwrap();
                let db = Db::open(&path, opts.clone()).unwrap();
                assert_eq!(
                    db.recovery().txid,
                    3,
                    "only page {p} of the commit point lost"
                );
                assert_eq!(contents(&db), after);
                assert!(db.check().unwrap().is_ok());
            }
        }
    }
}

#[test]
fn flipped_byte_in_a_new_page_or_the_new_meta_falls_back() {
    for (shape, opts) in shapes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (old, before, new, after) = two_commits_with(&path, opts.clone());
        let changed = changed_pages(&old, &new);
        let points = commit_point_pages(&new, &changed);
        for &p in &changed {
            // A damaged copy of a checkpoint's commit point leaves the other.
            let survives = points.contains(&p) && points.len() == 2;
            for at in [9usize, 40, 100, PS / 2, PS - 1] {
                let mut bad = new.clone();
                bad[p * PS + at] ^= 0x40;
                std::fs::write(&path, &bad).unwrap();
                let db = Db::open(&path, opts.clone()).unwrap_or_else(|e| {
                    panic!("{shape}: flip in page {p} at {at}: open failed: {e}")
                });
                let (txid, want) = if survives { (3, &after) } else { (2, &before) };
                assert_eq!(
                    db.recovery().txid,
                    txid,
                    "{shape}: flip in page {p} at {at}"
                );
                assert_eq!(&contents(&db), want);
                assert!(db.check().unwrap().is_ok());
            }
        }
    }
}

#[test]
fn flipped_byte_in_an_old_page_is_reported_with_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (old, _, new, _) = two_commits(&path);
    let changed = changed_pages(&old, &new);
    // Leaves written by commit 2 that commit 3 left alone; the first one
    // still reachable (not freed by commit 3) is the victim.
    let candidates: Vec<usize> = (2..old.len() / PS)
        .filter(|&p| {
            let page = &new[p * PS..(p + 1) * PS];
            !changed.contains(&p)
                && page[24] == 3
                && u64::from_le_bytes(page[16..24].try_into().unwrap()) == 2
        })
        .collect();
    for victim in candidates {
        let mut bad = new.clone();
        bad[victim * PS + 1000] ^= 1;
        std::fs::write(&path, &bad).unwrap();

        // The newest commit is intact, so open succeeds at txid 3 ...
        let db = Db::open(&path, Options::default()).unwrap();
        assert_eq!(db.recovery().txid, 3);
        let rx = db.begin_read().unwrap();
        let report = rx.check();
        if report.is_ok() {
            continue; // a page commit 3 freed: not reachable, harmless
        }
        assert!(
            report
                .errors
                .iter()
                .any(|e| e.contains(&format!("page {victim}"))),
            "{:?}",
            report.errors
        );
        // ... and reading through the damaged page is an error naming it.
        let b = rx.bucket(b"b").unwrap();
        let mut errors = 0;
        for i in 0u32..3000 {
            match b.get(format!("key{i:05}").as_bytes()) {
                Ok(_) => {}
                Err(Error::Corrupt { pgid, .. }) => {
                    assert_eq!(pgid, victim as u64);
                    errors += 1;
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert!(errors > 0, "keys of the damaged leaf fail");
        let scan: Result<Vec<_>, _> = b
            .range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
            .collect();
        assert!(matches!(scan, Err(Error::Corrupt { pgid, .. }) if pgid == victim as u64));
        return;
    }
    panic!("no reachable leaf of commit 2 found");
}

/// Open rebuilds free space by reading the pages that link to others; a
/// damaged one of them (here a leaf holding overflow links) must not let
/// open guess: it opens, names the page, reuses no page below the old
/// high-water mark, and `check` reports the damage.
#[test]
fn damaged_page_on_the_free_space_walk_disables_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (old, _, new, after) = two_commits(&path);
    let changed = changed_pages(&old, &new);
    let has_overflow = |page: &[u8]| {
        let count = u16::from_le_bytes([page[26], page[27]]) as usize;
        (0..count).any(|i| {
            let at = u16::from_le_bytes([page[32 + 2 * i], page[33 + 2 * i]]) as usize;
            page[at] & 1 != 0
        })
    };
    // Candidates: leaves of commit 2 with overflow links that commit 3 did
    // not rewrite in place; the first one commit 3 still reaches is used.
    let candidates: Vec<usize> = (2..new.len() / PS)
        .filter(|&p| {
            let page = &new[p * PS..(p + 1) * PS];
            !changed.contains(&p)
                && page[24] == 3
                && u64::from_le_bytes(page[16..24].try_into().unwrap()) == 2
                && has_overflow(page)
        })
        .collect();
    let mut found = None;
    for victim in candidates {
        let mut bad = new.clone();
        bad[victim * PS + PS - 1] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let db = Db::open(&path, Options::default()).unwrap();
        let rec = db.recovery();
        assert_eq!(rec.txid, 3);
        match rec.free_space_unknown {
            Some(why) => {
                assert!(why.contains(&format!("page {victim}")), "{why}");
                found = Some((db, victim, bad));
                break;
            }
            // A page commit 3 freed (copied elsewhere): unreachable.
            None => assert!(db.check().unwrap().is_ok()),
        }
    }
    let (db, victim, bad) = found.expect("a reachable leaf with overflow values");
    let stats = db.stats().unwrap();
    let high_water = stats.high_water as usize;
    // The next commit may use the pages reserved for it, and only those.
    let reserved = stats.reservation.start as usize..stats.reservation.end as usize;
    let mut tx = db.begin_write().unwrap();
    let mut rewritten = 0;
    for k in after.keys().step_by(7) {
        match tx.put(b"b", k, b"rewritten") {
            Ok(()) => rewritten += 1,
            // Keys in the damaged leaf cannot be copied: an error naming it.
            Err(Error::Corrupt { pgid, .. }) => assert_eq!(pgid, victim as u64),
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(rewritten > 100);
    tx.commit().unwrap();
    let report = db.check().unwrap();
    assert!(
        report
            .errors
            .iter()
            .all(|e| e.contains(&format!("page {victim}"))),
        "{:?}",
        report.errors
    );
    assert!(!report.is_ok(), "check lists the damaged page");
    drop(db);
    let now = std::fs::read(&path).unwrap();
    for p in (2..high_water).filter(|p| !reserved.contains(p)) {
        assert!(
            now[p * PS..(p + 1) * PS] == bad[p * PS..(p + 1) * PS],
            "page {p} below the old high-water mark was rewritten"
        );
    }
}

#[test]
fn both_metas_damaged_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (_, _, new, _) = two_commits(&path);
    let mut bad = new.clone();
    bad[60] ^= 1;
    bad[PS + 60] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    assert!(matches!(
        Db::open(&path, Options::default()),
        Err(Error::NoValidMeta { .. })
    ));
}

/// A file cut short is an error, or — when the cut looks like a crash in
/// a commit that grew the file — the previous commit, reported; never a
/// panic, never a state that fails `check`.
#[test]
fn truncated_file_is_an_error_or_a_reported_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (_, before, new, after) = two_commits(&path);
    let pages = new.len() / PS;
    for keep in [1, 2, 3, pages / 3, pages / 2, pages - 1] {
        std::fs::write(&path, &new[..keep * PS]).unwrap();
        match Db::open(&path, Options::default()) {
            Err(Error::Corrupt { .. } | Error::NoValidMeta { .. }) => {}
            Err(e) => panic!("{keep} pages: unexpected error {e}"),
            Ok(db) => {
                let rec = db.recovery();
                assert!(
                    rec.txid == 3 || rec.skipped_newer.is_some(),
                    "{keep} pages: {rec:?}"
                );
                assert!(db.check().unwrap().is_ok(), "{keep} pages");
                let rx = db.begin_read().unwrap();
                match rec.txid {
                    3 => assert_eq!(contents(&db), after),
                    2 => assert_eq!(contents(&db), before),
                    _ => assert!(rx.bucket(b"b").is_err(), "commit 1 has no bucket"),
                }
            }
        }
    }
}

#[test]
fn foreign_files_and_versions_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("foreign");
    std::fs::write(&path, vec![0x5au8; 3 * PS]).unwrap();
    match Db::open(&path, Options::default()) {
        Err(e @ Error::NotABtree { .. }) => {
            assert!(e.to_string().contains("not a ferrokv B+tree file"))
        }
        other => panic!("expected NotABtree, got {:?}", other.err()),
    }

    let path = dir.path().join("future");
    drop(Db::open(&path, Options::default()).unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    for slot in 0..2 {
        let meta = &mut bytes[slot * PS..(slot + 1) * PS];
        meta[40..44].copy_from_slice(&99u32.to_le_bytes());
        let sum = xxhash_rust::xxh3::xxh3_64(&meta[8..]);
        meta[0..8].copy_from_slice(&sum.to_le_bytes());
    }
    std::fs::write(&path, &bytes).unwrap();
    match Db::open(&path, Options::default()) {
        Err(Error::UnsupportedVersion {
            found: 99,
            supported: 3,
            ..
        }) => {}
        other => panic!("expected UnsupportedVersion, got {:?}", other.err()),
    }
}

#[test]
fn bad_input_is_rejected_with_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db"), Options::default()).unwrap();
    let mut tx = db.begin_write().unwrap();
    assert!(matches!(
        tx.put(b"missing", b"k", b"v"),
        Err(Error::BucketNotFound(_))
    ));
    tx.create_bucket(b"b").unwrap();
    assert!(matches!(tx.put(b"b", b"", b"v"), Err(Error::EmptyKey)));
    let long = vec![1u8; engine::btree::max_key_len(PS) + 1];
    assert!(matches!(
        tx.put(b"b", &long, b"v"),
        Err(Error::KeyTooLarge { .. })
    ));
    assert!(matches!(
        tx.create_bucket(b""),
        Err(Error::BadBucketName { .. })
    ));
    assert!(
        !tx.create_bucket(b"b").unwrap(),
        "creating twice reports it exists"
    );
    tx.commit().unwrap();
    assert!(db.check().unwrap().is_ok());
    assert!(
        Db::open(dir.path().join("db"), Options::default()).is_err(),
        "a second open is refused by the file lock"
    );
    let bad = Options {
        page_size: 3000,
        ..Options::default()
    };
    assert!(matches!(
        Db::open(dir.path().join("x"), bad),
        Err(Error::InvalidOptions(_))
    ));
}

#[test]
fn compaction_and_snapshot_stream_preserve_contents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (_, _, _, after) = two_commits(&path);
    let db = Db::open(&path, Options::default()).unwrap();
    // Fragment the file: delete most keys.
    let mut tx = db.begin_write().unwrap();
    let mut model = after.clone();
    for i in (0u32..3000).filter(|i| i % 10 != 0) {
        let k = format!("key{i:05}").into_bytes();
        if tx.delete(b"b", &k).unwrap() {
            model.remove(&k);
        }
    }
    tx.commit().unwrap();

    let compacted = dir.path().join("compacted");
    let info = db.compact_into(&compacted).unwrap();
    assert_eq!(info.keys as usize, model.len());
    let c = Db::open(&compacted, Options::default()).unwrap();
    assert!(c.check().unwrap().is_ok());
    assert_eq!(contents(&c), model);
    assert!(
        c.stats().unwrap().high_water < db.stats().unwrap().high_water / 2,
        "compaction drops free pages"
    );
    assert!(
        db.compact_into(&compacted).is_err(),
        "an existing target is refused"
    );

    // A snapshot streamed while the writer keeps changing the source.
    let rx = db.begin_read().unwrap();
    let mut tx = db.begin_write().unwrap();
    tx.put(b"b", b"later", &[1; 5000]).unwrap();
    tx.commit().unwrap();
    let mut stream = Vec::new();
    let bytes = rx.write_to(&mut stream).unwrap();
    assert_eq!(bytes as usize, stream.len());
    let copy = dir.path().join("copy");
    std::fs::write(&copy, &stream).unwrap();
    let s = Db::open(&copy, Options::default()).unwrap();
    assert_eq!(s.recovery().txid, rx.txid());
    assert!(s.check().unwrap().is_ok());
    assert_eq!(contents(&s), model);
}

/// Commits 2..=5 between checkpoints, each a scattered update; returns the
/// file after each and the pages each commit changed.
fn chain_of_commits(path: &Path) -> Vec<(Vec<u8>, Vec<usize>, Contents)> {
    let db = Db::open(path, Options::default()).unwrap();
    let mut out = Vec::new();
    let mut prev = std::fs::read(path).unwrap();
    for round in 0u32..4 {
        let mut tx = db.begin_write().unwrap();
        tx.create_bucket(b"b").unwrap();
        for i in 0u32..600 {
            let k = (i * 7 + round * 131) % 2000;
            tx.put(b"b", format!("key{k:05}").as_bytes(), &[round as u8; 90])
                .unwrap();
        }
        tx.commit().unwrap();
        let bytes = std::fs::read(path).unwrap();
        out.push((bytes.clone(), changed_pages(&prev, &bytes), contents(&db)));
        prev = bytes;
    }
    assert_eq!(db.recovery().txid, 1);
    out
}

/// The record of commit `txid` among `pages` of `file`.
fn record_page(file: &[u8], pages: &[usize], txid: u64) -> usize {
    *pages
        .iter()
        .find(|&&p| {
            let page = &file[p * PS..(p + 1) * PS];
            page[24] == 6 && u64::from_le_bytes(page[16..24].try_into().unwrap()) == txid
        })
        .expect("every commit writes a record")
}

/// Open follows the records from the checkpoint; all four commits after it
/// come back, each a single record away from its predecessor.
#[test]
fn open_follows_the_record_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let commits = chain_of_commits(&path);
    let (last, _, want) = commits.last().unwrap();
    std::fs::write(&path, last).unwrap();
    let db = Db::open(&path, Options::default()).unwrap();
    assert_eq!(db.recovery().txid, 5);
    assert_eq!(db.recovery().records_followed, 4);
    assert_eq!(&contents(&db), want);
    let stats = db.stats().unwrap();
    assert_eq!(
        stats.commit_pages,
        4 + (stats.reservation.end - stats.reservation.start)
    );
    assert!(db.check().unwrap().is_ok());
}

/// A crash leaves at most the newest commit incomplete. When the newest
/// two are both damaged, open refuses rather than silently going back two
/// commits.
#[test]
fn two_incomplete_commits_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let commits = chain_of_commits(&path);
    let (last, pages5, _) = &commits[3];
    let (_, pages4, _) = &commits[2];
    let data = |file: &[u8], pages: &[usize]| -> usize {
        *pages
            .iter()
            .find(|&&p| file[p * PS + 24] == 3)
            .expect("a leaf")
    };
    let mut bad = last.clone();
    bad[data(last, pages5) * PS + 100] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    let db = Db::open(&path, Options::default()).unwrap();
    assert_eq!(
        db.recovery().txid,
        4,
        "one incomplete commit: its predecessor"
    );
    drop(db);
    // A leaf commit 4 wrote that commit 5 still uses.
    let shared = pages4.iter().copied().find(|&p| {
        last[p * PS + 24] == 3 && !pages5.contains(&p) && {
            let mut b = bad.clone();
            b[p * PS + 100] ^= 1;
            std::fs::write(&path, &b).unwrap();
            Db::open(&path, Options::default()).is_err()
        }
    });
    assert!(shared.is_some(), "damaging commits 4 and 5 must fail open");
    let mut both = bad.clone();
    both[shared.unwrap() * PS + 100] ^= 1;
    std::fs::write(&path, &both).unwrap();
    match Db::open(&path, Options::default()) {
        Err(Error::Corrupt { what, .. }) => {
            assert!(what.contains("neither commit 5 nor commit 4"), "{what}")
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|d| d.recovery())),
    }
}

/// A damaged record in the middle of the chain (media damage, not a crash)
/// ends the chain there. Open may then use the commit before it only if
/// that commit is still intact; here later commits reused its freed pages,
/// so open refuses, naming the damaged record — never a wrong state.
#[test]
fn damaged_record_ends_the_chain_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let commits = chain_of_commits(&path);
    let (last, _, _) = &commits[3];
    let (file3, pages3, _) = &commits[1];
    let (_, _, at4) = &commits[2];
    let record3 = record_page(file3, pages3, 3);
    let mut bad = last.clone();
    bad[record3 * PS + 2000] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    match Db::open(&path, Options::default()) {
        Err(Error::Corrupt { what, .. }) => {
            assert!(what.contains(&format!("page {record3}")), "{what}")
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|d| d.recovery())),
    }

    // Damage to the newest record alone is the torn last commit: the commit
    // before it is intact and opens, with the damaged record reported.
    let (file5, pages5, _) = &commits[3];
    let record5 = record_page(file5, pages5, 5);
    let mut bad = last.clone();
    bad[record5 * PS + 2000] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    let db = Db::open(&path, Options::default()).unwrap();
    let rec = db.recovery();
    assert_eq!(rec.txid, 4);
    assert!(rec
        .skipped_newer
        .unwrap()
        .contains(&format!("page {record5}")));
    assert_eq!(&contents(&db), at4);
    assert!(db.check().unwrap().is_ok());
}
