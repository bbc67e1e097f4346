//! The server's own replicated state in the store's server bucket:
//! active alarms and the member table, written at the raft index that
//! changed them (`Store::apply_server_state`), so that a restart, and a
//! follower that installs a snapshot, find them exactly as of the store's
//! consistent index. Layout in docs/format.md ("Server bucket").

use crate::apply::MemberRecord;

const ALARM_PREFIX: &[u8] = b"alarm/";
const MEMBER_PREFIX: &[u8] = b"member/";
/// Longest name or URL, and most URLs, a record may hold.
const TEXT_MAX: usize = 4096;
const URLS_MAX: usize = 64;

/// What a server-bucket entry holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    Alarm { member_id: u64, alarm: u8 },
    Member { id: u64, record: MemberRecord },
}

pub fn alarm_key(member_id: u64, alarm: u8) -> Vec<u8> {
    let mut k = ALARM_PREFIX.to_vec();
    k.extend_from_slice(&member_id.to_be_bytes());
    k.push(alarm);
    k
}

pub fn member_key(id: u64) -> Vec<u8> {
    let mut k = MEMBER_PREFIX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn put_text(out: &mut Vec<u8>, t: &str) {
    let t = &t.as_bytes()[..t.len().min(TEXT_MAX)];
    out.extend_from_slice(&(t.len() as u16).to_le_bytes());
    out.extend_from_slice(t);
}

fn put_urls(out: &mut Vec<u8>, urls: &[String]) {
    let urls = &urls[..urls.len().min(URLS_MAX)];
    out.push(urls.len() as u8);
    for u in urls {
        put_text(out, u);
    }
}

pub fn encode_member(r: &MemberRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    put_text(&mut out, &r.name);
    put_urls(&mut out, &r.peer_urls);
    put_urls(&mut out, &r.client_urls);
    out
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (head, tail) = b.split_at(n);
    *b = tail;
    Some(head)
}

fn text(b: &mut &[u8]) -> Option<String> {
    let n = u16::from_le_bytes(take(b, 2)?.try_into().ok()?) as usize;
    if n > TEXT_MAX {
        return None;
    }
    String::from_utf8(take(b, n)?.to_vec()).ok()
}

fn urls(b: &mut &[u8]) -> Option<Vec<String>> {
    let n = take(b, 1)?[0] as usize;
    if n > URLS_MAX {
        return None;
    }
    (0..n).map(|_| text(b)).collect()
}

pub fn decode_member(mut b: &[u8]) -> Option<MemberRecord> {
    let r = MemberRecord {
        name: text(&mut b)?,
        peer_urls: urls(&mut b)?,
        client_urls: urls(&mut b)?,
    };
    b.is_empty().then_some(r)
}

/// One server-bucket entry; None for a key or value this build does not
/// know (it is left alone).
pub fn decode(key: &[u8], value: &[u8]) -> Option<Item> {
    if let Some(rest) = key.strip_prefix(ALARM_PREFIX) {
        if rest.len() != 9 || !value.is_empty() {
            return None;
        }
        return Some(Item::Alarm {
            member_id: u64::from_be_bytes(rest[..8].try_into().ok()?),
            alarm: rest[8],
        });
    }
    let rest = key.strip_prefix(MEMBER_PREFIX)?;
    Some(Item::Member {
        id: u64::from_be_bytes(rest.try_into().ok()?),
        record: decode_member(value)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_and_garbage_is_ignored() {
        let r = MemberRecord {
            name: "m0".into(),
            peer_urls: vec!["http://127.0.0.1:2380".into()],
            client_urls: vec!["http://127.0.0.1:2379".into(), "http://[::1]:2379".into()],
        };
        let v = encode_member(&r);
        assert_eq!(
            decode(&member_key(7), &v),
            Some(Item::Member {
                id: 7,
                record: r.clone()
            })
        );
        assert_eq!(
            decode(&alarm_key(9, 1), &[]),
            Some(Item::Alarm {
                member_id: 9,
                alarm: 1
            })
        );
        for cut in 0..v.len() {
            assert_eq!(decode(&member_key(7), &v[..cut]), None, "cut at {cut}");
        }
        assert_eq!(decode(b"member/x", &v), None);
        assert_eq!(decode(&alarm_key(9, 1), b"x"), None);
        assert_eq!(decode(b"other", b""), None);
    }
}
