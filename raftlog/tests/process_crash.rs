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

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Cluster {
    dir: PathBuf,
    names: Vec<String>,
    clients: Vec<String>,
    initial_cluster: String,
    children: Vec<Option<Child>>,
    starts: usize,
}

impl Cluster {
    fn new(dir: &Path) -> Cluster {
        let names: Vec<String> = (0..NODES).map(|i| format!("n{i}")).collect();
        let peers: Vec<String> = names
            .iter()
            .map(|n| format!("{n}=http://127.0.0.1:{}", free_port()))
            .collect();
        let clients = (0..NODES)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        Cluster {
            dir: dir.to_path_buf(),
            names,
            clients,
            initial_cluster: peers.join(","),
            children: (0..NODES).map(|_| None).collect(),
            starts: 0,
        }
    }

    fn spawn(&mut self, i: usize) {
        assert!(self.children[i].is_none());
        self.starts += 1;
        let log = File::create(
            self.dir
                .join(format!("{}-{}.log", self.names[i], self.starts)),
        )
        .unwrap();
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

    fn kill(&mut self, i: usize) {
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

    fn wait_until(&self, what: &str, timeout: Duration, mut f: impl FnMut(&Cluster) -> bool) {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out waiting for {what}; node logs are in {}",
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
    let mut cluster = Cluster::new(dir.path());
    for i in 0..NODES {
        cluster.spawn(i);
    }
    cluster.wait_until("a leader", Duration::from_secs(20), |c| {
        c.leader().is_some()
    });

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

    let mut rng = StdRng::seed_from_u64(0xC0FFEE);
    let (mut leader_kills, mut follower_kills) = (0, 0);
    for k in 0..kills {
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..600)));
        let leader = cluster.leader();
        let victim = match leader {
            Some(l) if k % 2 == 0 => {
                leader_kills += 1;
                l
            }
            Some(l) => {
                follower_kills += 1;
                (l + rng.gen_range(1..NODES)) % NODES
            }
            None => {
                follower_kills += 1;
                rng.gen_range(0..NODES)
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
        let mut c = KvClient::connect(&cluster.clients[i], Duration::from_secs(2)).unwrap();
        for k in 0..KEYS {
            let key = format!("k{k}").into_bytes();
            let v = c.version(&key).unwrap();
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
            let call = start.elapsed().as_micros() as u64;
            let Reply::Done(v) = c.get(&key) else {
                panic!("final read on node {i} failed")
            };
            let ret = start.elapsed().as_micros() as u64;
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
         {acked} puts acknowledged, {unknown} unknown, {} refused, {reads} reads",
        t.refused
    );
    assert!(
        leader_kills >= kills / 3,
        "only {leader_kills} leader kills"
    );
    assert!(
        acked >= 10 * kills as u64,
        "only {acked} puts acknowledged under load"
    );
    assert_linearizable(&t.history, 200_000_000, "raftlog processes under SIGKILLs");
}
