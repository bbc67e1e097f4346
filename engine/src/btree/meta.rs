//! Commit points. A commit is described by a `Meta`: its txid, its catalog
//! root, its high-water mark, and the pages reserved for the next commit's
//! record. Every commit writes it as a *commit record* (kind 6) in the first
//! page of the reservation its predecessor made, so the record and the
//! commit's first data pages form one contiguous write; each record names
//! its predecessor by digest, so the records form a chain. Every
//! `checkpoint_interval_commits` commits it is also written to one of the
//! two fixed meta pages (page 0 and page 1, alternating), where open starts
//! following the chain. The checksum covers the whole page; the fields sit
//! in the first `META_LEN` bytes and the rest must be zero.

use super::error::{Error, Result};
use super::page::{
    self, get_u32, get_u64, put_u32, put_u64, PageRef, HEADER_LEN, KIND_COMMIT, KIND_META,
};
use std::path::Path;

/// "FKVBTREE" read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"FKVBTREE");
pub const VERSION: u32 = 3;
/// Bytes of a meta or record page that hold fields; the rest is zero.
pub const META_LEN: usize = 128;

const OFF_MAGIC: usize = HEADER_LEN; // 32
const OFF_VERSION: usize = 40;
const OFF_PAGE_SIZE: usize = 44;
const OFF_CATALOG: usize = 48; // PageRef, 24 bytes
const OFF_HIGH_WATER: usize = 72;
const OFF_NEXT: usize = 80;
const OFF_NEXT_LEN: usize = 88;
const OFF_PREV: usize = 96;

/// A commit point: everything needed to find the tree of one transaction,
/// and where the next commit's record goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub page_size: u32,
    pub txid: u64,
    /// Root of the catalog tree (bucket name → bucket root).
    pub catalog: PageRef,
    /// Pages `[0, high_water)` are in use or free; pages above are unused file tail.
    pub high_water: u64,
    /// First page of the reservation for the next commit: its record goes
    /// there, its first data pages after it. Holds no data of this commit.
    pub next: u64,
    /// Pages reserved at `next` (at least 1).
    pub next_len: u32,
}

impl Meta {
    /// Identifies the commit point: a digest of its fields. The record of
    /// the next commit carries it, so a record left over from another
    /// history never continues this one.
    pub fn digest(&self) -> u64 {
        let mut buf = [0u8; 64];
        put_u64(&mut buf, 0, self.txid);
        self.catalog.encode(&mut buf[8..]);
        put_u64(&mut buf, 32, self.high_water);
        put_u64(&mut buf, 40, self.next);
        put_u32(&mut buf, 48, self.next_len);
        put_u32(&mut buf, 52, self.page_size);
        xxhash_rust::xxh3::xxh3_64(&buf)
    }

    /// Encodes the commit point into `buf` (one zeroed page) as a meta page
    /// (`kind` 1, `pgid` the slot) or a commit record (`kind` 6, `prev` the
    /// digest of the previous commit point). Returns the checksum.
    pub fn encode_into(&self, buf: &mut [u8], kind: u8, pgid: u64, prev: u64) -> u64 {
        assert!(buf.len() >= META_LEN && buf[..META_LEN].iter().all(|&b| b == 0));
        page::Header::write(buf, pgid, self.txid, kind, 0, 1);
        put_u64(buf, OFF_MAGIC, MAGIC);
        put_u32(buf, OFF_VERSION, VERSION);
        put_u32(buf, OFF_PAGE_SIZE, self.page_size);
        self.catalog.encode(&mut buf[OFF_CATALOG..]);
        put_u64(buf, OFF_HIGH_WATER, self.high_water);
        put_u64(buf, OFF_NEXT, self.next);
        put_u32(buf, OFF_NEXT_LEN, self.next_len);
        put_u64(buf, OFF_PREV, prev);
        page::seal(buf)
    }

    /// The meta page for `slot`.
    pub fn encode(&self, page_size: usize, slot: u64) -> Vec<u8> {
        let mut buf = vec![0u8; page_size];
        self.encode_into(&mut buf, KIND_META, slot, 0);
        buf
    }

    /// Decodes and validates a meta page read from `slot`. Format problems
    /// (wrong magic, version) are reported as such so that opening a foreign
    /// file gives a clear error rather than "corrupt".
    /// `buf` holds at least the page (more is ignored): the page size is
    /// read from the meta itself and then covered by its checksum.
    pub fn decode(buf: &[u8], slot: u64, path: &Path) -> Result<Meta> {
        if buf.len() < META_LEN {
            return Err(Error::corrupt(slot, "meta page truncated"));
        }
        let magic = get_u64(buf, OFF_MAGIC);
        if magic != MAGIC {
            return Err(Error::NotABtree {
                path: path.to_path_buf(),
                found: magic,
            });
        }
        let page_size = get_u32(buf, OFF_PAGE_SIZE) as usize;
        if !super::valid_page_size(page_size) || buf.len() < page_size {
            return Err(Error::corrupt(
                slot,
                format!("meta names page size {page_size}"),
            ));
        }
        let buf = &buf[..page_size];
        let stored = get_u64(buf, 0);
        let actual = page::checksum(buf);
        if stored != actual {
            return Err(Error::corrupt(
                slot,
                format!("meta checksum mismatch (stored {stored:#018x}, computed {actual:#018x})"),
            ));
        }
        let version = get_u32(buf, OFF_VERSION);
        if version != VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version,
                supported: VERSION,
            });
        }
        let header = page::Header::read(buf);
        if header.kind != KIND_META || header.pgid != slot {
            return Err(Error::corrupt(
                slot,
                format!("meta header says kind {} page {}", header.kind, header.pgid),
            ));
        }
        let meta = Self::fields(buf, header.txid);
        meta.validate().map_err(|what| Error::corrupt(slot, what))?;
        Ok(meta)
    }

    /// Decodes the commit record at `pgid` if it continues the history of
    /// `prev`: a record page there, sealed, of commit `prev.txid + 1`,
    /// naming `prev`'s digest. `Ok(None)`: the page holds something else —
    /// the end of the chain. `Err`: the page claims to be that record but
    /// is damaged (a torn write of the last commit looks the same).
    pub fn decode_record(buf: &[u8], pgid: u64, prev: &Meta) -> Result<Option<Meta>> {
        let page_size = prev.page_size as usize;
        if buf.len() < page_size {
            return Ok(None);
        }
        let buf = &buf[..page_size];
        let header = page::Header::read(buf);
        let txid = prev.txid + 1;
        if header.kind != KIND_COMMIT || header.pgid != pgid || header.txid != txid {
            return Ok(None);
        }
        let bad = |what: String| Error::corrupt(pgid, format!("commit record {txid}: {what}"));
        let actual = page::checksum(buf);
        if actual != header.checksum {
            return Err(bad(format!(
                "contents hash to {actual:#018x}, header says {:#018x} (torn or flipped)",
                header.checksum
            )));
        }
        if get_u64(buf, OFF_PREV) != prev.digest() {
            // A record of a commit that was rolled back by an earlier
            // recovery: it continues another history.
            return Ok(None);
        }
        if get_u64(buf, OFF_MAGIC) != MAGIC
            || get_u32(buf, OFF_VERSION) != VERSION
            || get_u32(buf, OFF_PAGE_SIZE) != prev.page_size
        {
            return Err(bad(
                "magic, version or page size differ from the meta".into()
            ));
        }
        let meta = Self::fields(buf, txid);
        meta.validate().map_err(bad)?;
        Ok(Some(meta))
    }

    fn fields(buf: &[u8], txid: u64) -> Meta {
        Meta {
            page_size: get_u32(buf, OFF_PAGE_SIZE),
            txid,
            catalog: PageRef::decode(&buf[OFF_CATALOG..]).expect("fixed offset"),
            high_water: get_u64(buf, OFF_HIGH_WATER),
            next: get_u64(buf, OFF_NEXT),
            next_len: get_u32(buf, OFF_NEXT_LEN),
        }
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if !super::valid_page_size(self.page_size as usize) {
            return Err(format!("page size {}", self.page_size));
        }
        let next_end = self.next.checked_add(self.next_len as u64);
        if self.high_water < 3
            || self.catalog.pgid < 2
            || self.catalog.pgid >= self.high_water
            || self.next < 2
            || self.next_len == 0
            || next_end.is_none_or(|end| end > self.high_water)
        {
            return Err(format!("points outside the file: {self:?}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Meta {
        Meta {
            page_size: 4096,
            txid: 9,
            catalog: PageRef {
                pgid: 5,
                checksum: 77,
                txid: 9,
            },
            high_water: 20,
            next: 10,
            next_len: 8,
        }
    }

    #[test]
    fn roundtrip_and_flip_detection() {
        let meta = sample();
        let buf = meta.encode(4096, 1);
        let path = Path::new("x");
        assert_eq!(Meta::decode(&buf, 1, path).unwrap(), meta);
        assert!(Meta::decode(&buf, 0, path).is_err(), "wrong slot must fail");
        for at in [0usize, 9, 33, 50, 100, 127, 2048, 4095] {
            let mut bad = buf.clone();
            bad[at] ^= 0x10;
            assert!(
                Meta::decode(&bad, 1, path).is_err(),
                "flip at {at} undetected"
            );
        }
    }

    #[test]
    fn records_continue_only_their_own_history() {
        let prev = sample();
        let next = Meta {
            txid: 10,
            next: 12,
            ..prev
        };
        let mut buf = vec![0u8; 4096];
        next.encode_into(&mut buf, KIND_COMMIT, 10, prev.digest());
        assert_eq!(Meta::decode_record(&buf, 10, &prev).unwrap(), Some(next));
        // At another page, after another commit point, or of another txid:
        // not this chain's record.
        assert_eq!(Meta::decode_record(&buf, 11, &prev).unwrap(), None);
        let other = Meta {
            high_water: 21,
            ..prev
        };
        assert_eq!(Meta::decode_record(&buf, 10, &other).unwrap(), None);
        let later = Meta { txid: 10, ..prev };
        assert_eq!(Meta::decode_record(&buf, 10, &later).unwrap(), None);
        // Damaged: an error naming the page.
        let mut bad = buf.clone();
        bad[3000] ^= 1;
        assert!(matches!(
            Meta::decode_record(&bad, 10, &prev),
            Err(Error::Corrupt { pgid: 10, .. })
        ));
    }

    #[test]
    fn foreign_file_is_a_format_error() {
        let buf = vec![0xabu8; 4096];
        assert!(matches!(
            Meta::decode(&buf, 0, Path::new("x")),
            Err(Error::NotABtree { .. })
        ));
    }
}
