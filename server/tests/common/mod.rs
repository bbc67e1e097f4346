//! Test harness: start ferrokv or etcd processes on loopback with fresh
//! data dirs, wait until they serve, run etcdctl against them, and kill
//! them when the test is done (also on panic, through Drop).
//!
//! `FERROKV_UNDER_TEST=etcd` makes the system under test etcd itself, so a
//! test's expectations can be checked against the reference first.

#![allow(dead_code)]

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Etcd,
    Ferrokv,
}

impl Kind {
    /// The system under test: ferrokv, unless FERROKV_UNDER_TEST=etcd.
    pub fn under_test() -> Kind {
        match std::env::var("FERROKV_UNDER_TEST").as_deref() {
            Ok("etcd") => Kind::Etcd,
            _ => Kind::Ferrokv,
        }
    }

    fn binary(self) -> PathBuf {
        match self {
            Kind::Etcd => PathBuf::from("etcd"),
            Kind::Ferrokv => PathBuf::from(env!("CARGO_BIN_EXE_ferrokv")),
        }
    }
}

/// Ports this test process has handed out: never twice, even to clusters
/// started concurrently by tests of the same binary.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback port nobody listens on right now, handed out once per
/// process.
///
/// Taken below the kernel's ephemeral range when there is room there: the
/// source port of an outgoing connection (a test's own clients, etcdctl,
/// members dialing each other) comes from that range and would make a
/// member that binds or rebinds (after a restart) the same port fail with
/// "address already in use". Another process may still bind the port
/// before the member does; `Cluster::start_with` starts over with fresh
/// ports when a member exits with that error.
pub fn free_port() -> u16 {
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed = handed.get_or_insert_with(HashSet::new);
    let below_ephemeral = ephemeral_low().saturating_sub(1);
    const LOW: u32 = 10_000;
    if below_ephemeral > LOW + 2_000 {
        // A per-process starting point spreads concurrent test processes
        // (other binaries, other checkouts) over the range.
        let span = below_ephemeral - LOW;
        let mut x = std::process::id().wrapping_mul(2_654_435_761) ^ handed.len() as u32;
        for _ in 0..span {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let port = (LOW + (x >> 8) % span) as u16;
            if !handed.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
                handed.insert(port);
                return port;
            }
        }
    }
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = l.local_addr().unwrap().port();
        if handed.insert(port) {
            return port;
        }
    }
}

/// The first port of the kernel's ephemeral range (32768 when unknown).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Whether a member's log says it could not bind a port.
fn address_in_use(log: &str) -> bool {
    log.to_ascii_lowercase().contains("address already in use")
}

pub struct Member {
    pub kind: Kind,
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

/// etcd's flags for a member on loopback: its name, data dir, client and
/// peer URLs, the initial cluster and its state (`new` or `existing`).
pub fn member_args(
    name: &str,
    data_dir: &Path,
    client_port: u16,
    peer_port: u16,
    initial_cluster: &str,
    state: &str,
) -> Vec<String> {
    vec![
        format!("--name={name}"),
        format!("--data-dir={}", data_dir.display()),
        format!("--listen-client-urls=http://127.0.0.1:{client_port}"),
        format!("--advertise-client-urls=http://127.0.0.1:{client_port}"),
        format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
        format!("--initial-cluster={initial_cluster}"),
        format!("--initial-cluster-state={state}"),
    ]
}

impl Member {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => false,
        }
    }

    /// Starts the process (again, with the same flags and data dir).
    pub fn start(&mut self) {
        self.start_under(&[]);
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The process's exit status if it has exited on its own.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok()?
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// GET `path` on the client port over HTTP/1.1.
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.client_port, path)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal HTTP/1.1 GET (no dependencies; the server closes after one
/// response because of `Connection: close`).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status: u16 = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    // A chunked body: drop the chunk sizes.
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    Some((status, body))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

pub struct Cluster {
    pub members: Vec<Member>,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// `n` members of `kind` on loopback, started and serving.
    pub fn start(kind: Kind, n: usize) -> Cluster {
        Self::start_with(kind, n, &[])
    }

    /// Starts over with fresh ports (and a fresh directory) when a member
    /// exits because another process took one of its ports in between.
    pub fn start_with(kind: Kind, n: usize, extra: &[&str]) -> Cluster {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let mut c = Self::spawn(kind, n, extra);
            match c.try_wait_ready(Duration::from_secs(30)) {
                Ok(()) => return c,
                Err(e)
                    if attempt < ATTEMPTS && c.members.iter().any(|m| address_in_use(&m.log())) =>
                {
                    eprintln!("a port was taken, starting the cluster again: {e}");
                }
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!()
    }

    fn spawn(kind: Kind, n: usize, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial_cluster: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
            .collect();
        let initial_cluster = initial_cluster.join(",");
        let mut members = Vec::new();
        for (i, &(client_port, peer_port)) in ports.iter().enumerate() {
            let name = format!("m{i}");
            let data_dir = dir.path().join(format!("{name}.data"));
            let mut args = member_args(
                &name,
                &data_dir,
                client_port,
                peer_port,
                &initial_cluster,
                "new",
            );
            args.extend(extra.iter().map(|s| s.to_string()));
            members.push(Member {
                kind,
                log_path: dir.path().join(format!("{name}.log")),
                name,
                client_port,
                peer_port,
                data_dir,
                args,
                child: None,
            });
        }
        for m in &mut members {
            m.start();
        }
        Cluster { members, dir }
    }

    /// The `--initial-cluster` a member joining now lists: every member
    /// (as `name=peer URL`) and itself.
    pub fn initial_cluster_with(&self, name: &str, peer_port: u16) -> String {
        let mut parts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        parts.push(format!("{name}=http://127.0.0.1:{peer_port}"));
        parts.join(",")
    }

    /// Starts a member that joins the running cluster (after MemberAdd)
    /// with `--initial-cluster-state existing`; returns its index. Waits
    /// until its client port answers; if another process took that port
    /// in between, starts it again on a fresh one.
    pub fn join(&mut self, name: &str, peer_port: u16, extra: &[&str]) -> usize {
        const ATTEMPTS: usize = 3;
        let kind = self.members[0].kind;
        let data_dir = self.dir.path().join(format!("{name}.data"));
        let initial_cluster = self.initial_cluster_with(name, peer_port);
        for attempt in 1..=ATTEMPTS {
            let client_port = free_port();
            let mut args = member_args(
                name,
                &data_dir,
                client_port,
                peer_port,
                &initial_cluster,
                "existing",
            );
            args.extend(extra.iter().map(|s| s.to_string()));
            let log_path = self.dir.path().join(format!("{name}.{attempt}.log"));
            let mut m = Member {
                kind,
                log_path,
                name: name.to_string(),
                client_port,
                peer_port,
                data_dir: data_dir.clone(),
                args,
                child: None,
            };
            m.start();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if m.http_get("/health").is_some() {
                    self.members.push(m);
                    return self.members.len() - 1;
                }
                if let Some(status) = m.exited() {
                    let log = m.log();
                    if attempt < ATTEMPTS && address_in_use(&log) {
                        // The same data dir: what it wrote is its own
                        // state (a restart, as after a crash).
                        eprintln!("{name}: a port was taken, starting it again");
                        break;
                    }
                    panic!("{name} exited with {status} while joining; log:\n{log}");
                }
                assert!(
                    Instant::now() < deadline,
                    "{name} does not serve its client port; log:\n{}",
                    m.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        unreachable!()
    }

    pub fn endpoints(&self) -> String {
        let eps: Vec<String> = self.members.iter().map(|m| m.endpoint()).collect();
        eps.join(",")
    }

    /// Waits until every running member answers /health with true.
    pub fn wait_ready(&mut self, timeout: Duration) {
        if let Err(e) = self.try_wait_ready(timeout) {
            panic!("{e}");
        }
    }

    fn try_wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        for i in 0..self.members.len() {
            loop {
                let m = &mut self.members[i];
                if let Some(status) = m.exited() {
                    return Err(format!(
                        "{} exited with {status} during startup; log:\n{}",
                        m.name,
                        m.log()
                    ));
                }
                if let Some((200, body)) = m.http_get("/health") {
                    if body.contains("\"health\":\"true\"") {
                        break;
                    }
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "{} not ready in {timeout:?}; log:\n{}",
                        m.name,
                        m.log()
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }
}

/// etcdctl (API v3) against `endpoints`, with `stdin` fed in, killed after
/// `timeout`.
pub fn etcdctl(endpoints: &str, args: &[&str], stdin: Option<&str>, timeout: Duration) -> Output {
    etcdctl_until(endpoints, args, stdin, timeout, |_| false)
}

/// As `etcdctl`, and killed as soon as `done(stdout so far)` holds (a
/// watch, which never exits by itself). stdout and stderr are read while
/// it runs, so any amount of output goes through.
pub fn etcdctl_until(
    endpoints: &str,
    args: &[&str],
    stdin: Option<&str>,
    timeout: Duration,
    mut done: impl FnMut(&[u8]) -> bool,
) -> Output {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .expect("etcdctl is installed (scripts/install-deps.sh)");
    let writer = stdin.map(|input| {
        let mut w = child.stdin.take().unwrap();
        let input = input.to_string();
        // Dropped at the end: etcdctl sees end of input.
        std::thread::spawn(move || {
            let _ = w.write_all(input.as_bytes());
        })
    });
    let stdout = std::sync::Arc::new(Mutex::new(Vec::new()));
    let out_reader = {
        let mut pipe = child.stdout.take().unwrap();
        let stdout = stdout.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => stdout.lock().unwrap().extend_from_slice(&buf[..n]),
                }
            }
        })
    };
    let err_reader = {
        let mut pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline || done(&stdout.lock().unwrap()) {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = std::mem::take(&mut *stdout.lock().unwrap());
    Output {
        status,
        stdout,
        stderr,
    }
}

/// The last `Error: ...` line etcdctl printed, if any.
pub fn etcdctl_error(out: &Output) -> Option<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .rev()
        .find(|l| l.starts_with("Error:"))
        .map(|l| l.to_string())
}

pub fn data_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

impl Member {
    /// The member of a one-member cluster (not started yet): data dir
    /// `<dir>/<name>.data`, log `<dir>/<name>.log`, fresh ports.
    pub fn single(kind: Kind, dir: &Path, name: &str, extra: &[&str]) -> Member {
        let (client_port, peer_port) = (free_port(), free_port());
        let data_dir = dir.join(format!("{name}.data"));
        let mut args = member_args(
            name,
            &data_dir,
            client_port,
            peer_port,
            &format!("{name}=http://127.0.0.1:{peer_port}"),
            "new",
        );
        args.extend(extra.iter().map(|s| s.to_string()));
        Member {
            kind,
            name: name.to_string(),
            client_port,
            peer_port,
            data_dir,
            log_path: dir.join(format!("{name}.log")),
            args,
            child: None,
        }
    }

    /// Starts the process as `wrapper[0] wrapper[1..] <binary> <flags>`
    /// (under a tracer such as strace), with the same log. The process
    /// `Member` holds (and `kill` and `Drop` end) is the wrapper; end the
    /// wrapped server with `kill_tree`.
    /// An empty `wrapper` starts the binary itself.
    pub fn start_under(&mut self, wrapper: &[String]) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open log");
        let binary = std::ffi::OsString::from(self.kind.binary());
        let mut argv: Vec<std::ffi::OsString> = wrapper.iter().map(Into::into).collect();
        argv.push(binary);
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"));
        self.child = Some(child);
    }

    /// Appends a line to the member's log (to tell its runs apart).
    pub fn log_note(&self, note: &str) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
        {
            let _ = writeln!(f, "=== {note}");
        }
    }

    /// SIGKILL to the process's children (a wrapped server), then to the
    /// process itself; reaps it.
    /// Returns once the children are dead (their files closed).
    pub fn kill_tree(&mut self) {
        let children = match &self.child {
            Some(c) => child_pids(c.id()),
            None => Vec::new(),
        };
        for &pid in &children {
            // SAFETY: kill(2) with a pid read from /proc; no memory involved.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        self.kill();
        for pid in children {
            wait_dead(pid);
        }
    }

    /// The pid of the started process (the wrapper's under `start_under`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Waits until the member answers /health with true. `Err` with the
    /// exit status if it exits first, or `Err(None)` after `timeout`.
    pub fn wait_healthy(
        &mut self,
        timeout: Duration,
    ) -> Result<(), Option<std::process::ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Err(Some(status));
            }
            if let Some((200, body)) = self.http_get("/health") {
                if body.contains("\"health\":\"true\"") {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The pids whose parent is `pid` (from /proc/<pid>/stat).
pub fn child_pids(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...; comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// Waits until process `pid` is gone, or a zombie with no thread left but
/// its leader (then every thread has closed its files and released its
/// locks). Panics after 30 s.
pub fn wait_dead(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()?.to_string()));
        let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count())
            .unwrap_or(0);
        match state.as_deref() {
            None => return,
            Some("Z") if threads <= 1 => return,
            _ => {}
        }
        assert!(Instant::now() < deadline, "pid {pid} survives SIGKILL");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until nobody holds a flock on `path` (if it exists): the
/// precondition for a process that takes it. Panics after 30 s.
pub fn wait_flock_free(path: &Path) {
    use std::os::fd::AsRawFd;
    let Ok(f) = std::fs::File::open(path) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    // SAFETY: flock(2) on a descriptor `f` owns; closing `f` releases it.
    while unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        assert!(
            Instant::now() < deadline,
            "{} stays locked by another process",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
