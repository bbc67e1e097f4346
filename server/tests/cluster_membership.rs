//! Membership through raft, driven by etcd's own etcdctl against a 3-member
//! cluster started from the `ferrokv` binary: a learner is added through a
//! follower (forwarded to the leader), joins with
//! `--initial-cluster-state existing`, catches up and serves serializable
//! reads only (etcd 3.4's learner), is promoted, takes leadership with
//! `move-leader`, and is removed while it leads (it hands leadership over
//! first). A follower forwards lease keep-alives to the leader.
//! `FERROKV_UNDER_TEST=etcd` runs the same steps against etcd.

mod common;

use std::time::{Duration, Instant};

use common::{etcdctl, etcdctl_error, free_port, Cluster, Kind};

const T: Duration = Duration::from_secs(15);

fn ok(endpoints: &str, args: &[&str]) -> String {
    let out = etcdctl(endpoints, args, None, T);
    assert!(
        out.status.success(),
        "etcdctl {args:?} on {endpoints}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (member id, leader id) as `endpoint status` reports them.
fn status(endpoint: &str) -> Option<(u64, u64)> {
    let out = etcdctl(endpoint, &["endpoint", "status", "-w", "json"], None, T);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let s = &v[0]["Status"];
    Some((s["header"]["member_id"].as_u64()?, s["leader"].as_u64()?))
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn member_lines(endpoint: &str) -> Vec<String> {
    ok(endpoint, &["member", "list"])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn learner_joins_is_promoted_leads_and_leaves() {
    // etcd's default timing: no election on a loaded machine unless a
    // member is stopped (the steps below expect the leader they chose).
    let flags = ["--heartbeat-interval=100", "--election-timeout=1000"];
    let mut c = Cluster::start_with(Kind::under_test(), 3, &flags);
    let eps: Vec<String> = c.members.iter().map(|m| m.endpoint()).collect();
    ok(&eps[0], &["put", "a", "1"]);
    let (_, leader) = status(&eps[0]).expect("status");
    let follower = eps
        .iter()
        .find(|e| status(e).is_some_and(|(me, _)| me != leader))
        .expect("a follower")
        .clone();

    // A follower forwards keep-alives to the leader's lessor.
    let granted = ok(&eps[0], &["lease", "grant", "60"]);
    let lease = granted
        .split_whitespace()
        .nth(1)
        .expect("lease <id> granted")
        .to_string();
    let kept = ok(&follower, &["lease", "keep-alive", "--once", &lease]);
    assert!(kept.contains("keepalived with TTL(60)"), "{kept}");

    // MemberAdd of a learner, through the follower.
    let peer = free_port();
    let peer_urls = format!("--peer-urls=http://127.0.0.1:{peer}");
    let add = ["member", "add", "m3", &peer_urls, "--learner"];
    // etcd refuses membership changes until its members have been
    // connected for a while ("unhealthy cluster"): retry.
    let mut added = String::new();
    wait_until("MemberAdd", || {
        let out = etcdctl(&follower, &add, None, T);
        added = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success()
    });
    let id_hex = added
        .split_whitespace()
        .nth(1)
        .expect("Member <id> added")
        .to_string();
    let id = u64::from_str_radix(&id_hex, 16).expect("hex member id");
    // Every member lists it once it has applied the change (the member
    // asked may apply it after the one that answered the MemberAdd).
    let mut listed = Vec::new();
    wait_until("the learner in the member list", || {
        listed = member_lines(&eps[0]);
        listed.len() == 4
            && listed
                .iter()
                .any(|l| l.starts_with(&id_hex) && l.contains("unstarted") && l.ends_with("true"))
    });
    assert_eq!(listed.len(), 4, "{listed:?}");

    // It joins, catches up and serves serializable reads only.
    let j = c.join("m3", peer, &flags);
    let learner = c.members[j].endpoint();
    wait_until("the learner to catch up", || {
        etcdctl(&learner, &["get", "a", "--consistency=s"], None, T).stdout == b"a\n1\n"
    });
    let refused = etcdctl(&learner, &["put", "x", "y"], None, T);
    assert_eq!(
        etcdctl_error(&refused).as_deref(),
        Some("Error: etcdserver: rpc not supported for learner")
    );

    // Promoted, it takes writes.
    wait_until("the promotion", || {
        etcdctl(&eps[0], &["member", "promote", &id_hex], None, T)
            .status
            .success()
    });
    wait_until("the promoted member in the member list", || {
        member_lines(&eps[0])
            .iter()
            .any(|l| l.starts_with(&id_hex) && l.contains(", m3, ") && l.ends_with("false"))
    });
    // It refuses writes as a learner until it has applied its promotion.
    wait_until("a put on the promoted member", || {
        etcdctl(&learner, &["put", "b", "2"], None, T)
            .status
            .success()
    });
    assert_eq!(ok(&eps[1], &["get", "b"]), "b\n2\n");

    // MoveLeader hands it the leadership. (A transfer may time out on a
    // loaded machine: asked again until it leads; a MoveLeader answers
    // success only once the target leads.)
    let all = c.endpoints();
    let mut transferred = false;
    wait_until("the new leader", || {
        let leads = status(&learner).is_some_and(|(me, leader)| me == id && leader == id);
        if leads && transferred {
            return true;
        }
        transferred |= etcdctl(&all, &["move-leader", &id_hex], None, T)
            .status
            .success();
        false
    });

    // Removing the leader itself: it hands over first, then leaves.
    // (etcd may refuse it for a while as "unhealthy cluster": retry until
    // the member is gone from the list.)
    wait_until("MemberRemove", || {
        let out = etcdctl(&learner, &["member", "remove", &id_hex], None, T);
        out.status.success() || !member_lines(&eps[0]).iter().any(|x| x.starts_with(&id_hex))
    });
    wait_until("the removal", || {
        let l = member_lines(&eps[0]);
        l.len() == 3 && !l.iter().any(|x| x.starts_with(&id_hex))
    });
    wait_until("a leader among the others", || {
        status(&eps[0]).is_some_and(|(_, leader)| leader != 0 && leader != id)
    });
    wait_until("a put after the removal", || {
        etcdctl(&eps[0], &["put", "c", "3"], None, T)
            .status
            .success()
    });
    assert_eq!(ok(&eps[2], &["get", "c"]), "c\n3\n");
    // A removed member stops, as etcd's does.
    wait_until("the removed member to exit", || {
        c.members[j].exited().is_some()
    });
}
