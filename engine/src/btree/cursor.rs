//! Cursors: ordered iteration over one tree with seek / first / last / next
//! / prev. A cursor walks pages of the mapping and, inside a write
//! transaction, the dirty nodes that replace some of them, so the same code
//! serves both kinds of transaction. Keys and values are borrowed from the
//! transaction: zero-copy.

use super::error::{Error, Result};
use super::mapping::Mapping;
use super::node::{child_index, Child, LeafVal, Node, PageView};
use super::tree::MAX_DEPTH;
use std::ops::Bound;

/// A node as a reader sees it: a page in the file or a dirty node in memory.
#[derive(Clone, Copy)]
pub enum View<'a> {
    Page(PageView<'a>),
    Node(&'a Node),
}

impl<'a> View<'a> {
    pub fn open(map: &'a Mapping, child: &'a Child) -> Result<View<'a>> {
        match child {
            Child::Clean(link) => Ok(View::Page(map.node(link)?)),
            Child::Dirty(node) => Ok(View::Node(node)),
        }
    }

    pub fn is_leaf(&self) -> bool {
        match self {
            View::Page(p) => p.is_leaf(),
            View::Node(n) => matches!(n, Node::Leaf(_)),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            View::Page(p) => p.count(),
            View::Node(n) => n.len(),
        }
    }

    pub fn key(&self, i: usize) -> Result<&'a [u8]> {
        match *self {
            View::Page(p) => p.key(i),
            View::Node(Node::Leaf(l)) => Ok(l.key(i)),
            View::Node(Node::Branch(b)) => Ok(b.key(i)),
        }
    }

    pub fn search(&self, key: &[u8]) -> Result<std::result::Result<usize, usize>> {
        match *self {
            View::Page(p) => p.search(key),
            View::Node(Node::Leaf(l)) => Ok(l.search(key)),
            View::Node(Node::Branch(b)) => Ok(b.search(key)),
        }
    }

    /// `search` that also prefetches the pages a descent may visit next.
    #[inline]
    pub fn search_prefetch(
        &self,
        key: &[u8],
        map: &Mapping,
    ) -> Result<std::result::Result<usize, usize>> {
        match *self {
            View::Page(p) => p.search_prefetch(key, map),
            _ => self.search(key),
        }
    }

    pub fn child(&self, map: &'a Mapping, i: usize) -> Result<View<'a>> {
        match *self {
            View::Page(p) => {
                let (_, link, _) = p.branch_entry(i)?;
                Ok(View::Page(map.node(&link)?))
            }
            View::Node(Node::Branch(b)) => View::open(map, &b.entries[i].child),
            View::Node(Node::Leaf(_)) => unreachable!("child of a leaf"),
        }
    }

    pub fn value(&self, map: &'a Mapping, i: usize) -> Result<&'a [u8]> {
        match *self {
            View::Page(p) => match p.leaf_entry(i)?.1 {
                LeafVal::Inline(v) => Ok(v),
                LeafVal::Overflow { link, len } => map.overflow(&link, len),
            },
            View::Node(Node::Leaf(l)) => match l.value(i) {
                LeafVal::Inline(v) => Ok(v),
                LeafVal::Overflow { link, len } => map.overflow(&link, len),
            },
            View::Node(Node::Branch(_)) => unreachable!("value of a branch"),
        }
    }
}

/// Point lookup.
pub fn get<'a>(map: &'a Mapping, root: View<'a>, key: &[u8]) -> Result<Option<&'a [u8]>> {
    let mut view = root;
    for _ in 0..MAX_DEPTH {
        let found = view.search_prefetch(key, map)?;
        if view.is_leaf() {
            return match found {
                Ok(i) => Ok(Some(view.value(map, i)?)),
                Err(_) => Ok(None),
            };
        }
        if view.len() == 0 {
            return Err(corrupt_empty_branch(&view));
        }
        view = view.child(map, child_index(found))?;
    }
    Err(Error::corrupt(
        0,
        "tree deeper than any valid tree (cycle?)",
    ))
}

fn corrupt_empty_branch(view: &View<'_>) -> Error {
    let pgid = match view {
        View::Page(p) => p.header.pgid,
        View::Node(_) => 0,
    };
    Error::corrupt(pgid, "branch without children")
}

pub type Entry<'a> = (&'a [u8], &'a [u8]);

/// A position in a tree: the path of (node, index) from the root.
pub struct Cursor<'a> {
    map: &'a Mapping,
    root: View<'a>,
    stack: Vec<(View<'a>, usize)>,
}

impl<'a> Cursor<'a> {
    pub fn new(map: &'a Mapping, root: View<'a>) -> Self {
        Cursor {
            map,
            root,
            stack: Vec::with_capacity(8),
        }
    }

    /// The entry under the cursor, if it points at one.
    pub fn current(&self) -> Result<Option<Entry<'a>>> {
        match self.stack.last() {
            Some(&(view, i)) if view.is_leaf() && i < view.len() => {
                Ok(Some((view.key(i)?, view.value(self.map, i)?)))
            }
            _ => Ok(None),
        }
    }

    fn push(&mut self, view: View<'a>, i: usize) -> Result<()> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(Error::corrupt(
                0,
                "tree deeper than any valid tree (cycle?)",
            ));
        }
        self.stack.push((view, i));
        Ok(())
    }

    /// Descends from `view` to its first (or last) leaf entry.
    fn descend(&mut self, mut view: View<'a>, last: bool) -> Result<()> {
        loop {
            let n = view.len();
            let i = if last { n.saturating_sub(1) } else { 0 };
            self.push(view, i)?;
            if view.is_leaf() {
                return Ok(());
            }
            if n == 0 {
                return Err(corrupt_empty_branch(&view));
            }
            view = view.child(self.map, i)?;
        }
    }

    pub fn first(&mut self) -> Result<Option<Entry<'a>>> {
        self.stack.clear();
        self.descend(self.root, false)?;
        self.skip_empty_forward()
    }

    pub fn last(&mut self) -> Result<Option<Entry<'a>>> {
        self.stack.clear();
        self.descend(self.root, true)?;
        self.current()
    }

    /// Positions at the first entry with a key ≥ `key`.
    pub fn seek(&mut self, key: &[u8]) -> Result<Option<Entry<'a>>> {
        self.stack.clear();
        let mut view = self.root;
        loop {
            let found = view.search_prefetch(key, self.map)?;
            if view.is_leaf() {
                let i = match found {
                    Ok(i) | Err(i) => i,
                };
                self.push(view, i)?;
                self.prefetch_next_leaf(false);
                return self.skip_empty_forward();
            }
            if view.len() == 0 {
                return Err(corrupt_empty_branch(&view));
            }
            let i = child_index(found);
            self.push(view, i)?;
            view = view.child(self.map, i)?;
        }
    }

    /// Called on arriving at a leaf going forward: prefetches the next
    /// sibling leaf (under the same parent) so that a scan's step to it
    /// does not start with cold misses. After a seek only its first line
    /// (the scan may stop in this leaf); once a scan has crossed into a
    /// second leaf, the whole page, which it will most likely read. The
    /// last leaf under a parent gets no prefetch: one cold step in a
    /// parent's ~50 leaves.
    fn prefetch_next_leaf(&self, whole: bool) {
        let parent = self.stack.len().checked_sub(2).map(|at| self.stack[at]);
        let Some((View::Page(parent), i)) = parent else {
            return;
        };
        if i + 1 >= parent.count() {
            return;
        }
        if let Ok((_, link, _)) = parent.branch_entry(i + 1) {
            if whole {
                self.map.prefetch_page(link.pgid);
            } else {
                self.map.prefetch(link.pgid);
            }
        }
    }

    /// If the cursor sits past the end of a leaf, moves to the next leaf.
    fn skip_empty_forward(&mut self) -> Result<Option<Entry<'a>>> {
        match self.stack.last() {
            Some(&(view, i)) if i >= view.len() => self.advance(),
            Some(_) => self.current(),
            None => Ok(None),
        }
    }

    /// Moves to the first entry of the next leaf.
    fn advance(&mut self) -> Result<Option<Entry<'a>>> {
        self.stack.pop();
        while let Some((view, i)) = self.stack.pop() {
            if i + 1 < view.len() {
                self.push(view, i + 1)?;
                let child = view.child(self.map, i + 1)?;
                self.descend(child, false)?;
                self.prefetch_next_leaf(true);
                return self.skip_empty_forward();
            }
        }
        Ok(None)
    }

    /// Moves to the next entry. (Not `Iterator::next`: it can fail; use
    /// `range` for an iterator.)
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Entry<'a>>> {
        match self.stack.last_mut() {
            None => Ok(None),
            Some((view, i)) => {
                *i += 1;
                if *i < view.len() {
                    self.current()
                } else {
                    self.advance()
                }
            }
        }
    }

    pub fn prev(&mut self) -> Result<Option<Entry<'a>>> {
        match self.stack.last_mut() {
            None => Ok(None),
            Some((_, i)) if *i > 0 => {
                *i -= 1;
                self.current()
            }
            Some(_) => {
                self.stack.pop();
                while let Some((view, i)) = self.stack.pop() {
                    if i > 0 {
                        self.push(view, i - 1)?;
                        let child = view.child(self.map, i - 1)?;
                        self.descend(child, true)?;
                        return self.current();
                    }
                }
                Ok(None)
            }
        }
    }

    /// Iterates `[start, end)` in key order.
    pub fn range(self, start: Bound<&[u8]>, end: Bound<Vec<u8>>) -> Range<'a> {
        Range {
            cursor: self,
            start: match start {
                Bound::Included(k) => Bound::Included(k.to_vec()),
                Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
                Bound::Unbounded => Bound::Unbounded,
            },
            end,
            started: false,
            done: false,
        }
    }
}

/// Iterator over a key range; yields errors (e.g. a corrupt page) in place.
pub struct Range<'a> {
    cursor: Cursor<'a>,
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    started: bool,
    done: bool,
}

impl<'a> Range<'a> {
    fn step(&mut self) -> Result<Option<Entry<'a>>> {
        let entry = if self.started {
            self.cursor.next()?
        } else {
            self.started = true;
            match &self.start {
                Bound::Unbounded => self.cursor.first()?,
                Bound::Included(k) => self.cursor.seek(k)?,
                Bound::Excluded(k) => {
                    let k = k.clone();
                    match self.cursor.seek(&k)? {
                        Some((key, _)) if key == k.as_slice() => self.cursor.next()?,
                        other => other,
                    }
                }
            }
        };
        Ok(entry.filter(|(k, _)| match &self.end {
            Bound::Unbounded => true,
            Bound::Included(e) => *k <= e.as_slice(),
            Bound::Excluded(e) => *k < e.as_slice(),
        }))
    }
}

impl<'a> Iterator for Range<'a> {
    type Item = Result<Entry<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(entry)) => Some(Ok(entry)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
