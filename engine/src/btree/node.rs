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
use super::mapping::Mapping;
use super::page::{
    self, get_u16, get_u32, put_u16, put_u32, Header, PageRef, HEADER_LEN, KIND_BRANCH, KIND_LEAF,
    PAGE_REF_LEN,
};

pub const SLOT_LEN: usize = 2;
pub const LEAF_ELEM_HEADER: usize = 7;
pub const BRANCH_ELEM_HEADER: usize = 2 + PAGE_REF_LEN;
const FLAG_OVERFLOW: u8 = 1;
/// Bytes from an element's start that a search probe reads, for short keys:
/// the element header and the first bytes of the key.
const PROBE_BYTES: usize = 32;
/// Bit 15 of a branch element's key length: the child is deep.
const BRANCH_DEEP: u16 = 0x8000;
const BRANCH_KLEN_MASK: u16 = 0x7fff;

/// A value handed to a leaf: the bytes to store inline, the bytes of a
/// value too large for a leaf (it gets an overflow span at commit), or a
/// link to an overflow span already in the file.
#[derive(Clone, Copy, Debug)]
pub enum Val<'a> {
    Inline(&'a [u8]),
    Big(&'a [u8]),
    Overflow { link: PageRef, len: u32 },
}

/// A byte range in a node's arena.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    at: u32,
    len: u32,
}

impl Span {
    #[inline]
    fn of<'a>(&self, arena: &'a [u8]) -> &'a [u8] {
        &arena[self.at as usize..(self.at + self.len) as usize]
    }
}

/// Appends `bytes` to `arena`; returns where they went.
#[inline]
fn push(arena: &mut Vec<u8>, bytes: &[u8]) -> Span {
    let at = arena.len();
    arena.extend_from_slice(bytes);
    assert!(arena.len() <= u32::MAX as usize, "node arena beyond 4 GiB");
    Span {
        at: at as u32,
        len: bytes.len() as u32,
    }
}

/// Garbage an arena may hold before it is compacted: replaced values and
/// removed entries leave their bytes behind until then.
const ARENA_GARBAGE_MAX: usize = 16 << 10;

/// A stored leaf value.
#[derive(Debug)]
pub enum Stored {
    Inline(Span),
    /// Already in the file as an overflow span written by an earlier commit.
    Overflow {
        link: PageRef,
        len: u32,
    },
    /// Too large for a leaf; gets an overflow span at commit.
    Big(Box<[u8]>),
}

impl Stored {
    fn stored_len(&self) -> usize {
        match self {
            Stored::Inline(s) => s.len as usize,
            Stored::Overflow { .. } | Stored::Big(_) => PAGE_REF_LEN,
        }
    }

    /// The overflow span this value occupies in the file, if any.
    pub fn overflow(&self) -> Option<(PageRef, u32)> {
        match self {
            Stored::Overflow { link, len } => Some((*link, *len)),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct LeafEntry {
    key: Span,
    val: Stored,
}

impl LeafEntry {
    fn size(&self) -> usize {
        SLOT_LEN + LEAF_ELEM_HEADER + self.key.len as usize + self.val.stored_len()
    }
}

/// A leaf changed by a write transaction. Keys and inline values live in
/// one arena — at first a copy of the page it came from, then appended to —
/// so copying a page on write costs one memcpy and an index, not an
/// allocation per entry.
#[derive(Debug, Default)]
pub struct Leaf {
    arena: Vec<u8>,
    entries: Vec<LeafEntry>,
    /// Encoded bytes of the entries (slots and elements).
    size: usize,
    /// Arena bytes the entries reference.
    live: usize,
}

impl Leaf {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[inline]
    pub fn key(&self, i: usize) -> &[u8] {
        self.entries[i].key.of(&self.arena)
    }

    pub fn search(&self, key: &[u8]) -> std::result::Result<usize, usize> {
        self.entries
            .binary_search_by(|e| compare(e.key.of(&self.arena), key))
    }

    /// The value of entry `i`: inline bytes, a big value's bytes, or its
    /// overflow link.
    pub fn value(&self, i: usize) -> LeafVal<'_> {
        match &self.entries[i].val {
            Stored::Inline(s) => LeafVal::Inline(s.of(&self.arena)),
            Stored::Big(b) => LeafVal::Inline(b),
            Stored::Overflow { link, len } => LeafVal::Overflow {
                link: *link,
                len: *len,
            },
        }
    }

    fn store(&mut self, val: Val<'_>) -> Stored {
        match val {
            Val::Inline(v) => {
                self.live += v.len();
                Stored::Inline(push(&mut self.arena, v))
            }
            Val::Big(v) => Stored::Big(v.into()),
            Val::Overflow { link, len } => Stored::Overflow { link, len },
        }
    }

    fn forget(&mut self, val: &Stored) {
        if let Stored::Inline(s) = val {
            self.live -= s.len as usize;
        }
    }

    /// Inserts a new entry at `i` (its sorted position).
    pub fn insert(&mut self, i: usize, key: &[u8], val: Val<'_>) {
        self.live += key.len();
        let key = push(&mut self.arena, key);
        let val = self.store(val);
        let e = LeafEntry { key, val };
        self.size += e.size();
        self.entries.insert(i, e);
    }

    /// Replaces the value of entry `i`; returns the old one.
    pub fn replace(&mut self, i: usize, val: Val<'_>) -> Stored {
        let val = self.store(val);
        let before = self.entries[i].size();
        let old = std::mem::replace(&mut self.entries[i].val, val);
        self.forget(&old);
        self.size = self.size + self.entries[i].size() - before;
        self.maybe_compact();
        old
    }

    /// Removes entry `i`; returns its value.
    pub fn remove(&mut self, i: usize) -> Stored {
        let e = self.entries.remove(i);
        self.size -= e.size();
        self.live -= e.key.len as usize;
        self.forget(&e.val);
        e.val
    }

    /// Values of every entry (to free their overflow spans).
    pub fn values(&self) -> impl Iterator<Item = &Stored> {
        self.entries.iter().map(|e| &e.val)
    }

    /// Big values, to be written to overflow spans: each is replaced by the
    /// link `write` returns.
    pub fn write_big(&mut self, mut write: impl FnMut(&[u8]) -> Result<PageRef>) -> Result<()> {
        for e in self.entries.iter_mut() {
            if let Stored::Big(v) = &e.val {
                let len = v.len() as u32;
                let link = write(v)?;
                e.val = Stored::Overflow { link, len };
            }
        }
        Ok(())
    }

    fn has_overflow(&self) -> bool {
        self.entries
            .iter()
            .any(|e| !matches!(e.val, Stored::Inline(_)))
    }

    fn sizes(&self) -> Vec<usize> {
        self.entries.iter().map(LeafEntry::size).collect()
    }

    /// Moves entries `[at, len)` into a new leaf (with its own arena).
    fn split_off(&mut self, at: usize) -> Leaf {
        let mut right = Leaf::default();
        for e in self.entries.drain(at..) {
            let key = push(&mut right.arena, e.key.of(&self.arena));
            right.live += key.len as usize;
            self.live -= key.len as usize;
            let val = match e.val {
                Stored::Inline(s) => {
                    self.live -= s.len as usize;
                    right.live += s.len as usize;
                    Stored::Inline(push(&mut right.arena, s.of(&self.arena)))
                }
                other => other,
            };
            let e = LeafEntry { key, val };
            self.size -= e.size();
            right.size += e.size();
            right.entries.push(e);
        }
        right
    }

    /// Appends every entry of `right` (all its keys are greater).
    fn append(&mut self, right: Leaf) {
        for e in right.entries {
            let key = push(&mut self.arena, e.key.of(&right.arena));
            self.live += key.len as usize;
            let val = match e.val {
                Stored::Inline(s) => {
                    self.live += s.len as usize;
                    Stored::Inline(push(&mut self.arena, s.of(&right.arena)))
                }
                other => other,
            };
            let e = LeafEntry { key, val };
            self.size += e.size();
            self.entries.push(e);
        }
    }

    /// Rewrites the arena with only the live bytes once garbage piles up
    /// (a transaction rewriting one key over and over).
    fn maybe_compact(&mut self) {
        if self.arena.len() - self.live <= ARENA_GARBAGE_MAX {
            return;
        }
        let mut arena = Vec::with_capacity(self.live);
        for e in self.entries.iter_mut() {
            e.key = push(&mut arena, e.key.of(&self.arena));
            if let Stored::Inline(s) = &mut e.val {
                *s = push(&mut arena, s.of(&self.arena));
            }
        }
        self.arena = arena;
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
    key: Span,
    pub child: Child,
    /// For a clean child: whether it links to further pages (a branch, or a
    /// leaf with overflow values). Recomputed when a dirty child is written.
    pub deep: bool,
}

impl BranchEntry {
    fn size(&self) -> usize {
        SLOT_LEN + BRANCH_ELEM_HEADER + self.key.len as usize
    }
}

/// A branch changed by a write transaction; keys in one arena as `Leaf`.
#[derive(Debug, Default)]
pub struct Branch {
    arena: Vec<u8>,
    pub entries: Vec<BranchEntry>,
    size: usize,
    live: usize,
}

impl Branch {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[inline]
    pub fn key(&self, i: usize) -> &[u8] {
        self.entries[i].key.of(&self.arena)
    }

    pub fn search(&self, key: &[u8]) -> std::result::Result<usize, usize> {
        self.entries
            .binary_search_by(|e| compare(e.key.of(&self.arena), key))
    }

    /// Inserts a dirty child with lower bound `key` at `i`.
    pub fn insert(&mut self, i: usize, key: &[u8], child: Child) {
        self.live += key.len();
        let e = BranchEntry {
            key: push(&mut self.arena, key),
            child,
            deep: true,
        };
        self.size += e.size();
        self.entries.insert(i, e);
    }

    /// Lowers the bound of entry `i` (only the first child can receive a
    /// key below its bound).
    pub fn set_key(&mut self, i: usize, key: &[u8]) {
        let old = self.entries[i].key.len as usize;
        self.entries[i].key = push(&mut self.arena, key);
        self.size = self.size + key.len() - old;
        self.live = self.live + key.len() - old;
    }

    pub fn remove(&mut self, i: usize) -> BranchEntry {
        let e = self.entries.remove(i);
        self.size -= e.size();
        self.live -= e.key.len as usize;
        e
    }

    fn sizes(&self) -> Vec<usize> {
        self.entries.iter().map(BranchEntry::size).collect()
    }

    fn split_off(&mut self, at: usize) -> Branch {
        let mut right = Branch::default();
        for mut e in self.entries.drain(at..) {
            let key = push(&mut right.arena, e.key.of(&self.arena));
            self.live -= key.len as usize;
            right.live += key.len as usize;
            self.size -= e.size();
            e.key = key;
            right.size += e.size();
            right.entries.push(e);
        }
        right
    }

    fn append(&mut self, right: Branch) {
        for mut e in right.entries {
            e.key = push(&mut self.arena, e.key.of(&right.arena));
            self.live += e.key.len as usize;
            self.size += e.size();
            self.entries.push(e);
        }
    }
}

#[derive(Debug)]
pub enum Node {
    Leaf(Leaf),
    Branch(Branch),
}

impl Node {
    pub fn empty_leaf() -> Node {
        Node::Leaf(Leaf::default())
    }

    /// A branch over `children`, each with its lower bound.
    pub fn branch(children: Vec<(Vec<u8>, Child)>) -> Node {
        let mut b = Branch::default();
        for (key, child) in children {
            b.insert(b.len(), &key, child);
        }
        Node::Branch(b)
    }

    pub fn len(&self) -> usize {
        match self {
            Node::Leaf(l) => l.len(),
            Node::Branch(b) => b.len(),
        }
    }

    /// Bytes the node occupies when written as a page (header included).
    pub fn size(&self) -> usize {
        HEADER_LEN
            + match self {
                Node::Leaf(l) => l.size,
                Node::Branch(b) => b.size,
            }
    }

    /// Whether this node, written as a page, links to other pages: a
    /// branch always, a leaf when it holds overflow values.
    pub fn is_deep(&self) -> bool {
        match self {
            Node::Leaf(l) => l.has_overflow(),
            Node::Branch(_) => true,
        }
    }

    pub fn first_key(&self) -> &[u8] {
        match self {
            Node::Leaf(l) => l.key(0),
            Node::Branch(b) => b.key(0),
        }
    }

    /// Splits an overfull node in place (`capacity`: bytes available for
    /// entries); returns the new right siblings with their lower bounds.
    pub fn split(&mut self, capacity: usize, append: bool) -> Vec<(Vec<u8>, Node)> {
        let mut out = Vec::new();
        match self {
            Node::Leaf(l) => {
                for at in split_points(&l.sizes(), capacity, append).into_iter().rev() {
                    let right = l.split_off(at);
                    out.push((right.key(0).to_vec(), Node::Leaf(right)));
                }
            }
            Node::Branch(b) => {
                for at in split_points(&b.sizes(), capacity, append).into_iter().rev() {
                    let right = b.split_off(at);
                    out.push((right.key(0).to_vec(), Node::Branch(right)));
                }
            }
        }
        out.reverse();
        out
    }

    /// Appends the entries of `right`, a sibling of the same kind whose keys
    /// are all greater. `Err(right)` if the kinds differ.
    pub fn append(&mut self, right: Node) -> std::result::Result<(), Node> {
        match (self, right) {
            (Node::Leaf(a), Node::Leaf(b)) => a.append(b),
            (Node::Branch(a), Node::Branch(b)) => a.append(b),
            (_, right) => return Err(right),
        }
        Ok(())
    }

    /// Reads a node page into an owned node (the first step of copy-on-write):
    /// the page is copied whole and indexed.
    pub fn decode(view: &PageView<'_>) -> Result<Node> {
        let n = view.count();
        let arena = view.buf.to_vec();
        if view.is_leaf() {
            let mut leaf = Leaf {
                arena,
                entries: Vec::with_capacity(n + 1),
                size: 0,
                live: 0,
            };
            for i in 0..n {
                let (key, val) = view.leaf_entry(i)?;
                let key = view.span_of(key);
                let val = match val {
                    LeafVal::Inline(v) => Stored::Inline(view.span_of(v)),
                    LeafVal::Overflow { link, len } => Stored::Overflow { link, len },
                };
                leaf.live += key.len as usize
                    + match &val {
                        Stored::Inline(s) => s.len as usize,
                        _ => 0,
                    };
                let e = LeafEntry { key, val };
                leaf.size += e.size();
                leaf.entries.push(e);
            }
            Ok(Node::Leaf(leaf))
        } else {
            let mut branch = Branch {
                arena,
                entries: Vec::with_capacity(n + 1),
                size: 0,
                live: 0,
            };
            for i in 0..n {
                let (key, link, deep) = view.branch_entry(i)?;
                let e = BranchEntry {
                    key: view.span_of(key),
                    child: Child::Clean(link),
                    deep,
                };
                branch.live += e.key.len as usize;
                branch.size += e.size();
                branch.entries.push(e);
            }
            Ok(Node::Branch(branch))
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
            Node::Leaf(l) => {
                for (i, e) in l.entries.iter().enumerate() {
                    put_u16(buf, HEADER_LEN + i * SLOT_LEN, at as u16);
                    let key = e.key.of(&l.arena);
                    let (flags, vlen) = match &e.val {
                        Stored::Inline(v) => (0, v.len),
                        Stored::Overflow { len, .. } => (FLAG_OVERFLOW, *len),
                        Stored::Big(_) => {
                            unreachable!("big values get overflow pages before encoding")
                        }
                    };
                    buf[at] = flags;
                    put_u16(buf, at + 1, key.len() as u16);
                    put_u32(buf, at + 3, vlen);
                    at += LEAF_ELEM_HEADER;
                    buf[at..at + key.len()].copy_from_slice(key);
                    at += key.len();
                    match &e.val {
                        Stored::Inline(v) => {
                            let v = v.of(&l.arena);
                            buf[at..at + v.len()].copy_from_slice(v);
                            at += v.len();
                        }
                        Stored::Overflow { link, .. } => {
                            link.encode(&mut buf[at..]);
                            at += PAGE_REF_LEN;
                        }
                        Stored::Big(_) => unreachable!(),
                    }
                }
            }
            Node::Branch(b) => {
                for (i, e) in b.entries.iter().enumerate() {
                    put_u16(buf, HEADER_LEN + i * SLOT_LEN, at as u16);
                    let key = e.key.of(&b.arena);
                    let deep = if e.deep { BRANCH_DEEP } else { 0 };
                    put_u16(buf, at, key.len() as u16 | deep);
                    let Child::Clean(link) = &e.child else {
                        unreachable!("children are written before their parent")
                    };
                    link.encode(&mut buf[at + 2..]);
                    at += BRANCH_ELEM_HEADER;
                    buf[at..at + key.len()].copy_from_slice(key);
                    at += key.len();
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

    /// Where `part` (a slice of this page) lies in the page.
    fn span_of(&self, part: &[u8]) -> Span {
        let at = part.as_ptr() as usize - self.buf.as_ptr() as usize;
        debug_assert!(at + part.len() <= self.buf.len());
        Span {
            at: at as u32,
            len: part.len() as u32,
        }
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
        self.search_with(key, |_| {})
    }

    /// `search` for a lookup that descends, with prefetches so that cache
    /// misses overlap instead of following each other (each probe's address
    /// depends on the one before; a leaf of a large file is a TLB walk and
    /// a DRAM access per cache line). In a branch page, every probed element
    /// whose key is ≤ `key` may be the child taken next (the last such one
    /// is), so its child page is prefetched as soon as the probe has read
    /// the link, which shares the key's cache line: the child's miss
    /// overlaps the remaining probes. In a leaf page, the elements the
    /// first probes may visit are prefetched before the search starts.
    /// (Doing that in branch pages too measured slower: the upper levels
    /// mostly sit in cache.)
    #[inline]
    pub fn search_prefetch(
        &self,
        key: &[u8],
        map: &Mapping,
    ) -> Result<std::result::Result<usize, usize>> {
        if self.is_leaf() {
            self.prefetch_probes(map);
            return self.search(key);
        }
        let buf = self.buf;
        self.search_with(key, |at| {
            if let Some(pgid) = buf.get(at + 2..at + 10) {
                map.prefetch(u64::from_le_bytes(pgid.try_into().expect("8 bytes")));
            }
        })
    }

    /// Prefetches the elements the first four rounds of the binary search
    /// can probe (all of them in a page of up to 15 elements), so their
    /// misses overlap instead of following each other: each probe's
    /// address depends on the outcome of the one before.
    #[inline]
    fn prefetch_probes(&self, map: &Mapping) {
        const PROBES_MAX: usize = 15;
        let n = self.count();
        if n <= PROBES_MAX {
            for i in 0..n {
                self.prefetch_element(i, map);
            }
            return;
        }
        // The binary search's first probes, breadth first.
        let mut ranges = [(0usize, 0usize); PROBES_MAX];
        ranges[0] = (0, n);
        for head in 0..PROBES_MAX {
            let (lo, hi) = ranges[head];
            let mid = (lo + hi) / 2;
            self.prefetch_element(mid, map);
            let tail = 2 * head + 1;
            if tail + 1 < PROBES_MAX {
                ranges[tail] = (lo, mid);
                ranges[tail + 1] = (mid + 1, hi);
            }
        }
    }

    #[inline]
    fn prefetch_element(&self, i: usize, map: &Mapping) {
        let slot = HEADER_LEN + i * SLOT_LEN;
        if let Some(&[a, b]) = self.buf.get(slot..slot + 2) {
            let at = u16::from_le_bytes([a, b]) as usize;
            map.prefetch_in(self.buf, at);
            map.prefetch_in(self.buf, at + PROBE_BYTES - 1);
        }
    }

    /// The binary search; `candidate(at)` is called with the offset of each
    /// probed element whose key is ≤ `key`.
    #[inline(always)]
    fn search_with(
        &self,
        key: &[u8],
        mut candidate: impl FnMut(usize),
    ) -> Result<std::result::Result<usize, usize>> {
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
                std::cmp::Ordering::Less => {
                    candidate(at);
                    lo = mid + 1;
                }
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    candidate(at);
                    return Ok(Ok(mid));
                }
            }
        }
        Ok(Err(lo))
    }
}

/// Lexicographic byte comparison, eight bytes at a time: keys are short, and
/// a call into memcmp per probe costs more than the comparison itself (so
/// the tail of fewer than eight bytes is compared here too).
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
    while i < n {
        if a[i] != b[i] {
            return a[i].cmp(&b[i]);
        }
        i += 1;
    }
    a.len().cmp(&b.len())
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

    fn leaf(entries: &[(&[u8], Val<'_>)]) -> Leaf {
        let mut l = Leaf::default();
        for (k, v) in entries {
            l.insert(l.len(), k, *v);
        }
        l
    }

    #[test]
    fn leaf_roundtrip_through_a_page() {
        let link9 = PageRef {
            pgid: 9,
            checksum: 1,
            txid: 2,
        };
        let node = Node::Leaf(leaf(&[
            (b"a", Val::Inline(b"one")),
            (
                b"b",
                Val::Overflow {
                    link: link9,
                    len: 9000,
                },
            ),
        ]));
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
        let Node::Leaf(mut l) = Node::decode(&view).unwrap() else {
            panic!("decoded a leaf as a branch")
        };
        assert_eq!(l.key(0), b"a");
        assert!(matches!(l.value(0), LeafVal::Inline(v) if v == b"one"));
        assert!(matches!(l.value(1), LeafVal::Overflow { len: 9000, .. }));
        assert_eq!(Node::Leaf(Leaf::default()).size(), HEADER_LEN);
        // Edits after decoding keep the size accounting exact.
        l.insert(1, b"aa", Val::Inline(b"two"));
        let old = l.replace(0, Val::Inline(&[7; 300]));
        assert!(old.overflow().is_none());
        l.remove(2);
        let node = Node::Leaf(l);
        let mut again = vec![0u8; 4096];
        node.encode(&mut again, 5, 2); // asserts size == bytes written
        let view = PageView::new(&again, Header::read(&again)).unwrap();
        assert_eq!(view.count(), 2);
        assert_eq!(view.leaf_entry(1).unwrap().0, b"aa");
    }

    #[test]
    fn arena_is_compacted_and_splits_keep_sizes() {
        let mut l = Leaf::default();
        for i in 0u32..40 {
            l.insert(l.len(), &i.to_be_bytes(), Val::Inline(&[1; 50]));
        }
        for round in 0..1000u32 {
            l.replace((round % 40) as usize, Val::Inline(&[round as u8; 60]));
        }
        assert!(l.arena.len() - l.live <= ARENA_GARBAGE_MAX + 100);
        let total = l.size;
        let mut node = Node::Leaf(l);
        let parts = node.split(1024, false);
        let mut sum = node.size() - HEADER_LEN;
        for (key, part) in &parts {
            assert_eq!(key.as_slice(), part.first_key());
            sum += part.size() - HEADER_LEN;
        }
        assert_eq!(sum, total);
        let mut merged = Node::empty_leaf();
        merged.append(node).unwrap();
        for (_, part) in parts {
            merged.append(part).unwrap();
        }
        assert_eq!(merged.size() - HEADER_LEN, total);
        assert_eq!(merged.len(), 40);
    }

    #[test]
    fn damaged_slot_is_an_error_not_a_panic() {
        let node = Node::Leaf(leaf(&[(b"k", Val::Inline(&[1; 10]))]));
        let mut buf = vec![0u8; 4096];
        node.encode(&mut buf, 4, 1);
        put_u16(&mut buf, HEADER_LEN, 4095);
        let header = Header::read(&buf);
        let view = PageView::new(&buf, header).unwrap();
        assert!(view.leaf_entry(0).is_err());
    }

    /// The prefetching search used by lookups answers exactly as the plain
    /// one, in leaves and branches, and a damaged slot stays an error.
    #[test]
    fn search_prefetch_agrees_with_search() {
        let page_size = 4096;
        let keys: Vec<Vec<u8>> = (0..60u32).map(|i| (i * 3).to_be_bytes().to_vec()).collect();
        let mut leaf = Leaf::default();
        for k in &keys[..15] {
            leaf.insert(leaf.len(), k, Val::Inline(&[5; 150]));
        }
        let branch = Node::branch(
            keys.iter()
                .enumerate()
                .map(|(i, k)| {
                    let link = PageRef {
                        pgid: i as u64 % 3,
                        checksum: 0,
                        txid: 1,
                    };
                    (k.clone(), Child::Clean(link))
                })
                .collect(),
        );
        let mut file_bytes = vec![0u8; 3 * page_size];
        Node::Leaf(leaf).encode(&mut file_bytes[..page_size], 0, 1);
        branch.encode(&mut file_bytes[page_size..2 * page_size], 1, 1);
        Node::Leaf(Leaf::default()).encode(&mut file_bytes[2 * page_size..], 2, 1);
        put_u16(&mut file_bytes[2 * page_size..], HEADER_LEN, 4095);
        put_u16(&mut file_bytes[2 * page_size..], 26, 1);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pages");
        std::fs::write(&path, &file_bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let map = Mapping::new(&file, file_bytes.len() as u64, page_size, &path).unwrap();
        for pgid in 0..2u64 {
            let buf = map.raw(pgid, 1).unwrap();
            let view = PageView::new(buf, Header::read(buf)).unwrap();
            for probe in 0..200u32 {
                let probe = probe.to_be_bytes();
                assert_eq!(
                    view.search_prefetch(&probe, &map).unwrap(),
                    view.search(&probe).unwrap(),
                    "page {pgid}, key {probe:?}"
                );
            }
        }
        let buf = map.raw(2, 1).unwrap();
        let damaged = PageView::new(buf, Header::read(buf)).unwrap();
        assert!(damaged.search_prefetch(b"k", &map).is_err());
    }

    #[test]
    fn compare_agrees_with_slice_ordering() {
        let keys: [&[u8]; 11] = [
            b"",
            b"a",
            b"ab",
            b"abcdefgh",
            b"abcdefghi",
            b"abcdefgz",
            b"b",
            b"\xff\x00",
            b"abcdefghabcdefgh",
            b"abcdefghab",
            b"abcdefghac",
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
