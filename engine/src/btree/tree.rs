//! Copy-on-write updates of one B+tree (a bucket, or the catalog) inside a
//! write transaction. Nodes on the path of a change are read from their
//! pages into owned `Node`s (freeing the pages: the commit writes new ones);
//! splits and merges happen eagerly so every dirty node fits in one page and
//! the commit only has to write them out, children first.

use super::error::{Error, Result};
use super::freelist::Extent;
use super::mapping::{overflow_span, Mapping};
use super::node::{child_index, split_points, BranchEntry, Child, LeafEntry, Node, Val};
use super::page::HEADER_LEN;

/// Deepest tree accepted: far above any real tree (fan-out ≥ 4), low enough
/// that a cycle in a corrupted file is an error instead of a hang.
pub const MAX_DEPTH: usize = 64;

/// What tree operations need from their transaction.
pub struct Ctx<'a> {
    pub map: &'a Mapping,
    pub freed: &'a mut Vec<Extent>,
    pub page_size: usize,
}

impl Ctx<'_> {
    fn capacity(&self) -> usize {
        self.page_size
    }

    /// A node smaller than this is merged with a sibling.
    fn min_fill(&self) -> usize {
        self.page_size / 4
    }

    fn free_val(&mut self, val: &Val) {
        if let Val::Overflow { link, len } = val {
            self.freed.push(Extent {
                start: link.pgid,
                len: overflow_span(*len as usize, self.page_size),
            });
        }
    }
}

/// Makes `child` dirty: reads its page into an owned node and frees the page.
pub fn materialize<'c>(ctx: &mut Ctx<'_>, child: &'c mut Child) -> Result<&'c mut Node> {
    if let Child::Clean(link) = *child {
        let view = ctx.map.node(&link)?;
        let node = Node::decode(&view)?;
        ctx.freed.push(Extent {
            start: link.pgid,
            len: 1,
        });
        *child = Child::Dirty(Box::new(node));
    }
    match child {
        Child::Dirty(node) => Ok(node),
        Child::Clean(_) => unreachable!("materialized above"),
    }
}

fn dirty(child: &mut Child) -> &mut Node {
    match child {
        Child::Dirty(node) => node,
        Child::Clean(_) => unreachable!("only dirty children are rebalanced"),
    }
}

/// Inserts or replaces `key`.
pub fn insert(ctx: &mut Ctx<'_>, root: &mut Child, key: &[u8], val: Val) -> Result<()> {
    let split = insert_rec(ctx, root, key, val, true, 0)?;
    if split.is_empty() {
        return Ok(());
    }
    let old = std::mem::replace(root, Child::Dirty(Box::new(Node::empty_leaf())));
    let first = match &old {
        Child::Dirty(node) => node.first_key().to_vec(),
        Child::Clean(_) => unreachable!("a split root is dirty"),
    };
    let mut entries = vec![BranchEntry {
        key: first,
        child: old,
        deep: true,
    }];
    entries.extend(split.into_iter().map(|(key, node)| BranchEntry {
        key,
        child: Child::Dirty(Box::new(node)),
        deep: true,
    }));
    *root = Child::Dirty(Box::new(Node::Branch(entries)));
    Ok(())
}

type Split = Vec<(Vec<u8>, Node)>;

fn insert_rec(
    ctx: &mut Ctx<'_>,
    child: &mut Child,
    key: &[u8],
    val: Val,
    rightmost: bool,
    depth: usize,
) -> Result<Split> {
    if depth > MAX_DEPTH {
        return Err(Error::corrupt(
            0,
            "tree deeper than any valid tree (cycle?)",
        ));
    }
    let capacity = ctx.capacity();
    let node = materialize(ctx, child)?;
    match node {
        Node::Leaf(entries) => {
            let append = match entries.binary_search_by(|e| e.key.as_slice().cmp(key)) {
                Ok(i) => {
                    let old = std::mem::replace(&mut entries[i].val, val);
                    ctx.free_val(&old);
                    false
                }
                Err(i) => {
                    entries.insert(
                        i,
                        LeafEntry {
                            key: key.to_vec(),
                            val,
                        },
                    );
                    rightmost && i + 1 == entries.len()
                }
            };
            if node.size() <= capacity {
                return Ok(Vec::new());
            }
            Ok(split_node(node, capacity, append))
        }
        Node::Branch(entries) => {
            let i = child_index(entries.binary_search_by(|e| e.key.as_slice().cmp(key)));
            if key < entries[i].key.as_slice() {
                // Only the first child can receive a key below its bound.
                entries[i].key = key.to_vec();
            }
            let child_rightmost = rightmost && i + 1 == entries.len();
            let split = insert_rec(
                ctx,
                &mut entries[i].child,
                key,
                val,
                child_rightmost,
                depth + 1,
            )?;
            if split.is_empty() {
                return Ok(Vec::new());
            }
            let added = split.len();
            for (j, (key, node)) in split.into_iter().enumerate() {
                entries.insert(
                    i + 1 + j,
                    BranchEntry {
                        key,
                        child: Child::Dirty(Box::new(node)),
                        deep: true,
                    },
                );
            }
            if node.size() <= capacity {
                return Ok(Vec::new());
            }
            let append = child_rightmost && added > 0;
            Ok(split_node(node, capacity, append))
        }
    }
}

/// Splits an overfull node in place; returns the new right siblings with
/// their lower bounds.
fn split_node(node: &mut Node, page_size: usize, append: bool) -> Split {
    let capacity = page_size - HEADER_LEN;
    let mut out = Vec::new();
    match node {
        Node::Leaf(entries) => {
            let sizes: Vec<usize> = entries.iter().map(LeafEntry::size).collect();
            for at in split_points(&sizes, capacity, append).into_iter().rev() {
                let right = entries.split_off(at);
                out.push((right[0].key.clone(), Node::Leaf(right)));
            }
        }
        Node::Branch(entries) => {
            let sizes: Vec<usize> = entries.iter().map(BranchEntry::size).collect();
            for at in split_points(&sizes, capacity, append).into_iter().rev() {
                let right = entries.split_off(at);
                out.push((right[0].key.clone(), Node::Branch(right)));
            }
        }
    }
    out.reverse();
    assert!(
        node.size() <= page_size,
        "left part of a split overflows its page"
    );
    for (_, n) in &out {
        assert!(
            n.size() <= page_size,
            "right part of a split overflows its page"
        );
    }
    out
}

/// Removes `key`, which the caller has seen to be present (so a miss never
/// copies pages). Underfull nodes are merged with a sibling on the way up.
pub fn delete(ctx: &mut Ctx<'_>, root: &mut Child, key: &[u8]) -> Result<()> {
    delete_rec(ctx, root, key, 0)?;
    // Collapse a root branch with a single child; an empty root branch
    // becomes an empty leaf.
    while let Child::Dirty(node) = root {
        match node.as_mut() {
            Node::Branch(entries) if entries.len() == 1 => {
                let only = entries.pop().expect("one entry").child;
                *root = only;
            }
            Node::Branch(entries) if entries.is_empty() => {
                *root = Child::Dirty(Box::new(Node::empty_leaf()));
            }
            _ => break,
        }
    }
    Ok(())
}

fn delete_rec(ctx: &mut Ctx<'_>, child: &mut Child, key: &[u8], depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::corrupt(
            0,
            "tree deeper than any valid tree (cycle?)",
        ));
    }
    let node = materialize(ctx, child)?;
    match node {
        Node::Leaf(entries) => {
            if let Ok(i) = entries.binary_search_by(|e| e.key.as_slice().cmp(key)) {
                let removed = entries.remove(i);
                ctx.free_val(&removed.val);
            }
            Ok(())
        }
        Node::Branch(entries) => {
            let i = child_index(entries.binary_search_by(|e| e.key.as_slice().cmp(key)));
            delete_rec(ctx, &mut entries[i].child, key, depth + 1)?;
            rebalance(ctx, entries, i)
        }
    }
}

/// After a delete below `entries[i]`: drop it if empty, merge it with a
/// sibling if underfull (re-splitting evenly if the merge overflows).
fn rebalance(ctx: &mut Ctx<'_>, entries: &mut Vec<BranchEntry>, i: usize) -> Result<()> {
    let child = dirty(&mut entries[i].child);
    if child.len() == 0 {
        entries.remove(i);
        return Ok(());
    }
    if child.size() >= ctx.min_fill() || entries.len() < 2 {
        return Ok(());
    }
    let (l, r) = if i > 0 { (i - 1, i) } else { (i, i + 1) };
    materialize(ctx, &mut entries[l].child)?;
    materialize(ctx, &mut entries[r].child)?;
    let right = entries.remove(r);
    let Child::Dirty(right) = right.child else {
        unreachable!("materialized above")
    };
    let left = dirty(&mut entries[l].child);
    match (left, *right) {
        (Node::Leaf(a), Node::Leaf(b)) => a.extend(b),
        (Node::Branch(a), Node::Branch(b)) => a.extend(b),
        _ => {
            return Err(Error::corrupt(
                0,
                "siblings of different kinds (leaves at unequal depths)",
            ))
        }
    }
    let left = dirty(&mut entries[l].child);
    if left.size() > ctx.page_size {
        let split = split_node(left, ctx.page_size, false);
        for (j, (key, node)) in split.into_iter().enumerate() {
            entries.insert(
                l + 1 + j,
                BranchEntry {
                    key,
                    child: Child::Dirty(Box::new(node)),
                    deep: true,
                },
            );
        }
    }
    Ok(())
}

/// Frees every page of a tree (bucket deletion).
pub fn free_all(ctx: &mut Ctx<'_>, child: Child, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::corrupt(
            0,
            "tree deeper than any valid tree (cycle?)",
        ));
    }
    let node = match child {
        Child::Clean(link) => {
            let view = ctx.map.node(&link)?;
            let node = Node::decode(&view)?;
            ctx.freed.push(Extent {
                start: link.pgid,
                len: 1,
            });
            node
        }
        Child::Dirty(node) => *node,
    };
    match node {
        Node::Leaf(entries) => {
            for e in &entries {
                ctx.free_val(&e.val);
            }
        }
        Node::Branch(entries) => {
            for e in entries {
                free_all(ctx, e.child, depth + 1)?;
            }
        }
    }
    Ok(())
}
