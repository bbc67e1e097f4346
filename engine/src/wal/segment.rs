//! Segment files: naming, the header block, and preparing a new file.
//!
//! A segment is `<seq as 16 hex digits>.wal`, preallocated to its full size
//! before it is used. Its first 4096 bytes are the header block; records
//! start at byte 4096. The header is written together with the segment's
//! first batch (it carries the first record's index, unknown before), so a
//! prepared but unused segment is all zeros.

use super::error::{Error, Result};
use super::options::Preallocate;
use super::record::{get_u32, get_u64, put_u32, put_u64};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// "FKVWALSG" read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"FKVWALSG");
pub const VERSION: u32 = 1;
/// The header block; the first record starts here.
pub const SEGMENT_HEADER_BYTES: usize = 4096;
/// Bytes of the header block that hold fields; the rest is zero.
pub const HEADER_FIELDS_BYTES: usize = 64;

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_DATA_START: usize = 12;
const OFF_SEQ: usize = 16;
const OFF_LOG_ID: usize = 24;
const OFF_FIRST_INDEX: usize = 32;
const OFF_FIRST_BATCH: usize = 40;
const OFF_SEGMENT_BYTES: usize = 48;
const OFF_CRC: usize = 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub seq: u64,
    /// Identifies the log; every segment and batch record of one log
    /// carries the same value (chosen at random when the log is created).
    pub log_id: u64,
    /// Index of the first data record in the segment.
    pub first_index: u64,
    /// Sequence number of the first batch in the segment.
    pub first_batch_seq: u64,
    /// The size the segment was preallocated to.
    pub segment_bytes: u64,
}

impl SegmentHeader {
    pub fn encode(&self) -> Box<[u8; SEGMENT_HEADER_BYTES]> {
        let mut buf = Box::new([0u8; SEGMENT_HEADER_BYTES]);
        put_u64(&mut buf[..], OFF_MAGIC, MAGIC);
        put_u32(&mut buf[..], OFF_VERSION, VERSION);
        put_u32(&mut buf[..], OFF_DATA_START, SEGMENT_HEADER_BYTES as u32);
        put_u64(&mut buf[..], OFF_SEQ, self.seq);
        put_u64(&mut buf[..], OFF_LOG_ID, self.log_id);
        put_u64(&mut buf[..], OFF_FIRST_INDEX, self.first_index);
        put_u64(&mut buf[..], OFF_FIRST_BATCH, self.first_batch_seq);
        put_u64(&mut buf[..], OFF_SEGMENT_BYTES, self.segment_bytes);
        let crc = crc32c::crc32c(&buf[..OFF_CRC]);
        put_u32(&mut buf[..], OFF_CRC, crc);
        buf
    }
}

/// What the first bytes of a segment file hold.
#[derive(Debug)]
pub enum HeaderState {
    /// All zero (or the file is empty): never used.
    Unused,
    Valid(SegmentHeader),
    /// Checksum mismatch or a truncated header: torn or damaged.
    Damaged(String),
}

/// Reads the header from the start of a segment file's bytes. Format
/// errors (magic, version) are returned as such: a foreign file is not
/// "torn".
pub fn decode_header(buf: &[u8], path: &Path) -> Result<HeaderState> {
    let fields = &buf[..buf.len().min(HEADER_FIELDS_BYTES)];
    if fields.iter().all(|&b| b == 0) {
        return Ok(HeaderState::Unused);
    }
    if fields.len() < HEADER_FIELDS_BYTES {
        return Ok(HeaderState::Damaged(format!(
            "header truncated at {} bytes",
            fields.len()
        )));
    }
    let magic = get_u64(fields, OFF_MAGIC);
    let stored = get_u32(fields, OFF_CRC);
    let actual = crc32c::crc32c(&fields[..OFF_CRC]);
    if stored != actual {
        if magic != MAGIC && magic != 0 {
            return Err(Error::NotAWal {
                path: path.to_path_buf(),
                found: magic,
            });
        }
        return Ok(HeaderState::Damaged(format!(
            "header checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"
        )));
    }
    if magic != MAGIC {
        return Err(Error::NotAWal {
            path: path.to_path_buf(),
            found: magic,
        });
    }
    let version = get_u32(fields, OFF_VERSION);
    if version != VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: VERSION,
        });
    }
    let data_start = get_u32(fields, OFF_DATA_START) as usize;
    if data_start != SEGMENT_HEADER_BYTES {
        return Ok(HeaderState::Damaged(format!(
            "header names data start {data_start}"
        )));
    }
    let rest = &buf[HEADER_FIELDS_BYTES..buf.len().min(SEGMENT_HEADER_BYTES)];
    if rest.iter().any(|&b| b != 0) {
        return Ok(HeaderState::Damaged(
            "non-zero bytes in the header block".into(),
        ));
    }
    Ok(HeaderState::Valid(SegmentHeader {
        seq: get_u64(fields, OFF_SEQ),
        log_id: get_u64(fields, OFF_LOG_ID),
        first_index: get_u64(fields, OFF_FIRST_INDEX),
        first_batch_seq: get_u64(fields, OFF_FIRST_BATCH),
        segment_bytes: get_u64(fields, OFF_SEGMENT_BYTES),
    }))
}

pub fn file_name(seq: u64) -> String {
    format!("{seq:016x}.wal")
}

pub fn tmp_name(seq: u64) -> String {
    format!("{seq:016x}.wal.tmp")
}

/// The sequence number of a segment file name, `None` for anything else.
pub fn parse_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".wal")?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

pub fn is_tmp_name(name: &str) -> bool {
    name.strip_suffix(".wal.tmp")
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(|e| Error::io(dir, "open directory", e))?;
    d.sync_all()
        .map_err(|e| Error::io(dir, "fsync directory", e))
}

/// Makes `[from, segment_bytes)` of `file` zeros of the chosen kind:
/// written zeros (`ZeroFill`) or allocated unwritten extents (`Fallocate`).
/// Does not sync.
pub fn fill_zeros(
    file: &File,
    path: &Path,
    from: u64,
    segment_bytes: u64,
    mode: Preallocate,
) -> Result<()> {
    assert!(from <= segment_bytes);
    if from == segment_bytes {
        return Ok(());
    }
    fallocate(file, path, from, segment_bytes - from)?;
    if mode == Preallocate::ZeroFill {
        const CHUNK: usize = 1 << 20;
        let zeros = vec![0u8; CHUNK];
        let mut at = from;
        while at < segment_bytes {
            let n = (segment_bytes - at).min(CHUNK as u64) as usize;
            file.write_all_at(&zeros[..n], at)
                .map_err(|e| Error::io(path, "zero-fill", e))?;
            at += n as u64;
        }
    }
    Ok(())
}

fn fallocate(file: &File, path: &Path, offset: u64, len: u64) -> Result<()> {
    // SAFETY: fallocate on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, offset as i64, len as i64) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    // File systems without fallocate: extend the size instead; the zero
    // fill (or the sparse tail) reads as zeros all the same.
    if err.raw_os_error() == Some(libc::EOPNOTSUPP) {
        let size = file
            .metadata()
            .map_err(|e| Error::io(path, "stat", e))?
            .len();
        if size < offset + len {
            file.set_len(offset + len)
                .map_err(|e| Error::io(path, "extend", e))?;
        }
        return Ok(());
    }
    Err(Error::io(path, "fallocate", err))
}

/// Creates segment `seq` in `dir`, fully preallocated and durable (file
/// contents and directory entry), with an all-zero header: written under a
/// temporary name and renamed, so a segment file under its final name is
/// always complete.
pub fn prepare(dir: &Path, seq: u64, segment_bytes: u64, mode: Preallocate) -> Result<PathBuf> {
    let tmp = dir.join(tmp_name(seq));
    let path = dir.join(file_name(seq));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, "create segment", e))?;
    fill_zeros(&file, &tmp, 0, segment_bytes, mode)?;
    file.sync_all()
        .map_err(|e| Error::io(&tmp, "fsync new segment", e))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, "rename new segment", e))?;
    sync_dir(dir)?;
    Ok(path)
}

/// Drops the file's clean pages from the page cache. A zero fill written in
/// large chunks (or a recovery read with readahead) leaves the segment
/// cached in large folios; an append of a few hundred bytes into such a
/// folio dirties all of it, and every fdatasync then writes the whole folio
/// back (measured here: 1 MiB written per 256-byte append, against 4 KiB
/// once the cache was dropped). Pages the appends touch later come back one
/// at a time. Only advice: failure changes speed, not correctness.
pub fn drop_cache(file: &File) {
    // SAFETY: posix_fadvise on a descriptor we own; no memory is passed.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

/// Opens a segment for appending, with no page of it cached (`drop_cache`):
/// called on clean files only (prepared or recovered and synced).
pub fn open_append(path: &Path) -> Result<File> {
    let file = open_rw(path)?;
    drop_cache(&file);
    Ok(file)
}

/// fdatasyncs a segment file.
pub fn sync_data(path: &Path) -> Result<()> {
    open_rw(path)?
        .sync_data()
        .map_err(|e| Error::io(path, "fdatasync segment", e))
}

pub fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, "open segment", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SegmentHeader {
        SegmentHeader {
            seq: 3,
            log_id: 0xabcdef,
            first_index: 100,
            first_batch_seq: 17,
            segment_bytes: 1 << 20,
        }
    }

    #[test]
    fn header_roundtrip_and_flips() {
        let buf = sample().encode();
        let p = Path::new("x");
        match decode_header(&buf[..], p).unwrap() {
            HeaderState::Valid(h) => assert_eq!(h, sample()),
            other => panic!("{other:?}"),
        }
        for at in 8..HEADER_FIELDS_BYTES {
            let mut bad = buf.clone();
            bad[at] ^= 0x04;
            assert!(
                !matches!(decode_header(&bad[..], p), Ok(HeaderState::Valid(_))),
                "flip at {at}"
            );
        }
        let mut bad = buf.clone();
        bad[3000] = 1;
        assert!(matches!(
            decode_header(&bad[..], p),
            Ok(HeaderState::Damaged(_))
        ));
    }

    #[test]
    fn foreign_and_unused() {
        let p = Path::new("x");
        assert!(matches!(
            decode_header(&[0u8; 4096], p),
            Ok(HeaderState::Unused)
        ));
        assert!(matches!(decode_header(&[], p), Ok(HeaderState::Unused)));
        assert!(matches!(
            decode_header(&[0x55u8; 4096], p),
            Err(Error::NotAWal { .. })
        ));
    }

    #[test]
    fn names() {
        assert_eq!(file_name(0x1f), "000000000000001f.wal");
        assert_eq!(parse_name("000000000000001f.wal"), Some(0x1f));
        assert_eq!(parse_name("000000000000001f.wal.tmp"), None);
        assert_eq!(parse_name("1f.wal"), None);
        assert!(is_tmp_name(&tmp_name(9)));
    }
}
