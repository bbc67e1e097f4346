//! Leases (etcd's lessor): TTLs granted and revoked through the apply path,
//! kept alive and expired by wall time, the keys attached to each, and the
//! lease bucket records that bring them back after a restart.
//!
//! Lease record (value in the lease bucket, key = ID as 8 bytes BE):
//! ```text
//! u8        format version (1)
//! ivarint   id
//! ivarint   ttl            granted TTL, seconds
//! ivarint   remaining_ttl  last checkpointed remaining TTL, 0 if none
//! ```

use super::codec::{put_ivarint, DecodeError, Reader};
use super::error::{Error, Result};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// etcd's MaxLeaseTTL: 9 000 000 000 seconds.
pub const MAX_LEASE_TTL_SECS: i64 = 9_000_000_000;
const LEASE_FORMAT: u8 = 1;

pub(crate) struct Lease {
    pub ttl: i64,
    pub remaining_ttl: i64,
    pub expiry: Instant,
    pub keys: BTreeSet<Vec<u8>>,
}

pub(crate) struct Lessor {
    leases: HashMap<i64, Lease>,
    key_lease: HashMap<Vec<u8>, i64>,
    min_ttl: i64,
}

pub fn lease_key(id: i64) -> [u8; 8] {
    (id as u64).to_be_bytes()
}

pub(crate) fn encode_record(id: i64, ttl: i64, remaining_ttl: i64) -> Vec<u8> {
    let mut out = vec![LEASE_FORMAT];
    put_ivarint(&mut out, id);
    put_ivarint(&mut out, ttl);
    put_ivarint(&mut out, remaining_ttl);
    out
}

pub(crate) fn decode_record(buf: &[u8]) -> Result<(i64, i64, i64), DecodeError> {
    let mut r = Reader::new(buf);
    let f = r.u8("lease format")?;
    if f != LEASE_FORMAT {
        return Err(DecodeError::Version {
            found: f,
            supported: LEASE_FORMAT,
        });
    }
    let rec = (
        r.ivarint("id")?,
        r.ivarint("ttl")?,
        r.ivarint("remaining_ttl")?,
    );
    r.finish()?;
    Ok(rec)
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(s.max(0) as u64)
}

impl Lessor {
    pub fn new(min_ttl: i64) -> Self {
        Lessor {
            leases: HashMap::new(),
            key_lease: HashMap::new(),
            min_ttl,
        }
    }

    pub fn contains(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    /// Validates a grant; returns the TTL it will have.
    pub fn check_grant(&self, id: i64, ttl: i64) -> Result<i64> {
        if id == 0 {
            // etcd's lessor.Grant: NoLease is not a lease.
            return Err(Error::LeaseNotFound);
        }
        if ttl > MAX_LEASE_TTL_SECS {
            return Err(Error::LeaseTtlTooLarge);
        }
        if self.leases.contains_key(&id) {
            return Err(Error::LeaseExists);
        }
        Ok(ttl.max(self.min_ttl))
    }

    pub fn insert(&mut self, id: i64, ttl: i64, remaining_ttl: i64, now: Instant) {
        let live = if remaining_ttl > 0 {
            remaining_ttl
        } else {
            ttl
        };
        self.leases.insert(
            id,
            Lease {
                ttl,
                remaining_ttl,
                expiry: now + secs(live),
                keys: BTreeSet::new(),
            },
        );
    }

    /// Removes the lease; returns its keys (sorted). The caller deletes
    /// them in the same revision.
    pub fn remove(&mut self, id: i64) -> Result<Vec<Vec<u8>>> {
        let lease = self.leases.remove(&id).ok_or(Error::LeaseNotFound)?;
        for k in &lease.keys {
            self.key_lease.remove(k);
        }
        Ok(lease.keys.into_iter().collect())
    }

    pub fn keys_of(&self, id: i64) -> Result<Vec<Vec<u8>>> {
        Ok(self
            .leases
            .get(&id)
            .ok_or(Error::LeaseNotFound)?
            .keys
            .iter()
            .cloned()
            .collect())
    }

    /// Attaches `key` to `id` (0: to none), detaching it from its previous
    /// lease. Returns false if the lease does not exist.
    pub fn attach(&mut self, key: &[u8], id: i64) -> bool {
        self.detach(key);
        if id == 0 {
            return true;
        }
        match self.leases.get_mut(&id) {
            Some(l) => {
                l.keys.insert(key.to_vec());
                self.key_lease.insert(key.to_vec(), id);
                true
            }
            None => false,
        }
    }

    pub fn detach(&mut self, key: &[u8]) {
        if let Some(old) = self.key_lease.remove(key) {
            if let Some(l) = self.leases.get_mut(&old) {
                l.keys.remove(key);
            }
        }
    }

    pub fn renew(&mut self, id: i64, now: Instant) -> Result<i64> {
        let l = self.leases.get_mut(&id).ok_or(Error::LeaseNotFound)?;
        if l.expiry <= now {
            // Expired and waiting for its revoke: etcd refuses to renew.
            return Err(Error::LeaseNotFound);
        }
        l.expiry = now + secs(l.ttl);
        l.remaining_ttl = 0;
        Ok(l.ttl)
    }

    pub fn checkpoint(&mut self, id: i64, remaining_ttl: i64, now: Instant) -> Result<i64> {
        let l = self.leases.get_mut(&id).ok_or(Error::LeaseNotFound)?;
        l.remaining_ttl = remaining_ttl;
        if remaining_ttl > 0 {
            l.expiry = now + secs(remaining_ttl);
        }
        Ok(l.ttl)
    }

    /// (remaining seconds or -1 if expired, granted TTL).
    pub fn time_to_live(&self, id: i64, now: Instant) -> Result<(i64, i64)> {
        let l = self.leases.get(&id).ok_or(Error::LeaseNotFound)?;
        let remaining = if l.expiry > now {
            (l.expiry - now).as_secs() as i64
        } else {
            -1
        };
        Ok((remaining, l.ttl))
    }

    pub fn ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.leases.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    pub fn expired(&self, now: Instant) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expiry <= now)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    pub fn record(&self, id: i64) -> Option<Vec<u8>> {
        self.leases
            .get(&id)
            .map(|l| encode_record(id, l.ttl, l.remaining_ttl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_attach_renew_expire() {
        let t0 = Instant::now();
        let mut l = Lessor::new(2);
        assert!(matches!(l.check_grant(0, 5), Err(Error::LeaseNotFound)));
        assert!(matches!(
            l.check_grant(1, MAX_LEASE_TTL_SECS + 1),
            Err(Error::LeaseTtlTooLarge)
        ));
        assert_eq!(l.check_grant(1, 1).unwrap(), 2);
        l.insert(1, 2, 0, t0);
        assert!(matches!(l.check_grant(1, 5), Err(Error::LeaseExists)));
        assert!(l.attach(b"a", 1));
        assert!(l.attach(b"b", 1));
        assert!(!l.attach(b"c", 9));
        assert!(l.attach(b"b", 0));
        assert_eq!(l.keys_of(1).unwrap(), vec![b"a".to_vec()]);
        assert_eq!(l.time_to_live(1, t0).unwrap(), (2, 2));
        assert!(l.expired(t0 + Duration::from_secs(1)).is_empty());
        assert_eq!(l.renew(1, t0 + Duration::from_secs(1)).unwrap(), 2);
        assert!(l.expired(t0 + Duration::from_millis(2500)).is_empty());
        assert_eq!(l.expired(t0 + Duration::from_secs(3)), vec![1]);
        assert!(matches!(
            l.renew(1, t0 + Duration::from_secs(3)),
            Err(Error::LeaseNotFound)
        ));
        assert_eq!(
            l.time_to_live(1, t0 + Duration::from_secs(4)).unwrap().0,
            -1
        );
        assert_eq!(l.remove(1).unwrap(), vec![b"a".to_vec()]);
        assert!(matches!(l.remove(1), Err(Error::LeaseNotFound)));
    }

    #[test]
    fn record_round_trip() {
        let r = encode_record(-3, 60, 17);
        assert_eq!(decode_record(&r).unwrap(), (-3, 60, 17));
        assert!(decode_record(&r[..r.len() - 1]).is_err());
    }
}
