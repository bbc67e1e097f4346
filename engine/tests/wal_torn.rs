//! Torn tails and damage (docs/format.md, "WAL recovery"), on both I/O
//! paths: truncation at every byte offset inside the last records gives
//! back exactly the complete records (and the log continues after them);
//! a lost sector in the last batch is a torn tail; a flipped byte anywhere
//! before the tail, and a flipped byte in the last record that does not
//! look torn, is `Error::Corrupt` naming the segment file and the offset of
//! the damaged record; a segment header whose first batch never reached
//! the file is dropped with it.

mod wal_support;

use engine::wal::format::{BATCH_RECORD_BYTES, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use engine::wal::{encoded_len, Error, IoMode, RecordRef, Wal};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use wal_support::{check_payload, payload, small};

/// A record's place in a segment file, found by walking the format as
/// docs/format.md describes it (independently of the WAL's own reader).
#[derive(Clone, Debug)]
struct Placed {
    segment: PathBuf,
    batch_start: usize,
    start: usize,
    /// End of header + payload (before alignment padding).
    payload_end: usize,
    /// End including padding.
    end: usize,
    index: u64,
}

fn layout(seg: &Path) -> Vec<Placed> {
    let buf = std::fs::read(seg).unwrap();
    let u32_at = |at: usize| u32::from_le_bytes(buf[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().unwrap());
    let mut out = Vec::new();
    let mut p = SEGMENT_HEADER_BYTES;
    while p + BATCH_RECORD_BYTES <= buf.len() && buf[p + 16] == 2 {
        let count = u32_at(p + RECORD_HEADER_BYTES + 8);
        let mut q = p + BATCH_RECORD_BYTES;
        for _ in 0..count {
            let len = u32_at(q + 4) as usize;
            assert_eq!(buf[q + 16], 1, "data frame");
            out.push(Placed {
                segment: seg.to_path_buf(),
                batch_start: p,
                start: q,
                payload_end: q + RECORD_HEADER_BYTES + len,
                end: q + encoded_len(len),
                index: u64_at(q + 8),
            });
            q += encoded_len(len);
        }
        p = q;
    }
    out
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

/// Every record of a log in file order, with its place.
fn layout_all(dir: &Path) -> Vec<Placed> {
    segment_files(dir).iter().flat_map(|s| layout(s)).collect()
}

/// A log of 2 segments: single-record batches (one append waited at a
/// time) and, at the end, one batch of five records. Returns the payload
/// stream's indexes in order.
fn build(dir: &Path, io: IoMode, singles: u64) -> Vec<u64> {
    let (wal, _) = Wal::open(dir, small(io)).unwrap();
    let mut idx = Vec::new();
    for n in 1..=singles {
        wal.append(n, 1, &payload(0, n)).unwrap().wait().unwrap();
        idx.push(n);
    }
    let ps: Vec<Vec<u8>> = (singles + 1..=singles + 5).map(|n| payload(0, n)).collect();
    let recs: Vec<RecordRef> = ps
        .iter()
        .enumerate()
        .map(|(i, p)| RecordRef {
            index: singles + 1 + i as u64,
            kind: 1,
            payload: p,
        })
        .collect();
    wal.append_batch(&recs).unwrap().wait().unwrap();
    idx.extend(singles + 1..=singles + 5);
    wal.close().unwrap();
    idx
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn in_copy(copy: &Path, original: &Path) -> PathBuf {
    copy.join(original.file_name().unwrap())
}

fn recovered_indexes(dir: &Path, io: IoMode) -> Result<(Vec<u64>, Wal), Error> {
    let (wal, rec) = Wal::open(dir, small(io))?;
    let mut out = Vec::new();
    for r in &rec.records {
        assert_eq!(
            check_payload(&r.payload),
            Some((0, r.index)),
            "record {} intact",
            r.index
        );
        out.push(r.index);
    }
    Ok((out, wal))
}

fn truncation_at_every_offset_in_the_last_records(io: IoMode) {
    {
        let base = tempfile::tempdir().unwrap();
        let orig = base.path().join("orig");
        let all = build(&orig, io, 400);
        let placed = layout_all(&orig);
        assert_eq!(placed.iter().map(|p| p.index).collect::<Vec<_>>(), all);
        let last_seg = placed.last().unwrap().segment.clone();
        assert!(
            segment_files(&orig).len() >= 3,
            "the log spans several segments"
        );
        // The last 8 records: 3 single-record batches and the 5-record one.
        let tail: Vec<&Placed> = placed
            .iter()
            .filter(|p| p.segment == last_seg)
            .rev()
            .take(8)
            .collect();
        let from = tail.last().unwrap().batch_start;
        let to = placed.last().unwrap().end;
        let mut cases = 0;
        for cut in from..=to {
            let work = base.path().join(format!("cut-{}-{cut}", io_name(io)));
            copy_dir(&orig, &work);
            let seg = in_copy(&work, &last_seg);
            OpenOptions::new()
                .write(true)
                .open(&seg)
                .unwrap()
                .set_len(cut as u64)
                .unwrap();
            let want: Vec<u64> = placed
                .iter()
                .filter(|p| p.segment != last_seg || p.end <= cut)
                .map(|p| p.index)
                .collect();
            let (got, wal) =
                recovered_indexes(&work, io).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(
                got, want,
                "cut at {cut}: exactly the complete records come back"
            );
            if cut % 7 == 0 {
                // The log continues right after the kept records, and a
                // second recovery sees them and the new record, untorn.
                let next = want.last().unwrap() + 1;
                wal.append(next, 1, &payload(0, next))
                    .unwrap()
                    .wait()
                    .unwrap();
                wal.close().unwrap();
                let (wal2, rec) = Wal::open(&work, small(io)).unwrap();
                assert!(rec.torn_tail.is_none(), "cut at {cut}: {:?}", rec.torn_tail);
                let mut want2 = want.clone();
                want2.push(next);
                assert_eq!(
                    rec.records.iter().map(|r| r.index).collect::<Vec<_>>(),
                    want2
                );
                drop(wal2);
            } else {
                drop(wal);
            }
            std::fs::remove_dir_all(&work).unwrap();
            cases += 1;
        }
        eprintln!("{}: {cases} truncation offsets", io_name(io));
        assert!(cases > 1000);
    }
}

fn lost_sector_in_the_last_batch_is_a_torn_tail(io: IoMode) {
    {
        let base = tempfile::tempdir().unwrap();
        let orig = base.path().join("orig");
        build(&orig, io, 60);
        let placed = layout_all(&orig);
        let last = placed.last().unwrap().clone();
        let batch: Vec<&Placed> = placed
            .iter()
            .filter(|p| p.batch_start == last.batch_start)
            .collect();
        assert_eq!(batch.len(), 5);
        // Zero each 512-byte sector that holds part of the last batch (as a
        // write that never reached it would leave it).
        let first_sector = last.batch_start / 512;
        let last_sector = (last.end - 1) / 512;
        for sector in first_sector..=last_sector {
            let work = base.path().join(format!("sector-{sector}"));
            copy_dir(&orig, &work);
            let seg = in_copy(&work, &last.segment);
            let f = OpenOptions::new().write(true).open(&seg).unwrap();
            let lo = (sector * 512).max(last.batch_start);
            f.write_all_at(&vec![0u8; (sector + 1) * 512 - lo], lo as u64)
                .unwrap();
            let keep: Vec<u64> = placed
                .iter()
                .filter(|p| p.batch_start != last.batch_start || p.end <= sector * 512)
                .map(|p| p.index)
                .collect();
            let (got, wal) =
                recovered_indexes(&work, io).unwrap_or_else(|e| panic!("sector {sector}: {e}"));
            assert_eq!(got, keep, "sector {sector}");
            drop(wal);
        }
    }
}

fn flipped_byte_in_the_middle_is_reported_with_its_location(io: IoMode) {
    {
        let base = tempfile::tempdir().unwrap();
        let orig = base.path().join("orig");
        build(&orig, io, 400);
        let placed = layout_all(&orig);
        // A record in the first segment and one in the middle of the last.
        let last_seg = placed.last().unwrap().segment.clone();
        let in_last: Vec<&Placed> = placed.iter().filter(|p| p.segment == last_seg).collect();
        let victims = [placed[5].clone(), in_last[in_last.len() / 2].clone()];
        for v in &victims {
            let mut flips = 0;
            // Every byte of its batch record (these are single-record
            // batches) and of the record itself, padding included.
            for at in v.batch_start..v.end {
                let work = base.path().join(format!("flip-{at}"));
                copy_dir(&orig, &work);
                let seg = in_copy(&work, &v.segment);
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&seg)
                    .unwrap();
                let mut b = [0u8];
                f.read_exact_at(&mut b, at as u64).unwrap();
                f.write_all_at(&[b[0] ^ 0x20], at as u64).unwrap();
                let want_offset = if at < v.start { v.batch_start } else { v.start };
                match Wal::open(&work, small(io)) {
                    Err(Error::Corrupt {
                        segment,
                        offset,
                        what,
                    }) => {
                        assert_eq!(segment, seg, "flip at {at}: {what}");
                        assert_eq!(offset, want_offset as u64, "flip at {at}: {what}");
                    }
                    Err(e) => panic!("flip at {at}: unexpected error {e}"),
                    Ok(_) => panic!("flip at {at} in {} went unnoticed", seg.display()),
                }
                std::fs::remove_dir_all(&work).unwrap();
                flips += 1;
            }
            assert!(flips > BATCH_RECORD_BYTES);
        }
    }
}

fn flipped_byte_in_the_last_record_is_corruption_not_a_tear(io: IoMode) {
    // The payloads of this log have no zero bytes, so no sector of the last
    // record can read as a lost (zero) sector: a flip there is damage.
    {
        let base = tempfile::tempdir().unwrap();
        let orig = base.path().join("orig");
        {
            let (wal, _) = Wal::open(&orig, small(io)).unwrap();
            for n in 1..=20u64 {
                let p: Vec<u8> = payload(0, n).iter().map(|&b| b | 1).collect();
                wal.append(n, 1, &p).unwrap().wait().unwrap();
            }
            wal.close().unwrap();
        }
        let placed = layout_all(&orig);
        let v = placed.last().unwrap().clone();
        for at in v.start..v.payload_end {
            let work = base.path().join(format!("flip-{at}"));
            copy_dir(&orig, &work);
            let seg = in_copy(&work, &v.segment);
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&seg)
                .unwrap();
            let mut b = [0u8];
            f.read_exact_at(&mut b, at as u64).unwrap();
            f.write_all_at(&[b[0] ^ 0x01], at as u64).unwrap();
            match Wal::open(&work, small(io)) {
                Err(Error::Corrupt {
                    segment, offset, ..
                }) => {
                    assert_eq!(segment, seg);
                    assert_eq!(offset, v.start as u64, "flip at {at}");
                }
                Err(e) => panic!("flip at {at}: {e}"),
                Ok((_, rec)) => panic!("flip at {at} taken for a torn tail: {:?}", rec.torn_tail),
            }
            std::fs::remove_dir_all(&work).unwrap();
        }
    }
}

#[test]
fn damaged_segment_header_and_missing_segment_are_reported() {
    let base = tempfile::tempdir().unwrap();
    let orig = base.path().join("orig");
    build(&orig, IoMode::Auto, 400);
    let segs = segment_files(&orig);
    assert!(segs.len() >= 3);
    // A flipped byte in the header of the first segment.
    for at in [0usize, 9, 20, 33, 61] {
        let work = base.path().join(format!("hdr-{at}"));
        copy_dir(&orig, &work);
        let seg = in_copy(&work, &segs[0]);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&seg)
            .unwrap();
        let mut b = [0u8];
        f.read_exact_at(&mut b, at as u64).unwrap();
        f.write_all_at(&[b[0] ^ 0x08], at as u64).unwrap();
        match Wal::open(&work, small(IoMode::Auto)) {
            Err(Error::Corrupt {
                segment, offset, ..
            }) => {
                assert_eq!(segment, seg);
                assert_eq!(offset, 0);
            }
            Err(Error::NotAWal { path, .. }) => assert_eq!(path, seg, "magic flipped"),
            other => panic!("header flip at {at}: {:?}", other.map(|_| ())),
        }
    }
    // A segment removed from the middle.
    let work = base.path().join("gap");
    copy_dir(&orig, &work);
    std::fs::remove_file(in_copy(&work, &segs[1])).unwrap();
    match Wal::open(&work, small(IoMode::Auto)) {
        Err(Error::Corrupt { segment, .. }) => assert_eq!(segment, in_copy(&work, &segs[2])),
        other => panic!("gap: {:?}", other.map(|_| ())),
    }
}

/// A process killed inside a segment's first write (header block and first
/// batch in one `pwritev` or io_uring write) can leave the header without
/// the batch. Recovery must drop that header with the batch it names: the
/// log continues in the segment with a new header, and a second recovery
/// agrees. The same header-only segment in front of a later segment that
/// holds data is corruption.
fn header_without_its_first_batch(io: IoMode) {
    let base = tempfile::tempdir().unwrap();
    let orig = base.path().join("orig");
    build(&orig, io, 400);
    let placed = layout_all(&orig);
    let segs = segment_files(&orig);
    assert!(segs.len() >= 3);
    let blank_after_header = |seg: &Path| {
        let f = OpenOptions::new().write(true).open(seg).unwrap();
        let len = f.metadata().unwrap().len();
        let zeros = vec![0u8; len as usize - SEGMENT_HEADER_BYTES];
        f.write_all_at(&zeros, SEGMENT_HEADER_BYTES as u64).unwrap();
    };

    // The last segment with records (a prepared spare may follow it).
    let last = &placed.last().unwrap().segment;
    let at = segs.iter().position(|s| s == last).unwrap();
    assert!(at >= 1);
    let work = base.path().join(format!("last-{}", io_name(io)));
    copy_dir(&orig, &work);
    blank_after_header(&in_copy(&work, last));
    let want: Vec<u64> = placed
        .iter()
        .filter(|p| &p.segment != last)
        .map(|p| p.index)
        .collect();
    let (wal, rec) = Wal::open(&work, small(io)).unwrap();
    let torn = rec.torn_tail.as_ref().expect("reported as a torn write");
    assert_eq!(torn.segment, in_copy(&work, last));
    let got: Vec<u64> = rec.records.iter().map(|r| r.index).collect();
    assert_eq!(got, want, "the records before the torn segment");
    // An index other than the one the stale header names: a header kept
    // from the torn write would disagree with the record after it.
    let next = want.last().unwrap() + 1000;
    wal.append(next, 1, &payload(0, next))
        .unwrap()
        .wait()
        .unwrap();
    wal.close().unwrap();
    let (got, wal) = recovered_indexes(&work, io).unwrap_or_else(|e| panic!("second open: {e}"));
    let mut want2 = want;
    want2.push(next);
    assert_eq!(got, want2, "the log continued after the kept records");
    drop(wal);

    let work = base.path().join(format!("middle-{}", io_name(io)));
    copy_dir(&orig, &work);
    let middle = in_copy(&work, &segs[at - 1]);
    blank_after_header(&middle);
    match Wal::open(&work, small(io)) {
        Err(Error::Corrupt { segment, .. }) => assert_eq!(segment, middle),
        other => panic!("header-only segment before data: {:?}", other.map(|_| ())),
    }
}

#[test]
fn header_without_its_first_batch_io_uring() {
    header_without_its_first_batch(IoMode::IoUring);
}

#[test]
fn header_without_its_first_batch_portable() {
    header_without_its_first_batch(IoMode::Portable);
}

fn io_name(io: IoMode) -> &'static str {
    match io {
        IoMode::IoUring => "io_uring",
        IoMode::Portable => "portable",
        IoMode::Auto => "auto",
    }
}

#[test]
fn truncation_at_every_offset_in_the_last_records_io_uring() {
    truncation_at_every_offset_in_the_last_records(IoMode::IoUring);
}

#[test]
fn truncation_at_every_offset_in_the_last_records_portable() {
    truncation_at_every_offset_in_the_last_records(IoMode::Portable);
}

#[test]
fn lost_sector_in_the_last_batch_is_a_torn_tail_io_uring() {
    lost_sector_in_the_last_batch_is_a_torn_tail(IoMode::IoUring);
}

#[test]
fn lost_sector_in_the_last_batch_is_a_torn_tail_portable() {
    lost_sector_in_the_last_batch_is_a_torn_tail(IoMode::Portable);
}

#[test]
fn flipped_byte_in_the_middle_is_reported_with_its_location_io_uring() {
    flipped_byte_in_the_middle_is_reported_with_its_location(IoMode::IoUring);
}

#[test]
fn flipped_byte_in_the_middle_is_reported_with_its_location_portable() {
    flipped_byte_in_the_middle_is_reported_with_its_location(IoMode::Portable);
}

#[test]
fn flipped_byte_in_the_last_record_is_corruption_not_a_tear_io_uring() {
    flipped_byte_in_the_last_record_is_corruption_not_a_tear(IoMode::IoUring);
}

#[test]
fn flipped_byte_in_the_last_record_is_corruption_not_a_tear_portable() {
    flipped_byte_in_the_last_record_is_corruption_not_a_tear(IoMode::Portable);
}
