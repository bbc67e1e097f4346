//! Branch and leaf nodes: the zero-copy view of a node page in the file
//! (`PageView`) and the owned, mutable node a write transaction works on
//! (`Node`). Layout (docs/format.md):
//!
//! ```text
//! header (32) | slot[count] (u16 offsets) | elements ...
//! leaf element:   flags u8 | klen u16 | vlen u32 | key | value, or PageRef of an overflow span
//! branch element: klen u16 (bit 15: deep) | child PageRef (24) | key
//! ```
//! A branch element's key is a lower bound of every key below that child and
//! greater than every key under the child before it. The `deep` bit says the
//! child links to further pages (it is a branch, or a leaf with overflow
//! values): the walk that rebuilds free space at open reads only deep
//! children, so it touches the branch pages and not the leaves.

use super::error::{Error, Result};
use super::page::{
    self, get_u16, get_u32, put_u16, put_u32, Header, PageRef, HEADER_LEN, KIND_BRANCH, KIND_LEAF,
    PAGE_REF_LEN,
};

pub const SLOT_LEN: usize = 2;
pub const LEAF_ELEM_HEADER: usize = 7;
pub const BRANCH_ELEM_HEADER: usize = 2 + PAGE_REF_LEN;
const FLAG_OVERFLOW: u8 = 1;
/// Bit 15 of a branch element's key length: the child is deep.
const BRANCH_DEEP: u16 = 0x8000;
const BRANCH_KLEN_MASK: u16 = 0x7fff;

/// A value as stored in a leaf.
#[derive(Clone, Debug)]
pub enum Val {
    /// Stored in the leaf element.
    Inline(Vec<u8>),
    /// Already in the file as an overflow span written by an earlier commit.
    Overflow { link: PageRef, len: u32 },
    /// Too large for a leaf; gets an overflow span at commit.
    Big(Vec<u8>),
}

impl Val {
    fn stored_len(&self) -> usize {
        match self {
            Val::Inline(v) => v.len(),
            Val::Overflow { .. } | Val::Big(_) => PAGE_REF_LEN,
        }
    }
}

#[derive(Debug)]
pub struct LeafEntry {
    pub key: Vec<u8>,
    pub val: Val,
}

impl LeafEntry {
    pub fn size(&self) -> usize {
        SLOT_LEN + LEAF_ELEM_HEADER + self.key.len() + self.val.stored_len()
    }
}

/// A child of a branch: a page in the file, or a node changed by this
/// write transaction (copy-on-write: the page it came from is freed).
#[derive(Debug)]
pub enum Child {
    Clean(PageRef),
    Dirty(Box<Node>),
}

#[derive(Debug)]
pub struct BranchEntry {
    pub key: Vec<u8>,
    pub child: Child,
    /// For a clean child: whether it links to further pages (a branch, or a
    /// leaf with overflow values). Recomputed when a dirty child is written.
    pub deep: bool,
}

impl BranchEntry {
    pub fn size(&self) -> usize {
        SLOT_LEN + BRANCH_ELEM_HEADER + self.key.len()
    }
}

#[derive(Debug)]
pub enum Node {
    Leaf(Vec<LeafEntry>),
    Branch(Vec<BranchEntry>),
}

impl Node {
    pub fn empty_leaf() -> Node {
        Node::Leaf(Vec::new())
    }

    pub fn len(&self) -> usize {
        match self {
            Node::Leaf(e) => e.len(),
            Node::Branch(e) => e.len(),
        }
    }

    /// Bytes the node occupies when written as a page (header included).
    pub fn size(&self) -> usize {
        HEADER_LEN
            + match self {
                Node::Leaf(e) => e.iter().map(LeafEntry::size).sum::<usize>(),
                Node::Branch(e) => e.iter().map(BranchEntry::size).sum::<usize>(),
            }
    }

    /// Whether this node, written as a page, links to other pages: a
    /// branch always, a leaf when it holds overflow values.
    pub fn is_deep(&self) -> bool {
        match self {
            Node::Leaf(e) => e.iter().any(|e| !matches!(e.val, Val::Inline(_))),
            Node::Branch(_) => true,
        }
    }

    pub fn first_key(&self) -> &[u8] {
        match self {
            Node::Leaf(e) => &e[0].key,
            Node::Branch(e) => &e[0].key,
        }
    }

    /// Reads a node page into an owned node (the first step of copy-on-write).
    pub fn decode(view: &PageView<'_>) -> Result<Node> {
        let n = view.count();
        if view.is_leaf() {
            let mut entries = Vec::with_capacity(n + 1);
            for i in 0..n {
                let (key, val) = view.leaf_entry(i)?;
                let val = match val {
                    LeafVal::Inline(v) => Val::Inline(v.to_vec()),
                    LeafVal::Overflow { link, len } => Val::Overflow { link, len },
                };
                entries.push(LeafEntry {
                    key: key.to_vec(),
                    val,
                });
            }
            Ok(Node::Leaf(entries))
        } else {
            let mut entries = Vec::with_capacity(n + 1);
            for i in 0..n {
                let (key, link, deep) = view.branch_entry(i)?;
                entries.push(BranchEntry {
                    key: key.to_vec(),
                    child: Child::Clean(link),
                    deep,
                });
            }
            Ok(Node::Branch(entries))
        }
    }

    /// Encodes the node into `buf` (one zeroed page). Every child must be
    /// clean and every value inline or an overflow link by now.
    pub fn encode(&self, buf: &mut [u8], pgid: u64, txid: u64) -> u64 {
        let size = self.size();
        assert!(size <= buf.len(), "node of {size} bytes exceeds its page");
        let count = self.len();
        assert!(count <= u16::MAX as usize);
        let kind = match self {
            Node::Leaf(_) => KIND_LEAF,
            Node::Branch(_) => KIND_BRANCH,
        };
        Header::write(buf, pgid, txid, kind, count as u16, 1);
        let mut at = HEADER_LEN + count * SLOT_LEN;
        match self {
            Node::Leaf(entries) => {
                for (i, e) in entries.iter().enumerate() {
                    put_u16(buf, HEADER_LEN + i * SLOT_LEN, at as u16);
                    let (flags, vlen) = match &e.val {
                        Val::Inline(v) => (0, v.len() as u32),
                        Val::Overflow { len, .. } => (FLAG_OVERFLOW, *len),
                        Val::Big(_) => {
                            unreachable!("big values get overflow pages before encoding")
                        }
                    };
                    buf[at] = flags;
                    put_u16(buf, at + 1, e.key.len() as u16);
                    put_u32(buf, at + 3, vlen);
                    at += LEAF_ELEM_HEADER;
                    buf[at..at + e.key.len()].copy_from_slice(&e.key);
                    at += e.key.len();
                    match &e.val {
                        Val::Inline(v) => {
                            buf[at..at + v.len()].copy_from_slice(v);
                            at += v.len();
                        }
                        Val::Overflow { link, .. } => {
                            link.encode(&mut buf[at..]);
                            at += PAGE_REF_LEN;
                        }
                        Val::Big(_) => unreachable!(),
                    }
                }
            }
            Node::Branch(entries) => {
                for (i, e) in entries.iter().enumerate() {
                    put_u16(buf, HEADER_LEN + i * SLOT_LEN, at as u16);
                    let deep = if e.deep { BRANCH_DEEP } else { 0 };
                    put_u16(buf, at, e.key.len() as u16 | deep);
                    let Child::Clean(link) = &e.child else {
                        unreachable!("children are written before their parent")
                    };
                    link.encode(&mut buf[at + 2..]);
                    at += BRANCH_ELEM_HEADER;
                    buf[at..at + e.key.len()].copy_from_slice(&e.key);
                    at += e.key.len();
                }
            }
        }
        assert_eq!(at, size, "encoded size disagrees with the size accounting");
        page::seal(buf)
    }
}

/// Splits `entries` into runs that each fit in `capacity` bytes (entry sizes
/// from `size`). `append` keeps every run but the last as full as possible:
/// sequential inserts then leave full pages behind them (bbolt's fill
/// percent, chosen automatically). Otherwise the bytes are halved.
pub fn split_points(sizes: &[usize], capacity: usize, append: bool) -> Vec<usize> {
    let total: usize = sizes.iter().sum();
    assert!(
        sizes.len() >= 2,
        "a node that overflows has at least two entries"
    );
    let mut points = Vec::new();
    if append {
        let mut used = 0;
        for (i, s) in sizes.iter().enumerate() {
            if used + s > capacity && i > 0 {
                points.push(i);
                used = 0;
            }
            used += s;
        }
    } else {
        let parts = total.div_ceil(capacity).max(2);
        let target = total / parts;
        let mut used = 0;
        for (i, s) in sizes.iter().enumerate() {
            if used >= target && i > 0 && points.len() + 1 < parts {
                points.push(i);
                used = 0;
            }
            used += s;
        }
    }
    points
}

/// A value read from a leaf page.
#[derive(Clone, Copy, Debug)]
pub enum LeafVal<'a> {
    Inline(&'a [u8]),
    Overflow { link: PageRef, len: u32 },
}

/// A verified branch or leaf page in the mapping. Every accessor checks its
/// bounds, so a damaged page yields an error naming it, never a panic.
#[derive(Clone, Copy)]
pub struct PageView<'a> {
    pub buf: &'a [u8],
    pub header: Header,
}

impl<'a> PageView<'a> {
    pub fn new(buf: &'a [u8], header: Header) -> Result<Self> {
        if header.kind != KIND_LEAF && header.kind != KIND_BRANCH {
            return Err(Error::corrupt(
                header.pgid,
                format!("expected a node page, found kind {}", header.kind),
            ));
        }
        if HEADER_LEN + header.count as usize * SLOT_LEN > buf.len() {
            return Err(Error::corrupt(header.pgid, "slot array overruns the page"));
        }
        Ok(PageView { buf, header })
    }

    pub fn is_leaf(&self) -> bool {
        self.header.kind == KIND_LEAF
    }

    pub fn count(&self) -> usize {
        self.header.count as usize
    }

    #[cold]
    fn bad(&self, what: impl Into<String>) -> Error {
        Error::corrupt(self.header.pgid, what)
    }

    #[inline]
    fn element(&self, i: usize, header_len: usize) -> Result<usize> {
        let at = get_u16(self.buf, HEADER_LEN + i * SLOT_LEN) as usize;
        if at < HEADER_LEN + self.count() * SLOT_LEN || at + header_len > self.buf.len() {
            return Err(self.bad(format!("element {i} at offset {at} is out of bounds")));
        }
        Ok(at)
    }

    /// The key of element `i`, without decoding the rest of the element
    /// (the inner loop of every search).
    #[inline]
    pub fn key(&self, i: usize) -> Result<&'a [u8]> {
        let (header_len, klen_at) = if self.is_leaf() {
            (LEAF_ELEM_HEADER, 1)
        } else {
            (BRANCH_ELEM_HEADER, 0)
        };
        let at = self.element(i, header_len)?;
        let klen = (get_u16(self.buf, at + klen_at) & self.klen_mask()) as usize;
        let start = at + header_len;
        match self.buf.get(start..start + klen) {
            Some(key) => Ok(key),
            None => Err(self.bad(format!("element {i} key overruns the page"))),
        }
    }

    pub fn leaf_entry(&self, i: usize) -> Result<(&'a [u8], LeafVal<'a>)> {
        debug_assert!(self.is_leaf());
        let at = self.element(i, LEAF_ELEM_HEADER)?;
        let flags = self.buf[at];
        let klen = get_u16(self.buf, at + 1) as usize;
        let vlen = get_u32(self.buf, at + 3);
        let kstart = at + LEAF_ELEM_HEADER;
        let stored = if flags & FLAG_OVERFLOW != 0 {
            PAGE_REF_LEN
        } else {
            vlen as usize
        };
        let end = kstart + klen + stored;
        if end > self.buf.len() || flags & !FLAG_OVERFLOW != 0 {
            return Err(self.bad(format!("leaf element {i} is malformed")));
        }
        let key = &self.buf[kstart..kstart + klen];
        let rest = &self.buf[kstart + klen..end];
        let val = if flags & FLAG_OVERFLOW != 0 {
            LeafVal::Overflow {
                link: PageRef::decode(rest).expect("length checked"),
                len: vlen,
            }
        } else {
            LeafVal::Inline(rest)
        };
        Ok((key, val))
    }

    /// Key, child link and `deep` bit of branch element `i`.
    pub fn branch_entry(&self, i: usize) -> Result<(&'a [u8], PageRef, bool)> {
        debug_assert!(!self.is_leaf());
        let at = self.element(i, BRANCH_ELEM_HEADER)?;
        let raw = get_u16(self.buf, at);
        let klen = (raw & BRANCH_KLEN_MASK) as usize;
        let kstart = at + BRANCH_ELEM_HEADER;
        if kstart + klen > self.buf.len() {
            return Err(self.bad(format!("branch element {i} is malformed")));
        }
        let link = PageRef::decode(&self.buf[at + 2..]).expect("length checked");
        Ok((
            &self.buf[kstart..kstart + klen],
            link,
            raw & BRANCH_DEEP != 0,
        ))
    }

    /// Mask of the key-length field: branch elements keep the deep bit in
    /// its top bit.
    #[inline]
    fn klen_mask(&self) -> u16 {
        if self.is_leaf() {
            u16::MAX
        } else {
            BRANCH_KLEN_MASK
        }
    }

    /// Index of the first key ≥ `key` (`Ok` when equal), as slice::binary_search.
    /// The inner loop of every lookup: one slot read, one bounds check and
    /// one inline comparison per probe.
    #[inline]
    pub fn search(&self, key: &[u8]) -> Result<std::result::Result<usize, usize>> {
        let buf = self.buf;
        let (header_len, klen_at) = if self.is_leaf() {
            (LEAF_ELEM_HEADER, 1)
        } else {
            (BRANCH_ELEM_HEADER, 0)
        };
        let mask = self.klen_mask();
        let (mut lo, mut hi) = (0, self.count());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let slot = HEADER_LEN + mid * SLOT_LEN;
            let at = u16::from_le_bytes([buf[slot], buf[slot + 1]]) as usize;
            let Some(&[a, b]) = buf.get(at + klen_at..at + klen_at + 2) else {
                return Err(self.bad(format!("element {mid} at offset {at} is out of bounds")));
            };
            let start = at + header_len;
            let klen = (u16::from_le_bytes([a, b]) & mask) as usize;
            let Some(probe) = buf.get(start..start + klen) else {
                return Err(self.bad(format!("element {mid} key overruns the page")));
            };
            match compare(probe, key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Ok(mid)),
            }
        }
        Ok(Err(lo))
    }
}

/// Lexicographic byte comparison, eight bytes at a time: keys are short, and
/// a call into memcmp per probe costs more than the comparison itself.
#[inline]
pub fn compare(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_be_bytes(a[i..i + 8].try_into().expect("8 bytes"));
        let y = u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if x != y {
            return x.cmp(&y);
        }
        i += 8;
    }
    a[i..].cmp(&b[i..])
}

/// The child of a branch that may hold `key`: the last whose lower bound is
/// ≤ key, or the first child for keys below every bound.
pub fn child_index(found: std::result::Result<usize, usize>) -> usize {
    match found {
        Ok(i) => i,
        Err(0) => 0,
        Err(i) => i - 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_roundtrip_through_a_page() {
        let entries = vec![
            LeafEntry {
                key: b"a".to_vec(),
                val: Val::Inline(b"one".to_vec()),
            },
            LeafEntry {
                key: b"b".to_vec(),
                val: Val::Overflow {
                    link: PageRef {
                        pgid: 9,
                        checksum: 1,
                        txid: 2,
                    },
                    len: 9000,
                },
            },
        ];
        let node = Node::Leaf(entries);
        let mut buf = vec![0u8; 4096];
        let sum = node.encode(&mut buf, 4, 1);
        let link = PageRef {
            pgid: 4,
            checksum: sum,
            txid: 1,
        };
        let header = page::verify(&buf, &link).unwrap();
        let view = PageView::new(&buf, header).unwrap();
        assert_eq!(view.search(b"b").unwrap(), Ok(1));
        assert_eq!(view.search(b"ab").unwrap(), Err(1));
        match Node::decode(&view).unwrap() {
            Node::Leaf(e) => {
                assert_eq!(e[0].key, b"a");
                assert!(matches!(&e[0].val, Val::Inline(v) if v == b"one"));
                assert!(matches!(e[1].val, Val::Overflow { len: 9000, .. }));
            }
            Node::Branch(_) => panic!("decoded a leaf as a branch"),
        }
    }

    #[test]
    fn damaged_slot_is_an_error_not_a_panic() {
        let node = Node::Leaf(vec![LeafEntry {
            key: b"k".to_vec(),
            val: Val::Inline(vec![1; 10]),
        }]);
        let mut buf = vec![0u8; 4096];
        node.encode(&mut buf, 4, 1);
        put_u16(&mut buf, HEADER_LEN, 4095);
        let header = Header::read(&buf);
        let view = PageView::new(&buf, header).unwrap();
        assert!(view.leaf_entry(0).is_err());
    }

    #[test]
    fn compare_agrees_with_slice_ordering() {
        let keys: [&[u8]; 9] = [
            b"",
            b"a",
            b"ab",
            b"abcdefgh",
            b"abcdefghi",
            b"abcdefgz",
            b"b",
            b"\xff\x00",
            b"abcdefghabcdefgh",
        ];
        for a in keys {
            for b in keys {
                assert_eq!(compare(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn split_points_fill_on_append_and_halve_otherwise() {
        let sizes = vec![100; 50]; // 5000 bytes in 4064-byte pages
        let append = split_points(&sizes, 4064, true);
        assert_eq!(append, vec![40]);
        let even = split_points(&sizes, 4064, false);
        assert_eq!(even, vec![25]);
    }
}
