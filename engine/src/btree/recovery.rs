//! Open-time recovery: find the newest commit that is entirely on disk.
//! Start at the newer valid meta page (a checkpoint), follow the chain of
//! commit records it leads to, then verify commits newest first until one
//! is intact (docs/format.md, "Recovery").

use super::db::bucket_link;
use super::error::{Error, Result};
use super::mapping::Mapping;
use super::meta::Meta;
use super::node::LeafVal;
use super::options::{valid_page_size, Options, MAX_PAGE_SIZE};
use super::page::PageRef;
use super::tree::MAX_DEPTH;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// What open found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Txid of the commit the file was opened at.
    pub txid: u64,
    /// A newer commit was found torn or unsynced and skipped, or a meta page
    /// was invalid (a torn checkpoint, or damage); says why.
    pub skipped_newer: Option<String>,
    /// The walk that rebuilds free space at open met a damaged page (named
    /// here); the file then reuses no free page until it is compacted.
    pub free_space_unknown: Option<String>,
    /// Commit records followed from the meta page to the commit opened.
    pub records_followed: u64,
}

/// The commit to open at, and the chain that leads to it.
pub(crate) struct Recovered {
    pub meta: Meta,
    pub map: Mapping,
    pub recovery: Recovery,
    /// The meta page the chain starts from.
    pub meta_slot: u64,
    /// Pages of the commit records from that meta up to `meta`.
    pub records: Vec<u64>,
}

/// Reads both metas and returns the newest commit reachable from them whose
/// every page is intact: the pages that commit wrote (those whose link
/// carries its txid) hash to the checksums their parents recorded.
pub(crate) fn recover(file: &File, opts: &Options, path: &Path) -> Result<Recovered> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = file.metadata().map_err(io)?.len();
    // Reads up to the largest page size; Meta::decode takes what it needs.
    let read = |at: u64| -> Vec<u8> {
        let mut buf = vec![0u8; MAX_PAGE_SIZE.min(len.saturating_sub(at) as usize)];
        match file.read_exact_at(&mut buf, at) {
            Ok(()) => buf,
            Err(_) => Vec::new(),
        }
    };
    let m0 = Meta::decode(&read(0), 0, path);
    let mut sizes = vec![opts.page_size];
    if let Ok(m) = &m0 {
        sizes.insert(0, m.page_size as usize);
    }
    sizes.extend((10..=15).map(|s| 1usize << s));
    let mut m1 = Err(Error::corrupt(1, "meta page 1 not found"));
    for ps in sizes {
        if !valid_page_size(ps) {
            continue;
        }
        m1 = Meta::decode(&read(ps as u64), 1, path);
        if matches!(&m1, Ok(m) if m.page_size as usize == ps) {
            break;
        }
    }
    let mut candidates: Vec<(u64, Meta)> = [(0, &m0), (1, &m1)]
        .into_iter()
        .filter_map(|(slot, m)| m.as_ref().ok().map(|m| (slot, *m)))
        .collect();
    candidates.sort_by_key(|(_, m)| std::cmp::Reverse(m.txid));
    if candidates.is_empty() {
        return Err(match (m0, m1) {
            (
                Err(e @ Error::NotABtree { .. }),
                Err(Error::NotABtree { .. }) | Err(Error::Corrupt { .. }),
            ) => e,
            (Err(e @ Error::UnsupportedVersion { .. }), _)
            | (_, Err(e @ Error::UnsupportedVersion { .. })) => e,
            (a, b) => Error::NoValidMeta {
                meta0: a.err().map(|e| e.to_string()).unwrap_or_default(),
                meta1: b.err().map(|e| e.to_string()).unwrap_or_default(),
            },
        });
    }
    // One meta page invalid: a checkpoint torn by a crash (the other one's
    // chain leads to its commit), or damage. Either way it is reported.
    let mut skipped: Option<String> = [&m0, &m1]
        .into_iter()
        .find_map(|m| m.as_ref().err())
        .map(|e| format!("meta page skipped: {e}"));
    let mut chains = Vec::new();
    // The newest commit any meta or record speaks of, damaged or not.
    let mut newest = 0;
    for (slot, checkpoint) in candidates {
        let ps = checkpoint.page_size as usize;
        let map = Mapping::new(file, len / ps as u64 * ps as u64, ps, path)?;
        let (chain, damaged) = follow_chain(&map, checkpoint);
        newest = newest.max(chain.last().expect("checkpoint").0.txid);
        if let Some(e) = damaged {
            newest = newest.max(chain.last().expect("checkpoint").0.txid + 1);
            skipped.get_or_insert(e.to_string());
        }
        chains.push((slot, map, chain));
    }
    let mut last_err = None;
    for (slot, map, chain) in chains {
        // Newest first. A crash leaves at most the newest commit incomplete,
        // and its predecessor intact (I1); going back further would need
        // damage a crash cannot cause, so it is reported instead.
        for i in (0..chain.len()).rev() {
            let meta = chain[i].0;
            if meta.txid + 1 < newest {
                break;
            }
            match verify_commit(&map, &meta) {
                Ok(()) => {
                    let records: Vec<u64> = chain[1..=i].iter().map(|c| c.1).collect();
                    let recovery = Recovery {
                        txid: meta.txid,
                        skipped_newer: skipped,
                        free_space_unknown: None,
                        records_followed: records.len() as u64,
                    };
                    return Ok(Recovered {
                        meta,
                        map,
                        recovery,
                        meta_slot: slot,
                        records,
                    });
                }
                Err(e) => {
                    let why = format!("commit {} is incomplete: {e}", meta.txid);
                    skipped.get_or_insert(why);
                    last_err = Some(e);
                }
            }
        }
    }
    Err(match last_err {
        Some(Error::Corrupt { pgid, what }) => Error::Corrupt {
            pgid,
            what: format!(
                "{what}; neither commit {newest} nor commit {} is intact ({})",
                newest.saturating_sub(1),
                skipped.unwrap_or_default()
            ),
        },
        Some(e) => e,
        None => Error::corrupt(0, skipped.unwrap_or_default()),
    })
}

/// The checkpoint and the commits its chain of records leads to, each with
/// its record's page, oldest first; and the error that ended the chain if
/// the next record is damaged rather than absent.
fn follow_chain(map: &Mapping, checkpoint: Meta) -> (Vec<(Meta, u64)>, Option<Error>) {
    let mut chain = vec![(checkpoint, 0)];
    loop {
        let last = chain.last().expect("starts with the checkpoint").0;
        let Ok(buf) = map.raw(last.next, 1) else {
            return (chain, None);
        };
        match Meta::decode_record(buf, last.next, &last) {
            Ok(Some(meta)) => chain.push((meta, last.next)),
            Ok(None) => return (chain, None),
            Err(e) => return (chain, Some(e)),
        }
    }
}

/// Verifies the pages written by `meta`'s commit, reached through links that
/// carry its txid. Pages of older commits were verified when those commits
/// were recovered or are verified on first read.
pub(crate) fn verify_commit(map: &Mapping, meta: &Meta) -> Result<()> {
    if meta.high_water > map.pages() {
        return Err(Error::corrupt(
            0,
            format!(
                "commit {} uses {} pages but the file has {}",
                meta.txid,
                meta.high_water,
                map.pages()
            ),
        ));
    }
    verify_links(map, &meta.catalog, meta.txid, true, 0)
}

fn verify_links(
    map: &Mapping,
    link: &PageRef,
    txid: u64,
    catalog: bool,
    depth: usize,
) -> Result<()> {
    if link.txid > txid {
        return Err(Error::corrupt(
            link.pgid,
            format!("linked from commit {txid} with a later txid {}", link.txid),
        ));
    }
    if link.txid != txid {
        return Ok(());
    }
    if depth > MAX_DEPTH {
        return Err(Error::corrupt(
            link.pgid,
            "tree deeper than any valid tree (cycle?)",
        ));
    }
    let view = map.node(link)?;
    for i in 0..view.count() {
        if !view.is_leaf() {
            let (_, child, _) = view.branch_entry(i)?;
            verify_links(map, &child, txid, catalog, depth + 1)?;
            continue;
        }
        match view.leaf_entry(i)?.1 {
            LeafVal::Inline(v) if catalog => {
                let root = bucket_link(v, link.pgid)?;
                verify_links(map, &root, txid, false, 0)?;
            }
            LeafVal::Overflow { link: o, len } if o.txid == txid => {
                map.overflow(&o, len)?;
            }
            _ => {}
        }
    }
    Ok(())
}
