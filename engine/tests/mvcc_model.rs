//! Model-based test of the store against a reference model that keeps the
//! whole history (one full key → KeyValue map per revision) and implements
//! etcd's semantics directly from rpc.proto and etcd's apply.go:
//!
//! - RangeRequest: key / range_end (single key, `[key, end)`, from-key with
//!   `"\0"`, all keys with `"\0"`/`"\0"`), limit (`more`; `count` before the
//!   limit and before the min/max filters), revision (≤ 0 current, future
//!   and compacted errors), keys_only, count_only, sort order and every sort
//!   target (NONE with a non-key target sorts ascending), min/max mod and
//!   create revision; the header carries the current revision.
//! - PutRequest prev_kv, lease, ignore_value, ignore_lease and their errors
//!   ("etcdserver: key not found", "lease not found").
//! - DeleteRangeRequest with prev_kv; deleting nothing makes no revision.
//! - TxnRequest: compares on value / version / create / mod / lease with
//!   ranges, both branches, nested txns, reads of the txn's own writes, the
//!   duplicate-key check, range revisions checked before any write.
//! - Compact: errors at or below the compacted and above the current
//!   revision; reads below it fail; everything at or above it stays exact.
//! - LeaseGrant / LeaseRevoke: a revoke deletes the attached keys in one
//!   revision.
//! - Reopen: the store restarts from its files (NoSync backend commits, a
//!   clean close) with the same answers.
//!
//! `PROPTEST_CASES` overrides the number of cases (default 1000).

use engine::backend::Durability;
use engine::mvcc::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;

type State = BTreeMap<Vec<u8>, KeyValue>;

#[derive(Clone, Debug)]
enum Op {
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(i64),
    Grant(i64),
    Revoke(i64),
    Range(RangeRequest),
    Reopen,
}

/// The reference: `states[r]` is the key space at revision `r`.
struct Model {
    states: Vec<State>,
    compact: i64,
    leases: Vec<i64>,
    /// Changes made by the write transaction in progress.
    changes: i64,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Ok(Response),
    Range(RangeResponse),
    Err(String),
}

impl Model {
    fn new() -> Self {
        // Revision 1 is the empty store.
        Model {
            states: vec![State::new(), State::new()],
            compact: 0,
            leases: Vec::new(),
            changes: 0,
        }
    }

    fn current(&self) -> i64 {
        self.states.len() as i64 - 1
    }

    fn in_range(key: &[u8], end: &[u8], k: &[u8]) -> bool {
        match end {
            [] => k == key,
            [0] => k >= key,
            e => k >= key && k < e,
        }
    }

    fn range_at(
        &self,
        state: &State,
        req: &RangeRequest,
        current: i64,
    ) -> Result<RangeResponse, String> {
        let _ = state;
        if req.revision > current {
            return Err("mvcc: required revision is a future revision".into());
        }
        let rev = if req.revision <= 0 {
            current
        } else {
            req.revision
        };
        if rev < self.compact {
            return Err("mvcc: required revision has been compacted".into());
        }
        Ok(self.range_state(self.state_at(rev, current, state), req, current))
    }

    /// The state at `rev`: the txn's working state when reading its own
    /// revision.
    fn state_at<'a>(&'a self, rev: i64, current: i64, working: &'a State) -> &'a State {
        if rev == current && current == self.current() + 1 {
            working
        } else {
            &self.states[rev as usize]
        }
    }

    fn range_state(&self, state: &State, req: &RangeRequest, current: i64) -> RangeResponse {
        let mut kvs: Vec<KeyValue> = state
            .iter()
            .filter(|(k, _)| Self::in_range(&req.key, &req.range_end, k))
            .map(|(_, v)| v.clone())
            .collect();
        let count = kvs.len() as i64;
        if req.count_only {
            return RangeResponse {
                header: ResponseHeader { revision: current },
                kvs: vec![],
                more: false,
                count,
            };
        }
        kvs.retain(|kv| {
            (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                && (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
                && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
        });
        let key = |kv: &KeyValue| -> (Vec<u8>, i64) {
            match req.sort_target {
                SortTarget::Key => (kv.key.clone(), 0),
                SortTarget::Version => (vec![], kv.version),
                SortTarget::Create => (vec![], kv.create_revision),
                SortTarget::Mod => (vec![], kv.mod_revision),
                SortTarget::Value => (kv.value.clone(), 0),
            }
        };
        let order = match (req.sort_order, req.sort_target) {
            (SortOrder::None, SortTarget::Key) => SortOrder::None,
            (SortOrder::None, _) => SortOrder::Ascend,
            (o, _) => o,
        };
        match order {
            SortOrder::Ascend => kvs.sort_by_key(key),
            SortOrder::Descend => kvs.sort_by_key(|kv| std::cmp::Reverse(key(kv))),
            SortOrder::None => {}
        }
        let mut more = false;
        if req.limit > 0 && kvs.len() as i64 > req.limit {
            kvs.truncate(req.limit as usize);
            more = true;
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        RangeResponse {
            header: ResponseHeader { revision: current },
            kvs,
            more,
            count,
        }
    }

    fn range(&self, req: &RangeRequest) -> Outcome {
        let cur = self.current();
        match self.range_at(&self.states[cur as usize], req, cur) {
            Ok(r) => Outcome::Range(r),
            Err(e) => Outcome::Err(e),
        }
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        match op {
            Op::Put(p) => {
                // A plain put checks its lease before ignore_* (etcd's
                // applierV3backend.Put); inside a txn the order is reversed.
                if p.lease != 0 && !self.leases.contains(&p.lease) {
                    return Outcome::Err("lease not found".into());
                }
                self.write(|m, w| m.put(w, p).map(Response::Put))
            }
            Op::Delete(d) => self.write(|m, w| Ok(Response::DeleteRange(m.delete(w, d)))),
            Op::Txn(t) => {
                if let Err(e) = validate(t) {
                    return Outcome::Err(e);
                }
                self.write(|m, w| m.txn(w, t).map(Response::Txn))
            }
            Op::Compact(rev) => {
                let cur = self.current();
                if *rev <= self.compact {
                    return Outcome::Err("mvcc: required revision has been compacted".into());
                }
                if *rev > cur {
                    return Outcome::Err("mvcc: required revision is a future revision".into());
                }
                self.compact = *rev;
                Outcome::Ok(Response::Compact(CompactionResponse {
                    header: ResponseHeader { revision: cur },
                }))
            }
            Op::Grant(id) => {
                if self.leases.contains(id) {
                    return Outcome::Err("lease already exists".into());
                }
                self.leases.push(*id);
                Outcome::Ok(Response::LeaseGrant(LeaseGrantResponse {
                    header: ResponseHeader {
                        revision: self.current(),
                    },
                    id: *id,
                    ttl: 3600,
                    error: String::new(),
                }))
            }
            Op::Revoke(id) => {
                if !self.leases.contains(id) {
                    return Outcome::Err("lease not found".into());
                }
                self.leases.retain(|l| l != id);
                let id = *id;
                self.write(|m, w| {
                    let keys: Vec<Vec<u8>> = w
                        .iter()
                        .filter(|(_, kv)| kv.lease == id)
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in keys {
                        m.delete(
                            w,
                            &DeleteRangeRequest {
                                key: k,
                                ..Default::default()
                            },
                        );
                    }
                    Ok(Response::LeaseRevoke(LeaseRevokeResponse {
                        header: ResponseHeader {
                            revision: m.read_rev(w),
                        },
                    }))
                })
            }
            Op::Range(r) => self.range(r),
            Op::Reopen => Outcome::Err("reopen".into()),
        }
    }

    /// Runs a write transaction on a working copy; commits a new revision
    /// if the copy changed.
    fn write(
        &mut self,
        f: impl FnOnce(&mut Self, &mut State) -> Result<Response, String>,
    ) -> Outcome {
        let mut working = self.states.last().unwrap().clone();
        self.changes = 0;
        match f(self, &mut working) {
            Ok(r) => {
                if self.changes > 0 {
                    self.states.push(working);
                }
                Outcome::Ok(r)
            }
            Err(e) => Outcome::Err(e),
        }
    }

    fn read_rev(&self, _w: &State) -> i64 {
        self.current() + (self.changes > 0) as i64
    }

    fn get(&self, w: &State, key: &[u8]) -> Option<KeyValue> {
        w.get(key).cloned()
    }

    fn put(&mut self, w: &mut State, p: &PutRequest) -> Result<PutResponse, String> {
        let before = self.states.last().unwrap();
        if (p.ignore_value || p.ignore_lease) && !before.contains_key(&p.key) {
            return Err("etcdserver: key not found".into());
        }
        if p.lease != 0 && !self.leases.contains(&p.lease) {
            return Err("lease not found".into());
        }
        let rev = self.current() + 1;
        let prev = self.get(w, &p.key);
        let value = match (&prev, p.ignore_value) {
            (Some(kv), true) => kv.value.clone(),
            _ => p.value.clone(),
        };
        let lease = match (&prev, p.ignore_lease) {
            (Some(kv), true) => kv.lease,
            _ => p.lease,
        };
        let (create, version) = match &prev {
            Some(kv) => (kv.create_revision, kv.version + 1),
            None => (rev, 1),
        };
        w.insert(
            p.key.clone(),
            KeyValue {
                key: p.key.clone(),
                create_revision: create,
                mod_revision: rev,
                version,
                value,
                lease,
            },
        );
        self.changes += 1;
        Ok(PutResponse {
            header: ResponseHeader { revision: rev },
            prev_kv: if p.prev_kv { prev } else { None },
        })
    }

    fn delete(&mut self, w: &mut State, d: &DeleteRangeRequest) -> DeleteRangeResponse {
        let keys: Vec<Vec<u8>> = w
            .keys()
            .filter(|k| Self::in_range(&d.key, &d.range_end, k))
            .cloned()
            .collect();
        let mut prev_kvs = Vec::new();
        for k in &keys {
            let kv = w.remove(k).unwrap();
            if d.prev_kv {
                prev_kvs.push(kv);
            }
            self.changes += 1;
        }
        DeleteRangeResponse {
            header: ResponseHeader {
                revision: self.read_rev(w),
            },
            deleted: keys.len() as i64,
            prev_kvs,
        }
    }

    fn compare(&self, c: &Compare) -> bool {
        let state = self.states.last().unwrap();
        let kvs: Vec<&KeyValue> = state
            .iter()
            .filter(|(k, _)| Self::in_range(&c.key, &c.range_end, k))
            .map(|(_, v)| v)
            .collect();
        let zero = KeyValue::default();
        if kvs.is_empty() && matches!(c.target, CompareTarget::Value(_)) {
            return false;
        }
        let check = |kv: &KeyValue| {
            let ord = match &c.target {
                CompareTarget::Value(v) => kv.value.cmp(v),
                CompareTarget::Version(v) => kv.version.cmp(v),
                CompareTarget::Create(v) => kv.create_revision.cmp(v),
                CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
                CompareTarget::Lease(v) => kv.lease.cmp(v),
            };
            match c.result {
                CompareResult::Equal => ord.is_eq(),
                CompareResult::NotEqual => ord.is_ne(),
                CompareResult::Greater => ord.is_gt(),
                CompareResult::Less => ord.is_lt(),
            }
        };
        if kvs.is_empty() {
            check(&zero)
        } else {
            kvs.into_iter().all(check)
        }
    }

    /// Pre-checks on the state before the txn, along the taken branches.
    fn check(&self, t: &TxnRequest) -> Result<(), String> {
        let ok = t.compare.iter().all(|c| self.compare(c));
        let ops = if ok { &t.success } else { &t.failure };
        let before = self.states.last().unwrap();
        for op in ops {
            match op {
                RequestOp::Txn(n) => self.check(n)?,
                RequestOp::Put(p) => {
                    if (p.ignore_value || p.ignore_lease) && !before.contains_key(&p.key) {
                        return Err("etcdserver: key not found".into());
                    }
                    if p.lease != 0 && !self.leases.contains(&p.lease) {
                        return Err("lease not found".into());
                    }
                }
                RequestOp::Range(r) => {
                    if r.revision > self.current() {
                        return Err("mvcc: required revision is a future revision".into());
                    }
                    let rev = if r.revision <= 0 {
                        self.current()
                    } else {
                        r.revision
                    };
                    if rev < self.compact {
                        return Err("mvcc: required revision has been compacted".into());
                    }
                }
                RequestOp::DeleteRange(_) => {}
            }
        }
        Ok(())
    }

    fn txn(&mut self, w: &mut State, t: &TxnRequest) -> Result<TxnResponse, String> {
        self.check(t)?;
        Ok(self.exec(w, t))
    }

    fn exec(&mut self, w: &mut State, t: &TxnRequest) -> TxnResponse {
        // Compares see the state before the whole transaction.
        let ok = t.compare.iter().all(|c| self.compare(c));
        let ops = if ok { &t.success } else { &t.failure };
        let mut responses = Vec::new();
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => {
                    let cur = self.read_rev(w);
                    let resp = self.range_at(w, r, cur).expect("checked");
                    ResponseOp::Range(resp)
                }
                RequestOp::Put(p) => ResponseOp::Put(self.put(w, p).expect("checked")),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(self.delete(w, d)),
                RequestOp::Txn(n) => ResponseOp::Txn(self.exec(w, n)),
            });
        }
        TxnResponse {
            header: ResponseHeader {
                revision: self.read_rev(w),
            },
            succeeded: ok,
            responses,
        }
    }
}

/// etcd's duplicate-key rule, written independently of the engine's.
fn validate(t: &TxnRequest) -> Result<(), String> {
    fn writes(
        ops: &[RequestOp],
        puts: &mut Vec<Vec<u8>>,
        dels: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), String> {
        for op in ops {
            match op {
                RequestOp::Put(p) => puts.push(p.key.clone()),
                RequestOp::DeleteRange(d) => dels.push((d.key.clone(), d.range_end.clone())),
                RequestOp::Range(_) => {}
                RequestOp::Txn(n) => {
                    validate(n)?;
                    let mut s = Vec::new();
                    writes(&n.success, &mut s, dels)?;
                    let mut f = Vec::new();
                    writes(&n.failure, &mut f, dels)?;
                    for k in f {
                        if !s.contains(&k) {
                            s.push(k);
                        }
                    }
                    puts.extend(s);
                }
            }
        }
        Ok(())
    }
    for branch in [&t.success, &t.failure] {
        let (mut puts, mut dels) = (Vec::new(), Vec::new());
        writes(branch, &mut puts, &mut dels)?;
        for (i, p) in puts.iter().enumerate() {
            if puts[i + 1..].contains(p) || dels.iter().any(|(k, e)| Model::in_range(k, e, p)) {
                return Err("etcdserver: duplicate key given in txn request".into());
            }
        }
    }
    Ok(())
}

// ---- generators ---------------------------------------------------------

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![b'a', b'b', b'c', 0xff]), 1..=3)
}

fn range_end(key: Vec<u8>) -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let prefix_end = {
        let mut e = key.clone();
        while let Some(&last) = e.last() {
            if last < 0xff {
                *e.last_mut().unwrap() += 1;
                break;
            }
            e.pop();
        }
        if e.is_empty() {
            vec![0]
        } else {
            e
        }
    };
    let k = key.clone();
    prop_oneof![
        3 => Just((key.clone(), vec![])),
        1 => Just((key.clone(), vec![0])),
        1 => Just((vec![0], vec![0])),
        2 => Just((key.clone(), prefix_end)),
        2 => super_key().prop_map(move |e| (k.clone(), e)),
    ]
}

fn super_key() -> impl Strategy<Value = Vec<u8>> {
    key()
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![b'x', b'y', b'z']), 0..3)
}

fn lease_id() -> impl Strategy<Value = i64> {
    prop_oneof![4 => Just(0i64), 1 => 1..4i64]
}

fn put_req() -> impl Strategy<Value = PutRequest> {
    (
        key(),
        value(),
        lease_id(),
        any::<bool>(),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.15),
    )
        .prop_map(
            |(key, value, lease, prev_kv, ignore_value, ignore_lease)| PutRequest {
                key,
                value,
                lease,
                prev_kv,
                ignore_value,
                ignore_lease,
            },
        )
}

fn delete_req() -> impl Strategy<Value = DeleteRangeRequest> {
    (key().prop_flat_map(range_end), any::<bool>()).prop_map(|((key, range_end), prev_kv)| {
        DeleteRangeRequest {
            key,
            range_end,
            prev_kv,
        }
    })
}

fn range_req() -> impl Strategy<Value = RangeRequest> {
    (
        key().prop_flat_map(range_end),
        prop_oneof![3 => Just(0i64), 2 => 1..4i64, 1 => -1..0i64],
        prop_oneof![2 => Just(0i64), 2 => -2..40i64],
        (0..3u8, 0..5u8),
        (prop::bool::weighted(0.2), prop::bool::weighted(0.15)),
        prop_oneof![3 => Just([0i64; 4]), 1 => [0..30i64, 0..30i64, 0..30i64, 0..30i64]],
    )
        .prop_map(
            |((key, range_end), limit, revision, (o, t), (keys_only, count_only), mm)| {
                RangeRequest {
                    key,
                    range_end,
                    limit,
                    revision,
                    sort_order: [SortOrder::None, SortOrder::Ascend, SortOrder::Descend]
                        [o as usize],
                    sort_target: [
                        SortTarget::Key,
                        SortTarget::Version,
                        SortTarget::Create,
                        SortTarget::Mod,
                        SortTarget::Value,
                    ][t as usize],
                    serializable: true,
                    keys_only,
                    count_only,
                    min_mod_revision: mm[0],
                    max_mod_revision: mm[1],
                    min_create_revision: mm[2],
                    max_create_revision: mm[3],
                }
            },
        )
}

fn compare() -> impl Strategy<Value = Compare> {
    (
        key().prop_flat_map(range_end),
        0..4u8,
        prop_oneof![
            value().prop_map(CompareTarget::Value),
            (0..4i64).prop_map(CompareTarget::Version),
            (0..30i64).prop_map(CompareTarget::Create),
            (0..30i64).prop_map(CompareTarget::Mod),
            lease_id().prop_map(CompareTarget::Lease),
        ],
    )
        .prop_map(|((key, range_end), r, target)| Compare {
            result: [
                CompareResult::Equal,
                CompareResult::Greater,
                CompareResult::Less,
                CompareResult::NotEqual,
            ][r as usize],
            target,
            key,
            range_end,
        })
}

fn request_op(depth: u32) -> BoxedStrategy<RequestOp> {
    let leaf = prop_oneof![
        3 => put_req().prop_map(RequestOp::Put),
        1 => delete_req().prop_map(RequestOp::DeleteRange),
        2 => range_req().prop_map(RequestOp::Range),
    ];
    if depth == 0 {
        leaf.boxed()
    } else {
        prop_oneof![6 => leaf, 1 => txn_req(depth - 1).prop_map(RequestOp::Txn)].boxed()
    }
}

fn txn_req(depth: u32) -> BoxedStrategy<TxnRequest> {
    (
        prop::collection::vec(compare(), 0..3),
        prop::collection::vec(request_op(depth), 0..4),
        prop::collection::vec(request_op(depth), 0..3),
    )
        .prop_map(|(compare, success, failure)| TxnRequest {
            compare,
            success,
            failure,
        })
        .boxed()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => put_req().prop_map(Op::Put),
        2 => delete_req().prop_map(Op::Delete),
        3 => txn_req(1).prop_map(Op::Txn),
        1 => (1..30i64).prop_map(Op::Compact),
        1 => (1..4i64).prop_map(Op::Grant),
        1 => (1..4i64).prop_map(Op::Revoke),
        6 => range_req().prop_map(Op::Range),
        1 => Just(Op::Reopen),
    ]
}

// ---- the test -----------------------------------------------------------

fn options() -> StoreOptions {
    StoreOptions {
        durability: Durability::NoSync,
        batch_interval: Duration::from_millis(5),
        // Small batches: many commits, reads across buffer and backend.
        batch_limit: 7,
        compaction_batch_keys: 3,
        compaction_batch_pause: Duration::ZERO,
        lease_expiry: LeaseExpiry::External,
        lease_min_ttl_secs: 3600,
        ..Default::default()
    }
}

fn store_outcome(store: &Store, op: &Op) -> Outcome {
    let r = match op {
        Op::Put(p) => store.propose(&Command::Put(p.clone())),
        Op::Delete(d) => store.propose(&Command::DeleteRange(d.clone())),
        Op::Txn(t) => store.propose(&Command::Txn(t.clone())),
        Op::Compact(rev) => store.propose(&Command::Compact(CompactionRequest {
            revision: *rev,
            physical: false,
        })),
        Op::Grant(id) => store.propose(&Command::LeaseGrant(LeaseGrantRequest { ttl: 1, id: *id })),
        Op::Revoke(id) => store.propose(&Command::LeaseRevoke(LeaseRevokeRequest { id: *id })),
        Op::Range(r) => {
            return match store.range(r) {
                Ok(r) => Outcome::Range(r),
                Err(e) => Outcome::Err(e.to_string()),
            }
        }
        Op::Reopen => unreachable!(),
    };
    match r {
        Ok(r) => Outcome::Ok(r),
        Err(e) => Outcome::Err(e.to_string()),
    }
}

fn check_all_revisions(store: &Store, model: &Model) -> Result<(), TestCaseError> {
    // Every revision from the compacted one to the current one, all keys.
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    for rev in model.compact.max(1)..=model.current() {
        let req = RangeRequest {
            revision: rev,
            ..all.clone()
        };
        prop_assert_eq!(
            store_outcome(store, &Op::Range(req.clone())),
            model.range(&req),
            "revision {}",
            rev
        );
    }
    Ok(())
}

/// This test checks logic, not the disk: on tmpfs when there is one, so
/// that the backend's fsync at open (thousands of opens) costs nothing.
fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_matches_full_history_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = scratch_dir();
        let path = dir.path().join("db");
        let mut store = Store::open(&path, options()).unwrap();
        let mut model = Model::new();
        for (i, op) in ops.iter().enumerate() {
            if let Op::Reopen = op {
                store.close().unwrap();
                store = Store::open(&path, options()).unwrap();
                prop_assert_eq!(store.current_revision(), model.current());
                prop_assert_eq!(store.compact_revision(), model.compact);
                check_all_revisions(&store, &model)?;
                continue;
            }
            let expected = model.apply(op);
            let got = store_outcome(&store, op);
            prop_assert_eq!(got, expected, "op {} {:?}", i, op);
            prop_assert_eq!(store.current_revision(), model.current());
        }
        check_all_revisions(&store, &model)?;
        // Wait out the physical compaction: nothing above it may change.
        if model.compact > 0 {
            store.wait_compaction(model.compact).unwrap();
            check_all_revisions(&store, &model)?;
        }
        store.close().unwrap();
    }
}
