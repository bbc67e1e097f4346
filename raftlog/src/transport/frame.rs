//! Frames of the peer protocol (format in docs/format.md, "raft peer
//! protocol"): `kind u8 | len u32 | crc32c u32 | payload`, little-endian,
//! the CRC over the kind byte and the payload. A connection starts with a
//! HELLO frame and carries frames of one direction only.

use std::io::{self, Read, Write};

use protobuf::Message as _;
use raft::eraftpb::Message;

pub const HELLO: u8 = 1;
pub const MSGS: u8 = 2;
pub const SNAP_HEADER: u8 = 3;
pub const SNAP_CHUNK: u8 = 4;
pub const SNAP_END: u8 = 5;
pub const SNAP_ACK: u8 = 6;
pub const REMOVED: u8 = 7;

pub const HELLO_MAGIC: &[u8; 8] = b"FKVRAFT1";
/// Largest frame payload accepted.
pub const FRAME_BYTES_MAX: usize = 64 << 20;
const HEADER_BYTES: usize = 9;

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    if payload.len() > FRAME_BYTES_MAX {
        return Err(invalid(format!(
            "frame of {} bytes exceeds {FRAME_BYTES_MAX}",
            payload.len()
        )));
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&[kind]), payload);
    let mut header = [0u8; HEADER_BYTES];
    header[0] = kind;
    header[1..5].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[5..9].copy_from_slice(&crc.to_le_bytes());
    w.write_all(&header)?;
    w.write_all(payload)
}

/// Reads one frame into `buf`; returns its kind. EOF before a header is
/// `UnexpectedEof`; a bad length or checksum is `InvalidData`.
pub fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<u8> {
    let mut header = [0u8; HEADER_BYTES];
    r.read_exact(&mut header)?;
    let kind = header[0];
    let len = u32::from_le_bytes(header[1..5].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(header[5..9].try_into().unwrap());
    if len > FRAME_BYTES_MAX {
        return Err(invalid(format!(
            "frame of {len} bytes exceeds {FRAME_BYTES_MAX}"
        )));
    }
    buf.resize(len, 0);
    r.read_exact(buf)?;
    if crc32c::crc32c_append(crc32c::crc32c(&[kind]), buf) != crc {
        return Err(invalid(format!("frame of kind {kind} fails its checksum")));
    }
    Ok(kind)
}

/// The first frame of every connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub from: u64,
    /// Hash of the cluster token: connections between clusters are refused.
    pub cluster: u64,
    /// The sender's peer URL, so the receiver can answer a member it did
    /// not know (one added after it started).
    pub url: String,
}

impl Hello {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 + 8 + 8 + 2 + self.url.len());
        b.extend_from_slice(HELLO_MAGIC);
        b.extend_from_slice(&self.from.to_le_bytes());
        b.extend_from_slice(&self.cluster.to_le_bytes());
        b.extend_from_slice(&(self.url.len() as u16).to_le_bytes());
        b.extend_from_slice(self.url.as_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> io::Result<Hello> {
        if b.len() < 26 || &b[..8] != HELLO_MAGIC {
            return Err(invalid("not a raftlog peer (bad hello)".into()));
        }
        let from = u64::from_le_bytes(b[8..16].try_into().unwrap());
        let cluster = u64::from_le_bytes(b[16..24].try_into().unwrap());
        let n = u16::from_le_bytes(b[24..26].try_into().unwrap()) as usize;
        if b.len() != 26 + n {
            return Err(invalid("hello of the wrong length".into()));
        }
        let url = String::from_utf8(b[26..].to_vec())
            .map_err(|_| invalid("hello URL is not UTF-8".into()))?;
        Ok(Hello { from, cluster, url })
    }
}

/// Appends a message to a MSGS payload under construction.
pub fn push_message(payload: &mut Vec<u8>, msg: &Message) -> io::Result<()> {
    if payload.is_empty() {
        payload.extend_from_slice(&0u32.to_le_bytes());
    }
    let len_at = payload.len();
    payload.extend_from_slice(&0u32.to_le_bytes());
    msg.write_to_vec(payload)
        .map_err(|e| invalid(e.to_string()))?;
    let len = (payload.len() - len_at - 4) as u32;
    payload[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
    let count = u32::from_le_bytes(payload[..4].try_into().unwrap()) + 1;
    payload[..4].copy_from_slice(&count.to_le_bytes());
    Ok(())
}

pub fn decode_messages(payload: &[u8]) -> io::Result<Vec<Message>> {
    let bad = || invalid("truncated message batch".into());
    let count = u32::from_le_bytes(payload.get(..4).ok_or_else(bad)?.try_into().unwrap()) as usize;
    let mut msgs = Vec::with_capacity(count.min(65536));
    let mut pos = 4;
    for _ in 0..count {
        let len = u32::from_le_bytes(
            payload
                .get(pos..pos + 4)
                .ok_or_else(bad)?
                .try_into()
                .unwrap(),
        ) as usize;
        pos += 4;
        let body = payload.get(pos..pos + len).ok_or_else(bad)?;
        msgs.push(Message::parse_from_bytes(body).map_err(|e| invalid(e.to_string()))?);
        pos += len;
    }
    if pos != payload.len() {
        return Err(invalid("trailing bytes after a message batch".into()));
    }
    Ok(msgs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{Entry, MessageType};

    #[test]
    fn frames_and_batches_round_trip_and_damage_is_caught() {
        let mut payload = Vec::new();
        let mut msgs = Vec::new();
        for i in 0..3u64 {
            let mut m = Message::default();
            m.set_msg_type(MessageType::MsgAppend);
            m.index = i;
            let mut e = Entry::default();
            e.data = bytes::Bytes::from(vec![i as u8; 10]);
            m.set_entries(vec![e].into());
            push_message(&mut payload, &m).unwrap();
            msgs.push(m);
        }
        let mut wire = Vec::new();
        write_frame(&mut wire, MSGS, &payload).unwrap();
        let hello = Hello {
            from: 3,
            cluster: 9,
            url: "http://127.0.0.1:2380".into(),
        };
        write_frame(&mut wire, HELLO, &hello.encode()).unwrap();

        let mut r = wire.as_slice();
        let mut buf = Vec::new();
        assert_eq!(read_frame(&mut r, &mut buf).unwrap(), MSGS);
        assert_eq!(decode_messages(&buf).unwrap(), msgs);
        assert_eq!(read_frame(&mut r, &mut buf).unwrap(), HELLO);
        assert_eq!(Hello::decode(&buf).unwrap(), hello);
        assert_eq!(
            read_frame(&mut r, &mut buf).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );

        // Any flipped byte of the first frame is caught: the kind and payload
        // by the checksum, the length by the checksum of what it frames.
        for i in 0..9 + payload.len() {
            let mut bad = wire.clone();
            bad[i] ^= 0x40;
            assert!(
                read_frame(&mut bad.as_slice(), &mut buf).is_err(),
                "flip at {i} not caught"
            );
        }
        assert!(decode_messages(&payload[..payload.len() - 1]).is_err());
    }
}
