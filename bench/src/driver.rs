//! Applies a workload to a target: closed loop (each client issues its next
//! request when the previous one returns) or open loop (requests are due at
//! a fixed global rate and each is timed from when it was due, so a stalled
//! server is charged for every request it held up: coordinated-omission
//! correction). Warm-up operations run but are not recorded.

use crate::keys::{format_key, KeyGen, KeySpace};
use crate::progress::Progress;
use crate::recorder::{OpRecorder, Recorders};
use crate::target::{Client, Op, Target};
use crate::workload::{Consistency, Load, Workload, WorkloadKind};
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a watch run waits for the last events after the last put.
const WATCH_DRAIN_MAX: Duration = Duration::from_secs(5);

/// What a run measured.
#[derive(Debug)]
pub struct RunOutcome {
    pub recorders: Recorders,
    /// From the end of warm-up to the last measured completion.
    pub measured_s: f64,
    /// From the first request to the last completion, warm-up included.
    pub wall_s: f64,
    /// Successful operations per second in the measured window, all types.
    pub throughput: f64,
    /// Watch runs: events of measured puts received per second, over the
    /// measured window or until the last of them arrived, if later.
    pub events_per_s: Option<f64>,
}

/// Open-loop tickets queued ahead of the clients at most (a stalled server
/// backs them up here; the pacer then waits, but every ticket keeps its due
/// time).
const TICKETS_QUEUED_MAX: usize = 1 << 20;

/// The clock and budget every client of a run shares.
struct Schedule {
    start: Instant,
    warmup_end: Instant,
    deadline: Option<Instant>,
    total: Option<u64>,
    /// Open loop: due times from the pacer thread.
    tickets: Option<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Instant>>>,
    measured_claimed: AtomicU64,
    /// The latest measured completion, ns after `start`.
    last_done_ns: AtomicU64,
    done: Arc<AtomicU64>,
}

/// Releases open-loop tickets at their due times from a plain thread:
/// nanosleep wakes within tens of µs, where tokio's timer wheel rounds every
/// sleep up to the next millisecond, and that rounding would be charged to
/// the server as latency.
fn pacer(
    load: &Load,
    start: Instant,
    deadline: Option<Instant>,
) -> tokio::sync::mpsc::Receiver<Instant> {
    let rate = load.rate.expect("open loop");
    let interval = Duration::from_secs_f64(1.0 / rate);
    let warmup_tickets = (rate * load.warmup_s).ceil() as u64;
    let last = load.total.map(|t| warmup_tickets + t);
    let queue = ((rate * 10.0) as usize).clamp(1024, TICKETS_QUEUED_MAX);
    let (tx, rx) = tokio::sync::mpsc::channel(queue);
    std::thread::Builder::new()
        .name("ferrobench-pacer".into())
        .spawn(move || {
            let mut i = 0u64;
            loop {
                if matches!(last, Some(l) if i >= l) {
                    return;
                }
                let due = start + interval.mul_f64(i as f64);
                if matches!(deadline, Some(d) if due >= d) {
                    return;
                }
                let now = Instant::now();
                if due > now + Duration::from_micros(20) {
                    std::thread::sleep(due - now);
                }
                if tx.blocking_send(due).is_err() {
                    return;
                }
                i += 1;
            }
        })
        .expect("spawn pacer thread");
    rx
}

impl Schedule {
    fn new(load: &Load, done: Arc<AtomicU64>) -> Self {
        let start = Instant::now();
        let warmup_end = start + Duration::from_secs_f64(load.warmup_s);
        let deadline = load
            .duration_s
            .map(|d| warmup_end + Duration::from_secs_f64(d));
        let tickets = load
            .rate
            .map(|_| tokio::sync::Mutex::new(pacer(load, start, deadline)));
        Self {
            start,
            warmup_end,
            deadline,
            total: load.total,
            tickets,
            measured_claimed: AtomicU64::new(0),
            last_done_ns: AtomicU64::new(0),
            done,
        }
    }

    /// The moment the caller's next request is due, or `None` when the run
    /// is over.
    async fn claim(&self) -> Option<Instant> {
        if let Some(tickets) = &self.tickets {
            return tickets.lock().await.recv().await;
        }
        let now = Instant::now();
        if matches!(self.deadline, Some(d) if now >= d) {
            return None;
        }
        if now >= self.warmup_end {
            if let Some(total) = self.total {
                if self.measured_claimed.fetch_add(1, Ordering::Relaxed) >= total {
                    return None;
                }
            }
        }
        Some(now)
    }

    fn measured(&self, due: Instant) -> bool {
        due >= self.warmup_end
    }

    fn note_done(&self, at: Instant) {
        let ns = at.duration_since(self.start).as_nanos() as u64;
        self.last_done_ns.fetch_max(ns, Ordering::Relaxed);
        self.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// One client's request generator.
pub struct OpGen {
    wl: Workload,
    keys: KeyGen,
    rng: SmallRng,
    value: Vec<u8>,
    delete_next: u64,
    delete_stride: u64,
    /// Watch runs stamp each value with its send time, ns after this.
    epoch: Instant,
}

impl OpGen {
    pub fn new(
        wl: &Workload,
        space: Arc<KeySpace>,
        client: usize,
        clients: usize,
        epoch: Instant,
    ) -> Self {
        let mut rng = SmallRng::seed_from_u64(0x5eed_0000 + client as u64);
        let mut value = vec![0u8; wl.val_size];
        rng.fill_bytes(&mut value);
        Self {
            keys: KeyGen::new(space, wl, client, clients),
            wl: wl.clone(),
            rng,
            value,
            delete_next: client as u64,
            delete_stride: clients as u64,
            epoch,
        }
    }

    fn next_key(&mut self) -> Vec<u8> {
        let index = self.keys.next_index(&mut self.rng);
        self.keys.key(index)
    }

    fn serializable(&self) -> bool {
        self.wl.consistency == Consistency::Serializable
    }

    fn read(&mut self, name: &'static str) -> (&'static str, Op) {
        let key = self.next_key();
        let op = Op::Range {
            key,
            range_end: vec![],
            limit: 0,
            serializable: self.serializable(),
        };
        (name, op)
    }

    fn put(&mut self, name: &'static str, index: u64) -> (&'static str, Op) {
        let op = Op::Put {
            key: self.keys.key(index),
            value: self.value.clone(),
        };
        (name, op)
    }

    fn update(&mut self) -> (&'static str, Op) {
        let index = self.keys.next_index(&mut self.rng);
        self.put("update", index)
    }

    fn insert(&mut self) -> (&'static str, Op) {
        let index = self.keys.insert_index();
        self.put("insert", index)
    }

    /// The next request and the name its latency is recorded under.
    pub fn next_op(&mut self) -> (&'static str, Op) {
        let roll: f64 = self.rng.gen();
        match self.wl.kind {
            WorkloadKind::Put => {
                let index = self.keys.next_index(&mut self.rng);
                self.put("put", index)
            }
            WorkloadKind::Range if self.wl.range_limit > 0 => {
                let key = self.next_key();
                let prefix = key[..key.len().saturating_sub(2)].to_vec();
                let op = Op::Range {
                    range_end: proto::prefix_range_end(&prefix),
                    key: prefix,
                    limit: self.wl.range_limit as i64,
                    serializable: self.serializable(),
                };
                ("range", op)
            }
            WorkloadKind::Range => self.read("range"),
            WorkloadKind::TxnPut => {
                let first = self.keys.next_index(&mut self.rng);
                let n = self.wl.key_space_size;
                let puts = (0..self.wl.txn_ops as u64)
                    .map(|j| (self.keys.key((first + j) % n), self.value.clone()))
                    .collect();
                ("txn", Op::TxnPut { puts })
            }
            WorkloadKind::Delete => {
                let index = self.delete_next % self.wl.key_space_size;
                self.delete_next += self.delete_stride;
                (
                    "delete",
                    Op::Delete {
                        key: self.keys.key(index),
                    },
                )
            }
            WorkloadKind::Mixed if roll < self.wl.read_ratio => self.read("range"),
            WorkloadKind::Mixed => {
                let index = self.keys.next_index(&mut self.rng);
                self.put("put", index)
            }
            WorkloadKind::YcsbA if roll < 0.5 => self.read("read"),
            WorkloadKind::YcsbA => self.update(),
            WorkloadKind::YcsbB if roll < 0.95 => self.read("read"),
            WorkloadKind::YcsbB => self.update(),
            WorkloadKind::YcsbC => self.read("read"),
            WorkloadKind::YcsbD if roll < 0.95 => self.read("read"),
            WorkloadKind::YcsbD => self.insert(),
            WorkloadKind::YcsbE if roll < 0.95 => {
                let key = self.next_key();
                let op = Op::Range {
                    key,
                    // "\0": every key from `key` on; the limit bounds the scan.
                    range_end: vec![0],
                    limit: self.rng.gen_range(1..=100),
                    serializable: self.serializable(),
                };
                ("scan", op)
            }
            WorkloadKind::YcsbE => self.insert(),
            WorkloadKind::YcsbF if roll < 0.5 => self.read("read"),
            WorkloadKind::YcsbF => {
                let key = self.next_key();
                let op = Op::ReadModifyWrite {
                    key,
                    value: self.value.clone(),
                    serializable: self.serializable(),
                };
                ("rmw", op)
            }
            WorkloadKind::Watch => {
                let index = self.keys.next_index(&mut self.rng);
                let mut value = self.value.clone();
                let stamp = self.epoch.elapsed().as_nanos() as u64;
                value[..8].copy_from_slice(&stamp.to_le_bytes());
                (
                    "put",
                    Op::Put {
                        key: self.keys.key(index),
                        value,
                    },
                )
            }
            WorkloadKind::LeaseKeepalive => ("keepalive", Op::KeepAlive),
        }
    }
}

async fn client_loop<C: Client>(
    mut client: C,
    mut gen: OpGen,
    schedule: Arc<Schedule>,
) -> Recorders {
    let mut rec = Recorders::default();
    while let Some(due) = schedule.claim().await {
        let (name, op) = gen.next_op();
        let result = client.execute(op).await;
        let done = Instant::now();
        schedule.note_done(done);
        let measured = schedule.measured(due);
        let r = rec.op(name);
        match result {
            Ok(()) => {
                r.ok_all += 1;
                if measured {
                    r.latency_ns
                        .saturating_record(done.duration_since(due).as_nanos() as u64);
                }
            }
            Err(e) if measured => *r.errors.entry(e.code).or_default() += 1,
            Err(_) => {}
        }
        // A client whose requests never wait (the embedded engine answers
        // synchronously) would otherwise keep its worker thread to itself
        // until the run ends: the other clients, and a watch run's event
        // consumers, would not run at all meanwhile. Every so many requests
        // it lets the scheduler run other tasks, outside the timed region.
        tokio::task::consume_budget().await;
    }
    rec
}

/// Writes keys `0..key_space_size` (closed loop, not measured) so reads and
/// deletes find them.
pub async fn preload<T: Target>(target: &T, wl: &Workload, clients: usize) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients.max(1) {
        let mut client = target.client(c);
        let next = next.clone();
        let (n, key_size, val) = (wl.key_space_size, wl.key_size, vec![b'v'; wl.val_size]);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), crate::target::OpError>(());
                }
                let op = Op::Put {
                    key: format_key(i, key_size),
                    value: val.clone(),
                };
                client.execute(op).await?;
            }
        }));
    }
    for t in tasks {
        t.await?
            .map_err(|e| anyhow::anyhow!("preload: {} {}", e.code, e.message))?;
    }
    Ok(())
}

/// Runs `wl` under `load` against `target`. Blocks until the run is over.
pub async fn run<T: Target>(
    target: &T,
    wl: &Workload,
    load: &Load,
    progress: bool,
) -> anyhow::Result<RunOutcome> {
    wl.validate().map_err(anyhow::Error::msg)?;
    load.validate().map_err(anyhow::Error::msg)?;
    let space = KeySpace::new(wl.key_space_size);
    let done = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();

    // Watch runs: open every watcher before the clock starts.
    let events = Arc::new(Mutex::new(OpRecorder::default()));
    let events_seen = Arc::new(AtomicU64::new(0));
    let warmup_end_ns = Arc::new(AtomicU64::new(u64::MAX));
    // Arrival of the latest event of a measured put, ns after `epoch`.
    let last_event_ns = Arc::new(AtomicU64::new(0));
    let mut guards = Vec::new();
    if wl.kind == WorkloadKind::Watch {
        let per_stream = wl.watchers.div_ceil(wl.watch_streams);
        let mut left = wl.watchers;
        for s in 0..wl.watch_streams {
            let n = per_stream.min(left);
            if n == 0 {
                break;
            }
            left -= n;
            let (events, seen, warm) = (events.clone(), events_seen.clone(), warmup_end_ns.clone());
            let last_arrival = last_event_ns.clone();
            let sink = Box::new(move |value: &[u8], arrived: Instant| {
                // Only the workload's own puts carry a send time.
                let Some(stamp) = value.get(..8) else {
                    return;
                };
                let stamp = u64::from_le_bytes(stamp.try_into().expect("8 bytes"));
                let arrived_ns = arrived.duration_since(epoch).as_nanos() as u64;
                seen.fetch_add(1, Ordering::Relaxed);
                if stamp >= warm.load(Ordering::Relaxed) {
                    last_arrival.fetch_max(arrived_ns, Ordering::Relaxed);
                    let mut g = events.lock().expect("not poisoned");
                    g.latency_ns
                        .saturating_record(arrived_ns.saturating_sub(stamp));
                }
            });
            let guard = target
                .watch(s, vec![0], vec![0], n, sink)
                .await
                .map_err(|e| anyhow::anyhow!("watch: {} {}", e.code, e.message))?;
            guards.push(guard);
        }
    }

    let schedule = Arc::new(Schedule::new(load, done.clone()));
    warmup_end_ns.store(
        schedule.warmup_end.duration_since(epoch).as_nanos() as u64,
        Ordering::Relaxed,
    );
    let bar = progress.then(|| Progress::start(done.clone(), load));
    let mut tasks = Vec::with_capacity(load.clients);
    for c in 0..load.clients {
        let gen = OpGen::new(wl, space.clone(), c, load.clients, epoch);
        tasks.push(tokio::spawn(client_loop(
            target.client(c),
            gen,
            schedule.clone(),
        )));
    }
    let mut recorders = Recorders::default();
    for t in tasks {
        recorders.merge(&t.await?);
    }
    let last_done =
        schedule.start + Duration::from_nanos(schedule.last_done_ns.load(Ordering::Relaxed));
    if let Some(bar) = bar {
        bar.finish();
    }
    let wall_s = last_done.duration_since(schedule.start).as_secs_f64();
    let measured_s = last_done
        .saturating_duration_since(schedule.warmup_end)
        .as_secs_f64();
    let ok: u64 = recorders.ops.values().map(|r| r.latency_ns.len()).sum();
    let throughput = if measured_s > 0.0 {
        ok as f64 / measured_s
    } else {
        0.0
    };

    let mut events_per_s = None;
    if wl.kind == WorkloadKind::Watch {
        let puts_ok: u64 = recorders.ops.values().map(|r| r.ok_all).sum();
        let expected = puts_ok * wl.watchers as u64;
        let drain_start = Instant::now();
        while events_seen.load(Ordering::Relaxed) < expected
            && drain_start.elapsed() < WATCH_DRAIN_MAX
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(guards);
        let g = events.lock().expect("not poisoned");
        let mut rec = g.clone();
        rec.ok_all = events_seen.load(Ordering::Relaxed);
        if rec.ok_all < expected {
            rec.errors.insert("Missing".into(), expected - rec.ok_all);
        }
        // Events of measured puts per second, from the end of warm-up to
        // the arrival of the last of them: a watch path that falls behind
        // the puts is charged for the time it takes to deliver them.
        let measured_events = rec.latency_ns.len() as f64;
        let warmup_end = warmup_end_ns.load(Ordering::Relaxed);
        let delivered_s = last_event_ns
            .load(Ordering::Relaxed)
            .saturating_sub(warmup_end) as f64
            / 1e9;
        let window_s = measured_s.max(delivered_s);
        events_per_s = Some(if window_s > 0.0 {
            measured_events / window_s
        } else {
            0.0
        });
        drop(g);
        recorders.ops.insert("watch-event".into(), rec);
    }
    Ok(RunOutcome {
        recorders,
        measured_s,
        wall_s,
        throughput,
        events_per_s,
    })
}
