//! What the server puts into the replicated log: an envelope around an
//! MVCC command (or a server-level request such as an alarm), carrying
//! the proposing member and a request id so that, when the entry is
//! applied, the proposer's waiting request gets the store's answer
//! directly (etcd's wait registry keyed by request ID), without encoding
//! the answer.
//!
//! ```text
//! u8      envelope version (1)
//! u8      kind: 1 MVCC command, 2 alarm
//! u64 LE  proposing member id
//! u64 LE  request id (unique per proposing process)
//! ...     kind 1: engine::mvcc::Command encoding
//!         kind 2: u8 action (1 activate, 2 deactivate), u64 LE member,
//!                 u8 alarm type (etcd's AlarmType)
//! ```

pub const ENTRY_VERSION: u8 = 1;
const KIND_COMMAND: u8 = 1;
const KIND_ALARM: u8 = 2;
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

#[derive(Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// An `engine::mvcc::Command`, still encoded.
    Command(&'a [u8]),
    Alarm(AlarmChange),
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
        assert_eq!(decode(&b[..5]), Err(EntryError::Short(5)));
        let mut v = b.clone();
        v[0] = 9;
        assert_eq!(decode(&v), Err(EntryError::Version(9)));
        v[0] = 1;
        v[1] = 77;
        assert_eq!(decode(&v), Err(EntryError::Kind(77)));
    }
}
