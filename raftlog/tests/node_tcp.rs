//! Threaded nodes in one process over loopback TCP with engine::wal: the
//! production node end to end (raft loop, WAL group commit, apply worker,
//! snapshot streams, membership over the wire).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use raft::eraftpb::ConfState;
use raft::StateRole;
use raftlog::cluster::{member_id, ClusterState, InitialCluster};
use raftlog::kv::{decode_opt, KvCommand, SharedKv};
use raftlog::{Config, MembershipChange, Node, NodeConfig};

const TOKEN: &str = "node-tcp-test";
/// How long to wait for anything that must happen eventually (an election,
/// catch-up, a snapshot install, a request that keeps meeting leader
/// changes): generous, since the machine may be loaded; only a real
/// liveness bug takes this long.
const PATIENCE: Duration = Duration::from_secs(30);

struct Member {
    name: String,
    url: String,
    node: Option<Node>,
    kv: SharedKv,
}

impl Member {
    fn new(name: &str, port: u16) -> Member {
        Member {
            name: name.into(),
            url: format!("http://127.0.0.1:{port}"),
            node: None,
            kv: SharedKv::new(),
        }
    }

    fn node(&self) -> &Node {
        self.node.as_ref().expect("running")
    }
}

fn raft_config(id: u64) -> Config {
    let mut c = Config::new(id);
    c.tick_interval = Duration::from_millis(20);
    // 0.5-1 s: a stall of a few hundred ms on a loaded machine does not
    // depose the leader (requests retry across leader changes anyway).
    c.election_tick = 25;
    c.heartbeat_tick = 1;
    c.snapshot_interval_entries = 300;
    c.compaction_margin_entries = 20;
    c.snapshot_chunk_bytes = 4096;
    c
}

/// Opens member `m`'s node. `Err` when its peer port is taken by another
/// socket; a restart on the same port retries that for a while first.
fn try_start(
    dir: &Path,
    m: &mut Member,
    cluster: &InitialCluster,
    state: ClusterState,
    patience: Duration,
) -> Result<(), String> {
    let id = member_id(TOKEN, &m.name);
    let end = Instant::now() + patience;
    loop {
        let mut cfg = NodeConfig::new(
            raft_config(id),
            dir.join(&m.name),
            cluster.clone(),
            raftlog::cluster::url_host_port(&m.url),
        );
        cfg.advertise_peer_url = m.url.clone();
        cfg.cluster_state = state;
        cfg.wal.segment_bytes = 4 << 20;
        cfg.wal.queue_bytes_max = 2 << 20;
        cfg.wal.record_bytes_max = 1 << 20;
        m.kv = SharedKv::new();
        match Node::open(cfg, m.kv.clone()) {
            Ok(node) => {
                m.node = Some(node);
                return Ok(());
            }
            Err(e) if common::address_in_use(&e.to_string()) => {
                if Instant::now() >= end {
                    return Err(e.to_string());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("node {} does not start: {e}", m.name),
        }
    }
}

/// Restarts a member on its port (waiting for any socket that took the
/// port while it was down to let go).
fn restart(dir: &Path, m: &mut Member, cluster: &InitialCluster) {
    if let Err(e) = try_start(dir, m, cluster, ClusterState::New, PATIENCE) {
        panic!("node {} does not restart: {e}", m.name);
    }
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// The member that leads in the highest term (a deposed leader may not have
/// noticed yet).
fn leader(members: &[Member]) -> Option<usize> {
    members
        .iter()
        .enumerate()
        .filter_map(|(i, m)| Some((i, m.node.as_ref()?.status())))
        .filter(|(_, s)| s.role == StateRole::Leader)
        .max_by_key(|(_, s)| s.term)
        .map(|(i, _)| i)
}

/// Runs `op` until it succeeds, for up to PATIENCE: a leader change (an
/// election after a stall on a loaded machine) fails requests in flight,
/// which is not what this test checks. Every op retried here is idempotent
/// (a put of the same value, a read, or a membership change whose outcome
/// the caller checks before trying again).
fn retry<T>(what: &str, mut op: impl FnMut() -> Result<T, String>) -> T {
    let end = Instant::now() + PATIENCE;
    loop {
        match op() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= end => panic!("{what} kept failing for {PATIENCE:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Runs `op` on the current leader, retried as `retry` does.
fn on_leader<T>(
    members: &[Member],
    what: &str,
    mut op: impl FnMut(usize, &Node) -> raftlog::Result<T>,
) -> T {
    retry(what, || {
        let l = leader(members).ok_or("no leader")?;
        op(l, members[l].node()).map_err(|e| e.to_string())
    })
}

fn put(node: &Node, key: &str, value: &str) -> raftlog::Result<Option<Vec<u8>>> {
    let cmd = KvCommand::Put {
        key: key.into(),
        value: value.into(),
    }
    .encode();
    let resp = node.propose(cmd)?.wait_timeout(Duration::from_secs(5))?;
    Ok(decode_opt(&resp).flatten())
}

/// A membership change through the leader, retried until `done` holds for
/// the leader's configuration (a change whose answer was lost may have
/// happened: it is not proposed twice).
fn change(
    members: &[Member],
    what: &str,
    change: MembershipChange,
    done: impl Fn(&ConfState) -> bool,
) -> ConfState {
    on_leader(members, what, |_, node| {
        let cs = node.status().conf_state;
        if done(&cs) {
            return Ok(cs);
        }
        node.change_membership(change.clone())?
            .wait_timeout(Duration::from_secs(5))
    })
}

fn converged(members: &[Member]) -> bool {
    let states: Vec<(u64, u64)> = members
        .iter()
        .filter(|m| m.node.is_some())
        .map(|m| {
            let s = m.kv.state();
            (s.applied(), s.hash())
        })
        .collect();
    let commit = members
        .iter()
        .filter_map(|m| m.node.as_ref())
        .map(|n| n.status().commit_index)
        .max()
        .unwrap();
    states.windows(2).all(|w| w[0] == w[1]) && states[0].0 == commit
}

/// Starts members a, b and c on fresh ports. A port another process took
/// before the node bound it means starting over (once) on fresh ports.
fn start_cluster(dir: &Path) -> (PathBuf, Vec<Member>, Vec<String>, InitialCluster) {
    for attempt in 0..2 {
        let dir = dir.join(format!("try{attempt}"));
        let mut members: Vec<Member> = ["a", "b", "c"]
            .iter()
            .zip(common::free_ports(3))
            .map(|(n, port)| Member::new(n, port))
            .collect();
        let spec: Vec<String> = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.url))
            .collect();
        let cluster = InitialCluster::parse(&spec.join(","), TOKEN).unwrap();
        let started = members
            .iter_mut()
            .all(|m| try_start(&dir, m, &cluster, ClusterState::New, Duration::ZERO).is_ok());
        if started {
            return (dir, members, spec, cluster);
        }
        for m in &mut members {
            if let Some(n) = m.node.take() {
                n.stop();
            }
        }
    }
    panic!("the ports of two clusters in a row were taken");
}
#[test]
fn three_nodes_replicate_read_restart_snapshot_and_change_membership() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, mut members, spec, cluster) = start_cluster(tmp.path());
    let dir = dir.as_path();
    wait_until("a leader", PATIENCE, || leader(&members).is_some());

    // Proposals through every node (followers forward).
    for i in 0..300 {
        let node = members[i % 3].node();
        retry(&format!("put {i} through node {}", i % 3), || {
            put(node, &format!("k{}", i % 17), &format!("v{i}")).map_err(|e| e.to_string())
        });
    }
    wait_until("convergence", PATIENCE, || converged(&members));

    // A linearizable read on a follower sees the last acknowledged write.
    let l = on_leader(&members, "put fresh", |l, node| {
        put(node, "fresh", "yes").map(|_| l)
    });
    let f = (l + 1) % 3;
    let index = retry("read_index on a follower", || {
        members[f]
            .node()
            .read_index()
            .and_then(|p| p.wait_timeout(Duration::from_secs(5)))
            .map_err(|e| e.to_string())
    });
    assert!(members[f].kv.state().applied() >= index);
    assert_eq!(members[f].kv.state().get(b"fresh"), Some(&b"yes"[..]));

    // A follower restarts from its WAL and catches up.
    members[f].node.take().unwrap().stop();
    for i in 0..100 {
        on_leader(&members, "put while a follower is down", |_, node| {
            put(node, &format!("while-down{i}"), "x")
        });
    }
    restart(dir, &mut members[f], &cluster);
    wait_until("the restarted follower to catch up", PATIENCE, || {
        converged(&members)
    });

    // A follower far behind (the leader compacted past it) gets a snapshot
    // streamed over TCP.
    let l = leader(&members).expect("a leader after convergence");
    let f = (l + 1) % 3;
    members[f].node.take().unwrap().stop();
    for i in 0..700 {
        on_leader(&members, "put while a follower is far behind", |_, node| {
            put(node, &format!("far{}", i % 50), &format!("{i}"))
        });
    }
    // Snapshots are taken in the background: wait for the leader's.
    let mut st = None;
    wait_until("the leader to compact its log", PATIENCE, || {
        st = leader(&members).map(|l| members[l].node().status());
        st.as_ref()
            .is_some_and(|s| s.snapshot_index > 0 && s.first_index > 1)
    });
    restart(dir, &mut members[f], &cluster);
    wait_until(
        "the far-behind follower to install a snapshot",
        Duration::from_secs(60),
        || converged(&members),
    );
    assert!(members[f].node().status().snapshot_index > 0);

    // A fourth member joins as a learner, is promoted, and a voter leaves.
    // Its port is chosen now; if another process takes it first, d simply
    // gets another (it is not a member yet).
    let d_id = member_id(TOKEN, "d");
    let d = retry("start d on a free port", || {
        let mut d = Member::new("d", common::free_ports(1)[0]);
        let with_d =
            InitialCluster::parse(&format!("{},d={}", spec.join(","), d.url), TOKEN).unwrap();
        try_start(dir, &mut d, &with_d, ClusterState::Existing, Duration::ZERO)?;
        Ok(d)
    });
    let cs = change(
        &members,
        "adding d as a learner",
        MembershipChange::AddLearner {
            id: d_id,
            peer_url: d.url.clone(),
        },
        |cs| cs.learners.contains(&d_id),
    );
    assert!(cs.learners.contains(&d_id));
    members.push(d);
    wait_until("the learner to catch up", Duration::from_secs(60), || {
        converged(&members)
    });
    let cs = change(
        &members,
        "promoting d",
        MembershipChange::PromoteLearner { id: d_id },
        |cs| cs.voters.contains(&d_id),
    );
    assert!(cs.voters.contains(&d_id) && !cs.learners.contains(&d_id));
    // Leadership moves to the new voter, then the old leader is removed.
    let old = leader(&members).expect("a leader after the promotion");
    let old_id = members[old].node().id();
    assert_ne!(old_id, d_id);
    let move_to_d = |members: &[Member]| {
        wait_until("leadership to move to d", PATIENCE, || {
            if let Some(l) = leader(members) {
                if members[l].node().id() == d_id {
                    return true;
                }
                let _ = members[l].node().transfer_leader(d_id);
            }
            std::thread::sleep(Duration::from_millis(200));
            false
        })
    };
    move_to_d(&members);
    let cs = retry("removing the old leader through d", || {
        if leader(&members) != Some(3) {
            move_to_d(&members);
        }
        let node = members[3].node();
        let cs = node.status().conf_state;
        if !cs.voters.contains(&old_id) {
            return Ok(cs);
        }
        node.change_membership(MembershipChange::Remove { id: old_id })
            .and_then(|p| p.wait_timeout(Duration::from_secs(5)))
            .map_err(|e| e.to_string())
    });
    assert!(!cs.voters.contains(&old_id));
    wait_until("the removed member to stop", PATIENCE, || {
        members[old].node().is_stopped()
    });
    members[old].node.take();
    for i in 0..50 {
        on_leader(&members, "put after the removal", |_, node| {
            put(node, &format!("after-remove{i}"), "y")
        });
    }
    wait_until("convergence after the membership changes", PATIENCE, || {
        converged(&members)
    });
    wait_until("every member to see the new membership", PATIENCE, || {
        members.iter().flat_map(|m| m.node.as_ref()).all(|n| {
            let cs = n.status().conf_state;
            cs.voters.len() == 3 && cs.voters.contains(&d_id) && !cs.voters.contains(&old_id)
        })
    });
}
