//! Record framing (docs/format.md, "WAL segment file").
//!
//! Every record starts at an 8-byte aligned offset with a 24-byte header:
//!
//! ```text
//! 0   u32 crc32c of bytes [4, 24) of the header followed by the payload
//! 4   u32 payload length
//! 8   u64 index (data record) or batch sequence number (batch record)
//! 16  u8  frame: 1 data record, 2 batch record
//! 17  u8  kind: the caller's record type (data records), 0 otherwise
//! 18  6   zero
//! 24  ... payload, then zeros up to the next multiple of 8
//! ```
//!
//! A batch record opens every write: its 16-byte payload holds the log id,
//! the number of data records that follow and their encoded length. An
//! all-zero header is never valid (its checksum would have to be zero, and
//! the checksum of twenty zero bytes is not), so preallocated, never
//! written space reads as "no record".

pub const RECORD_HEADER_BYTES: usize = 24;
pub const RECORD_ALIGN: usize = 8;
pub const FRAME_DATA: u8 = 1;
pub const FRAME_BATCH: u8 = 2;
const BATCH_PAYLOAD_BYTES: usize = 16;
pub const BATCH_RECORD_BYTES: usize = RECORD_HEADER_BYTES + BATCH_PAYLOAD_BYTES;

const OFF_CRC: usize = 0;
const OFF_LEN: usize = 4;
const OFF_INDEX: usize = 8;
const OFF_FRAME: usize = 16;
const OFF_KIND: usize = 17;

/// Bytes a record with a payload of `len` bytes takes in a segment.
#[inline]
pub fn encoded_len(len: usize) -> usize {
    (RECORD_HEADER_BYTES + len).next_multiple_of(RECORD_ALIGN)
}

#[inline]
pub fn get_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().unwrap())
}
#[inline]
pub fn get_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().unwrap())
}
#[inline]
pub fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
#[inline]
pub fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// The header of a record, with its checksum already computed over the
/// header and `payload`. Appenders build it on their own thread, outside
/// the queue lock.
pub fn data_header(index: u64, kind: u8, payload: &[u8]) -> [u8; RECORD_HEADER_BYTES] {
    assert!(payload.len() <= u32::MAX as usize);
    let mut h = [0u8; RECORD_HEADER_BYTES];
    put_u32(&mut h, OFF_LEN, payload.len() as u32);
    put_u64(&mut h, OFF_INDEX, index);
    h[OFF_FRAME] = FRAME_DATA;
    h[OFF_KIND] = kind;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[4..]), payload);
    put_u32(&mut h, OFF_CRC, crc);
    h
}

/// Appends one data record (header, payload, alignment zeros) to `buf`.
pub fn push_data(buf: &mut Vec<u8>, header: &[u8; RECORD_HEADER_BYTES], payload: &[u8]) {
    debug_assert_eq!(get_u32(header, OFF_LEN) as usize, payload.len());
    let start = buf.len();
    debug_assert_eq!(start % RECORD_ALIGN, 0);
    buf.extend_from_slice(header);
    buf.extend_from_slice(payload);
    buf.resize(start + encoded_len(payload.len()), 0);
}

/// What a batch record says about the write it opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub seq: u64,
    pub log_id: u64,
    /// Data records that follow the batch record.
    pub count: u32,
    /// Their encoded length in bytes (a multiple of 8).
    pub bytes: u32,
}

impl BatchHeader {
    pub fn encode(&self, out: &mut [u8]) {
        assert!(out.len() >= BATCH_RECORD_BYTES);
        assert_eq!(self.bytes as usize % RECORD_ALIGN, 0);
        let out = &mut out[..BATCH_RECORD_BYTES];
        out.fill(0);
        put_u32(out, OFF_LEN, BATCH_PAYLOAD_BYTES as u32);
        put_u64(out, OFF_INDEX, self.seq);
        out[OFF_FRAME] = FRAME_BATCH;
        put_u64(out, RECORD_HEADER_BYTES, self.log_id);
        put_u32(out, RECORD_HEADER_BYTES + 8, self.count);
        put_u32(out, RECORD_HEADER_BYTES + 12, self.bytes);
        let crc = crc32c::crc32c(&out[4..]);
        put_u32(out, OFF_CRC, crc);
    }
}

/// A record that decoded and verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    Data {
        index: u64,
        kind: u8,
        /// Payload bytes start at `at + RECORD_HEADER_BYTES`.
        len: usize,
    },
    Batch(BatchHeader),
}

/// Why no record could be read at an offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bad {
    /// The header is all zeros: space that was never written.
    Zero,
    /// The record (by its header's length) runs past the end of the file.
    PastEnd { needed: usize },
    /// Anything else: checksum, frame, length or padding.
    Invalid(String),
}

/// Decodes and verifies the record at `at`. The checksum is verified
/// before any field is trusted beyond bounds checks.
pub fn decode(buf: &[u8], at: usize, record_bytes_max: usize) -> Result<Frame, Bad> {
    assert_eq!(at % RECORD_ALIGN, 0);
    let Some(header) = buf.get(at..at + RECORD_HEADER_BYTES) else {
        let rest = buf.get(at..).unwrap_or(&[]);
        if rest.iter().all(|&b| b == 0) {
            // A zero stub shorter than a header is unwritten space too.
            return Err(Bad::Zero);
        }
        return Err(Bad::PastEnd {
            needed: RECORD_HEADER_BYTES,
        });
    };
    if header.iter().all(|&b| b == 0) {
        return Err(Bad::Zero);
    }
    let len = get_u32(header, OFF_LEN) as usize;
    let frame = header[OFF_FRAME];
    let limit = match frame {
        FRAME_DATA => record_bytes_max,
        FRAME_BATCH => BATCH_PAYLOAD_BYTES,
        other => return Err(Bad::Invalid(format!("unknown frame type {other}"))),
    };
    if len > limit {
        return Err(Bad::Invalid(format!(
            "length {len} exceeds the limit {limit} of frame type {frame}"
        )));
    }
    let total = encoded_len(len);
    let Some(record) = buf.get(at..at + total) else {
        return Err(Bad::PastEnd { needed: total });
    };
    let stored = get_u32(record, OFF_CRC);
    let actual = crc32c::crc32c(&record[4..RECORD_HEADER_BYTES + len]);
    if stored != actual {
        return Err(Bad::Invalid(format!(
            "checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"
        )));
    }
    if record[18..RECORD_HEADER_BYTES].iter().any(|&b| b != 0)
        || record[RECORD_HEADER_BYTES + len..].iter().any(|&b| b != 0)
    {
        return Err(Bad::Invalid("non-zero reserved or padding bytes".into()));
    }
    let index = get_u64(record, OFF_INDEX);
    match frame {
        FRAME_DATA => Ok(Frame::Data {
            index,
            kind: record[OFF_KIND],
            len,
        }),
        _ => {
            if record[OFF_KIND] != 0 {
                return Err(Bad::Invalid("batch record with a kind".into()));
            }
            let p = &record[RECORD_HEADER_BYTES..];
            let b = BatchHeader {
                seq: index,
                log_id: get_u64(p, 0),
                count: get_u32(p, 8),
                bytes: get_u32(p, 12),
            };
            if !(b.bytes as usize).is_multiple_of(RECORD_ALIGN) {
                return Err(Bad::Invalid(format!(
                    "batch length {} is not aligned",
                    b.bytes
                )));
            }
            Ok(Frame::Batch(b))
        }
    }
}

/// Quick test that a batch record of `log_id` with a sequence number of at
/// least `min_seq` starts at `at`: the cheap field checks first, the
/// checksum only for candidates. Used to look for durable data after
/// damage (recovery's "evidence" search).
pub fn is_batch_at(buf: &[u8], at: usize, log_id: u64, min_seq: u64) -> bool {
    let Some(h) = buf.get(at..at + BATCH_RECORD_BYTES) else {
        return false;
    };
    if h[OFF_FRAME] != FRAME_BATCH
        || get_u32(h, OFF_LEN) as usize != BATCH_PAYLOAD_BYTES
        || get_u64(h, RECORD_HEADER_BYTES) != log_id
        || get_u64(h, OFF_INDEX) < min_seq
    {
        return false;
    }
    matches!(decode(buf, at, 0), Ok(Frame::Batch(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_roundtrip_and_every_flip_is_detected() {
        for len in [0usize, 1, 7, 8, 9, 100] {
            let payload: Vec<u8> = (0..len as u32).map(|i| (i * 7 + 1) as u8).collect();
            let h = data_header(42, 9, &payload);
            let mut buf = Vec::new();
            push_data(&mut buf, &h, &payload);
            assert_eq!(buf.len(), encoded_len(len));
            assert_eq!(buf.len() % RECORD_ALIGN, 0);
            assert_eq!(
                decode(&buf, 0, 1 << 20),
                Ok(Frame::Data {
                    index: 42,
                    kind: 9,
                    len
                })
            );
            for at in 0..buf.len() {
                for bit in [0x01u8, 0x80] {
                    let mut bad = buf.clone();
                    bad[at] ^= bit;
                    assert!(
                        decode(&bad, 0, 1 << 20).is_err() || bad == buf,
                        "flip at {at} of a {len}-byte record undetected"
                    );
                }
            }
        }
    }

    #[test]
    fn zero_header_is_never_a_record() {
        assert_ne!(crc32c::crc32c(&[0u8; 20]), 0);
        let buf = vec![0u8; 64];
        assert_eq!(decode(&buf, 0, 1 << 20), Err(Bad::Zero));
        assert_eq!(decode(&buf, 48, 1 << 20), Err(Bad::Zero));
    }

    #[test]
    fn batch_roundtrip_and_evidence_check() {
        let b = BatchHeader {
            seq: 77,
            log_id: 0xfeed,
            count: 3,
            bytes: 96,
        };
        let mut buf = vec![0u8; 64];
        b.encode(&mut buf[8..]);
        assert_eq!(decode(&buf, 8, 0), Ok(Frame::Batch(b)));
        assert!(is_batch_at(&buf, 8, 0xfeed, 77));
        assert!(!is_batch_at(&buf, 8, 0xfeed, 78));
        assert!(!is_batch_at(&buf, 8, 0xbeef, 0));
        buf[30] ^= 1;
        assert!(!is_batch_at(&buf, 8, 0xfeed, 0));
    }

    #[test]
    fn truncated_record_is_past_end() {
        let h = data_header(1, 1, &[5u8; 40]);
        let mut buf = Vec::new();
        push_data(&mut buf, &h, &[5u8; 40]);
        for cut in 1..buf.len() {
            assert!(
                matches!(decode(&buf[..cut], 0, 1 << 20), Err(Bad::PastEnd { .. })),
                "cut at {cut}"
            );
        }
    }
}
