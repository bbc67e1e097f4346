//! Threaded nodes in one process over loopback TCP with engine::wal: the
//! production node end to end (raft loop, WAL group commit, apply worker,
//! snapshot streams, membership over the wire).

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use raft::StateRole;
use raftlog::cluster::{member_id, ClusterState, InitialCluster};
use raftlog::kv::{decode_opt, KvCommand, SharedKv};
use raftlog::{Config, MembershipChange, Node, NodeConfig};

const TOKEN: &str = "node-tcp-test";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Member {
    name: String,
    url: String,
    node: Option<Node>,
    kv: SharedKv,
}

fn raft_config(id: u64) -> Config {
    let mut c = Config::new(id);
    c.tick_interval = Duration::from_millis(20);
    c.election_tick = 10;
    c.heartbeat_tick = 1;
    c.snapshot_interval_entries = 300;
    c.compaction_margin_entries = 20;
    c.snapshot_chunk_bytes = 4096;
    c
}

fn start(dir: &Path, m: &mut Member, cluster: &InitialCluster, state: ClusterState) {
    let id = member_id(TOKEN, &m.name);
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
    m.node = Some(Node::open(cfg, m.kv.clone()).expect("node starts"));
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}

fn leader(members: &[Member]) -> Option<usize> {
    members.iter().position(|m| {
        m.node
            .as_ref()
            .is_some_and(|n| n.status().role == StateRole::Leader)
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

#[test]
fn three_nodes_replicate_read_restart_snapshot_and_change_membership() {
    let dir = tempfile::tempdir().unwrap();
    let mut members: Vec<Member> = ["a", "b", "c"]
        .iter()
        .map(|n| Member {
            name: n.to_string(),
            url: format!("http://127.0.0.1:{}", free_port()),
            node: None,
            kv: SharedKv::new(),
        })
        .collect();
    let spec: Vec<String> = members
        .iter()
        .map(|m| format!("{}={}", m.name, m.url))
        .collect();
    let cluster = InitialCluster::parse(&spec.join(","), TOKEN).unwrap();
    for m in members.iter_mut() {
        start(dir.path(), m, &cluster, ClusterState::New);
    }
    wait_until("a leader", Duration::from_secs(10), || {
        leader(&members).is_some()
    });

    // Proposals through every node (followers forward).
    for i in 0..300 {
        let m = &members[i % 3];
        let node = m.node.as_ref().unwrap();
        let mut tries = 0;
        while let Err(e) = put(node, &format!("k{}", i % 17), &format!("v{i}")) {
            tries += 1;
            assert!(tries < 50, "put {i} keeps failing: {e}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    wait_until("convergence", Duration::from_secs(10), || {
        converged(&members)
    });

    // A linearizable read on a follower sees the last acknowledged write.
    let l = leader(&members).unwrap();
    put(members[l].node.as_ref().unwrap(), "fresh", "yes").unwrap();
    let f = (l + 1) % 3;
    let index = members[f]
        .node
        .as_ref()
        .unwrap()
        .read_index()
        .unwrap()
        .wait_timeout(Duration::from_secs(5))
        .unwrap();
    assert!(members[f].kv.state().applied() >= index);
    assert_eq!(members[f].kv.state().get(b"fresh"), Some(&b"yes"[..]));

    // A follower restarts from its WAL and catches up.
    members[f].node.take().unwrap().stop();
    for i in 0..100 {
        let l = leader(&members).unwrap();
        put(
            members[l].node.as_ref().unwrap(),
            &format!("while-down{i}"),
            "x",
        )
        .unwrap();
    }
    start(dir.path(), &mut members[f], &cluster, ClusterState::New);
    wait_until(
        "the restarted follower to catch up",
        Duration::from_secs(10),
        || converged(&members),
    );

    // A follower far behind (the leader compacted past it) gets a snapshot
    // streamed over TCP.
    let l = leader(&members).unwrap();
    let f = (l + 1) % 3;
    members[f].node.take().unwrap().stop();
    for i in 0..700 {
        let l = leader(&members).unwrap();
        put(
            members[l].node.as_ref().unwrap(),
            &format!("far{}", i % 50),
            &format!("{i}"),
        )
        .unwrap();
    }
    let st = members[leader(&members).unwrap()]
        .node
        .as_ref()
        .unwrap()
        .status();
    assert!(
        st.snapshot_index > 0 && st.first_index > 1,
        "the leader did not compact: {st:?}"
    );
    start(dir.path(), &mut members[f], &cluster, ClusterState::New);
    wait_until(
        "the far-behind follower to install a snapshot",
        Duration::from_secs(20),
        || converged(&members),
    );
    assert!(members[f].node.as_ref().unwrap().status().snapshot_index > 0);

    // A fourth member joins as a learner, is promoted, and a voter leaves.
    let mut d = Member {
        name: "d".into(),
        url: format!("http://127.0.0.1:{}", free_port()),
        node: None,
        kv: SharedKv::new(),
    };
    let d_id = member_id(TOKEN, "d");
    let with_d = InitialCluster::parse(&format!("{},d={}", spec.join(","), d.url), TOKEN).unwrap();
    start(dir.path(), &mut d, &with_d, ClusterState::Existing);
    let l = leader(&members).unwrap();
    let leader_node = members[l].node.as_ref().unwrap();
    let cs = leader_node
        .change_membership(MembershipChange::AddLearner {
            id: d_id,
            peer_url: d.url.clone(),
        })
        .unwrap()
        .wait_timeout(Duration::from_secs(5))
        .unwrap();
    assert!(cs.learners.contains(&d_id));
    members.push(d);
    wait_until("the learner to catch up", Duration::from_secs(20), || {
        converged(&members)
    });
    let mut promoted = false;
    for _ in 0..50 {
        let l = leader(&members).unwrap();
        if let Ok(p) = members[l]
            .node
            .as_ref()
            .unwrap()
            .change_membership(MembershipChange::PromoteLearner { id: d_id })
        {
            if let Ok(cs) = p.wait_timeout(Duration::from_secs(5)) {
                assert!(cs.voters.contains(&d_id));
                promoted = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(promoted);
    // Leadership moves to the new voter, then the old leader is removed.
    let old = leader(&members).unwrap();
    let old_id = members[old].node.as_ref().unwrap().id();
    wait_until("leadership to move to d", Duration::from_secs(20), || {
        if let Some(l) = leader(&members) {
            if members[l].node.as_ref().unwrap().id() == d_id {
                return true;
            }
            let _ = members[l].node.as_ref().unwrap().transfer_leader(d_id);
        }
        std::thread::sleep(Duration::from_millis(200));
        false
    });
    let cs = members[3]
        .node
        .as_ref()
        .unwrap()
        .change_membership(MembershipChange::Remove { id: old_id })
        .unwrap()
        .wait_timeout(Duration::from_secs(5))
        .unwrap();
    assert!(!cs.voters.contains(&old_id));
    wait_until(
        "the removed member to stop",
        Duration::from_secs(10),
        || members[old].node.as_ref().unwrap().is_stopped(),
    );
    members[old].node.take();
    for i in 0..50 {
        put(
            members[3].node.as_ref().unwrap(),
            &format!("after-remove{i}"),
            "y",
        )
        .unwrap();
    }
    wait_until(
        "convergence after the membership changes",
        Duration::from_secs(10),
        || converged(&members),
    );
}
