//! Compaction: after `Compact(rev)` is applied, readers refuse revisions
//! below `rev` at once; this thread then walks the index in steps of
//! `compaction_batch_keys` keys, each step under the writer lock (so apply
//! waits at most one step, well under a millisecond for 1000 keys) and only
//! when no sealed batch is waiting for its commit (so apply never waits
//! behind a backlog of compaction deletes), removing
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
use super::rpc::CompactionStats;
use super::store::{lock_writer, Inner};
use std::time::{Duration, Instant};

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
            Ok(Some(stats)) => {
                let mut c = inner.compaction.lock();
                c.finished = c.finished.max(target);
                c.last = Some(stats);
                drop(c);
                inner.compaction_cv.notify_all();
            }
            Ok(None) => return, // closing: the next open resumes
            Err(e) => {
                tracing::error!(error = %e, revision = target, "compaction stopped");
                return;
            }
        }
    }
}

/// One walk over the index at `rev`; None if interrupted by close.
fn compact_pass(inner: &Inner, rev: i64) -> Result<Option<CompactionStats>> {
    let started = Instant::now();
    let mut from: Vec<u8> = Vec::new();
    let mut removed = Vec::new();
    let mut stats = CompactionStats {
        revision: rev,
        ..Default::default()
    };
    loop {
        if inner.is_closed() {
            return Ok(None);
        }
        // Deletes spread over the whole file make heavy commits: add more
        // only when the previous ones are out, so apply never waits for a
        // backlog of compaction batches.
        inner.wait_commit_backlog(0)?;
        let next = {
            let mut w = lock_writer(inner)?;
            let step = Instant::now();
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
            stats.removed += removed.len() as u64;
            if w.active.writes() >= inner.opts.batch_limit {
                inner.seal(&mut w);
            }
            let us = step.elapsed().as_micros() as u64;
            stats.steps += 1;
            stats.step_total_us += us;
            stats.step_max_us = stats.step_max_us.max(us);
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
    stats.elapsed_ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        revision = rev,
        removed = stats.removed,
        steps = stats.steps,
        step_max_us = stats.step_max_us,
        elapsed_ms = stats.elapsed_ms,
        "compaction finished"
    );
    Ok(Some(stats))
}
