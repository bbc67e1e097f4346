//! Raft log records: what raftlog stores in the durable log, and their byte
//! encoding (little-endian, described in docs/format.md, "raft log records").
//!
//! Every payload is self-describing (an entry carries its own index), so the
//! durable log only has to keep records in order; the log's own index is a
//! convenience for release and never needed to decode a record.

use bytes::Bytes;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, SnapshotMetadata};

use crate::error::{Error, Result};

/// Record type byte of a log entry.
pub const RECORD_ENTRY: u8 = 1;
/// Record type byte of a hard state (term, vote, commit).
pub const RECORD_HARD_STATE: u8 = 2;
/// Record type byte of a snapshot marker.
pub const RECORD_SNAPSHOT: u8 = 3;

/// Where a snapshot marker came from; they recover differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotOrigin {
    /// This node's state machine wrote it: entries up to its index may be
    /// dropped, later entries stay.
    Taken,
    /// Received from the leader and installed: the whole log before it is
    /// replaced, including any (stale) entries after its index.
    Installed,
}

/// One durable record.
#[derive(Clone, Debug, PartialEq)]
pub enum LogRecord {
    Entry(Entry),
    HardState(HardState),
    Snapshot {
        origin: SnapshotOrigin,
        meta: SnapshotMetadata,
        descriptor: Bytes,
    },
}

impl LogRecord {
    pub fn kind(&self) -> u8 {
        match self {
            LogRecord::Entry(_) => RECORD_ENTRY,
            LogRecord::HardState(_) => RECORD_HARD_STATE,
            LogRecord::Snapshot { .. } => RECORD_SNAPSHOT,
        }
    }

    /// The raft index the record belongs to: an entry's index, a snapshot's
    /// index, a hard state's commit index.
    pub fn index(&self) -> u64 {
        match self {
            LogRecord::Entry(e) => e.index,
            LogRecord::HardState(hs) => hs.commit,
            LogRecord::Snapshot { meta, .. } => meta.index,
        }
    }

    pub fn encoded_len(&self) -> usize {
        match self {
            LogRecord::Entry(e) => 8 + 8 + 1 + 4 + e.context.len() + 4 + e.data.len(),
            LogRecord::HardState(_) => 24,
            LogRecord::Snapshot {
                meta, descriptor, ..
            } => {
                let cs = meta.get_conf_state();
                let ids = cs.voters.len()
                    + cs.learners.len()
                    + cs.voters_outgoing.len()
                    + cs.learners_next.len();
                1 + 8 + 8 + 4 * 4 + 8 * ids + 1 + 4 + descriptor.len()
            }
        }
    }

    /// Appends the payload (without type byte and framing) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        match self {
            LogRecord::Entry(e) => {
                put_u64(out, e.index);
                put_u64(out, e.term);
                out.push(entry_type_byte(e.get_entry_type()));
                put_bytes(out, &e.context);
                put_bytes(out, &e.data);
            }
            LogRecord::HardState(hs) => {
                put_u64(out, hs.term);
                put_u64(out, hs.vote);
                put_u64(out, hs.commit);
            }
            LogRecord::Snapshot {
                origin,
                meta,
                descriptor,
            } => {
                out.push(match origin {
                    SnapshotOrigin::Taken => 0,
                    SnapshotOrigin::Installed => 1,
                });
                put_u64(out, meta.index);
                put_u64(out, meta.term);
                encode_conf_state(meta.get_conf_state(), out);
                put_bytes(out, descriptor);
            }
        }
        debug_assert_eq!(out.len() - start, self.encoded_len());
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out
    }

    /// Decodes a payload of type `kind`. Every length is checked; trailing
    /// bytes are an error, not ignored.
    pub fn decode(kind: u8, payload: &[u8]) -> Result<LogRecord> {
        let mut r = Reader {
            buf: payload,
            pos: 0,
        };
        let rec = match kind {
            RECORD_ENTRY => {
                let mut e = Entry::default();
                e.index = r.u64()?;
                e.term = r.u64()?;
                e.set_entry_type(entry_type_from_byte(r.u8()?)?);
                e.context = Bytes::copy_from_slice(r.bytes()?);
                e.data = Bytes::copy_from_slice(r.bytes()?);
                LogRecord::Entry(e)
            }
            RECORD_HARD_STATE => {
                let mut hs = HardState::default();
                hs.term = r.u64()?;
                hs.vote = r.u64()?;
                hs.commit = r.u64()?;
                LogRecord::HardState(hs)
            }
            RECORD_SNAPSHOT => {
                let origin = match r.u8()? {
                    0 => SnapshotOrigin::Taken,
                    1 => SnapshotOrigin::Installed,
                    b => return Err(r.err(format!("snapshot origin byte {b}"))),
                };
                let mut meta = SnapshotMetadata::default();
                meta.index = r.u64()?;
                meta.term = r.u64()?;
                meta.set_conf_state(decode_conf_state(&mut r)?);
                let descriptor = Bytes::copy_from_slice(r.bytes()?);
                LogRecord::Snapshot {
                    origin,
                    meta,
                    descriptor,
                }
            }
            other => {
                return Err(Error::CorruptRecord {
                    index: 0,
                    reason: format!("unknown record type {other}"),
                })
            }
        };
        if r.pos != payload.len() {
            return Err(r.err(format!("{} trailing bytes", payload.len() - r.pos)));
        }
        Ok(rec)
    }
}

pub fn encode_conf_state(cs: &ConfState, out: &mut Vec<u8>) {
    for ids in [
        &cs.voters,
        &cs.learners,
        &cs.voters_outgoing,
        &cs.learners_next,
    ] {
        put_u32(out, ids.len() as u32);
        for id in ids.iter() {
            put_u64(out, *id);
        }
    }
    out.push(cs.auto_leave as u8);
}

fn decode_conf_state(r: &mut Reader<'_>) -> Result<ConfState> {
    let mut cs = ConfState::default();
    for i in 0..4 {
        let n = r.u32()? as usize;
        if n > r.remaining() / 8 {
            return Err(r.err(format!("conf state list of {n} ids")));
        }
        let ids: Vec<u64> = (0..n).map(|_| r.u64()).collect::<Result<_>>()?;
        match i {
            0 => cs.voters = ids,
            1 => cs.learners = ids,
            2 => cs.voters_outgoing = ids,
            _ => cs.learners_next = ids,
        }
    }
    cs.auto_leave = match r.u8()? {
        0 => false,
        1 => true,
        b => return Err(r.err(format!("auto_leave byte {b}"))),
    };
    Ok(cs)
}

fn entry_type_byte(t: EntryType) -> u8 {
    match t {
        EntryType::EntryNormal => 0,
        EntryType::EntryConfChange => 1,
        EntryType::EntryConfChangeV2 => 2,
    }
}

fn entry_type_from_byte(b: u8) -> Result<EntryType> {
    Ok(match b {
        0 => EntryType::EntryNormal,
        1 => EntryType::EntryConfChange,
        2 => EntryType::EntryConfChangeV2,
        _ => {
            return Err(Error::CorruptRecord {
                index: 0,
                reason: format!("entry type byte {b}"),
            })
        }
    })
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(
        out,
        u32::try_from(b.len()).expect("raft entries are bounded far below 4 GiB"),
    );
    out.extend_from_slice(b);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, reason: String) -> Error {
        Error::CorruptRecord {
            index: 0,
            reason: format!("{reason} at payload offset {}", self.pos),
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(self.err(format!(
                "truncated: need {n} bytes, {} left",
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<LogRecord> {
        let mut e = Entry::default();
        e.index = 42;
        e.term = 7;
        e.set_entry_type(EntryType::EntryConfChange);
        e.context = Bytes::from_static(b"ctx");
        e.data = Bytes::from(vec![9u8; 300]);
        let mut hs = HardState::default();
        hs.term = 7;
        hs.vote = 3;
        hs.commit = 40;
        let mut meta = SnapshotMetadata::default();
        meta.index = 30;
        meta.term = 6;
        let mut cs = ConfState::default();
        cs.voters = vec![1, 2, 3];
        cs.learners = vec![4];
        meta.set_conf_state(cs);
        vec![
            LogRecord::Entry(e),
            LogRecord::Entry(Entry::default()),
            LogRecord::HardState(hs),
            LogRecord::Snapshot {
                origin: SnapshotOrigin::Installed,
                meta,
                descriptor: Bytes::from_static(b"d"),
            },
        ]
    }

    #[test]
    fn round_trips() {
        for rec in samples() {
            let bytes = rec.to_bytes();
            assert_eq!(bytes.len(), rec.encoded_len());
            assert_eq!(LogRecord::decode(rec.kind(), &bytes).unwrap(), rec);
        }
    }

    #[test]
    fn every_truncation_and_extension_is_rejected() {
        for rec in samples() {
            let bytes = rec.to_bytes();
            for cut in 0..bytes.len() {
                assert!(
                    LogRecord::decode(rec.kind(), &bytes[..cut]).is_err(),
                    "cut at {cut} accepted"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(LogRecord::decode(rec.kind(), &longer).is_err());
        }
        assert!(LogRecord::decode(99, &[]).is_err());
    }
}
