//! Page layout shared by every page kind: the 32-byte header, the checksum
//! and the little-endian field helpers. Byte-level diagrams: docs/format.md.

use super::error::{Error, Result};

/// Bytes of the common page header.
pub const HEADER_LEN: usize = 32;

pub const KIND_META: u8 = 1;
pub const KIND_BRANCH: u8 = 2;
pub const KIND_LEAF: u8 = 3;
pub const KIND_OVERFLOW: u8 = 4;
/// Kind 5 was version 1's freelist; no longer written.
pub const KIND_COMMIT: u8 = 6;

pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        KIND_META => "meta",
        KIND_BRANCH => "branch",
        KIND_LEAF => "leaf",
        KIND_OVERFLOW => "overflow",
        KIND_COMMIT => "commit record",
        _ => "unknown",
    }
}

/// Where a page lives and what its parent expects it to contain: the
/// Merkle link. `txid` is the transaction that wrote the page, which lets
/// recovery visit only the pages of the newest commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PageRef {
    pub pgid: u64,
    pub checksum: u64,
    pub txid: u64,
}

pub const PAGE_REF_LEN: usize = 24;

impl PageRef {
    pub fn encode(&self, out: &mut [u8]) {
        put_u64(out, 0, self.pgid);
        put_u64(out, 8, self.checksum);
        put_u64(out, 16, self.txid);
    }

    pub fn decode(buf: &[u8]) -> Option<PageRef> {
        if buf.len() < PAGE_REF_LEN {
            return None;
        }
        Some(PageRef {
            pgid: get_u64(buf, 0),
            checksum: get_u64(buf, 8),
            txid: get_u64(buf, 16),
        })
    }
}

/// The decoded common header of a page.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub checksum: u64,
    pub pgid: u64,
    pub txid: u64,
    pub kind: u8,
    pub count: u16,
    pub span: u32,
}

impl Header {
    pub fn read(buf: &[u8]) -> Header {
        assert!(buf.len() >= HEADER_LEN);
        Header {
            checksum: get_u64(buf, 0),
            pgid: get_u64(buf, 8),
            txid: get_u64(buf, 16),
            kind: buf[24],
            count: get_u16(buf, 26),
            span: get_u32(buf, 28),
        }
    }

    /// Writes every header field except the checksum, which `seal` fills in
    /// once the body is final.
    pub fn write(buf: &mut [u8], pgid: u64, txid: u64, kind: u8, count: u16, span: u32) {
        put_u64(buf, 8, pgid);
        put_u64(buf, 16, txid);
        buf[24] = kind;
        buf[25] = 0;
        put_u16(buf, 26, count);
        put_u32(buf, 28, span);
    }
}

/// Checksum of a page (or span of pages): xxh3-64 over everything after the
/// checksum field, so the page id, txid and kind are covered too and a
/// misdirected write is caught like a torn one.
pub fn checksum(buf: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&buf[8..])
}

/// Computes and stores the checksum; returns it for the parent's link.
pub fn seal(buf: &mut [u8]) -> u64 {
    let sum = checksum(buf);
    put_u64(buf, 0, sum);
    sum
}

/// Verifies a page span against its own stored checksum and the link its
/// parent holds. Errors name the page.
pub fn verify(buf: &[u8], link: &PageRef) -> Result<Header> {
    if buf.len() < HEADER_LEN {
        return Err(Error::corrupt(link.pgid, "page shorter than its header"));
    }
    let header = Header::read(buf);
    if header.pgid != link.pgid {
        return Err(Error::corrupt(
            link.pgid,
            format!("header names page {} (misdirected write?)", header.pgid),
        ));
    }
    if header.txid != link.txid {
        return Err(Error::corrupt(
            link.pgid,
            format!(
                "written by txid {}, its parent expects txid {}",
                header.txid, link.txid
            ),
        ));
    }
    if header.checksum != link.checksum {
        return Err(Error::corrupt(
            link.pgid,
            format!(
                "checksum {:#018x} in the page, {:#018x} expected by its parent",
                header.checksum, link.checksum
            ),
        ));
    }
    let actual = checksum(buf);
    if actual != header.checksum {
        return Err(Error::corrupt(
            link.pgid,
            format!(
                "contents hash to {actual:#018x}, header says {:#018x} (torn or flipped)",
                header.checksum
            ),
        ));
    }
    Ok(header)
}

#[inline]
pub fn get_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(buf[at..at + 2].try_into().unwrap())
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
pub fn put_u16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
#[inline]
pub fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
#[inline]
pub fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_catches_flip_misdirection_and_stale_link() {
        let mut page = vec![0u8; 4096];
        Header::write(&mut page, 7, 3, KIND_LEAF, 0, 1);
        page[100] = 42;
        let sum = seal(&mut page);
        let link = PageRef {
            pgid: 7,
            checksum: sum,
            txid: 3,
        };
        assert!(verify(&page, &link).is_ok());

        let mut flipped = page.clone();
        flipped[2000] ^= 1;
        assert!(matches!(
            verify(&flipped, &link),
            Err(Error::Corrupt { pgid: 7, .. })
        ));

        let other = PageRef { pgid: 8, ..link };
        assert!(verify(&page, &other).is_err());

        let stale = PageRef {
            checksum: sum ^ 1,
            ..link
        };
        assert!(verify(&page, &stale).is_err());
    }
}
