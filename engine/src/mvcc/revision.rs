//! The key bucket's keys: a revision as 17 bytes, as etcd writes them.
//!
//! ```text
//! 8 bytes  main, big-endian
//! 1 byte   '_'
//! 8 bytes  sub, big-endian
//! 1 byte   't'  (tombstones only: a delete)
//! ```
//! Big-endian here (unlike every other integer ferrokv stores) so that the
//! byte order of the keys is the revision order: a scan of the bucket
//! visits the history oldest first.

pub use crate::index::Revision;

pub const REV_KEY_LEN: usize = 17;
pub const TOMBSTONE_KEY_LEN: usize = 18;
const SEPARATOR: u8 = b'_';
const TOMBSTONE_MARK: u8 = b't';

/// A revision key; 18 bytes with the tombstone mark.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RevKey {
    bytes: [u8; TOMBSTONE_KEY_LEN],
    tombstone: bool,
}

impl RevKey {
    pub fn new(rev: Revision, tombstone: bool) -> Self {
        debug_assert!(rev.main >= 0 && rev.sub >= 0);
        let mut bytes = [0u8; TOMBSTONE_KEY_LEN];
        bytes[..8].copy_from_slice(&(rev.main as u64).to_be_bytes());
        bytes[8] = SEPARATOR;
        bytes[9..17].copy_from_slice(&(rev.sub as u64).to_be_bytes());
        bytes[17] = TOMBSTONE_MARK;
        RevKey { bytes, tombstone }
    }

    pub fn as_bytes(&self) -> &[u8] {
        if self.tombstone {
            &self.bytes
        } else {
            &self.bytes[..REV_KEY_LEN]
        }
    }

    /// The first key of revision `main` (for range scans).
    pub fn start_of(main: i64) -> Self {
        RevKey::new(Revision::new(main, 0), false)
    }
}

/// Parses a stored key; None if it is not a revision key.
pub fn parse_rev_key(k: &[u8]) -> Option<(Revision, bool)> {
    let tombstone = match k.len() {
        REV_KEY_LEN => false,
        TOMBSTONE_KEY_LEN if k[17] == TOMBSTONE_MARK => true,
        _ => return None,
    };
    if k[8] != SEPARATOR {
        return None;
    }
    let main = u64::from_be_bytes(k[..8].try_into().unwrap());
    let sub = u64::from_be_bytes(k[9..17].try_into().unwrap());
    if main > i64::MAX as u64 || sub > i64::MAX as u64 {
        return None;
    }
    Some((Revision::new(main as i64, sub as i64), tombstone))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_is_revision_order() {
        let revs = [(1, 0), (1, 1), (1, 300), (2, 0), (256, 0), (1 << 40, 7)];
        let keys: Vec<Vec<u8>> = revs
            .iter()
            .map(|&(m, s)| {
                RevKey::new(Revision::new(m, s), s % 2 == 1)
                    .as_bytes()
                    .to_vec()
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        for (k, &(m, s)) in keys.iter().zip(&revs) {
            assert_eq!(parse_rev_key(k), Some((Revision::new(m, s), s % 2 == 1)));
        }
        assert_eq!(keys[0].len(), 17);
        assert_eq!(keys[1].len(), 18);
        assert_eq!(parse_rev_key(b"consistent_index"), None);
    }
}
