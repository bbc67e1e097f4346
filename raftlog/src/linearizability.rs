//! A linearizability checker for KV histories, after Wing & Gong with
//! Lowe's memoization, partitioned per key as Porcupine does (a KV map is
//! linearizable iff each key's register is: P-compositionality, Horn &
//! Kroening 2015).
//!
//! A history is a set of operations with invocation and response times
//! from one clock. An operation without a response (the client gave up, the
//! node died) may have taken effect at any point after its invocation or
//! never; it is given a response time of infinity, which allows both.
//!
//! The search walks the events in time order, tentatively linearizing any
//! operation whose invocation has been seen, and backtracks when it reaches
//! the response of an operation it has not linearized. Configurations
//! (set of linearized operations, register value) already explored are
//! cached, which keeps typical histories near-linear.

use std::collections::{BTreeMap, HashMap, HashSet};

/// What a client asked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvInput {
    /// Put returns the previous value.
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Get {
        key: Vec<u8>,
    },
}

impl KvInput {
    pub fn key(&self) -> &[u8] {
        match self {
            KvInput::Put { key, .. } | KvInput::Get { key } => key,
        }
    }
}

/// What the client was told.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// The value read, or for a put the value it replaced.
    Value(Option<Vec<u8>>),
    /// No (usable) answer: anything is allowed.
    Unknown,
}

/// One operation of a history.
#[derive(Clone, PartialEq, Eq)]
pub struct HistoryOp {
    pub client: u64,
    pub input: KvInput,
    /// Invocation time.
    pub call: u64,
    /// Response time; None if no response arrived.
    pub ret: Option<u64>,
    pub output: KvOutput,
}

impl std::fmt::Debug for HistoryOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let ret = self.ret.map_or("∞".to_string(), |r| r.to_string());
        match &self.input {
            KvInput::Put { key, value } => write!(
                f,
                "client {} [{}, {ret}] put({}, {})",
                self.client,
                self.call,
                text(key),
                text(value)
            )?,
            KvInput::Get { key } => write!(
                f,
                "client {} [{}, {ret}] get({})",
                self.client,
                self.call,
                text(key)
            )?,
        }
        match &self.output {
            KvOutput::Value(Some(v)) => write!(f, " -> {}", text(v)),
            KvOutput::Value(None) => write!(f, " -> none"),
            KvOutput::Unknown => write!(f, " -> ?"),
        }
    }
}

/// The checker's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No linearization exists for this key; `ops` are that key's operations
    /// (ordered by invocation) for the report.
    Violation {
        key: Vec<u8>,
        ops: Vec<HistoryOp>,
    },
    /// The search exceeded its step budget for this key.
    Inconclusive {
        key: Vec<u8>,
    },
}

impl Verdict {
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// Panics unless `history` is linearizable within `max_steps` search steps
/// per key, with a report for the test log: `what`, the violating key and its
/// operations one per line, or the inconclusive key.
pub fn assert_linearizable(history: &[HistoryOp], max_steps: u64, what: &str) {
    match check_kv(history, max_steps) {
        Verdict::Linearizable => {}
        Verdict::Violation { key, ops } => {
            let lines: Vec<String> = ops.iter().map(|o| format!("{o:?}")).collect();
            panic!(
                "{what}: history of key {} is not linearizable:\n{}",
                String::from_utf8_lossy(&key),
                lines.join("\n")
            );
        }
        v => panic!("{what}: linearizability check: {v:?}"),
    }
}

/// Checks a KV history with a budget of `max_steps` search steps per key.
pub fn check_kv(history: &[HistoryOp], max_steps: u64) -> Verdict {
    // Values some operation reported, per key.
    let mut observed: HashSet<(&[u8], &[u8])> = HashSet::new();
    for op in history {
        if let KvOutput::Value(Some(v)) = &op.output {
            observed.insert((op.input.key(), v));
        }
    }
    let mut by_key: BTreeMap<&[u8], Vec<&HistoryOp>> = BTreeMap::new();
    for op in history {
        match (&op.input, &op.output) {
            // A read without an answer constrains nothing.
            (KvInput::Get { .. }, KvOutput::Unknown) => continue,
            // A put without an answer whose value nobody ever saw can be
            // dropped: if it took effect, the next operation that saw the
            // register after it has an unknown output too (or is a put that
            // overwrites it), so a linearization with it exists iff one
            // without it does. Each pending put kept doubles the search, so
            // this is what makes histories with many lost puts checkable.
            (KvInput::Put { key, value }, KvOutput::Unknown)
                if !observed.contains(&(key.as_slice(), value.as_slice())) =>
            {
                continue
            }
            _ => {}
        }
        by_key.entry(op.input.key()).or_default().push(op);
    }
    for (key, ops) in by_key {
        match check_register(&ops, max_steps) {
            Some(true) => {}
            Some(false) => {
                let mut ops: Vec<HistoryOp> = ops.into_iter().cloned().collect();
                ops.sort_by_key(|o| o.call);
                return Verdict::Violation {
                    key: key.to_vec(),
                    ops,
                };
            }
            None => return Verdict::Inconclusive { key: key.to_vec() },
        }
    }
    Verdict::Linearizable
}

/// An operation on one register with values interned to small integers
/// (0 = absent).
#[derive(Clone, Copy)]
struct RegOp {
    put: Option<u32>,
    /// Expected output: Some(v) to check, None for unknown.
    out: Option<u32>,
}

impl RegOp {
    fn step(&self, state: u32) -> Option<u32> {
        if let Some(expected) = self.out {
            if expected != state {
                return None;
            }
        }
        Some(self.put.unwrap_or(state))
    }
}

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// For a call: index of its return event.
    matching: usize,
    prev: usize,
    next: usize,
}

/// WGL search on one register. Some(true) = linearizable, Some(false) =
/// not, None = budget exceeded.
fn check_register(ops: &[&HistoryOp], max_steps: u64) -> Option<bool> {
    let mut values: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut intern = |v: &Option<Vec<u8>>| -> u32 {
        match v {
            None => 0,
            Some(v) => {
                let n = values.len() as u32 + 1;
                *values.entry(v.clone()).or_insert(n)
            }
        }
    };
    let reg: Vec<RegOp> = ops
        .iter()
        .map(|op| {
            let put = match &op.input {
                KvInput::Put { value, .. } => Some(intern(&Some(value.clone()))),
                KvInput::Get { .. } => None,
            };
            let out = match &op.output {
                KvOutput::Value(v) => Some(intern(v)),
                KvOutput::Unknown => None,
            };
            RegOp { put, out }
        })
        .collect();

    // Events sorted by time; at equal times calls come first, so operations
    // that touch the same instant count as concurrent (the permissive
    // reading: the clock cannot order them).
    let mut times: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
    for (i, op) in ops.iter().enumerate() {
        let ret = op.ret.unwrap_or(u64::MAX);
        assert!(ret >= op.call, "operation returns before it is called");
        times.push((op.call, true, i));
        times.push((ret, false, i));
    }
    times.sort_by_key(|&(t, is_call, i)| (t, !is_call, i));
    // Node 0 is the list head; events are 1..=2n.
    let n_events = times.len();
    let mut ev = vec![
        Event {
            op: usize::MAX,
            is_call: false,
            matching: 0,
            prev: 0,
            next: 0
        };
        n_events + 1
    ];
    let mut ret_pos = vec![0usize; ops.len()];
    for (pos, &(_, is_call, op)) in times.iter().enumerate() {
        let idx = pos + 1;
        ev[idx] = Event {
            op,
            is_call,
            matching: 0,
            prev: idx - 1,
            next: if idx == n_events { 0 } else { idx + 1 },
        };
        if !is_call {
            ret_pos[op] = idx;
        }
    }
    ev[0].next = if n_events > 0 { 1 } else { 0 };
    ev[0].prev = n_events;
    for e in ev.iter_mut().skip(1) {
        if e.is_call {
            e.matching = ret_pos[e.op];
        }
    }

    let unlink = |ev: &mut Vec<Event>, i: usize| {
        let (p, n) = (ev[i].prev, ev[i].next);
        ev[p].next = n;
        ev[n].prev = p;
    };
    let relink = |ev: &mut Vec<Event>, i: usize| {
        let (p, n) = (ev[i].prev, ev[i].next);
        ev[p].next = i;
        ev[n].prev = i;
    };

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, u32)> = HashSet::new();
    let mut stack: Vec<(usize, u32)> = Vec::new();
    let mut state = 0u32;
    let mut entry = ev[0].next;
    let mut steps = 0u64;
    while ev[0].next != 0 {
        steps += 1;
        if steps > max_steps {
            return None;
        }
        let e = ev[entry];
        if e.is_call {
            if let Some(next_state) = reg[e.op].step(state) {
                linearized[e.op / 64] |= 1 << (e.op % 64);
                if cache.insert((linearized.clone(), next_state)) {
                    stack.push((entry, state));
                    state = next_state;
                    // Lift the call and its return out of the list.
                    unlink(&mut ev, entry);
                    unlink(&mut ev, e.matching);
                    entry = ev[0].next;
                    continue;
                }
                linearized[e.op / 64] &= !(1 << (e.op % 64));
            }
            entry = e.next;
        } else {
            // The response of an operation not yet linearized: undo the last
            // choice and try the next candidate after it.
            let Some((call, prev_state)) = stack.pop() else {
                return Some(false);
            };
            state = prev_state;
            let op = ev[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            let ret = ev[call].matching;
            relink(&mut ev, ret);
            relink(&mut ev, call);
            entry = ev[call].next;
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn put(
        client: u64,
        key: &str,
        value: &str,
        call: u64,
        ret: Option<u64>,
        prev: Option<&str>,
    ) -> HistoryOp {
        HistoryOp {
            client,
            input: KvInput::Put {
                key: key.into(),
                value: value.into(),
            },
            call,
            ret,
            output: if ret.is_some() {
                KvOutput::Value(prev.map(Into::into))
            } else {
                KvOutput::Unknown
            },
        }
    }

    fn get(client: u64, key: &str, call: u64, ret: u64, value: Option<&str>) -> HistoryOp {
        HistoryOp {
            client,
            input: KvInput::Get { key: key.into() },
            call,
            ret: Some(ret),
            output: KvOutput::Value(value.map(Into::into)),
        }
    }

    #[test]
    fn sequential_history_passes() {
        let h = vec![
            put(1, "x", "1", 0, Some(1), None),
            get(2, "x", 2, 3, Some("1")),
            put(1, "x", "2", 4, Some(5), Some("1")),
            get(2, "x", 6, 7, Some("2")),
        ];
        assert_eq!(check_kv(&h, 1_000_000), Verdict::Linearizable);
    }

    #[test]
    fn planted_stale_read_is_caught() {
        // The put completed before the read began, yet the read saw nothing:
        // what a follower serving a read without ReadIndex could return.
        let h = vec![
            put(1, "x", "1", 0, Some(10), None),
            get(2, "x", 11, 12, None),
        ];
        match check_kv(&h, 1_000_000) {
            Verdict::Violation { key, ops } => {
                assert_eq!(key, b"x");
                assert_eq!(ops.len(), 2);
            }
            v => panic!("stale read not caught: {v:?}"),
        }
    }

    #[test]
    fn planted_lost_write_is_caught() {
        // Two acknowledged sequential puts, then a read of the first value:
        // the second write was lost.
        let h = vec![
            put(1, "x", "1", 0, Some(1), None),
            put(1, "x", "2", 2, Some(3), Some("1")),
            get(2, "x", 4, 5, Some("1")),
            put(3, "y", "1", 0, Some(9), None),
        ];
        assert!(matches!(check_kv(&h, 1_000_000), Verdict::Violation { key, .. } if key == b"x"));
    }

    #[test]
    fn planted_wrong_previous_value_is_caught() {
        let h = vec![
            put(1, "x", "1", 0, Some(1), None),
            put(2, "x", "2", 2, Some(3), None),
        ];
        assert!(!check_kv(&h, 1_000_000).is_ok());
    }

    #[test]
    fn concurrency_allows_either_order() {
        // Two overlapping puts; reads after both may see either one, but
        // all later reads must agree with one order.
        let h = vec![
            put(1, "x", "a", 0, Some(10), None),
            put(2, "x", "b", 1, Some(9), Some("a")),
            get(3, "x", 11, 12, Some("b")),
            get(3, "x", 13, 14, Some("b")),
        ];
        assert!(check_kv(&h, 1_000_000).is_ok());
        let flip = vec![
            put(1, "x", "a", 0, Some(10), None),
            put(2, "x", "b", 1, Some(9), Some("a")),
            get(3, "x", 11, 12, Some("b")),
            get(3, "x", 13, 14, Some("a")),
        ];
        assert!(!check_kv(&flip, 1_000_000).is_ok());
    }

    #[test]
    fn pending_put_may_or_may_not_take_effect() {
        let seen = vec![
            put(1, "x", "1", 0, None, None),
            get(2, "x", 5, 6, Some("1")),
        ];
        assert!(check_kv(&seen, 1_000_000).is_ok());
        let unseen = vec![put(1, "x", "1", 0, None, None), get(2, "x", 5, 6, None)];
        assert!(check_kv(&unseen, 1_000_000).is_ok());
        // But once seen, it cannot be unseen.
        let flicker = vec![
            put(1, "x", "1", 0, None, None),
            get(2, "x", 5, 6, Some("1")),
            get(2, "x", 7, 8, None),
        ];
        assert!(!check_kv(&flicker, 1_000_000).is_ok());
    }

    /// Random histories produced by a real (atomic) register with random
    /// overlapping intervals are linearizable; corrupting one read's value to
    /// one never written is always caught.
    #[test]
    fn random_linearizable_histories_pass_and_corruptions_fail() {
        for seed in 0..30 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut h = Vec::new();
            let mut reg: BTreeMap<String, Option<String>> = BTreeMap::new();
            let mut t = 0u64;
            for i in 0..300u64 {
                // The operation takes effect at `t`; its interval covers t.
                t += rng.gen_range(1..4);
                let call = t.saturating_sub(rng.gen_range(0..20));
                let ret = t + rng.gen_range(0..20);
                let key = format!("k{}", rng.gen_range(0..3));
                let cur = reg.entry(key.clone()).or_default();
                if rng.gen_bool(0.5) {
                    let v = format!("v{i}");
                    let prev = cur.replace(v.clone());
                    let ret = if rng.gen_bool(0.05) { None } else { Some(ret) };
                    h.push(put(i, &key, &v, call, ret, prev.as_deref()));
                } else {
                    h.push(get(i, &key, call, ret, cur.as_deref()));
                }
            }
            assert_eq!(
                check_kv(&h, 10_000_000),
                Verdict::Linearizable,
                "seed {seed}"
            );
            let reads: Vec<usize> = (0..h.len())
                .filter(|&i| matches!(h[i].input, KvInput::Get { .. }))
                .collect();
            let victim = reads[rng.gen_range(0..reads.len())];
            h[victim].output = KvOutput::Value(Some("never written".into()));
            assert!(
                !check_kv(&h, 10_000_000).is_ok(),
                "seed {seed}: corruption not caught"
            );
        }
    }
}
