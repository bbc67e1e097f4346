//! A one-member ferrokv from the `ferrokv` binary is SIGKILLed exactly at
//! the n-th invocation of a durability syscall, then started again on the
//! same data dir, which must serve with every acknowledged put intact.
//!
//! The kill comes from strace's fault injection (`strace -f -e
//! inject=<syscall>:signal=KILL:when=<n>`; strace is installed by `make
//! deps`): the process dies on entry to that call, so the call itself
//! never happens. strace counts invocations per thread, so a point `S:n`
//! is "the first thread to make its n-th `S` call"; a point `S@file:n`
//! counts only calls on `<data dir>/member/<file>` (strace -P). The WAL
//! writes through its portable path (`--wal-io=portable`: pwritev +
//! fdatasync): io_uring submissions would be invisible to strace, so the
//! io_uring path is not swept here.
//!
//! A point's run: the member starts under strace on a fresh data dir (a
//! `restart/` point: on a data dir whose earlier run acknowledged 20 puts
//! and was SIGKILLed, so recovery's own writes are swept); if it serves,
//! one client puts fresh keys one by one (`big/` points: 256 KiB values,
//! so the WAL rolls to a new segment and the B+tree file grows), recording
//! each acknowledged put's revision, until the member dies or 300 puts
//! are acknowledged (then the point was "not reached" and the test
//! SIGKILLs the member itself). Then the member starts normally on the
//! same data dir and must serve within 60 s (not exit), with:
//! - every acknowledged put readable (linearizable get) with its value and
//!   exactly the revision its acknowledgement reported;
//! - no key that was never written, and the put whose answer never came
//!   either absent or with its value;
//! - a store revision at least the highest acknowledged one;
//! - a new put acknowledged and read back.
//!
//! The syscalls are those a member's durability goes through (found with
//! `strace -f -c` and `-y`): mkdir (data dir), write (the `id` and `peers`
//! files), ftruncate (sizing the B+tree file), pwrite64 (creating the
//! B+tree file, zero-filling WAL segments), fallocate (WAL segments,
//! growing the B+tree file), fsync (files and directories), rename (atomic
//! file replacement, segment activation), pwritev and fdatasync (WAL
//! appends, B+tree commits). `make test` runs `DEFAULT_POINTS` (startup,
//! segment preparation, first puts, steady state, a WAL roll, recovery);
//! `SERVER_SWEEP_FULL=1` (`make server-sweep`) runs `FULL_POINTS`, every n
//! up to where this build stops making the call; `SERVER_SWEEP_POINTS`
//! runs the listed points (`[restart/][big/]syscall[@file]:n[-m]`,
//! comma-separated, as the test prints them).

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use common::{Kind, Member};
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::{PutRequest, RangeRequest};
use tonic::transport::Channel;

/// Puts acknowledged by the SIGKILLed run before a `restart/` point.
const PREFILL_PUTS: usize = 20;
/// A traced run stops after this many acknowledged puts ...
const MAX_PUTS: usize = 300;
/// ... or after this long (the point was not reached).
const MAX_PUT_TIME: Duration = Duration::from_secs(20);
/// The value size of `big/` points.
const BIG_VALUE: usize = 256 << 10;
/// A request's deadline.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a start may take before the member counts as not serving.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Small snapshot settings, so recovery also meets snapshot markers in the
/// WAL; the portable WAL path, so its writes are visible syscalls.
const FLAGS: &[&str] = &[
    "--wal-io=portable",
    "--snapshot-count=50",
    "--experimental-snapshot-catchup-entries=10",
];

#[derive(Clone, Debug, PartialEq, Eq)]
struct Point {
    /// The data dir was used (20 puts) and SIGKILLed before this run.
    restart: bool,
    /// The puts carry 256 KiB values: the WAL rolls to its next segment
    /// and the B+tree file grows during the run.
    big: bool,
    syscall: String,
    /// Only calls on `<data dir>/member/<file>` count.
    file: Option<String>,
    n: u32,
}

impl std::fmt::Display for Point {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.restart {
            write!(f, "restart/")?;
        }
        if self.big {
            write!(f, "big/")?;
        }
        write!(f, "{}", self.syscall)?;
        if let Some(file) = &self.file {
            write!(f, "@{file}")?;
        }
        write!(f, ":{}", self.n)
    }
}

/// `[restart/][big/]syscall[@file]:n` or `...:first-last` (every n in the
/// range).
fn parse_points(spec: &str) -> Result<Vec<Point>, String> {
    let mut rest = spec.trim();
    let mut restart = false;
    let mut big = false;
    loop {
        if let Some(r) = rest.strip_prefix("restart/") {
            (restart, rest) = (true, r);
        } else if let Some(r) = rest.strip_prefix("big/") {
            (big, rest) = (true, r);
        } else {
            break;
        }
    }
    let (call, ns) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("{spec}: expected [restart/][big/]syscall[@file]:n[-m]"))?;
    let num = |x: &str| {
        x.parse::<u32>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("{spec}: {x} is not a count from 1"))
    };
    let (first, last) = match ns.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(ns)?, num(ns)?),
    };
    let (syscall, file) = match call.split_once('@') {
        Some((sc, file)) => (sc.to_string(), Some(file.to_string())),
        None => (call.to_string(), None),
    };
    Ok((first..=last)
        .map(|n| Point {
            restart,
            big,
            syscall: syscall.clone(),
            file: file.clone(),
            n,
        })
        .collect())
}

/// The points `make test` runs. The comments say where each lands on this
/// build (see the module doc for how strace counts).
const DEFAULT_POINTS: &[&str] = &[
    // The data dir's directories (calls 1-2 fail with ENOENT: the parents
    // are created first).
    "mkdir:1-6",
    // member/id: written to id.tmp, fsynced (fsync 1), renamed (rename 1),
    // the directory fsynced (fsync 2).
    "write@id.tmp:1",
    // The B+tree file: sized (ftruncate 1), catalog leaf and both meta
    // pages written (pwrite64 1-3), fsynced with its directory (fsync 3-4);
    // the first commit of the empty store (fdatasync 1, pwritev 1).
    "ftruncate:1",
    "fsync:1-6",
    "rename:1-2",
    // WAL segment 1: allocated, zero-filled (pwrite64 4-67), fsynced
    // (fsync 5), renamed into place (rename 2), the directory fsynced.
    "fallocate:1",
    "pwrite64:1-6",
    "pwrite64:20",
    "pwrite64:36",
    "pwrite64:50",
    "pwrite64:67",
    // Segment 2 is prepared in the background while the first entries are
    // written.
    "fallocate@wal/0000000000000002.wal.tmp:1",
    "pwrite64@wal/0000000000000002.wal.tmp:1-2",
    "pwrite64@wal/0000000000000002.wal.tmp:32",
    "pwrite64@wal/0000000000000002.wal.tmp:64",
    "fsync@wal/0000000000000002.wal.tmp:1",
    "rename@wal/0000000000000002.wal.tmp:1",
    // member/peers, written once the member is published.
    "write@peers.tmp:1",
    "fsync@peers.tmp:1",
    "rename@peers.tmp:1",
    // The first WAL appends (bootstrap entries, the publication), then
    // steady state: one append and fdatasync per put.
    "pwritev:1-12",
    "fdatasync:1-12",
    "pwritev:20",
    "fdatasync:20",
    "pwritev:30",
    "fdatasync:30",
    "pwritev:51",
    "fdatasync:51",
    "pwritev:90",
    "fdatasync:90",
    // B+tree commits (the backend commits at each snapshot, every 50
    // entries).
    "pwritev@snap/db:1-6",
    "fdatasync@snap/db:1-6",
    // 256 KiB values: WAL segment 1 fills and segment 3 is prepared, the
    // B+tree file grows (fallocate).
    "big/pwrite64@wal/0000000000000003.wal.tmp:1",
    "big/rename@wal/0000000000000003.wal.tmp:1",
    "big/fallocate@snap/db:1",
    "big/fallocate@snap/db:5",
    "big/fdatasync:150",
    "big/pwritev:260",
    // Recovery of a data dir killed under load: the B+tree and WAL opens'
    // syncs, member/peers rewritten, the first appends after it.
    "restart/mkdir:1",
    "restart/fdatasync:1-6",
    "restart/pwritev:1-6",
    "restart/fdatasync:10",
    "restart/pwritev:10",
    "restart/fdatasync:20",
    "restart/pwritev:20",
    "restart/fsync:1-2",
    "restart/rename:1",
    "restart/write@peers.tmp:1",
    "restart/pwritev@snap/db:1-2",
    "restart/pwritev@snap/db:4",
    "restart/fdatasync@snap/db:1-2",
    "restart/fdatasync@snap/db:4",
];

/// `SERVER_SWEEP_FULL=1`: every n up to where this build stops making the
/// call within a run (beyond that a point is "not reached").
const FULL_POINTS: &[&str] = &[
    "mkdir:1-8",
    "write@id.tmp:1",
    "write@peers.tmp:1",
    "fsync@peers.tmp:1",
    "rename@peers.tmp:1",
    "ftruncate:1-3",
    "fallocate:1-3",
    "rename:1-3",
    "fsync:1-8",
    "pwrite64:1-70",
    "fallocate@wal/0000000000000002.wal.tmp:1",
    "pwrite64@wal/0000000000000002.wal.tmp:1-64",
    "fsync@wal/0000000000000002.wal.tmp:1",
    "rename@wal/0000000000000002.wal.tmp:1",
    "pwritev:1-100",
    "fdatasync:1-100",
    "pwritev@snap/db:1-12",
    "fdatasync@snap/db:1-8",
    "big/fallocate@wal/0000000000000003.wal.tmp:1",
    "big/pwrite64@wal/0000000000000003.wal.tmp:1-64",
    "big/fsync@wal/0000000000000003.wal.tmp:1",
    "big/rename@wal/0000000000000003.wal.tmp:1",
    "big/fallocate@snap/db:1-20",
    "big/pwritev:200-300",
    "big/fdatasync:240-270",
    "restart/mkdir:1-5",
    "restart/fsync:1-3",
    "restart/rename:1-2",
    "restart/write@peers.tmp:1",
    "restart/pwritev:1-40",
    "restart/fdatasync:1-40",
    "restart/pwritev@snap/db:1-10",
    "restart/fdatasync@snap/db:1-7",
    "restart/big/pwritev:1-10",
    "restart/big/fdatasync:1-10",
];

fn points() -> Vec<Point> {
    let specs: Vec<String> = if let Ok(list) = std::env::var("SERVER_SWEEP_POINTS") {
        list.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string)
            .collect()
    } else if std::env::var("SERVER_SWEEP_FULL").is_ok_and(|v| v != "0") {
        FULL_POINTS.iter().map(|s| s.to_string()).collect()
    } else {
        DEFAULT_POINTS.iter().map(|s| s.to_string()).collect()
    };
    specs
        .iter()
        .flat_map(|s| parse_points(s).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// A put the client sent, and the revision its acknowledgement reported
/// (`None`: no answer came, it may or may not have been applied).
#[derive(Clone, Debug)]
struct Sent {
    value: Vec<u8>,
    revision: Option<i64>,
}

/// How the traced run ended.
#[derive(Debug)]
enum Ending {
    /// Killed before it served.
    KilledAtStartup,
    /// Killed after this many acknowledged puts of the run.
    KilledUnderLoad(usize),
    /// The point was not reached within the bound; SIGKILLed by the test.
    NotReached,
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::KilledAtStartup => write!(f, "killed before serving"),
            Ending::KilledUnderLoad(n) => write!(f, "killed after {n} acknowledged puts"),
            Ending::NotReached => write!(f, "not reached"),
        }
    }
}

/// Kills the wrapped server as well when a check panics.
struct Guard(Member);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.kill_tree();
    }
}

fn channel(rt: &tokio::runtime::Runtime, endpoint: &str) -> Channel {
    let _in_runtime = rt.enter();
    Channel::from_shared(format!("http://{endpoint}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(REQUEST_TIMEOUT)
        .connect_lazy()
}

fn killed_by_sigkill(status: ExitStatus) -> bool {
    // strace ends itself with the signal that ended the traced process.
    status.signal() == Some(libc::SIGKILL) || status.code() == Some(128 + libc::SIGKILL)
}

fn strace_usable() {
    let out = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "true"])
        .output();
    match out {
        Err(e) => panic!("strace is missing ({e}); `make deps` installs it"),
        Ok(o) if !o.status.success() => panic!(
            "strace cannot trace here (ptrace not permitted?): {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Ok(_) => {}
    }
}

/// Puts fresh keys `k/<run>/<i>` one by one until the member dies or the
/// bound is reached; records each in `sent`. Returns how many were
/// acknowledged and whether the member died.
fn put_until_killed(
    rt: &tokio::runtime::Runtime,
    m: &mut Member,
    run: usize,
    bound: usize,
    sent: &mut BTreeMap<Vec<u8>, Sent>,
    value_len: usize,
    what: &str,
) -> (usize, Option<ExitStatus>) {
    let mut kv = KvClient::new(channel(rt, &m.endpoint()));
    let start = Instant::now();
    let mut acked = 0;
    let mut last_rev = 0;
    let mut errors = 0;
    for i in 0.. {
        if acked >= bound || start.elapsed() > MAX_PUT_TIME {
            return (acked, None);
        }
        let key = format!("k/{run}/{i:04}").into_bytes();
        let mut value = format!("{what} run {run} put {i}").into_bytes();
        value.resize(value_len.max(value.len()), b'.');
        let r = rt.block_on(kv.put(PutRequest {
            key: key.clone(),
            value: value.clone(),
            ..Default::default()
        }));
        match r {
            Ok(resp) => {
                let rev = resp.into_inner().header.expect("put header").revision;
                assert!(
                    rev > last_rev,
                    "{what}: put {i} acknowledged at revision {rev} after {last_rev}"
                );
                last_rev = rev;
                acked += 1;
                sent.insert(
                    key,
                    Sent {
                        value,
                        revision: Some(rev),
                    },
                );
            }
            Err(e) => {
                sent.insert(
                    key,
                    Sent {
                        value,
                        revision: None,
                    },
                );
                // The member was killed, or the request failed for another
                // reason (then it goes on).
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if let Some(status) = m.exited() {
                        return (acked, Some(status));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                errors += 1;
                assert!(
                    errors < 5,
                    "{what}: puts fail while the member runs: {e}; log:\n{}",
                    m.log()
                );
            }
        }
    }
    unreachable!()
}

/// Starts the member normally and checks it has every acknowledged put.
fn verify(
    rt: &tokio::runtime::Runtime,
    m: &mut Member,
    sent: &BTreeMap<Vec<u8>, Sent>,
    what: &str,
) {
    m.log_note(&format!("{what}: restart"));
    m.start();
    if let Err(status) = m.wait_healthy(START_TIMEOUT) {
        panic!(
            "{what}: the restarted member does not serve ({}); log:\n{}",
            match status {
                Some(s) => format!("exited with {s}"),
                None => format!("not healthy in {START_TIMEOUT:?}"),
            },
            m.log()
        );
    }
    let mut kv = KvClient::new(channel(rt, &m.endpoint()));
    let mut kv_keys = kv.clone();
    let mut kv_get = kv.clone();
    let mut range = |key: &[u8], range_end: &[u8]| {
        rt.block_on(kv_get.range(RangeRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            ..Default::default()
        }))
        .unwrap_or_else(|e| panic!("{what}: range after restart: {e}; log:\n{}", m.log()))
        .into_inner()
    };
    let mut range_keys = |key: &[u8], range_end: &[u8]| {
        rt.block_on(kv_keys.range(RangeRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            keys_only: true,
            ..Default::default()
        }))
        .unwrap_or_else(|e| panic!("{what}: range after restart: {e}"))
        .into_inner()
    };
    let mut max_acked = 0;
    for (key, s) in sent {
        let Some(rev) = s.revision else { continue };
        max_acked = max_acked.max(rev);
        let r = range(key, b"");
        let k = String::from_utf8_lossy(key);
        assert_eq!(
            r.kvs.len(),
            1,
            "{what}: acknowledged put {k} (revision {rev}) lost after restart"
        );
        assert_eq!(r.kvs[0].value, s.value, "{what}: {k}: value after restart");
        assert_eq!(
            r.kvs[0].mod_revision, rev,
            "{what}: {k}: revision after restart against its acknowledgement"
        );
    }
    // Everything under k/: only keys that were sent; an unanswered put's
    // key with its value.
    let all = range_keys(b"k/", b"k0");
    for kv in &all.kvs {
        let k = String::from_utf8_lossy(&kv.key);
        let s = sent
            .get(&kv.key)
            .unwrap_or_else(|| panic!("{what}: {k} was never written but exists"));
        if s.revision.is_none() {
            let r = range(&kv.key, b"");
            assert_eq!(
                r.kvs[0].value, s.value,
                "{what}: {k}: value of an unanswered put"
            );
        }
    }
    let revision = all.header.expect("range header").revision;
    assert!(
        revision >= max_acked,
        "{what}: revision {revision} after restart, below the acknowledged {max_acked}"
    );
    // Healthy: it takes and serves a new write.
    let put = rt
        .block_on(kv.put(PutRequest {
            key: b"after".to_vec(),
            value: what.as_bytes().to_vec(),
            ..Default::default()
        }))
        .unwrap_or_else(|e| panic!("{what}: put after restart: {e}; log:\n{}", m.log()))
        .into_inner();
    let put_rev = put.header.expect("put header").revision;
    assert!(put_rev > revision, "{what}: put after restart at {put_rev}");
    let r = rt
        .block_on(kv.range(RangeRequest {
            key: b"after".to_vec(),
            ..Default::default()
        }))
        .unwrap()
        .into_inner();
    assert_eq!(r.kvs.len(), 1, "{what}: put after restart not read back");
    assert_eq!(r.kvs[0].value, what.as_bytes());
    assert_eq!(r.kvs[0].mod_revision, put_rev);
}

/// One point: the traced run, then the verifying restart.
fn run_point(rt: &tokio::runtime::Runtime, dir: &Path, point: &Point) -> (Ending, usize) {
    let what = point.to_string();
    let value_len = if point.big { BIG_VALUE } else { 0 };
    let mut g = Guard(Member::single(Kind::Ferrokv, dir, "m", FLAGS));
    let m = &mut g.0;
    let mut sent = BTreeMap::new();
    if point.restart {
        m.log_note(&format!("{what}: the run before (killed)"));
        m.start();
        if let Err(status) = m.wait_healthy(START_TIMEOUT) {
            panic!("{what}: first start: {status:?}; log:\n{}", m.log());
        }
        let (acked, died) = put_until_killed(rt, m, 0, PREFILL_PUTS, &mut sent, value_len, &what);
        assert!(
            died.is_none() && acked == PREFILL_PUTS,
            "{what}: the run before the traced one failed; log:\n{}",
            m.log()
        );
        m.kill();
    }
    let filter = match &point.file {
        Some(f) => vec![
            "-P".to_string(),
            m.data_dir.join("member").join(f).display().to_string(),
        ],
        None => vec![],
    };
    let mut strace: Vec<String> = ["strace", "-f", "-qq", "-o", "/dev/null"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    strace.extend(filter);
    strace.push(format!("--trace={}", point.syscall));
    strace.push(format!(
        "--inject={}:signal=KILL:when={}",
        point.syscall, point.n
    ));
    m.log_note(&format!("{what}: traced run"));
    m.start_under(&strace);
    // The traced server (strace's child), so the restart can wait until it
    // is gone: strace may exit before the last of its threads did.
    let strace_pid = m.pid().unwrap();
    let tracee = loop {
        if let Some(&pid) = common::child_pids(strace_pid).first() {
            break Some(pid);
        }
        if m.exited().is_some() {
            break None;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let ending = match m.wait_healthy(START_TIMEOUT) {
        Err(Some(status)) => {
            assert!(
                killed_by_sigkill(status),
                "{what}: the traced member exited with {status} at startup; log:\n{}",
                m.log()
            );
            Ending::KilledAtStartup
        }
        Err(None) => panic!(
            "{what}: the traced member neither serves nor dies in {START_TIMEOUT:?}; log:\n{}",
            m.log()
        ),
        Ok(()) => match put_until_killed(rt, m, 1, MAX_PUTS, &mut sent, value_len, &what) {
            (acked, Some(status)) => {
                assert!(
                    killed_by_sigkill(status),
                    "{what}: the traced member exited with {status} after {acked} puts; log:\n{}",
                    m.log()
                );
                Ending::KilledUnderLoad(acked)
            }
            (_, None) => {
                m.kill_tree();
                Ending::NotReached
            }
        },
    };
    m.kill_tree();
    if let Some(pid) = tracee {
        common::wait_dead(pid);
    }
    let member = m.data_dir.join("member");
    common::wait_flock_free(&member.join("snap/db"));
    common::wait_flock_free(&member.join("wal/LOCK"));
    verify(rt, m, &sent, &what);
    m.kill();
    let acked = sent.values().filter(|s| s.revision.is_some()).count();
    (ending, acked)
}

#[test]
fn sigkill_at_durability_syscalls() {
    strace_usable();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let points = points();
    let started = Instant::now();
    let (mut at_startup, mut under_load, mut not_reached) = (0, 0, 0);
    let mut unreached_first = Vec::new();
    for point in &points {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Instant::now();
        let (ending, acked) = run_point(&rt, dir.path(), point);
        match ending {
            Ending::KilledAtStartup => at_startup += 1,
            Ending::KilledUnderLoad(_) => under_load += 1,
            Ending::NotReached => {
                not_reached += 1;
                if point.n == 1 && !point.restart {
                    unreached_first.push(point.to_string());
                }
            }
        }
        println!(
            "{point}: {ending}; restart has all {acked} acknowledged puts ({:.1} s)",
            t.elapsed().as_secs_f64()
        );
    }
    println!(
        "{} points: {at_startup} killed at startup, {under_load} under load, {not_reached} not reached; {:.1} s",
        points.len(),
        started.elapsed().as_secs_f64()
    );
    // Every syscall swept makes its first call in every start of a fresh
    // data dir: a point at n = 1 that never fires means the injection does
    // not work (or the member no longer makes that call: update the list).
    assert!(
        unreached_first.is_empty(),
        "points at n = 1 never reached: {unreached_first:?}"
    );
}
