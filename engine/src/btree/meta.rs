//! The two meta pages (page 0 and page 1). Commit `txid` writes slot
//! `txid % 2`, so the previous commit's meta is never overwritten by the
//! commit that follows it. The meta's checksum covers its whole page; the
//! fields sit in the first `META_LEN` bytes and the rest must be zero.

use super::error::{Error, Result};
use super::page::{self, get_u32, get_u64, put_u32, put_u64, PageRef, HEADER_LEN, KIND_META};
use std::path::Path;

/// "FKVBTREE" read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"FKVBTREE");
pub const VERSION: u32 = 2;
/// Bytes of a meta page that hold fields; the rest of the page is zero.
pub const META_LEN: usize = 128;

const OFF_MAGIC: usize = HEADER_LEN; // 32
const OFF_VERSION: usize = 40;
const OFF_PAGE_SIZE: usize = 44;
const OFF_CATALOG: usize = 48; // PageRef, 24 bytes
const OFF_HIGH_WATER: usize = 72;

/// A commit point: everything needed to find the tree of one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub page_size: u32,
    pub txid: u64,
    /// Root of the catalog tree (bucket name → bucket root).
    pub catalog: PageRef,
    /// Pages `[0, high_water)` are in use or free; pages above are unused file tail.
    pub high_water: u64,
}

impl Meta {
    pub fn slot(&self) -> u64 {
        self.txid % 2
    }

    pub fn encode(&self, page_size: usize) -> Vec<u8> {
        let mut buf = vec![0u8; page_size];
        page::Header::write(&mut buf, self.slot(), self.txid, KIND_META, 0, 1);
        put_u64(&mut buf, OFF_MAGIC, MAGIC);
        put_u32(&mut buf, OFF_VERSION, VERSION);
        put_u32(&mut buf, OFF_PAGE_SIZE, self.page_size);
        self.catalog.encode(&mut buf[OFF_CATALOG..]);
        put_u64(&mut buf, OFF_HIGH_WATER, self.high_water);
        page::seal(&mut buf);
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
        let meta = Meta {
            page_size: get_u32(buf, OFF_PAGE_SIZE),
            txid: header.txid,
            catalog: PageRef::decode(&buf[OFF_CATALOG..]).expect("fixed offset"),
            high_water: get_u64(buf, OFF_HIGH_WATER),
        };
        if meta.txid % 2 != slot {
            return Err(Error::corrupt(
                slot,
                format!("txid {} does not belong in meta slot {slot}", meta.txid),
            ));
        }
        if !super::valid_page_size(meta.page_size as usize) {
            return Err(Error::corrupt(
                slot,
                format!("page size {}", meta.page_size),
            ));
        }
        if meta.high_water < 3 || meta.catalog.pgid < 2 || meta.catalog.pgid >= meta.high_water {
            return Err(Error::corrupt(
                slot,
                format!("meta points outside the file: {meta:?}"),
            ));
        }
        Ok(meta)
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
            high_water: 10,
        }
    }

    #[test]
    fn roundtrip_and_flip_detection() {
        let meta = sample();
        let buf = meta.encode(4096);
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
    fn foreign_file_is_a_format_error() {
        let buf = vec![0xabu8; 4096];
        assert!(matches!(
            Meta::decode(&buf, 0, Path::new("x")),
            Err(Error::NotABtree { .. })
        ));
    }
}
