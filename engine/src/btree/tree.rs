//! Copy-on-write updates of one B+tree (a bucket, or the catalog) inside a
//! write transaction. Nodes on the path of a change are read from their
//! pages into owned `Node`s (freeing the pages: the commit writes new ones);
//! splits and merges happen eagerly so every dirty node fits in one page and
//! the commit only has to write them out, children first.

use super::error::{Error, Result};
use super::freelist::Extent;
use super::mapping::{overflow_span, Mapping};
use super::node::{child_index, Branch, Child, Node, Stored, Val};
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

    fn free_val(&mut self, val: &Stored) {
        if let Some((link, len)) = val.overflow() {
            self.freed.push(Extent {
                start: link.pgid,
                len: overflow_span(len as usize, self.page_size),
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

fn too_deep() -> Error {
    Error::corrupt(0, "tree deeper than any valid tree (cycle?)")
}

/// Inserts or replaces `key`.
pub fn insert(ctx: &mut Ctx<'_>, root: &mut Child, key: &[u8], val: Val<'_>) -> Result<()> {
    let split = insert_rec(ctx, root, key, val, true, 0)?;
    if split.is_empty() {
        return Ok(());
    }
    let old = std::mem::replace(root, Child::Dirty(Box::new(Node::empty_leaf())));
    let first = match &old {
        Child::Dirty(node) => node.first_key().to_vec(),
        Child::Clean(_) => unreachable!("a split root is dirty"),
    };
    let mut children = vec![(first, old)];
    children.extend(
        split
            .into_iter()
            .map(|(key, node)| (key, Child::Dirty(Box::new(node)))),
    );
    *root = Child::Dirty(Box::new(Node::branch(children)));
    Ok(())
}

type Split = Vec<(Vec<u8>, Node)>;

fn insert_rec(
    ctx: &mut Ctx<'_>,
    child: &mut Child,
    key: &[u8],
    val: Val<'_>,
    rightmost: bool,
    depth: usize,
) -> Result<Split> {
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    let capacity = ctx.capacity();
    let node = materialize(ctx, child)?;
    match node {
        Node::Leaf(leaf) => {
            let append = match leaf.search(key) {
                Ok(i) => {
                    let old = leaf.replace(i, val);
                    ctx.free_val(&old);
                    false
                }
                Err(i) => {
                    leaf.insert(i, key, val);
                    rightmost && i + 1 == leaf.len()
                }
            };
            if node.size() <= capacity {
                return Ok(Vec::new());
            }
            Ok(split_node(node, capacity, append))
        }
        Node::Branch(branch) => {
            let i = child_index(branch.search(key));
            if key < branch.key(i) {
                // Only the first child can receive a key below its bound.
                branch.set_key(i, key);
            }
            let child_rightmost = rightmost && i + 1 == branch.len();
            let split = insert_rec(
                ctx,
                &mut branch.entries[i].child,
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
                branch.insert(i + 1 + j, &key, Child::Dirty(Box::new(node)));
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
    let out = node.split(page_size - HEADER_LEN, append);
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
            Node::Branch(b) if b.len() == 1 => {
                let only = b.remove(0).child;
                *root = only;
            }
            Node::Branch(b) if b.len() == 0 => {
                *root = Child::Dirty(Box::new(Node::empty_leaf()));
            }
            _ => break,
        }
    }
    Ok(())
}

fn delete_rec(ctx: &mut Ctx<'_>, child: &mut Child, key: &[u8], depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    let node = materialize(ctx, child)?;
    match node {
        Node::Leaf(leaf) => {
            if let Ok(i) = leaf.search(key) {
                let removed = leaf.remove(i);
                ctx.free_val(&removed);
            }
            Ok(())
        }
        Node::Branch(branch) => {
            let i = child_index(branch.search(key));
            delete_rec(ctx, &mut branch.entries[i].child, key, depth + 1)?;
            rebalance(ctx, branch, i)
        }
    }
}

/// After a delete below child `i`: drop it if empty, merge it with a
/// sibling if underfull (re-splitting evenly if the merge overflows).
fn rebalance(ctx: &mut Ctx<'_>, branch: &mut Branch, i: usize) -> Result<()> {
    let child = dirty(&mut branch.entries[i].child);
    if child.len() == 0 {
        branch.remove(i);
        return Ok(());
    }
    if child.size() >= ctx.min_fill() || branch.len() < 2 {
        return Ok(());
    }
    let (l, r) = if i > 0 { (i - 1, i) } else { (i, i + 1) };
    materialize(ctx, &mut branch.entries[l].child)?;
    materialize(ctx, &mut branch.entries[r].child)?;
    let right = branch.remove(r);
    let Child::Dirty(right) = right.child else {
        unreachable!("materialized above")
    };
    let left = dirty(&mut branch.entries[l].child);
    if left.append(*right).is_err() {
        return Err(Error::corrupt(
            0,
            "siblings of different kinds (leaves at unequal depths)",
        ));
    }
    if left.size() > ctx.page_size {
        let split = split_node(left, ctx.page_size, false);
        for (j, (key, node)) in split.into_iter().enumerate() {
            branch.insert(l + 1 + j, &key, Child::Dirty(Box::new(node)));
        }
    }
    Ok(())
}

/// Frees every page of a tree (bucket deletion).
pub fn free_all(ctx: &mut Ctx<'_>, child: Child, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(too_deep());
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
        Node::Leaf(leaf) => {
            for v in leaf.values() {
                ctx.free_val(v);
            }
        }
        Node::Branch(branch) => {
            for e in branch.entries {
                free_all(ctx, e.child, depth + 1)?;
            }
        }
    }
    Ok(())
}
