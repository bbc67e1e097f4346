//! Periodic snapshot markers taken while the apply worker replays the
//! committed log after a restart: a marker must record the term and the
//! membership of the index it names, so that a restart from it starts raft
//! with the configuration the log had there.
#![allow(clippy::field_reassign_with_default)]

mod common;

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft::StateRole;
use raftlog::cluster::{member_id, ClusterState, InitialCluster};
use raftlog::state_machine::{ApplyError, SnapshotImage};
use raftlog::{Committed, Config, MembershipChange, Node, NodeConfig, StateMachine};

const TOKEN: &str = "snapshot-marker-test";
/// How long to wait for anything that must happen eventually (leadership
/// of a single node, an entry applied): generous, since the machine may be
/// loaded; only a real liveness bug takes this long.
const PATIENCE: Duration = Duration::from_secs(30);

/// A state machine whose own storage is durable at every applied entry
/// (the MVCC store after a backend batch commit): `make_durable` is true,
/// so periodic snapshots are markers without a file.
struct DurableSm {
    path: PathBuf,
    applied: u64,
}

impl DurableSm {
    fn open(path: PathBuf) -> DurableSm {
        let applied = std::fs::read(&path)
            .map(|b| u64::from_le_bytes(b[..8].try_into().unwrap()))
            .unwrap_or(0);
        DurableSm { path, applied }
    }
}

impl StateMachine for DurableSm {
    fn apply(&mut self, e: &Committed) -> Result<Bytes, ApplyError> {
        if e.index > self.applied {
            self.applied = e.index;
            std::fs::write(&self.path, self.applied.to_le_bytes())?;
        }
        Ok(Bytes::new())
    }
    fn applied_index(&self) -> u64 {
        self.applied
    }
    fn snapshot(&mut self) -> io::Result<SnapshotImage> {
        let a = self.applied;
        Ok(Box::new(move |out| out.write_all(&a.to_le_bytes())))
    }
    fn make_durable(&mut self) -> io::Result<bool> {
        Ok(true)
    }
    fn restore_snapshot(&mut self, input: &mut dyn Read, index: u64, _: u64) -> io::Result<()> {
        let mut b = [0u8; 8];
        input.read_exact(&mut b)?;
        self.applied = index.max(u64::from_le_bytes(b));
        std::fs::write(&self.path, self.applied.to_le_bytes())
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + PATIENCE;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}

/// Starts (or restarts) the single member `a` on `url`, a marker every
/// `interval` entries, and waits for its leadership. A restart waits for
/// any socket that took the port while the node was down to let go.
fn start(dir: &Path, url: &str, interval: u64) -> Node {
    let cluster = InitialCluster::parse(&format!("a={url}"), TOKEN).unwrap();
    let end = Instant::now() + PATIENCE;
    let node = loop {
        let mut c = Config::new(member_id(TOKEN, "a"));
        c.tick_interval = Duration::from_millis(10);
        c.election_tick = 10;
        c.heartbeat_tick = 1;
        c.snapshot_interval_entries = interval;
        // One committed entry per ready: what entries larger than
        // `max_committed_size_per_ready` (16 MiB by default; etcd requests
        // reach 1.5 MiB) do to a replay: it is handed out in several
        // batches.
        c.max_committed_size_per_ready = 1;
        let mut cfg = NodeConfig::new(
            c,
            dir.join("a"),
            cluster.clone(),
            raftlog::cluster::url_host_port(url),
        );
        cfg.advertise_peer_url = url.to_string();
        cfg.cluster_state = ClusterState::New;
        cfg.wal.segment_bytes = 1 << 20;
        cfg.wal.queue_bytes_max = 256 << 10;
        cfg.wal.record_bytes_max = 64 << 10;
        std::fs::create_dir_all(dir.join("a")).unwrap();
        match Node::open(cfg, DurableSm::open(dir.join("a").join("sm"))) {
            Ok(node) => break node,
            Err(e) if common::address_in_use(&e.to_string()) && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("node a does not start: {e}"),
        }
    };
    wait_until("leadership", || node.status().role == StateRole::Leader);
    node
}

/// The state machine's storage is durable ahead of the last snapshot
/// marker `I` by at least the snapshot interval: the crash came after the
/// store's backend commit crossed the interval and before the marker the
/// apply worker then handed to the raft loop was durable (here the first
/// life runs with interval 10 and stops 6 entries past its marker; the
/// second runs with interval 5 over the same files). After the restart raft
/// hands the committed entries after `I` out again, in more than one batch
/// (here one entry per ready; in production when they exceed
/// `max_committed_size_per_ready`, or when the commit index learned from
/// the leader advances in steps), and the state machine skips those it
/// holds. A membership change (a learner added) lies among them. Whatever
/// marker the apply worker takes during that replay must carry the
/// configuration of its own index: the running node, and the node after a
/// further restart from that marker, both know the learner.
#[test]
fn periodic_marker_during_replay_records_the_configuration_of_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_ports(1)[0];
    let url = format!("http://127.0.0.1:{port}");
    let learner = 0x77;
    let wait = Duration::from_secs(30);

    // First life: a marker every 10 entries.
    let node = start(dir.path(), &url, 10);
    let one = |node: &Node, i: u8| {
        node.propose(Bytes::from(vec![b'c', i]))
            .unwrap()
            .wait_timeout(wait)
            .unwrap();
    };
    let mut i = 0;
    while node.status().snapshot_index == 0 {
        one(&node, i);
        i += 1;
        std::thread::sleep(Duration::from_millis(20));
        assert!(i < 40, "no marker after {i} entries with interval 10");
    }
    let marker = node.status().snapshot_index;
    wait_until("the marker's entry applied", || {
        node.status().applied_index >= marker
    });
    let first_replayed = marker + 1;
    one(&node, 100);
    one(&node, 101);
    node.change_membership(MembershipChange::AddLearner {
        id: learner,
        peer_url: "http://127.0.0.1:9".into(),
    })
    .unwrap()
    .wait_timeout(wait)
    .unwrap();
    wait_until("the learner in the configuration", || {
        node.status().conf_state.learners.contains(&learner)
    });
    let change = node.status().applied_index;
    assert!(change > first_replayed);
    let mut i = 102;
    while node.status().applied_index < marker + 6 {
        one(&node, i);
        i += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = node.status();
    let j = st.applied_index;
    assert_eq!(
        st.snapshot_index, marker,
        "no later marker in the first life"
    );
    node.stop();

    // The crash state: the store (durable at every entry here) is at `j`,
    // at least 5 entries past the marker. Second life: a marker every 5
    // entries, so one is due while the entries up to `j` are replayed (the
    // state machine's applied index is `j` from the first batch on).
    let node = start(dir.path(), &url, 5);
    wait_until("a new marker, and an entry past the store's index", || {
        node.status().snapshot_index > marker && node.status().applied_index > j
    });
    assert!(
        node.status().conf_state.learners.contains(&learner),
        "the running node knows the learner"
    );
    node.stop();

    // Third life: from the marker taken in the second.
    let node = start(dir.path(), &url, 5);
    let st = node.status();
    node.stop();
    assert!(
        st.conf_state.learners.contains(&learner),
        "after a restart the configuration lacks learner {learner:x}, added at entry {change} \
         (the marker at {} was taken while the entries from {first_replayed} on were \
         replayed): {:?}",
        st.snapshot_index,
        st.conf_state
    );
}
