//! etcd's own etcdctl 3.4 against ferrokv (issue 7, acceptance 1).
//!
//! Differential: every step runs against a real etcd 3.4 and against the
//! system under test, started side by side with fresh data dirs; stdout,
//! the exit code and etcdctl's `Error:` line must be the same after
//! normalizing what legitimately differs (cluster / member IDs, raft terms,
//! lease IDs, endpoints, timings). Steps whose output is inherently
//! system-specific (status, health, member list) are checked with a
//! predicate that must hold on both. Run with FERROKV_UNDER_TEST=etcd to
//! check the expectations against etcd alone.

mod common;

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use common::{etcdctl, etcdctl_error, etcdctl_until, Cluster, Kind};

const T: Duration = Duration::from_secs(10);

/// `check perf` measures throughput against a fixed threshold: it holds
/// this lock for writing and runs alone; every other test of this binary
/// holds it for reading (they may run together, never beside check perf).
static CHECK_PERF_ALONE: RwLock<()> = RwLock::new(());

fn beside_others() -> RwLockReadGuard<'static, ()> {
    CHECK_PERF_ALONE.read().unwrap_or_else(|e| e.into_inner())
}

fn alone() -> RwLockWriteGuard<'static, ()> {
    CHECK_PERF_ALONE.write().unwrap_or_else(|e| e.into_inner())
}

/// How long a watch may stay silent after printing the lines it is
/// expected to print, to show that nothing more comes.
const WATCH_QUIET: Duration = Duration::from_secs(1);
/// How long a watch may take to print the lines it is expected to print.
const WATCH_CAP: Duration = Duration::from_secs(20);

/// What legitimately differs between two systems, replaced by placeholders.
fn normalize(text: &str, endpoint: &str, leases: &[String]) -> String {
    let mut s = text.replace(endpoint, "ENDPOINT");
    for (i, l) in leases.iter().enumerate().filter(|(_, l)| !l.is_empty()) {
        s = s.replace(l.as_str(), &format!("LEASE{i}"));
        if let Ok(id) = i64::from_str_radix(l, 16) {
            s = s.replace(&id.to_string(), &format!("LEASE{i}"));
        }
    }
    let mut out = String::new();
    for line in s.lines() {
        out.push_str(&normalize_line(line));
        out.push('\n');
    }
    out
}

fn normalize_line(line: &str) -> String {
    let mut l = line.to_string();
    for field in ["cluster_id", "member_id", "raft_term"] {
        l = replace_json_number(&l, &format!("\"{field}\":"));
    }
    // -w fields: `"ClusterID" : 123`.
    for field in ["ClusterID", "MemberID", "RaftTerm"] {
        l = replace_json_number(&l, &format!("\"{field}\" : "));
    }
    if let Some(pos) = l.find("remaining(") {
        if let Some(end) = l[pos..].find(')') {
            l.replace_range(pos..pos + end + 1, "remaining(N)");
        }
    }
    // etcd lists a lease's keys in map order (random): sort them.
    if let Some(pos) = l.find("attached keys([") {
        let start = pos + "attached keys([".len();
        if let Some(len) = l[start..].find("])") {
            let mut keys: Vec<&str> = l[start..start + len].split(' ').collect();
            keys.sort_unstable();
            let sorted = keys.join(" ");
            l.replace_range(start..start + len, &sorted);
        }
    }
    l
}

/// `<pat>123` → `<pat>N`.
fn replace_json_number(line: &str, pat: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(pos) = rest.find(pat) {
        out.push_str(&rest[..pos + pat.len()]);
        rest = &rest[pos + pat.len()..];
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        out.push('N');
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// One etcdctl invocation; `{lease}` in an argument is replaced by the
/// lease granted earlier in the scenario.
struct Step {
    args: &'static [&'static str],
    stdin: Option<&'static str>,
    /// A watch never exits: the lines of stdout etcd prints for it. It is
    /// stopped once that many have come and then nothing for WATCH_QUIET
    /// (or after WATCH_CAP), and what it printed is compared.
    watch_lines: Option<usize>,
    check: Check,
}

enum Check {
    /// Same normalized stdout, exit code and error line as etcd.
    Same,
    /// A predicate on (stdout, stderr, exit ok) that must hold on both.
    Holds(fn(&str, &str, bool) -> bool),
}

fn same(args: &'static [&'static str]) -> Step {
    Step {
        args,
        stdin: None,
        watch_lines: None,
        check: Check::Same,
    }
}

fn txn(stdin: &'static str) -> Step {
    Step {
        args: &["txn"],
        stdin: Some(stdin),
        watch_lines: None,
        check: Check::Same,
    }
}

fn watch(args: &'static [&'static str], lines: usize) -> Step {
    Step {
        args,
        stdin: None,
        watch_lines: Some(lines),
        check: Check::Same,
    }
}

fn holds(args: &'static [&'static str], f: fn(&str, &str, bool) -> bool) -> Step {
    Step {
        args,
        stdin: None,
        watch_lines: None,
        check: Check::Holds(f),
    }
}

fn scenario() -> Vec<Step> {
    vec![
        same(&["put", "foo", "bar"]),
        same(&["put", "foo2", "bar2"]),
        same(&["put", "foo3", "bar3"]),
        same(&["put", "zoo", "z"]),
        same(&["put", "a", "1"]),
        same(&["put", "foo", "bar-1"]),
        same(&["get", "foo"]),
        same(&["get", "nothing"]),
        same(&["get", "foo", "--prefix"]),
        same(&["get", "foo", "--prefix", "--rev=2"]),
        same(&["get", "foo", "--rev=1"]),
        same(&["get", "foo", "--prefix", "--limit=2"]),
        same(&["get", "foo", "--prefix", "--sort-by=MODIFY", "--order=DESCEND"]),
        same(&["get", "foo", "--prefix", "--sort-by=VALUE", "--order=ASCEND"]),
        same(&["get", "foo", "--prefix", "--sort-by=CREATE", "--order=DESCEND", "--limit=2"]),
        same(&["get", "foo", "--prefix", "--keys-only"]),
        same(&["get", "foo", "--prefix", "--count-only", "-w", "json"]),
        same(&["get", "foo3", "--from-key"]),
        same(&["get", "foo", "--consistency=s"]),
        same(&["get", "foo", "--prefix", "-w", "json"]),
        same(&["get", "foo", "-w", "fields"]),
        same(&["get", "foo", "--rev=100"]),
        same(&["get", ""]),
        same(&["put", "foo", "bar-2", "--prev-kv"]),
        same(&["put", "foo", "--ignore-value"]),
        same(&["get", "foo"]),
        // Txn: compare, success branch, failure branch (etcdctl's stdin
        // format: compares, blank line, success ops, blank line, failure ops).
        txn("value(\"foo\") = \"bar-2\"\n\nput foo txn-ok\nget foo2\n\nput foo txn-failed\n\n"),
        same(&["get", "foo"]),
        txn("value(\"foo\") = \"nope\"\nmod(\"foo2\") > \"0\"\n\nput foo txn-ok\n\nput foo txn-failed\nget zoo\n\n"),
        same(&["get", "foo"]),
        txn("version(\"zoo\") = \"1\"\ncreate(\"a\") < \"100\"\n\ndel zoo\nput a 2\n\n\n"),
        same(&["get", "", "--from-key"]),
        // Watch: history from a past revision, with prefix and prev_kv.
        // 8 puts to foo* (PUT, key, value).
        watch(&["watch", "foo", "--prefix", "--rev=1"], 24),
        // 5 of them from revision 5 on (PUT, previous key and value, key,
        // value).
        watch(&["watch", "foo", "--prefix", "--rev=5", "--prev-kv"], 25),
        // Both puts to a in one response.
        watch(&["watch", "a", "--rev=2", "-w", "json"], 1),
        // Leases.
        holds(&["lease", "grant", "60"], |out, _, ok| {
            ok && out.starts_with("lease ") && out.trim_end().ends_with("granted with TTL(60s)")
        }),
        same(&["put", "k1", "v1", "--lease={lease}"]),
        same(&["put", "k2", "v2", "--lease={lease}"]),
        same(&["lease", "keep-alive", "--once", "{lease}"]),
        same(&["lease", "timetolive", "{lease}", "--keys"]),
        same(&["lease", "list"]),
        same(&["get", "k", "--prefix"]),
        same(&["lease", "revoke", "{lease}"]),
        same(&["get", "k", "--prefix"]),
        same(&["lease", "timetolive", "{lease}"]),
        same(&["lease", "revoke", "{lease}"]),
        same(&["put", "k3", "v3", "--lease=1234"]),
        same(&["lease", "grant", "99999999999"]),
        // Deletes.
        same(&["del", "foo", "--prefix", "--prev-kv"]),
        same(&["del", "nothing"]),
        same(&["get", "", "--prefix", "--keys-only"]),
        // Compaction, and reads below it.
        same(&["compact", "5"]),
        same(&["get", "foo", "--rev=3"]),
        same(&["get", "a", "--rev=5"]),
        same(&["compact", "4"]),
        same(&["compact", "1000"]),
        // Canceled (the revision is compacted): an error, nothing on stdout.
        watch(&["watch", "foo", "--rev=2"], 0),
        // Maintenance and cluster.
        holds(&["defrag"], |out, _, ok| {
            ok && out.starts_with("Finished defragmenting etcd member[")
        }),
        holds(&["endpoint", "health"], |out, err, ok| {
            ok && (out.contains("is healthy: successfully committed proposal")
                || err.contains("is healthy: successfully committed proposal"))
        }),
        holds(&["endpoint", "status"], |out, _, ok| {
            let f: Vec<&str> = out.trim().split(", ").collect();
            ok && f.len() >= 9 && f[2] == "3.4.23" && f[4] == "true" && f[5] == "false"
        }),
        holds(&["endpoint", "status", "-w", "json"], |out, _, ok| {
            ok && out.contains("\"leader\":") && out.contains("\"raftIndex\":")
        }),
        holds(&["member", "list"], |out, _, ok| {
            let f: Vec<&str> = out.trim().split(", ").collect();
            ok && f.len() == 6 && f[1] == "started" && f[2] == "m0" && f[3].starts_with("http://127.0.0.1:")
        }),
        holds(&["alarm", "list"], |out, _, ok| ok && out.is_empty()),
        holds(&["endpoint", "hashkv"], |out, _, ok| ok && out.contains(", ")),
    ]
}

struct Run {
    stdout: String,
    stderr: String,
    ok: bool,
    error: Option<String>,
}

fn run(step: &Step, endpoints: &str, lease: &str) -> Run {
    let args: Vec<String> = step
        .args
        .iter()
        .map(|a| a.replace("{lease}", lease))
        .collect();
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let out = match step.watch_lines {
        None => etcdctl(endpoints, &args, step.stdin, T),
        Some(lines) => {
            // Stop once `lines` lines are out and WATCH_QUIET has passed
            // without more.
            let (mut seen, mut since) = (0, Instant::now());
            etcdctl_until(endpoints, &args, step.stdin, WATCH_CAP, |out| {
                if out.len() != seen {
                    (seen, since) = (out.len(), Instant::now());
                }
                out.iter().filter(|&&b| b == b'\n').count() >= lines
                    && since.elapsed() >= WATCH_QUIET
            })
        }
    };
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        ok: out.status.success(),
        error: etcdctl_error(&out),
    }
}

/// A watch is killed when it has printed its lines: its exit status says
/// nothing.
fn is_watch(step: &Step) -> bool {
    step.watch_lines.is_some()
}

fn lease_of(grant_output: &str) -> Option<String> {
    grant_output
        .split_whitespace()
        .nth(1)
        .map(|s| s.to_string())
}

#[test]
fn etcdctl_behaves_as_against_etcd() {
    let _beside = beside_others();
    let reference = Cluster::start(Kind::Etcd, 1);
    let subject = Cluster::start(Kind::under_test(), 1);
    let (ref_ep, sub_ep) = (reference.endpoints(), subject.endpoints());
    let (mut ref_lease, mut sub_lease) = (String::new(), String::new());
    let mut failures = Vec::new();
    for (i, step) in scenario().iter().enumerate() {
        let r = run(step, &ref_ep, &ref_lease);
        let s = run(step, &sub_ep, &sub_lease);
        if step.args.starts_with(&["lease", "grant"]) && r.ok {
            ref_lease = lease_of(&r.stdout).unwrap_or_default();
            sub_lease = lease_of(&s.stdout).unwrap_or_default();
        }
        let what = format!("step {i}: etcdctl {}", step.args.join(" "));
        if let Some(lines) = step.watch_lines {
            assert_eq!(
                r.stdout.lines().count(),
                lines,
                "{what}: the scenario expects {lines} lines, etcd itself printed {:?}",
                r.stdout
            );
        }
        match step.check {
            Check::Same => {
                let rn = normalize(&r.stdout, &ref_ep, std::slice::from_ref(&ref_lease));
                let sn = normalize(&s.stdout, &sub_ep, std::slice::from_ref(&sub_lease));
                let re = r
                    .error
                    .as_deref()
                    .map(|e| normalize(e, &ref_ep, &[ref_lease.clone()]));
                let se = s
                    .error
                    .as_deref()
                    .map(|e| normalize(e, &sub_ep, &[sub_lease.clone()]));
                if rn != sn || (!is_watch(step) && r.ok != s.ok) || re != se {
                    failures.push(format!(
                        "{what}\n  etcd:    ok={} out={rn:?} err={re:?}\n  subject: ok={} out={sn:?} err={se:?}\n  subject stderr: {}",
                        r.ok, s.ok, s.stderr
                    ));
                }
            }
            Check::Holds(f) => {
                assert!(
                    f(&r.stdout, &r.stderr, r.ok),
                    "{what}: the check does not hold on etcd itself: {:?} {:?}",
                    r.stdout,
                    r.stderr
                );
                if !f(&s.stdout, &s.stderr, s.ok) {
                    failures.push(format!(
                        "{what}\n  subject: ok={} out={:?} err={:?}",
                        s.ok, s.stdout, s.stderr
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} steps differ from etcd:\n{}",
        failures.len(),
        scenario().len(),
        failures.join("\n")
    );
}

/// `etcdctl snapshot save` streams the backend; the saved file is a
/// B+tree that passes the engine's full invariant check and holds the keys.
#[test]
fn snapshot_save_passes_the_btree_check() {
    let _beside = beside_others();
    let kind = Kind::under_test();
    let c = Cluster::start(kind, 1);
    let ep = c.endpoints();
    for i in 0..40 {
        let out = etcdctl(
            &ep,
            &["put", &format!("snap/{i:03}"), &"x".repeat(100 + i)],
            None,
            T,
        );
        assert!(out.status.success(), "{out:?}");
    }
    let path = c.dir.path().join("saved.db");
    let out = etcdctl(&ep, &["snapshot", "save", path.to_str().unwrap()], None, T);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("Snapshot saved at"), "{stdout}");
    // etcd's format: the db, then the SHA-256 of the db.
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len() % 512, 32, "no sha256 trailer");
    let (db_bytes, sum) = bytes.split_at(bytes.len() - 32);
    use sha2::Digest;
    assert_eq!(
        sha2::Sha256::digest(db_bytes).as_slice(),
        sum,
        "sha256 trailer mismatch"
    );
    if kind == Kind::Ferrokv {
        let db_path = c.dir.path().join("saved-without-trailer.db");
        std::fs::write(&db_path, db_bytes).unwrap();
        let db = engine::btree::Db::open(&db_path, engine::btree::Options::default())
            .expect("the snapshot opens as a B+tree");
        let report = db.check().expect("check runs");
        assert!(report.is_ok(), "check failed: {:?}", report.errors);
        // 40 keys (plus the store's meta records) in the key bucket.
        assert!(report.keys >= 40, "{report:?}");
    }
}

/// `etcdctl check perf --load=m` (60 s of writes from 200 clients at a
/// fixed rate; passes on throughput, slowest request and spread) and
/// `check datascale --load=s` (10 000 writes of 1 KiB from 50 clients,
/// memory read from /metrics). Alone: no other test of this binary runs
/// meanwhile.
#[test]
fn check_perf_and_datascale_pass() {
    let _alone = alone();
    let c = Cluster::start(Kind::under_test(), 1);
    let ep = c.endpoints();
    let out = etcdctl(
        &ep,
        &["check", "perf", "--load=m"],
        None,
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let verdict: Vec<&str> = stdout
        .split(['\r', '\n'])
        .filter(|l| l.starts_with("PASS") || l.starts_with("FAIL"))
        .collect();
    eprintln!("check perf --load=m: {verdict:?}");
    assert!(
        out.status.success(),
        "check perf failed: {verdict:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(verdict.last(), Some(&"PASS"), "{verdict:?}");
    let out = etcdctl(
        &ep,
        &["check", "datascale", "--load=s"],
        None,
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let verdict: Vec<&str> = stdout
        .split(['\r', '\n'])
        .filter(|l| l.starts_with("PASS") || l.starts_with("FAIL"))
        .collect();
    eprintln!("check datascale --load=s: {verdict:?}");
    assert!(out.status.success(), "check datascale failed: {verdict:?}");
    assert!(
        verdict
            .iter()
            .any(|l| l.starts_with("PASS: Approximate system memory used")),
        "{verdict:?}"
    );
}

/// `/metrics` on the client port has etcd's names, with values that move
/// with the load; `/health` answers as etcd's.
#[test]
fn metrics_and_health_over_http() {
    let _beside = beside_others();
    let c = Cluster::start(Kind::under_test(), 1);
    let ep = c.endpoints();
    for i in 0..20 {
        assert!(etcdctl(&ep, &["put", &format!("m{i}"), "v"], None, T)
            .status
            .success());
    }
    let (code, body) = c.members[0].http_get("/metrics").expect("GET /metrics");
    assert_eq!(code, 200);
    for name in [
        "etcd_disk_wal_fsync_duration_seconds_bucket",
        "etcd_disk_backend_commit_duration_seconds_bucket",
        "etcd_server_proposals_committed_total",
        "etcd_mvcc_db_total_size_in_bytes",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(body.contains(name), "/metrics lacks {name}");
    }
    // The committed proposals, the WAL's fdatasyncs and the backend's
    // batch commits are observed (each exported periodically, so read
    // until they have caught up with the 20 puts).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = c.members[0].http_get("/metrics").expect("GET /metrics");
        let value = |name: &str| -> Option<f64> {
            body.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.trim().parse().ok())
        };
        let committed = value("etcd_server_proposals_committed_total")
            .expect("etcd_server_proposals_committed_total has a value");
        let size = value("etcd_mvcc_db_total_size_in_bytes")
            .expect("etcd_mvcc_db_total_size_in_bytes has a value");
        assert!(size > 0.0, "etcd_mvcc_db_total_size_in_bytes {size}");
        let wal = value("etcd_disk_wal_fsync_duration_seconds_count").unwrap_or(0.0);
        let commits = value("etcd_disk_backend_commit_duration_seconds_count").unwrap_or(0.0);
        if committed >= 20.0 && wal >= 20.0 && commits >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "proposals committed {committed}, WAL fsyncs observed {wal}, backend commits {commits}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, body) = c.members[0].http_get("/health").expect("GET /health");
    assert_eq!((code, body.trim()), (200, "{\"health\":\"true\"}"));
}
