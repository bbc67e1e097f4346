//! Three `raftlog-node` processes on loopback TCP, each with its own
//! engine::wal, under a load of concurrent clients, while the leader or a
//! follower is SIGKILLed and restarted again and again (50 kills in
//! `make test`; `RAFTLOG_CRASH_KILLS` for a soak).
//!
//! Afterwards:
//! - no acknowledged put is lost: on every node each key's version (puts
//!   applied to it) is at least the number of acknowledged puts to it, and
//!   at most that plus the puts whose outcome the client never learned;
//! - all nodes converge to the same applied index and state hash;
//! - the recorded client history (puts, ReadIndex gets, and a final read of
//!   every key on every node) passes the linearizability checker.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftlog::kv_service::{KvClient, NodeState, Reply};
use raftlog::linearizability::{assert_linearizable, HistoryOp, KvInput, KvOutput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const NODES: usize = 3;
const KEYS: usize = 8;
const CLIENTS: usize = 6;
/// How long to wait for anything that must happen eventually (a leader,
/// progress, an answer): generous, since the machine may be loaded; only a
/// real liveness bug takes this long.
const PATIENCE: Duration = Duration::from_secs(30);

struct Cluster {
    dir: PathBuf,
    names: Vec<String>,
    clients: Vec<String>,
    initial_cluster: String,
    children: Vec<Option<Child>>,
    logs: Vec<PathBuf>,
    starts: usize,
    /// Restarts that found their port taken (by some other socket while the
    /// node was down) and were retried.
    port_clashes: usize,
}

impl Cluster {
    fn new(dir: &Path) -> Cluster {
        std::fs::create_dir_all(dir).unwrap();
        let names: Vec<String> = (0..NODES).map(|i| format!("n{i}")).collect();
        let ports = common::free_ports(2 * NODES);
        let peers: Vec<String> = names
            .iter()
            .zip(&ports)
            .map(|(n, p)| format!("{n}=http://127.0.0.1:{p}"))
            .collect();
        let clients = ports[NODES..]
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        Cluster {
            dir: dir.to_path_buf(),
            names,
            clients,
            initial_cluster: peers.join(","),
            children: (0..NODES).map(|_| None).collect(),
            logs: vec![PathBuf::new(); NODES],
            starts: 0,
            port_clashes: 0,
        }
    }

    fn spawn(&mut self, i: usize) {
        assert!(self.children[i].is_none());
        self.starts += 1;
        self.logs[i] = self
            .dir
            .join(format!("{}-{}.log", self.names[i], self.starts));
        let log = File::create(&self.logs[i]).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_raftlog-node"))
            .args(["--name", &self.names[i]])
            .arg("--data-dir")
            .arg(self.dir.join(&self.names[i]))
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-token", "crash-test"])
            .args(["--listen-client", &self.clients[i]])
            .args(["--tick-ms", "20", "--election-ticks", "10"])
            .args(["--snapshot-count", "300", "--compaction-margin", "100"])
            .args(["--wal-segment-mib", "4", "--request-timeout-ms", "1500"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn raftlog-node");
        self.children[i] = Some(child);
    }

    /// If node `i` exited by itself: its log when the reason was a port
    /// taken by another socket (the environment, not raftlog); any other
    /// exit is a crash nobody asked for and fails the test.
    fn exited(&mut self, i: usize) -> Option<String> {
        let status = self.children[i].as_mut()?.try_wait().unwrap()?;
        self.children[i] = None;
        let log = std::fs::read_to_string(&self.logs[i]).unwrap_or_default();
        assert!(
            common::address_in_use(&log),
            "node {i} exited on its own ({status}); its log {}:\n{log}",
            self.logs[i].display()
        );
        Some(log)
    }

    /// Restarts every node that could not bind its port (retried until the
    /// other socket lets go of it).
    fn revive(&mut self) {
        for i in 0..NODES {
            if self.exited(i).is_some() {
                self.port_clashes += 1;
                std::thread::sleep(Duration::from_millis(100));
                self.spawn(i);
            }
        }
    }

    fn kill(&mut self, i: usize) {
        if self.exited(i).is_some() {
            // It could not bind its port; the caller restarts it anyway.
            self.port_clashes += 1;
            return;
        }
        let mut child = self.children[i].take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
    }

    fn state(&self, i: usize) -> Option<NodeState> {
        KvClient::connect(&self.clients[i], Duration::from_millis(300))
            .ok()?
            .state()
            .ok()
    }

    fn leader(&self) -> Option<usize> {
        (0..NODES)
            .filter(|i| self.children[*i].is_some())
            .filter_map(|i| self.state(i).map(|s| (i, s)))
            .filter(|(_, s)| s.is_leader)
            .max_by_key(|(_, s)| s.term)
            .map(|(i, _)| i)
    }

    /// Polls `f` until it returns something, restarting nodes whose port
    /// was taken meanwhile.
    fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Cluster) -> Option<T>,
    ) -> T {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            self.revive();
            if let Some(v) = f(self) {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out after {timeout:?} waiting for {what} ({} port clashes); node logs are in {}",
            self.port_clashes,
            self.dir.display()
        );
    }

    fn wait_until(&mut self, what: &str, timeout: Duration, mut f: impl FnMut(&Cluster) -> bool) {
        self.wait_for(what, timeout, |c| f(c).then_some(()))
    }

    /// Starts all nodes and waits until every one answers and one leads.
    /// `false` when a node found its initial port taken (the caller starts
    /// over with fresh ports).
    fn start(&mut self) -> bool {
        for i in 0..NODES {
            self.spawn(i);
        }
        let end = Instant::now() + PATIENCE;
        while Instant::now() < end {
            if (0..NODES).any(|i| self.exited(i).is_some()) {
                return false;
            }
            if (0..NODES).all(|i| self.state(i).is_some()) && self.leader().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out waiting for the cluster to start; node logs are in {}",
            self.dir.display()
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A linearizable get of `key` on the node at `addr`, retried (reconnecting)
/// until it is answered: a spurious election on a loaded machine refuses a
/// ReadIndex read. A refused read had no effect, so only the attempt that
/// was answered joins the history, with its own call time.
fn final_get(addr: &str, key: &[u8], start: Instant) -> (u64, Option<Vec<u8>>, u64) {
    let end = Instant::now() + PATIENCE;
    let mut last = String::new();
    while Instant::now() < end {
        if let Ok(mut c) = KvClient::connect(addr, Duration::from_secs(2)) {
            let call = start.elapsed().as_micros() as u64;
            match c.get(key) {
                Reply::Done(v) => return (call, v, start.elapsed().as_micros() as u64),
                r => last = format!("{r:?}"),
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "final read of {} on {addr} failed for {PATIENCE:?}: {last}",
        String::from_utf8_lossy(key)
    );
}

/// The key's version on the node at `addr` (a local read), retried
/// (reconnecting) on I/O errors.
fn final_version(addr: &str, key: &[u8]) -> u64 {
    let end = Instant::now() + PATIENCE;
    loop {
        let r = KvClient::connect(addr, Duration::from_secs(2)).and_then(|mut c| c.version(key));
        match r {
            Ok(v) => return v,
            Err(e) if Instant::now() >= end => panic!("VERSION on {addr} failed: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[derive(Default)]
struct Tally {
    history: Vec<HistoryOp>,
    acked: BTreeMap<Vec<u8>, u64>,
    unknown: BTreeMap<Vec<u8>, u64>,
    refused: u64,
}

fn client_loop(
    id: usize,
    addrs: Vec<String>,
    stop: Arc<AtomicBool>,
    start: Instant,
    tally: Arc<Mutex<Tally>>,
) {
    let mut rng = StdRng::seed_from_u64(id as u64);
    let mut conns: Vec<Option<KvClient>> = addrs.iter().map(|_| None).collect();
    let mut seq = 0u64;
    let now_us = || start.elapsed().as_micros() as u64;
    while !stop.load(Ordering::Relaxed) {
        let n = rng.gen_range(0..addrs.len());
        if conns[n].is_none() {
            match KvClient::connect(&addrs[n], Duration::from_millis(2000)) {
                Ok(c) => conns[n] = Some(c),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
        }
        let c = conns[n].as_mut().unwrap();
        let key = format!("k{}", rng.gen_range(0..KEYS)).into_bytes();
        if rng.gen_bool(0.6) {
            seq += 1;
            let value = format!("c{id}s{seq}").into_bytes();
            let call = now_us();
            let reply = c.put(&key, &value);
            let ret = now_us();
            let mut t = tally.lock().unwrap();
            let input = KvInput::Put {
                key: key.clone(),
                value,
            };
            match reply {
                Reply::Done(prev) => {
                    *t.acked.entry(key).or_default() += 1;
                    t.history.push(HistoryOp {
                        client: id as u64,
                        input,
                        call,
                        ret: Some(ret),
                        output: KvOutput::Value(prev),
                    });
                }
                Reply::Refused(_) => t.refused += 1,
                Reply::Unknown(_) => {
                    *t.unknown.entry(key).or_default() += 1;
                    t.history.push(HistoryOp {
                        client: id as u64,
                        input,
                        call,
                        ret: None,
                        output: KvOutput::Unknown,
                    });
                    conns[n] = None;
                }
            }
        } else {
            let call = now_us();
            let reply = c.get(&key);
            let ret = now_us();
            let mut t = tally.lock().unwrap();
            match reply {
                Reply::Done(v) => t.history.push(HistoryOp {
                    client: id as u64,
                    input: KvInput::Get { key },
                    call,
                    ret: Some(ret),
                    output: KvOutput::Value(v),
                }),
                _ => {
                    t.refused += 1;
                    conns[n] = None;
                }
            }
        }
    }
}

#[test]
fn sigkill_leader_and_followers_under_load() {
    let kills: usize = std::env::var("RAFTLOG_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    // A port chosen for the cluster may be taken by another process before
    // the node binds it: then start over once, with fresh ports.
    let mut cluster = Cluster::new(&dir.path().join("try0"));
    if !cluster.start() {
        drop(cluster);
        cluster = Cluster::new(&dir.path().join("try1"));
        assert!(
            cluster.start(),
            "the ports of two clusters in a row were taken; node logs are in {}",
            dir.path().display()
        );
    }

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (addrs, stop, tally) = (
                cluster.clients.clone(),
                Arc::clone(&stop),
                Arc::clone(&tally),
            );
            std::thread::spawn(move || client_loop(id, addrs, stop, start, tally))
        })
        .collect();
    let acked_now = |tally: &Mutex<Tally>| tally.lock().unwrap().acked.values().sum::<u64>();

    let mut rng = StdRng::seed_from_u64(0xC0FFEE);
    let (mut leader_kills, mut follower_kills) = (0, 0);
    let mut acked_at_last_kill = 0;
    for k in 0..kills {
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..600)));
        // Every kill lands under load: at least 10 puts were acknowledged
        // since the last one (normally long since; a cluster that makes no
        // progress for PATIENCE has a liveness bug).
        acked_at_last_kill = cluster.wait_for("10 more acknowledged puts", PATIENCE, |_| {
            let acked = acked_now(&tally);
            (acked >= acked_at_last_kill + 10).then_some(acked)
        });
        let victim = if k % 2 == 0 {
            // Every other kill is of the leader: wait for one to be known.
            leader_kills += 1;
            cluster.wait_for("a leader to kill", PATIENCE, |c| c.leader())
        } else {
            follower_kills += 1;
            match cluster.leader() {
                Some(l) => (l + rng.gen_range(1..NODES)) % NODES,
                None => rng.gen_range(0..NODES),
            }
        };
        cluster.kill(victim);
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..300)));
        cluster.spawn(victim);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let load_secs = start.elapsed().as_secs_f64();

    // Quiesce: every node applied the leader's whole log, same state.
    cluster.wait_until("convergence", Duration::from_secs(60), |c| {
        let states: Vec<Option<NodeState>> = (0..NODES).map(|i| c.state(i)).collect();
        let Some(states) = states.into_iter().collect::<Option<Vec<_>>>() else {
            return false;
        };
        let commit = states.iter().map(|s| s.commit).max().unwrap();
        states.iter().any(|s| s.is_leader)
            && states.iter().all(|s| {
                s.applied == commit && (s.applied, s.hash) == (states[0].applied, states[0].hash)
            })
    });

    let mut t = std::mem::take(&mut *tally.lock().unwrap());
    // No acknowledged put is lost, on any node.
    for i in 0..NODES {
        let addr = &cluster.clients[i];
        for k in 0..KEYS {
            let key = format!("k{k}").into_bytes();
            let v = final_version(addr, &key);
            let acked = t.acked.get(&key).copied().unwrap_or(0);
            let most = acked + t.unknown.get(&key).copied().unwrap_or(0);
            assert!(
                v >= acked && v <= most,
                "node {i} key k{k}: version {v}, acknowledged {acked}, at most {most}"
            );
        }
        // A final linearizable read of every key joins the history.
        for k in 0..KEYS {
            let key = format!("k{k}").into_bytes();
            let (call, v, ret) = final_get(addr, &key, start);
            t.history.push(HistoryOp {
                client: 1000 + i as u64,
                input: KvInput::Get { key },
                call,
                ret: Some(ret),
                output: KvOutput::Value(v),
            });
        }
    }
    let acked: u64 = t.acked.values().sum();
    let reads = t
        .history
        .iter()
        .filter(|o| matches!(o.input, KvInput::Get { .. }))
        .count();
    let unknown: u64 = t.unknown.values().sum();
    println!(
        "{kills} kills ({leader_kills} of the leader, {follower_kills} of a follower) in {load_secs:.1} s: \
         {acked} puts acknowledged, {unknown} unknown, {} refused, {reads} reads; \
         {} restarts retried on a taken port",
        t.refused, cluster.port_clashes
    );
    assert_eq!(leader_kills, kills.div_ceil(2));
    assert!(
        acked >= 10 * kills as u64,
        "only {acked} puts acknowledged under load"
    );
    assert_linearizable(&t.history, 200_000_000, "raftlog processes under SIGKILLs");
}
