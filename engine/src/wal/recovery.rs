//! Recovery: read every segment, verify every checksum, tell a torn tail
//! from damage, truncate the former and report the latter.
//!
//! The argument (docs/format.md, "WAL recovery"): the writer has at most
//! one write in flight and acknowledges nothing before its fdatasync
//! returned, so after a crash only the last write (batch `s`) can be
//! incomplete, and no batch with a sequence number above `s` exists. A
//! torn write leaves sectors of never-written space, which read as zeros,
//! or ends early (a truncated file). So damage at offset `d` is a torn
//! tail only if
//!   1. no later segment holds any data and no batch record of this log
//!      with a sequence number above the damaged batch's follows `d`, and
//!   2. the damaged record looks torn: it runs past the end of a short
//!      file, or one of the 512-byte sectors it overlaps is zero where the
//!      record lies.
//!
//! Anything else is `Error::Corrupt` naming the segment and the offset.

use super::error::{Error, Result};
use super::options::{Options, SEGMENT_ALIGN};
use super::record::{
    self, Bad, BatchHeader, Frame, BATCH_RECORD_BYTES, RECORD_ALIGN, RECORD_HEADER_BYTES,
};
use super::segment::{self, HeaderState, SegmentHeader, SEGMENT_HEADER_BYTES};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Torn-write detection granularity: the device's logical sector.
const SECTOR_BYTES: usize = 512;

/// A record as recovery returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub index: u64,
    pub kind: u8,
    pub payload: Vec<u8>,
}

/// One segment of the log as recovery found it (and as `Wal::segments`
/// reports it later).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    pub seq: u64,
    pub path: PathBuf,
    /// Index of the segment's first record (from its header).
    pub first_index: u64,
    /// Highest index of any record in the segment.
    pub max_index: u64,
    pub records: u64,
    /// Bytes in use, header included: the next write goes here.
    pub used_bytes: u64,
}

/// The incomplete last write that recovery removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub segment: PathBuf,
    /// The log now ends here (records before it were kept).
    pub offset: u64,
    /// Bytes between `offset` and the last non-zero byte that were zeroed.
    pub bytes_discarded: u64,
    /// Complete records of the torn batch that were kept (and made durable).
    pub records_kept: u32,
    pub what: String,
}

/// What `Wal::open` read back.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Every data record, in file order (the order they were appended).
    pub records: Vec<Record>,
    pub torn_tail: Option<TornTail>,
    pub segments: Vec<SegmentInfo>,
}

impl Recovery {
    /// Records whose index is above `index`, in file order.
    pub fn after(&self, index: u64) -> impl Iterator<Item = &Record> {
        self.records.iter().filter(move |r| r.index > index)
    }

    /// Applies raft's rule for a log that was truncated and re-appended
    /// (etcd's `wal.ReadAll` does the same): for records whose kind
    /// satisfies `is_entry`, a record with index `i` supersedes every
    /// earlier such record with index `≥ i`. Other records are kept as they
    /// are, in file order (a caller keeps the last hard state, say). The
    /// result holds the entries in strictly increasing index order.
    pub fn superseded(records: Vec<Record>, is_entry: impl Fn(u8) -> bool) -> Vec<Record> {
        let mut out: Vec<Option<Record>> = Vec::with_capacity(records.len());
        // Positions in `out` of the entries still kept, increasing by index.
        let mut entries: Vec<usize> = Vec::new();
        for r in records {
            if is_entry(r.kind) {
                while let Some(&last) = entries.last() {
                    if out[last].as_ref().expect("kept entry").index < r.index {
                        break;
                    }
                    out[last] = None;
                    entries.pop();
                }
                entries.push(out.len());
            }
            out.push(Some(r));
        }
        out.into_iter().flatten().collect()
    }
}

/// The state the writer continues from.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub recovery: Recovery,
    pub log_id: u64,
    pub next_batch_seq: u64,
    /// The segment new batches go to.
    pub active: Active,
    /// A prepared, unused segment after the active one, if there is one.
    pub spare: Option<(u64, PathBuf)>,
}

#[derive(Debug)]
pub(crate) struct Active {
    pub seq: u64,
    pub path: PathBuf,
    /// Next write offset; `SEGMENT_HEADER_BYTES` for an unused segment.
    pub offset: u64,
    pub segment_bytes: u64,
    /// `Some` once the segment's header is on disk.
    pub header: Option<SegmentHeader>,
}

struct Listed {
    seq: u64,
    path: PathBuf,
}

fn list(dir: &Path) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, "list WAL directory", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, "list WAL directory", e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if segment::is_tmp_name(name) {
            // A segment that was being prepared: never used, never named.
            let p = entry.path();
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, "remove temporary segment", e))?;
            continue;
        }
        if let Some(seq) = segment::parse_name(name) {
            out.push(Listed {
                seq,
                path: entry.path(),
            });
        }
    }
    out.sort_by_key(|l| l.seq);
    for w in out.windows(2) {
        if w[1].seq != w[0].seq + 1 {
            // Segments are created in sequence and released oldest first
            // with a directory fsync after each removal, so a gap is never
            // the result of a crash.
            return Err(Error::corrupt(
                &w[1].path,
                0,
                format!("segment {:016x} is missing before it", w[0].seq + 1),
            ));
        }
    }
    Ok(out)
}

fn read_all(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, "read segment", e))
}

fn all_zero(buf: &[u8]) -> bool {
    // Eight bytes at a time (the compiler vectorizes this); segments are
    // mostly zeros at the tail.
    let (body, tail) = buf.split_at(buf.len() / 8 * 8);
    body.chunks_exact(8)
        .all(|c| u64::from_ne_bytes(c.try_into().unwrap()) == 0)
        && tail.iter().all(|&b| b == 0)
}

fn last_nonzero(buf: &[u8], from: usize) -> Option<usize> {
    buf[from..].iter().rposition(|&b| b != 0).map(|i| from + i)
}

/// The first batch record of `log_id` with `seq >= min_seq` after `from`.
fn find_batch_after(buf: &[u8], from: usize, log_id: u64, min_seq: u64) -> Option<usize> {
    let start = (from + 1).next_multiple_of(RECORD_ALIGN);
    (start..buf.len().saturating_sub(BATCH_RECORD_BYTES - 1))
        .step_by(RECORD_ALIGN)
        .find(|&at| record::is_batch_at(buf, at, log_id, min_seq))
}

/// Whether damage at `d` looks like an incomplete write rather than a
/// changed byte (see the module comment). `claimed_end` is the end of the
/// record's header and payload by its length field (alignment padding is
/// legitimately zero and does not count). A sector lost in a torn write
/// reads as zeros in full, so the test is: some sector overlapping
/// `[d, claimed_end)` is zero from where the record starts in it to the end
/// of the sector.
fn looks_torn(buf: &[u8], d: usize, claimed_end: usize, segment_bytes: u64) -> bool {
    let padded_end = claimed_end.next_multiple_of(RECORD_ALIGN);
    if padded_end > buf.len() || d >= buf.len() {
        // Runs past the end: torn only if the file itself is short
        // (truncated). In a full-size file a length reaching past the end
        // is a damaged length field.
        return (buf.len() as u64) < segment_bytes;
    }
    let mut s = d / SECTOR_BYTES * SECTOR_BYTES;
    while s < claimed_end {
        let lo = s.max(d);
        let hi = (s + SECTOR_BYTES).min(buf.len());
        if all_zero(&buf[lo..hi]) {
            return true;
        }
        s += SECTOR_BYTES;
    }
    false
}

/// The end of the header and payload a damaged record at `d` claims, by
/// its length field if that is plausible, else just its header.
fn claimed_end(buf: &[u8], d: usize, cap: usize) -> usize {
    if d + RECORD_HEADER_BYTES > buf.len() {
        return d + RECORD_HEADER_BYTES;
    }
    let len = record::get_u32(buf, d + 4) as usize;
    let len = match buf[d + 16] {
        record::FRAME_DATA if len <= cap => len,
        record::FRAME_BATCH => BATCH_RECORD_BYTES - RECORD_HEADER_BYTES,
        _ => 0,
    };
    d + RECORD_HEADER_BYTES + len
}

/// Where the scan of one segment stopped.
enum Stop {
    /// All-zero header at `at`; `garbage` says whether non-zero bytes follow.
    End { at: usize, garbage: bool },
    /// Damage at `at`. `batch` is the intact batch record the damage lies
    /// in (with its start and the records before `at`), if any.
    Damage {
        at: usize,
        what: String,
        claimed_end: usize,
        batch: Option<(usize, BatchHeader, Vec<Record>)>,
    },
}

struct Scan {
    records: Vec<Record>,
    stop: Stop,
    /// Sequence number of the batch the scan expected at the stop.
    next_batch_seq: u64,
}

fn scan_batches(buf: &[u8], log_id: u64, mut expected: u64, cap: usize) -> Scan {
    let mut records = Vec::new();
    let mut p = SEGMENT_HEADER_BYTES;
    let damage = |at: usize, what: String, batch| Stop::Damage {
        at,
        claimed_end: claimed_end(buf, at, cap),
        what,
        batch,
    };
    loop {
        let b = match record::decode(buf, p, cap) {
            Err(Bad::Zero) => {
                let garbage = p < buf.len() && !all_zero(&buf[p..]);
                return Scan {
                    records,
                    stop: Stop::End { at: p, garbage },
                    next_batch_seq: expected,
                };
            }
            Ok(Frame::Batch(b)) if b.log_id == log_id && b.seq == expected => b,
            Ok(Frame::Batch(b)) => {
                let what = format!(
                    "batch {} of log {:#x} where batch {expected} of log {log_id:#x} belongs",
                    b.seq, b.log_id
                );
                return Scan {
                    records,
                    stop: damage(p, what, None),
                    next_batch_seq: expected,
                };
            }
            Ok(Frame::Data { .. }) => {
                let what = "data record where a batch record belongs".to_string();
                return Scan {
                    records,
                    stop: damage(p, what, None),
                    next_batch_seq: expected,
                };
            }
            Err(bad) => {
                let what = format!("batch record {expected}: {bad:?}");
                return Scan {
                    records,
                    stop: damage(p, what, None),
                    next_batch_seq: expected,
                };
            }
        };
        let end = p + BATCH_RECORD_BYTES + b.bytes as usize;
        let mut q = p + BATCH_RECORD_BYTES;
        let mut batch_records = Vec::with_capacity(b.count as usize);
        let mut failure = None;
        for i in 0..b.count {
            match record::decode(buf, q, cap) {
                Ok(Frame::Data { index, kind, len }) if q + record::encoded_len(len) <= end => {
                    let at = q + RECORD_HEADER_BYTES;
                    batch_records.push(Record {
                        index,
                        kind,
                        payload: buf[at..at + len].to_vec(),
                    });
                    q += record::encoded_len(len);
                }
                Ok(f) => {
                    failure = Some(format!(
                        "record {i} of batch {}: {f:?} does not fit the batch's {} bytes",
                        b.seq, b.bytes
                    ));
                    break;
                }
                Err(bad) => {
                    failure = Some(format!("record {i} of batch {}: {bad:?}", b.seq));
                    break;
                }
            }
        }
        if failure.is_none() && q != end {
            failure = Some(format!(
                "batch {} holds {} bytes of records, its header says {}",
                b.seq,
                q - p - BATCH_RECORD_BYTES,
                b.bytes
            ));
        }
        if let Some(what) = failure {
            return Scan {
                records,
                stop: damage(q, what, Some((p, b, batch_records))),
                next_batch_seq: expected,
            };
        }
        records.extend(batch_records);
        expected += 1;
        p = end;
    }
}

/// Runs recovery on `dir` (which exists and is locked by the caller).
pub(crate) fn recover(dir: &Path, opts: &Options, new_log_id: u64) -> Result<Recovered> {
    let listed = list(dir)?;
    let cap = opts.record_bytes_max.max(opts.segment_bytes as usize);
    let mut recovery = Recovery::default();
    let mut log_id: Option<u64> = None;
    let mut expected: Option<u64> = None;
    let mut active: Option<Active> = None;
    let mut unused: Vec<Listed> = Vec::new();

    let mut i = 0;
    while i < listed.len() {
        let seg = &listed[i];
        let buf = read_all(&seg.path)?;
        let header = segment::decode_header(&buf, &seg.path)?;
        let later_used = || -> Result<Option<PathBuf>> {
            for l in &listed[i + 1..] {
                if !all_zero(&read_all(&l.path)?) {
                    return Ok(Some(l.path.clone()));
                }
            }
            Ok(None)
        };
        if !unused.is_empty() && (!matches!(header, HeaderState::Unused) || !all_zero(&buf)) {
            return Err(Error::corrupt(
                &unused[0].path,
                0,
                format!(
                    "unused segment followed by used segment {}",
                    seg.path.display()
                ),
            ));
        }
        let h = match header {
            HeaderState::Unused if all_zero(&buf) => {
                unused.push(Listed {
                    seq: seg.seq,
                    path: seg.path.clone(),
                });
                i += 1;
                continue;
            }
            HeaderState::Valid(h) => h,
            state => {
                // A segment whose header is missing or damaged but which
                // holds data: its first write was torn, or it is corrupt.
                let what = match state {
                    HeaderState::Damaged(w) => w,
                    _ => "zero header in front of data".to_string(),
                };
                if let Some(next) = later_used()? {
                    return Err(Error::corrupt(
                        &seg.path,
                        0,
                        format!("{what}; later segment {} holds data", next.display()),
                    ));
                }
                let (lid, min_seq) = match (log_id, expected) {
                    (Some(l), Some(e)) => (l, e + 1),
                    _ => match first_batch(&buf) {
                        Some(b) => (b.log_id, b.seq + 1),
                        None => (0, u64::MAX),
                    },
                };
                if let Some(at) = find_batch_after(&buf, 0, lid, min_seq) {
                    return Err(Error::corrupt(
                        &seg.path,
                        0,
                        format!("{what}; a later batch follows at offset {at}"),
                    ));
                }
                if !looks_torn(&buf, 0, segment::HEADER_FIELDS_BYTES, opts.segment_bytes) {
                    return Err(Error::corrupt(
                        &seg.path,
                        0,
                        format!("{what} (does not look like a torn write)"),
                    ));
                }
                let discarded = last_nonzero(&buf, 0).map_or(0, |l| l as u64 + 1);
                reset_tail(&seg.path, &buf, 0, opts)?;
                recovery.torn_tail = Some(TornTail {
                    segment: seg.path.clone(),
                    offset: 0,
                    bytes_discarded: discarded,
                    records_kept: 0,
                    what: format!("first write of the segment was torn: {what}"),
                });
                tracing::warn!(segment = %seg.path.display(), "WAL recovery: torn first write of a segment discarded");
                unused.push(Listed {
                    seq: seg.seq,
                    path: seg.path.clone(),
                });
                i += 1;
                continue;
            }
        };
        check_header(&h, seg, log_id, expected, &buf)?;
        log_id = Some(h.log_id);
        let scan = scan_batches(&buf, h.log_id, h.first_batch_seq, cap);
        let mut records = scan.records;
        expected = Some(scan.next_batch_seq);
        let (end, torn) = match scan.stop {
            Stop::End { at, garbage: false } if !records.is_empty() => (at, None),
            Stop::End { at, garbage: false } => {
                // A valid header and no batch after it: the header and the
                // segment's first batch go out in one write, and a process
                // killed inside that write can leave the header's page in
                // the page cache without the batch's. The header names a
                // first index and batch that never became durable; kept, it
                // would describe whatever the writer appends next.
                if let Some(next) = later_used()? {
                    return Err(Error::corrupt(
                        &seg.path,
                        at as u64,
                        format!(
                            "segment header without its first batch; later segment {} holds data",
                            next.display()
                        ),
                    ));
                }
                (
                    at,
                    Some((
                        "segment header written without its first batch".to_string(),
                        None,
                    )),
                )
            }
            Stop::End { at, garbage: true } => {
                if let Some(next) = later_used()? {
                    return Err(Error::corrupt(
                        &seg.path,
                        at as u64,
                        format!(
                            "data after the end of the log; later segment {} holds data",
                            next.display()
                        ),
                    ));
                }
                if let Some(e) = find_batch_after(&buf, at, h.log_id, scan.next_batch_seq + 1) {
                    return Err(Error::corrupt(
                        &seg.path,
                        at as u64,
                        format!(
                            "missing batch {}; a later batch follows at offset {e}",
                            scan.next_batch_seq
                        ),
                    ));
                }
                (
                    at,
                    Some((
                        "non-zero bytes after the last complete batch".to_string(),
                        None,
                    )),
                )
            }
            Stop::Damage {
                at,
                what,
                claimed_end,
                batch,
            } => {
                if let Some(next) = later_used()? {
                    return Err(Error::corrupt(
                        &seg.path,
                        at as u64,
                        format!("{what}; later segment {} holds data", next.display()),
                    ));
                }
                if let Some(e) = find_batch_after(&buf, at, h.log_id, scan.next_batch_seq + 1) {
                    return Err(Error::corrupt(
                        &seg.path,
                        at as u64,
                        format!("{what}; batch record at offset {e} follows"),
                    ));
                }
                if !looks_torn(&buf, at, claimed_end, h.segment_bytes) {
                    return Err(Error::corrupt(
                        &seg.path,
                        at as u64,
                        format!(
                            "{what} (in the last batch, but it does not look like a torn write)"
                        ),
                    ));
                }
                match batch {
                    Some((start, b, kept)) if !kept.is_empty() => {
                        let kept_n = kept.len() as u32;
                        let fixed = BatchHeader {
                            count: kept_n,
                            bytes: (at - start - BATCH_RECORD_BYTES) as u32,
                            ..b
                        };
                        records.extend(kept);
                        expected = Some(scan.next_batch_seq + 1);
                        (at, Some((what, Some((start, fixed)))))
                    }
                    Some((start, _, _)) => (start, Some((what, None))),
                    None => (at, Some((what, None))),
                }
            }
        };
        if let (Some((what, _)), true) = (&torn, records.is_empty()) {
            // Nothing of this segment survives: its header names the first
            // index of a batch that is gone, so the whole segment is reset
            // to unused.
            let what = what.clone();
            let discarded = last_nonzero(&buf, 0).map_or(0, |l| l as u64 + 1);
            reset_tail(&seg.path, &buf, 0, opts)?;
            tracing::warn!(segment = %seg.path.display(), %what, "WAL recovery: torn tail emptied the segment");
            recovery.torn_tail = Some(TornTail {
                segment: seg.path.clone(),
                offset: 0,
                bytes_discarded: discarded,
                records_kept: 0,
                what,
            });
            unused.push(Listed {
                seq: seg.seq,
                path: seg.path.clone(),
            });
            i += 1;
            continue;
        }
        if let Some((what, fix)) = torn {
            let discarded = last_nonzero(&buf, end).map_or(0, |l| (l + 1 - end) as u64);
            let kept = fix.map_or(0, |(_, b)| b.count);
            repair(&seg.path, &buf, end, fix, opts, h.segment_bytes)?;
            tracing::warn!(segment = %seg.path.display(), offset = end, discarded, kept, %what, "WAL recovery: torn tail truncated");
            recovery.torn_tail = Some(TornTail {
                segment: seg.path.clone(),
                offset: end as u64,
                bytes_discarded: discarded,
                records_kept: kept,
                what,
            });
        } else if (buf.len() as u64) < h.segment_bytes && later_used()?.is_none() {
            // A short (truncated) file that ends cleanly: extend it so the
            // writer continues into zeros.
            repair(&seg.path, &buf, end, None, opts, h.segment_bytes)?;
        }
        let info = SegmentInfo {
            seq: seg.seq,
            path: seg.path.clone(),
            first_index: h.first_index,
            max_index: records
                .iter()
                .map(|r| r.index)
                .max()
                .unwrap_or(h.first_index),
            records: records.len() as u64,
            used_bytes: end as u64,
        };
        if let Some(first) = records.first() {
            if first.index != h.first_index {
                return Err(Error::corrupt(
                    &seg.path,
                    0,
                    format!(
                        "header names first index {}, the first record has {}",
                        h.first_index, first.index
                    ),
                ));
            }
        }
        recovery.records.extend(records);
        recovery.segments.push(info);
        active = Some(Active {
            seq: seg.seq,
            path: seg.path.clone(),
            offset: end as u64,
            segment_bytes: h.segment_bytes,
            header: Some(h),
        });
        i += 1;
    }

    // Unused segments after the active one: keep the first as the spare
    // (or as the active segment of an empty log), drop the rest.
    let mut unused = unused.into_iter();
    let mut spare = None;
    let active = match active {
        Some(a) => {
            spare = unused.next().map(|l| (l.seq, l.path));
            a
        }
        None => match unused.next() {
            Some(l) => Active {
                seq: l.seq,
                path: l.path,
                offset: SEGMENT_HEADER_BYTES as u64,
                segment_bytes: opts.segment_bytes,
                header: None,
            },
            None => {
                let seq = 1;
                let path = segment::prepare(dir, seq, opts.segment_bytes, opts.preallocate)?;
                Active {
                    seq,
                    path,
                    offset: SEGMENT_HEADER_BYTES as u64,
                    segment_bytes: opts.segment_bytes,
                    header: None,
                }
            }
        },
    };
    let mut removed = false;
    for l in unused {
        std::fs::remove_file(&l.path).map_err(|e| Error::io(&l.path, "remove extra segment", e))?;
        removed = true;
    }
    if let Some((_, path)) = &spare {
        let len = std::fs::metadata(path)
            .map_err(|e| Error::io(path, "stat", e))?
            .len();
        if len != opts.segment_bytes {
            std::fs::remove_file(path).map_err(|e| Error::io(path, "remove spare segment", e))?;
            removed = true;
            spare = None;
        }
    }
    if removed {
        segment::sync_dir(dir)?;
    }
    assert!(active.offset % RECORD_ALIGN as u64 == 0);
    assert!(active.offset >= SEGMENT_HEADER_BYTES as u64);
    Ok(Recovered {
        recovery,
        log_id: log_id.unwrap_or(new_log_id),
        next_batch_seq: expected.unwrap_or(1),
        active,
        spare,
    })
}

fn first_batch(buf: &[u8]) -> Option<BatchHeader> {
    (SEGMENT_HEADER_BYTES..buf.len().saturating_sub(BATCH_RECORD_BYTES - 1))
        .step_by(RECORD_ALIGN)
        .find_map(|at| match record::decode(buf, at, 0) {
            Ok(Frame::Batch(b)) => Some(b),
            _ => None,
        })
}

fn check_header(
    h: &SegmentHeader,
    seg: &Listed,
    log_id: Option<u64>,
    expected: Option<u64>,
    buf: &[u8],
) -> Result<()> {
    let bad = |what: String| Err(Error::corrupt(&seg.path, 0, what));
    if h.seq != seg.seq {
        return bad(format!("header names segment {:016x}", h.seq));
    }
    if let Some(l) = log_id {
        if h.log_id != l {
            return bad(format!(
                "segment of log {:#x} among segments of log {l:#x}",
                h.log_id
            ));
        }
    }
    if let Some(e) = expected {
        if h.first_batch_seq != e {
            return bad(format!(
                "first batch {} but the previous segment ended before batch {e}",
                h.first_batch_seq
            ));
        }
    }
    if !h.segment_bytes.is_multiple_of(SEGMENT_ALIGN)
        || h.segment_bytes < (SEGMENT_HEADER_BYTES + BATCH_RECORD_BYTES) as u64
        || (buf.len() as u64) > h.segment_bytes
    {
        return bad(format!(
            "header names segment size {} for a file of {} bytes",
            h.segment_bytes,
            buf.len()
        ));
    }
    Ok(())
}

/// Makes the segment end at `end`: optionally rewrites the batch record of
/// a torn batch whose complete records are kept, zeroes everything after
/// `end`, extends the file to its full size, and fdatasyncs, so the kept
/// records are durable before recovery returns them.
fn repair(
    path: &Path,
    buf: &[u8],
    end: usize,
    fix: Option<(usize, BatchHeader)>,
    opts: &Options,
    segment_bytes: u64,
) -> Result<()> {
    let file = segment::open_rw(path)?;
    if let Some((start, b)) = fix {
        let mut rec = [0u8; BATCH_RECORD_BYTES];
        b.encode(&mut rec);
        file.write_all_at(&rec, start as u64)
            .map_err(|e| Error::io(path, "rewrite torn batch record", e))?;
    }
    zero_after(&file, path, buf, end, opts, segment_bytes)?;
    file.sync_data()
        .map_err(|e| Error::io(path, "fdatasync after recovery", e))
}

fn reset_tail(path: &Path, buf: &[u8], end: usize, opts: &Options) -> Result<()> {
    let file = segment::open_rw(path)?;
    zero_after(&file, path, buf, end, opts, opts.segment_bytes)?;
    file.sync_data()
        .map_err(|e| Error::io(path, "fdatasync after recovery", e))
}

fn zero_after(
    file: &File,
    path: &Path,
    buf: &[u8],
    end: usize,
    opts: &Options,
    segment_bytes: u64,
) -> Result<()> {
    if let Some(last) = last_nonzero(buf, end) {
        let zeros = vec![0u8; last + 1 - end];
        file.write_all_at(&zeros, end as u64)
            .map_err(|e| Error::io(path, "zero torn tail", e))?;
    }
    let len = buf.len() as u64;
    if len < segment_bytes {
        segment::fill_zeros(file, path, len, segment_bytes, opts.preallocate)?;
    }
    Ok(())
}
