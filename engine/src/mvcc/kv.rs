//! `KeyValue` (etcd's mvccpb.KeyValue) and its stored encoding: the value
//! of every entry in the key bucket (docs/format.md, "MVCC buckets").
//!
//! ```text
//! u8        format version (1)
//! bytes     key                       (uvarint length + bytes)
//! uvarint   create_revision
//! uvarint   mod_revision
//! uvarint   version
//! ivarint   lease (zigzag)
//! bytes     value
//! ```
//! A tombstone's record holds the key and its mod revision, every other
//! field zero (as etcd, which stores `KeyValue{Key}` under a tombstone).

use super::codec::{put_bytes, put_ivarint, put_uvarint, DecodeError, Reader};

const KV_FORMAT: u8 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyValue {
    pub key: Vec<u8>,
    /// Revision of the last creation of the key (the first put after it was
    /// absent).
    pub create_revision: i64,
    /// Revision of the last modification.
    pub mod_revision: i64,
    /// Number of puts since the key was created (a delete resets it to 0).
    pub version: i64,
    pub value: Vec<u8>,
    /// Lease attached to the key, 0 for none.
    pub lease: i64,
}

/// A decoded record that borrows its key and value from the stored bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvRef<'a> {
    pub key: &'a [u8],
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub value: &'a [u8],
    pub lease: i64,
}

impl KvRef<'_> {
    pub fn to_owned(&self) -> KeyValue {
        KeyValue {
            key: self.key.to_vec(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            value: self.value.to_vec(),
            lease: self.lease,
        }
    }
}

pub fn encode_kv(
    out: &mut Vec<u8>,
    key: &[u8],
    create_revision: i64,
    mod_revision: i64,
    version: i64,
    value: &[u8],
    lease: i64,
) {
    debug_assert!(create_revision >= 0 && mod_revision >= 0 && version >= 0);
    out.reserve(key.len() + value.len() + 24);
    out.push(KV_FORMAT);
    put_bytes(out, key);
    put_uvarint(out, create_revision as u64);
    put_uvarint(out, mod_revision as u64);
    put_uvarint(out, version as u64);
    put_ivarint(out, lease);
    put_bytes(out, value);
}

impl KeyValue {
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_kv(
            out,
            &self.key,
            self.create_revision,
            self.mod_revision,
            self.version,
            &self.value,
            self.lease,
        );
    }
}

pub fn decode_kv(buf: &[u8]) -> Result<KvRef<'_>, DecodeError> {
    let mut r = Reader::new(buf);
    let format = r.u8("kv format")?;
    if format != KV_FORMAT {
        return Err(DecodeError::Version {
            found: format,
            supported: KV_FORMAT,
        });
    }
    let kv = KvRef {
        key: r.bytes("key")?,
        create_revision: r.nonneg("create_revision")?,
        mod_revision: r.nonneg("mod_revision")?,
        version: r.nonneg("version")?,
        lease: r.ivarint("lease")?,
        value: r.bytes("value")?,
    };
    r.finish()?;
    Ok(kv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let kv = KeyValue {
            key: b"foo".to_vec(),
            create_revision: 3,
            mod_revision: 1 << 40,
            version: 7,
            value: vec![9; 300],
            lease: -5,
        };
        let mut out = Vec::new();
        kv.encode(&mut out);
        assert_eq!(decode_kv(&out).unwrap().to_owned(), kv);
        for cut in 0..out.len() {
            assert!(decode_kv(&out[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = out.clone();
        longer.push(0);
        assert_eq!(decode_kv(&longer), Err(DecodeError::Trailing(1)));
        out[0] = 2;
        assert!(matches!(decode_kv(&out), Err(DecodeError::Version { .. })));
    }
}
