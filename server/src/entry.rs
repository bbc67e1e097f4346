//! What the server puts into the replicated log: an envelope around an
//! MVCC command (or a server-level request such as an alarm), carrying
//! the proposing member and a request id so that, when the entry is
//! applied, the proposer's waiting request gets the store's answer
//! directly (etcd's wait registry keyed by request ID), without encoding
//! the answer.
//!
//! ```text
//! u8      envelope version (1)
//! u8      kind: 1 MVCC command, 2 alarm, 3 member attributes
//! u64 LE  proposing member id
//! u64 LE  request id (unique per proposing process)
//! ...     kind 1: engine::mvcc::Command encoding
//!         kind 2: u8 action (1 activate, 2 deactivate), u64 LE member,
//!                 u8 alarm type (etcd's AlarmType)
//!         kind 3: u64 LE member, u16 LE name length, name, u8 count of
//!                 client URLs, each u16 LE length + URL (etcd's
//!                 `publish`: a member announces its name and client URLs
//!                 through the log when it starts)
//! ```

pub const ENTRY_VERSION: u8 = 1;
const KIND_COMMAND: u8 = 1;
const KIND_ALARM: u8 = 2;
const KIND_ATTRS: u8 = 3;
/// Longest member name or URL in an attributes entry.
pub const ATTR_TEXT_MAX: usize = 4096;
/// Most client URLs in an attributes entry.
pub const ATTR_URLS_MAX: usize = 64;
pub const HEADER_LEN: usize = 18;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlarmAction {
    Activate,
    Deactivate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlarmChange {
    pub action: AlarmAction,
    pub member_id: u64,
    /// etcd's AlarmType: 1 NOSPACE, 2 CORRUPT.
    pub alarm: u8,
}

/// What a member announces about itself (etcd's member attributes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub member_id: u64,
    pub name: String,
    pub client_urls: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// An `engine::mvcc::Command`, still encoded.
    Command(&'a [u8]),
    Alarm(AlarmChange),
    Attributes(Attributes),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub origin: u64,
    pub request_id: u64,
    pub body: Body<'a>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("log entry of {0} bytes is shorter than its {HEADER_LEN}-byte header")]
    Short(usize),
    #[error("log entry version {0} is not {ENTRY_VERSION}")]
    Version(u8),
    #[error("log entry kind {0} is unknown")]
    Kind(u8),
    #[error("alarm entry is malformed")]
    Alarm,
    #[error("member attributes entry is malformed")]
    Attributes,
}

fn header(kind: u8, origin: u64, request_id: u64, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + capacity);
    out.push(ENTRY_VERSION);
    out.push(kind);
    out.extend_from_slice(&origin.to_le_bytes());
    out.extend_from_slice(&request_id.to_le_bytes());
    out
}

/// Encodes an MVCC command for the log.
pub fn command(origin: u64, request_id: u64, cmd: &engine::mvcc::Command) -> Vec<u8> {
    let mut out = header(KIND_COMMAND, origin, request_id, 64);
    cmd.encode_into(&mut out);
    out
}

pub fn alarm(origin: u64, request_id: u64, a: AlarmChange) -> Vec<u8> {
    let mut out = header(KIND_ALARM, origin, request_id, 10);
    out.push(match a.action {
        AlarmAction::Activate => 1,
        AlarmAction::Deactivate => 2,
    });
    out.extend_from_slice(&a.member_id.to_le_bytes());
    out.push(a.alarm);
    out
}

/// Encodes a member's attributes; names and URLs longer than
/// `ATTR_TEXT_MAX` and URLs beyond `ATTR_URLS_MAX` are refused.
pub fn attributes(origin: u64, request_id: u64, a: &Attributes) -> Result<Vec<u8>, EntryError> {
    let too_long = |t: &str| t.len() > ATTR_TEXT_MAX;
    if too_long(&a.name)
        || a.client_urls.len() > ATTR_URLS_MAX
        || a.client_urls.iter().any(|u| too_long(u))
    {
        return Err(EntryError::Attributes);
    }
    let mut out = header(KIND_ATTRS, origin, request_id, 64);
    out.extend_from_slice(&a.member_id.to_le_bytes());
    out.extend_from_slice(&(a.name.len() as u16).to_le_bytes());
    out.extend_from_slice(a.name.as_bytes());
    out.push(a.client_urls.len() as u8);
    for u in &a.client_urls {
        out.extend_from_slice(&(u.len() as u16).to_le_bytes());
        out.extend_from_slice(u.as_bytes());
    }
    Ok(out)
}

fn decode_attributes(mut b: &[u8]) -> Result<Attributes, EntryError> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], EntryError> {
        if b.len() < n {
            return Err(EntryError::Attributes);
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Ok(head)
    }
    fn text(b: &mut &[u8]) -> Result<String, EntryError> {
        let n = u16::from_le_bytes(take(b, 2)?.try_into().expect("2 bytes")) as usize;
        if n > ATTR_TEXT_MAX {
            return Err(EntryError::Attributes);
        }
        String::from_utf8(take(b, n)?.to_vec()).map_err(|_| EntryError::Attributes)
    }
    let member_id = u64::from_le_bytes(take(&mut b, 8)?.try_into().expect("8 bytes"));
    let name = text(&mut b)?;
    let count = take(&mut b, 1)?[0] as usize;
    if count > ATTR_URLS_MAX {
        return Err(EntryError::Attributes);
    }
    let mut client_urls = Vec::with_capacity(count);
    for _ in 0..count {
        client_urls.push(text(&mut b)?);
    }
    if !b.is_empty() {
        return Err(EntryError::Attributes);
    }
    Ok(Attributes {
        member_id,
        name,
        client_urls,
    })
}

pub fn decode(b: &[u8]) -> Result<Entry<'_>, EntryError> {
    if b.len() < HEADER_LEN {
        return Err(EntryError::Short(b.len()));
    }
    if b[0] != ENTRY_VERSION {
        return Err(EntryError::Version(b[0]));
    }
    let origin = u64::from_le_bytes(b[2..10].try_into().expect("8 bytes"));
    let request_id = u64::from_le_bytes(b[10..18].try_into().expect("8 bytes"));
    let rest = &b[HEADER_LEN..];
    let body = match b[1] {
        KIND_COMMAND => Body::Command(rest),
        KIND_ALARM => {
            if rest.len() != 10 {
                return Err(EntryError::Alarm);
            }
            let action = match rest[0] {
                1 => AlarmAction::Activate,
                2 => AlarmAction::Deactivate,
                _ => return Err(EntryError::Alarm),
            };
            Body::Alarm(AlarmChange {
                action,
                member_id: u64::from_le_bytes(rest[1..9].try_into().expect("8 bytes")),
                alarm: rest[9],
            })
        }
        KIND_ATTRS => Body::Attributes(decode_attributes(rest)?),
        k => return Err(EntryError::Kind(k)),
    };
    Ok(Entry {
        origin,
        request_id,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::mvcc::{Command, PutRequest};

    #[test]
    fn round_trips_and_refuses_garbage() {
        let cmd = Command::Put(PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        });
        let b = command(7, 9, &cmd);
        let e = decode(&b).unwrap();
        assert_eq!((e.origin, e.request_id), (7, 9));
        let Body::Command(c) = e.body else {
            panic!("not a command")
        };
        assert_eq!(Command::decode(c).unwrap(), cmd);
        let a = AlarmChange {
            action: AlarmAction::Activate,
            member_id: 3,
            alarm: 1,
        };
        assert_eq!(decode(&alarm(1, 2, a)).unwrap().body, Body::Alarm(a));
        let attrs = Attributes {
            member_id: 5,
            name: "m0".into(),
            client_urls: vec!["http://127.0.0.1:2379".into(), "http://[::1]:1".into()],
        };
        let enc = attributes(1, 3, &attrs).unwrap();
        assert_eq!(decode(&enc).unwrap().body, Body::Attributes(attrs));
        for cut in HEADER_LEN..enc.len() {
            assert_eq!(
                decode(&enc[..cut]),
                Err(EntryError::Attributes),
                "cut at {cut}"
            );
        }
        let mut long = enc.clone();
        long.push(0);
        assert_eq!(decode(&long), Err(EntryError::Attributes));
        assert_eq!(decode(&b[..5]), Err(EntryError::Short(5)));
        let mut v = b.clone();
        v[0] = 9;
        assert_eq!(decode(&v), Err(EntryError::Version(9)));
        v[0] = 1;
        v[1] = 77;
        assert_eq!(decode(&v), Err(EntryError::Kind(77)));
    }
}
