//! A 3-member ferrokv cluster from the `ferrokv` binary, bootstrapped with
//! etcd's `--initial-cluster` on loopback, under a load of concurrent gRPC
//! clients spread over all members, while the leader or a follower is
//! SIGKILLed and restarted again and again (issue 7, acceptance 4). Six
//! kills in `make test`; `SERVER_CRASH_KILLS` for more (`make server-soak`).
//!
//! Small snapshot settings (`--snapshot-count 300`, 100 entries kept behind
//! a snapshot) make restarted members catch up from snapshots as well as
//! from the log.
//!
//! Afterwards:
//! - every member converges to the same applied index and HashKV;
//! - no acknowledged put is lost, on any member: each key's version (the
//!   puts applied to it) is at least the number of acknowledged puts to
//!   it and at most that plus the puts whose outcome the client never
//!   learned;
//! - the client history (puts with prev_kv, linearizable gets on every
//!   member, and a final linearizable read of every key on every member)
//!   passes raftlog's linearizability checker.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, Kind};
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::maintenance_client::MaintenanceClient;
use proto::etcdserverpb::{HashKvRequest, PutRequest, RangeRequest, StatusRequest};
use raftlog::linearizability::{assert_linearizable, HistoryOp, KvInput, KvOutput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

const KEYS: usize = 8;
const CLIENTS: usize = 6;
/// A request's deadline; beyond it its outcome is unknown.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

fn channel(endpoint: &str) -> Channel {
    Channel::from_shared(format!("http://{endpoint}"))
        .unwrap()
        .connect_timeout(Duration::from_millis(500))
        .timeout(REQUEST_TIMEOUT)
        .connect_lazy()
}

#[derive(Default)]
struct Tally {
    history: Vec<HistoryOp>,
    acked: BTreeMap<Vec<u8>, u64>,
    unknown: BTreeMap<Vec<u8>, u64>,
    refused_reads: u64,
}

async fn client_loop(
    id: usize,
    endpoints: Vec<String>,
    stop: Arc<AtomicBool>,
    start: Instant,
    tally: Arc<Mutex<Tally>>,
) {
    let mut rng = StdRng::seed_from_u64(id as u64);
    let clients: Vec<KvClient<Channel>> = endpoints
        .iter()
        .map(|e| KvClient::new(channel(e)))
        .collect();
    let now_us = || start.elapsed().as_micros() as u64;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut c = clients[rng.gen_range(0..clients.len())].clone();
        let key = format!("k{}", rng.gen_range(0..KEYS)).into_bytes();
        if rng.gen_bool(0.6) {
            seq += 1;
            let value = format!("c{id}s{seq}").into_bytes();
            let call = now_us();
            let r = c
                .put(PutRequest {
                    key: key.clone(),
                    value: value.clone(),
                    prev_kv: true,
                    ..Default::default()
                })
                .await;
            let ret = now_us();
            let input = KvInput::Put {
                key: key.clone(),
                value,
            };
            let mut t = tally.lock().unwrap();
            match r {
                Ok(resp) => {
                    *t.acked.entry(key).or_default() += 1;
                    let prev = resp.into_inner().prev_kv.map(|kv| kv.value);
                    t.history.push(HistoryOp {
                        client: id as u64,
                        input,
                        call,
                        ret: Some(ret),
                        output: KvOutput::Value(prev),
                    });
                }
                Err(_) => {
                    // Refused or lost: it may still be applied.
                    *t.unknown.entry(key).or_default() += 1;
                    t.history.push(HistoryOp {
                        client: id as u64,
                        input,
                        call,
                        ret: None,
                        output: KvOutput::Unknown,
                    });
                }
            }
        } else {
            let call = now_us();
            let r = c
                .range(RangeRequest {
                    key: key.clone(),
                    ..Default::default()
                })
                .await;
            let ret = now_us();
            let mut t = tally.lock().unwrap();
            match r {
                Ok(resp) => {
                    let v = resp.into_inner().kvs.pop().map(|kv| kv.value);
                    t.history.push(HistoryOp {
                        client: id as u64,
                        input: KvInput::Get { key },
                        call,
                        ret: Some(ret),
                        output: KvOutput::Value(v),
                    });
                }
                Err(_) => t.refused_reads += 1,
            }
        }
        if rng.gen_bool(0.05) {
            // Let a dead member's connection attempts go without spinning.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// (leader id, applied index, revision) as one member reports them.
async fn status(endpoint: &str) -> Option<(u64, u64, i64, u64)> {
    let mut m = MaintenanceClient::new(channel(endpoint));
    let s = m.status(StatusRequest {}).await.ok()?.into_inner();
    let header = s.header?;
    Some((
        s.leader,
        s.raft_applied_index,
        header.revision,
        header.member_id,
    ))
}

async fn leader(cluster: &Cluster, running: &[bool]) -> Option<usize> {
    for (i, m) in cluster.members.iter().enumerate() {
        if !running[i] {
            continue;
        }
        if let Some((leader, _, _, me)) = status(&m.endpoint()).await {
            if leader != 0 && leader == me {
                return Some(i);
            }
        }
    }
    None
}

async fn hash_kv(endpoint: &str, revision: i64) -> Option<u32> {
    let mut m = MaintenanceClient::new(channel(endpoint));
    Some(
        m.hash_kv(HashKvRequest { revision })
            .await
            .ok()?
            .into_inner()
            .hash,
    )
}

#[test]
fn sigkill_members_under_load() {
    let kills: usize = std::env::var("SERVER_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let kind = Kind::under_test();
    let mut flags = vec![
        "--heartbeat-interval=20",
        "--election-timeout=200",
        "--snapshot-count=300",
    ];
    if kind == Kind::Ferrokv {
        flags.push("--experimental-snapshot-catchup-entries=100");
    }
    let mut cluster = Cluster::start_with(kind, 3, &flags);
    let endpoints: Vec<String> = cluster.members.iter().map(|m| m.endpoint()).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Channels are made outside async code too.
    let _runtime = rt.enter();

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            rt.spawn(client_loop(
                id,
                endpoints.clone(),
                stop.clone(),
                start,
                tally.clone(),
            ))
        })
        .collect();

    let mut rng = StdRng::seed_from_u64(0x5EED);
    let (mut leader_kills, mut follower_kills) = (0, 0);
    let mut running = [true; 3];
    for k in 0..kills {
        std::thread::sleep(Duration::from_millis(rng.gen_range(400..1200)));
        // Every other kill is the leader's: wait (a while) for one to be
        // elected after the previous restart.
        let wait_for_leader = if k % 2 == 0 {
            Duration::from_secs(10)
        } else {
            Duration::ZERO
        };
        let leader = rt.block_on(async {
            let deadline = Instant::now() + wait_for_leader;
            loop {
                let l = leader(&cluster, &running).await;
                if l.is_some() || Instant::now() >= deadline {
                    break l;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let victim = match leader {
            Some(l) if k % 2 == 0 => {
                leader_kills += 1;
                l
            }
            Some(l) => {
                follower_kills += 1;
                (l + rng.gen_range(1..3)) % 3
            }
            None => {
                follower_kills += 1;
                rng.gen_range(0..3)
            }
        };
        cluster.members[victim].kill();
        running[victim] = false;
        std::thread::sleep(Duration::from_millis(rng.gen_range(50..400)));
        cluster.members[victim].start();
        running[victim] = true;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        rt.block_on(c).unwrap();
    }
    let load_secs = start.elapsed().as_secs_f64();
    cluster.wait_ready(Duration::from_secs(60));

    // Every member applied the same log and holds the same data.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let states: Vec<Option<(u64, u64, i64, u64)>> =
            rt.block_on(async { futures_join(&endpoints).await });
        if let Some(states) = states.into_iter().collect::<Option<Vec<_>>>() {
            let same = states
                .iter()
                .all(|s| (s.1, s.2) == (states[0].1, states[0].2) && s.0 == states[0].0);
            if same && states[0].0 != 0 {
                let rev = states[0].2;
                let hashes: Vec<Option<u32>> = endpoints
                    .iter()
                    .map(|e| rt.block_on(hash_kv(e, rev)))
                    .collect();
                if hashes.iter().all(|h| h.is_some() && *h == hashes[0]) {
                    break;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "members did not converge; logs in {}",
            cluster.dir.path().display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut t = std::mem::take(&mut *tally.lock().unwrap());
    // The reads below may meet an election (a loaded machine delays a
    // heartbeat past the election timeout): each is retried until one
    // answers. A read has no effect, so only the answered attempt counts,
    // and it joins the history with its own call and return times.
    let read = |kv: &mut KvClient<Channel>, req: RangeRequest, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let call = start.elapsed().as_micros() as u64;
            match rt.block_on(kv.range(req.clone())) {
                Ok(resp) => {
                    let ret = start.elapsed().as_micros() as u64;
                    break (call, resp.into_inner(), ret);
                }
                Err(e) => {
                    assert!(Instant::now() < deadline, "{what}: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    };
    // No acknowledged put is lost, on any member.
    for (i, ep) in endpoints.iter().enumerate() {
        let mut kv = KvClient::new(channel(ep));
        for k in 0..KEYS {
            let key = format!("k{k}").into_bytes();
            let req = RangeRequest {
                key: key.clone(),
                serializable: true,
                ..Default::default()
            };
            let version = read(&mut kv, req, "serializable read after convergence")
                .1
                .kvs
                .pop()
                .map_or(0, |kv| kv.version as u64);
            let acked = t.acked.get(&key).copied().unwrap_or(0);
            let most = acked + t.unknown.get(&key).copied().unwrap_or(0);
            assert!(
                version >= acked && version <= most,
                "member {i} key k{k}: version {version}, acknowledged {acked}, at most {most}"
            );
        }
        // A final linearizable read of every key joins the history.
        for k in 0..KEYS {
            let key = format!("k{k}").into_bytes();
            let req = RangeRequest {
                key: key.clone(),
                ..Default::default()
            };
            let (call, mut resp, ret) = read(&mut kv, req, "linearizable read after convergence");
            let v = resp.kvs.pop().map(|kv| kv.value);
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
    let unknown: u64 = t.unknown.values().sum();
    let reads = t
        .history
        .iter()
        .filter(|o| matches!(o.input, KvInput::Get { .. }))
        .count();
    let installs: usize = cluster
        .members
        .iter()
        .map(|m| m.log().matches("installed a snapshot").count())
        .sum();
    println!(
        "{kills} kills ({leader_kills} of the leader, {follower_kills} of a follower) in {load_secs:.1} s: \
         {acked} puts acknowledged, {unknown} unknown, {reads} reads, {} reads refused, \
         {installs} snapshots installed by restarted members",
        t.refused_reads
    );
    assert!(
        leader_kills >= kills / 3,
        "only {leader_kills} leader kills"
    );
    assert!(
        acked >= 10 * kills as u64,
        "only {acked} puts acknowledged under load"
    );
    assert_linearizable(&t.history, 200_000_000, "ferrokv cluster under SIGKILLs");
}

/// Status of every member, concurrently.
async fn futures_join(endpoints: &[String]) -> Vec<Option<(u64, u64, i64, u64)>> {
    let mut out = Vec::new();
    let tasks: Vec<_> = endpoints
        .iter()
        .map(|e| {
            let e = e.clone();
            tokio::spawn(async move { status(&e).await })
        })
        .collect();
    for t in tasks {
        out.push(t.await.ok().flatten());
    }
    out
}
