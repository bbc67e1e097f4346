//! The apply entry point: executes one raft-committed command at its raft
//! index, exactly once. Indexes at or below the consistent index are
//! skipped (raft replays the log tail after a restart); every other index
//! is consumed, also by a command that fails with a client error, so that
//! every replica advances through the same states.

use super::buckets::{u64_value, LEASE_BUCKET, META_BUCKET, META_SCHEDULED_COMPACT, SERVER_BUCKET};
use super::buffer::BackendOp;
use super::command::{Command, Response};
use super::error::{Error, Result};
use super::lease::lease_key;
use super::rpc::*;
use super::store::{lock_writer, Inner, Store, WriterState};
use super::txn::{validate_command, WriteTxn};

impl Store {
    /// Applies the command committed at `raft_index`. Returns Ok(None) if
    /// the index was applied before (at or below the consistent index).
    /// An error other than a fatal one (`Error::is_fatal`) is the command's
    /// answer; the index is consumed either way.
    pub fn apply(&self, raft_index: u64, cmd: &Command) -> Result<Option<Response>> {
        apply(&self.inner, raft_index, cmd)
    }

    /// `apply` for a command still in its encoded form; bytes that do not
    /// decode consume the index and return `Error::Decode`.
    pub fn apply_encoded(&self, raft_index: u64, bytes: &[u8]) -> Result<Option<Response>> {
        match Command::decode(bytes) {
            Ok(cmd) => self.apply(raft_index, &cmd),
            Err(e) => {
                self.advance_index(raft_index)?;
                Err(e.into())
            }
        }
    }

    /// Records `raft_index` as applied without a command (raft entries that
    /// carry none: empty entries, configuration changes).
    pub fn advance_index(&self, raft_index: u64) -> Result<()> {
        let mut w = lock_writer(&self.inner)?;
        if raft_index > w.consistent_index {
            self.inner.set_consistent_index(&mut w, raft_index);
        }
        Ok(())
    }

    /// Records the embedding server's own state as the effect of the entry
    /// committed at `raft_index`: each `(key, Some(value))` is written to
    /// the server bucket, each `(key, None)` removed, in the batch commit
    /// that holds the entry, so a restart or a snapshot sees them exactly
    /// as of their index. Returns false, changing nothing, when the index
    /// was applied before (at or below the consistent index).
    pub fn apply_server_state(
        &self,
        raft_index: u64,
        changes: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> Result<bool> {
        let mut w = lock_writer(&self.inner)?;
        if raft_index <= w.consistent_index {
            return Ok(false);
        }
        for (key, value) in changes {
            let op = match value {
                Some(value) => BackendOp::Put {
                    bucket: SERVER_BUCKET,
                    key: key.clone(),
                    value: value.clone(),
                },
                None => BackendOp::Delete {
                    bucket: SERVER_BUCKET,
                    key: key.clone(),
                },
            };
            w.active.push_op(op);
        }
        self.inner.set_consistent_index(&mut w, raft_index);
        self.inner.after_write(&mut w)?;
        Ok(true)
    }

    /// The server bucket as of the backend's latest commit (read it right
    /// after `open` or `restore_from_snapshot`, before applying anything).
    pub fn server_state(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let snap = self.inner.backend.read()?;
        let mut out = Vec::new();
        snap.range(SERVER_BUCKET, &[], None, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        })?;
        Ok(out)
    }

    /// Applies `cmd` at the next index after the consistent index (the
    /// embedded store, which has no raft log: ferrobench's in-process
    /// target, tests, tools).
    pub fn propose(&self, cmd: &Command) -> Result<Response> {
        propose(&self.inner, cmd)
    }

    pub fn put(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Result<PutResponse> {
        self.put_request(PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })
    }

    pub fn put_request(&self, req: PutRequest) -> Result<PutResponse> {
        match self.propose(&Command::Put(req))? {
            Response::Put(r) => Ok(r),
            other => unreachable!("put answered {other:?}"),
        }
    }

    pub fn delete_range(&self, req: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        match self.propose(&Command::DeleteRange(req))? {
            Response::DeleteRange(r) => Ok(r),
            other => unreachable!("delete answered {other:?}"),
        }
    }

    pub fn delete(&self, key: impl Into<Vec<u8>>) -> Result<DeleteRangeResponse> {
        self.delete_range(DeleteRangeRequest {
            key: key.into(),
            ..Default::default()
        })
    }

    pub fn txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        match self.propose(&Command::Txn(req))? {
            Response::Txn(r) => Ok(r),
            other => unreachable!("txn answered {other:?}"),
        }
    }

    /// Compacts at `revision`; with `physical`, also waits until the
    /// removal is committed.
    pub fn compact(&self, revision: i64, physical: bool) -> Result<CompactionResponse> {
        let r = match self.propose(&Command::Compact(CompactionRequest { revision, physical }))? {
            Response::Compact(r) => r,
            other => unreachable!("compact answered {other:?}"),
        };
        if physical {
            self.wait_compaction(revision)?;
        }
        Ok(r)
    }

    /// Grants a lease; `id` 0 picks an unused one.
    pub fn lease_grant(&self, ttl: i64, id: i64) -> Result<LeaseGrantResponse> {
        let id = if id == 0 {
            self.inner.fresh_lease_id()
        } else {
            id
        };
        match self.propose(&Command::LeaseGrant(LeaseGrantRequest { ttl, id }))? {
            Response::LeaseGrant(r) => Ok(r),
            other => unreachable!("lease grant answered {other:?}"),
        }
    }

    pub fn lease_revoke(&self, id: i64) -> Result<LeaseRevokeResponse> {
        match self.propose(&Command::LeaseRevoke(LeaseRevokeRequest { id }))? {
            Response::LeaseRevoke(r) => Ok(r),
            other => unreachable!("lease revoke answered {other:?}"),
        }
    }
}

pub(crate) fn apply(inner: &Inner, raft_index: u64, cmd: &Command) -> Result<Option<Response>> {
    let mut w = lock_writer(inner)?;
    if raft_index <= w.consistent_index {
        return Ok(None);
    }
    let result = execute(inner, &mut w, cmd);
    inner.set_consistent_index(&mut w, raft_index);
    inner.after_write(&mut w)?;
    result.map(Some)
}

pub(crate) fn propose(inner: &Inner, cmd: &Command) -> Result<Response> {
    let mut w = lock_writer(inner)?;
    let index = w.consistent_index + 1;
    let result = execute(inner, &mut w, cmd);
    inner.set_consistent_index(&mut w, index);
    inner.after_write(&mut w)?;
    result
}

fn execute(inner: &Inner, w: &mut WriterState, cmd: &Command) -> Result<Response> {
    validate_command(cmd)?;
    match cmd {
        Command::Put(p) => write_txn(inner, w, |t| {
            // A plain put checks the lease first (etcd applierV3backend.Put);
            // inside a txn, checkRequestPut checks ignore_* first.
            if p.lease != 0 && !t.lessor.contains(p.lease) {
                return Err(Error::LeaseNotFound);
            }
            t.check_put(p)?;
            t.put(p).map(Response::Put)
        }),
        Command::DeleteRange(d) => {
            write_txn(inner, w, |t| t.delete_range(d).map(Response::DeleteRange))
        }
        Command::Txn(r) => write_txn(inner, w, |t| t.txn(r).map(Response::Txn)),
        Command::Compact(c) => compact(inner, w, c),
        Command::LeaseGrant(g) => lease_grant(inner, w, g),
        Command::LeaseRevoke(r) => write_txn(inner, w, |t| {
            let keys = t.lessor.keys_of(r.id)?;
            for k in &keys {
                t.delete_key(k)?;
            }
            t.lessor.remove(r.id)?;
            w_lease_delete(t, r.id);
            Ok(Response::LeaseRevoke(LeaseRevokeResponse {
                header: ResponseHeader {
                    revision: t.end_rev(),
                },
            }))
        }),
        Command::LeaseCheckpoint(c) => {
            let now = inner.opts.clock.now();
            let mut lessor = inner.lessor.lock();
            for cp in &c.checkpoints {
                lessor.checkpoint(cp.id, cp.remaining_ttl, now)?;
                let record = lessor.record(cp.id).expect("checkpointed above");
                w.active.push_op(BackendOp::Put {
                    bucket: LEASE_BUCKET,
                    key: lease_key(cp.id).to_vec(),
                    value: record,
                });
            }
            Ok(Response::LeaseCheckpoint(LeaseCheckpointResponse {
                header: ResponseHeader {
                    revision: w.current_rev,
                },
            }))
        }
    }
}

fn w_lease_delete(t: &mut WriteTxn<'_>, id: i64) {
    t.push_op(BackendOp::Delete {
        bucket: LEASE_BUCKET,
        key: lease_key(id).to_vec(),
    });
}

/// Runs `f` as one write transaction: publishes its revision (if it
/// changed anything) and notifies watchers. `f` returns an error only
/// before its first change (checks come first).
fn write_txn(
    inner: &Inner,
    w: &mut WriterState,
    f: impl FnOnce(&mut WriteTxn<'_>) -> Result<Response>,
) -> Result<Response> {
    let guard = crossbeam_epoch::pin();
    let (result, changed, rev, events) = {
        let mut t = WriteTxn::new(inner, w, &guard);
        let result = f(&mut t);
        debug_assert!(result.is_ok() || !t.changed() || matches!(&result, Err(e) if e.is_fatal()));
        (
            result,
            t.changed(),
            t.end_rev(),
            std::mem::take(&mut t.events),
        )
    };
    if changed {
        inner.publish_rev(w, rev);
        inner.watch.notify(inner, rev, &events);
    }
    result
}

fn compact(inner: &Inner, w: &mut WriterState, c: &CompactionRequest) -> Result<Response> {
    let current = w.current_rev;
    let mut state = inner.compaction.lock();
    if c.revision <= state.scheduled {
        return Err(Error::Compacted {
            compact_revision: state.scheduled,
        });
    }
    if c.revision > current {
        return Err(Error::FutureRevision {
            current_revision: current,
        });
    }
    state.scheduled = c.revision;
    inner.set_compact_rev(c.revision);
    w.active.push_op(BackendOp::Put {
        bucket: META_BUCKET,
        key: META_SCHEDULED_COMPACT.to_vec(),
        value: u64_value(c.revision as u64),
    });
    drop(state);
    inner.compaction_cv.notify_all();
    Ok(Response::Compact(CompactionResponse {
        header: ResponseHeader { revision: current },
    }))
}

fn lease_grant(inner: &Inner, w: &mut WriterState, g: &LeaseGrantRequest) -> Result<Response> {
    let now = inner.opts.clock.now();
    let mut lessor = inner.lessor.lock();
    let ttl = lessor.check_grant(g.id, g.ttl)?;
    lessor.insert(g.id, ttl, 0, now);
    w.active.push_op(BackendOp::Put {
        bucket: LEASE_BUCKET,
        key: lease_key(g.id).to_vec(),
        value: lessor.record(g.id).expect("inserted above"),
    });
    Ok(Response::LeaseGrant(LeaseGrantResponse {
        header: ResponseHeader {
            revision: w.current_rev,
        },
        id: g.id,
        ttl,
        error: String::new(),
    }))
}
