//! Compaction: after `Compact(rev)` is applied, readers refuse revisions
//! below `rev` at once; this thread then walks the index in steps of
//! `compaction_batch_keys` keys, each step under the writer lock (so apply
//! waits at most one step, well under a millisecond for 1000 keys), removing
//! per key every revision ≤ `rev` but the newest (and that one too if it is
//! a tombstone), and queueing the backend deletes of exactly those
//! revisions into the write buffer, which commits them with the normal
//! batches. When the walk is done and committed, the meta bucket records the
//! compaction as finished; a restart before that repeats it (deleting what
//! is left is idempotent).

use super::buckets::{u64_value, KEY_BUCKET, META_BUCKET, META_FINISHED_COMPACT};
use super::buffer::BackendOp;
use super::error::Result;
use super::revision::RevKey;
use super::store::{lock_writer, Inner};
use std::time::Duration;

pub(crate) fn compaction_loop(inner: &Inner) {
    loop {
        let target = {
            let mut c = inner.compaction.lock();
            loop {
                if inner.is_closed() {
                    return;
                }
                if c.scheduled > c.finished {
                    break c.scheduled;
                }
                inner
                    .compaction_cv
                    .wait_for(&mut c, Duration::from_millis(500));
            }
        };
        match compact_pass(inner, target) {
            Ok(true) => {
                let mut c = inner.compaction.lock();
                c.finished = c.finished.max(target);
                drop(c);
                inner.compaction_cv.notify_all();
            }
            Ok(false) => return, // closing: the next open resumes
            Err(e) => {
                tracing::error!(error = %e, revision = target, "compaction stopped");
                return;
            }
        }
    }
}

/// One walk over the index at `rev`; false if interrupted by close.
fn compact_pass(inner: &Inner, rev: i64) -> Result<bool> {
    let started = std::time::Instant::now();
    let mut from: Vec<u8> = Vec::new();
    let mut removed = Vec::new();
    let mut total = 0usize;
    loop {
        if inner.is_closed() {
            return Ok(false);
        }
        let next = {
            let mut w = lock_writer(inner)?;
            removed.clear();
            let next = inner.index.writer().compact(
                rev,
                &from,
                inner.opts.compaction_batch_keys,
                &mut removed,
            );
            for e in &removed {
                w.active.push_op(BackendOp::Delete {
                    bucket: KEY_BUCKET,
                    key: RevKey::new(e.rev, e.tombstone).as_bytes().to_vec(),
                });
            }
            total += removed.len();
            inner.after_write(&mut w)?;
            next
        };
        match next {
            Some(k) => from = k,
            None => break,
        }
        if !inner.opts.compaction_batch_pause.is_zero() {
            std::thread::sleep(inner.opts.compaction_batch_pause);
        }
    }
    let seq = {
        let mut w = lock_writer(inner)?;
        w.active.push_op(BackendOp::Put {
            bucket: META_BUCKET,
            key: META_FINISHED_COMPACT.to_vec(),
            value: u64_value(rev as u64),
        });
        inner.seal(&mut w)
    };
    inner.wait_committed(seq)?;
    tracing::info!(
        revision = rev,
        removed = total,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "compaction finished"
    );
    Ok(true)
}
