//! Systems under test, as campaign specs describe them: a command line
//! template, a node count, and the ports and data dir the campaign fills in.
//! The campaign starts every node on loopback with a fresh data dir, waits
//! until the cluster serves a write, samples the processes, and stops them,
//! keeping each node's log.

use crate::procstat::{self, ProcSample};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a node gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SystemKind {
    /// Processes started from `command`, one per node.
    Process,
    /// The engine in the ferrobench process (no network, no raft).
    Embedded,
    /// Already running endpoints (`endpoints`), not started or stopped.
    Endpoints,
}

fn default_nodes() -> usize {
    1
}
fn default_ready_timeout() -> f64 {
    30.0
}

/// One system of a campaign. Placeholders in `command`:
/// `{name}` (node name, `<system>-<index>`), `{index}`, `{data_dir}`,
/// `{client_port}`, `{peer_port}`, `{metrics_port}`, `{client_url}`,
/// `{peer_url}`, `{initial_cluster}` (`name=peer_url,...` of every node),
/// `{cluster_token}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemSpec {
    pub name: String,
    pub kind: SystemKind,
    #[serde(default = "default_nodes")]
    pub nodes: usize,
    #[serde(default)]
    pub command: String,
    /// Prints the version (first line kept), e.g. `etcd --version`.
    #[serde(default)]
    pub version_command: String,
    /// The system ratios are taken against; the campaign's `baseline` when
    /// absent.
    #[serde(default)]
    pub baseline: Option<String>,
    /// For `endpoints` systems.
    #[serde(default)]
    pub endpoints: Vec<String>,
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout_s: f64,
}

impl SystemSpec {
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.contains('/') {
            return Err(format!(
                "system name {:?} must be non-empty without '/'",
                self.name
            ));
        }
        match self.kind {
            SystemKind::Process => {
                if self.command.trim().is_empty() {
                    return Err(format!(
                        "system {}: process systems need a command",
                        self.name
                    ));
                }
                if !self.command.contains("{client_port}") && !self.command.contains("{client_url}")
                {
                    return Err(format!(
                        "system {}: command must use {{client_port}} or {{client_url}}",
                        self.name
                    ));
                }
                if !(1..=7).contains(&self.nodes) {
                    return Err(format!("system {}: nodes must be in 1..=7", self.name));
                }
            }
            SystemKind::Endpoints if self.endpoints.is_empty() => {
                return Err(format!(
                    "system {}: endpoints systems need endpoints",
                    self.name
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// The version line, or "unknown".
    pub fn version(&self) -> String {
        let Some(program) = self.version_command.split_whitespace().next() else {
            return "unknown".into();
        };
        let args: Vec<&str> = self.version_command.split_whitespace().skip(1).collect();
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".into())
    }
}

/// Free loopback ports, held until all are chosen so none repeats. Another
/// process may still take one before the node binds it; `start` retries.
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

pub struct Node {
    pub name: String,
    pub child: Child,
    pub client_port: u16,
    pub metrics_port: Option<u16>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl Node {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn metrics_addr(&self) -> Option<String> {
        self.metrics_port.map(|p| format!("127.0.0.1:{p}"))
    }

    pub fn sample(&self) -> ProcSample {
        procstat::sample(self.child.id())
    }
}

/// A running multi-node system; stopped (SIGKILL at the latest) on drop.
pub struct Running {
    pub nodes: Vec<Node>,
    /// Nodes `stop` has reaped (kept for their log paths).
    stopped: Vec<Node>,
}

fn fill(template: &str, vars: &[(&str, String)]) -> String {
    let mut s = template.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

impl Running {
    /// Starts `spec`'s nodes with data dirs under `data_root` (which must not
    /// exist yet) and logs under `log_dir`, then waits until a put succeeds.
    pub async fn start(
        spec: &SystemSpec,
        data_root: &Path,
        log_dir: &Path,
        tag: &str,
    ) -> anyhow::Result<Running> {
        let mut last_err = None;
        for attempt in 0..3 {
            let root = data_root.join(format!("try{attempt}"));
            match Self::start_once(spec, &root, log_dir, tag).await {
                Ok(r) => return Ok(r),
                Err(e) => {
                    eprintln!("starting {}: {e:#}; retrying with new ports", spec.name);
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.expect("three attempts"))
    }

    async fn start_once(
        spec: &SystemSpec,
        data_root: &Path,
        log_dir: &Path,
        tag: &str,
    ) -> anyhow::Result<Running> {
        std::fs::create_dir_all(log_dir)?;
        let ports = free_ports(3 * spec.nodes)?;
        let token = format!("ferrobench-{}-{}", std::process::id(), ports[0]);
        let names: Vec<String> = (0..spec.nodes)
            .map(|i| format!("{}-{i}", spec.name))
            .collect();
        let peer_url = |i: usize| format!("http://127.0.0.1:{}", ports[3 * i + 1]);
        let initial_cluster = (0..spec.nodes)
            .map(|i| format!("{}={}", names[i], peer_url(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut running = Running {
            nodes: Vec::new(),
            stopped: Vec::new(),
        };
        for (i, name) in names.iter().enumerate() {
            let data_dir = data_root.join(name);
            std::fs::create_dir_all(data_root)?;
            let (client_port, metrics_port) = (ports[3 * i], ports[3 * i + 2]);
            let vars = [
                ("name", name.clone()),
                ("index", i.to_string()),
                ("data_dir", data_dir.display().to_string()),
                ("client_port", client_port.to_string()),
                ("peer_port", ports[3 * i + 1].to_string()),
                ("metrics_port", metrics_port.to_string()),
                ("client_url", format!("http://127.0.0.1:{client_port}")),
                ("peer_url", peer_url(i)),
                ("initial_cluster", initial_cluster.clone()),
                ("cluster_token", token.clone()),
            ];
            let line = fill(&spec.command, &vars);
            let mut words = line.split_whitespace();
            let program = words.next().expect("validated non-empty");
            let log = log_dir.join(format!("{tag}-{name}.log"));
            let out = File::create(&log)?;
            let child = Command::new(program)
                .args(words)
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()
                .map_err(|e| anyhow::anyhow!("spawning {program}: {e}"))?;
            running.nodes.push(Node {
                name: name.clone(),
                child,
                client_port,
                metrics_port: spec
                    .command
                    .contains("{metrics_port}")
                    .then_some(metrics_port),
                data_dir,
                log,
            });
        }
        running
            .wait_ready(Duration::from_secs_f64(spec.ready_timeout_s))
            .await?;
        Ok(running)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(Node::endpoint).collect()
    }

    /// Every node answers Maintenance.Status and a put through the first
    /// node commits (so a leader exists).
    async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            for n in &mut self.nodes {
                if let Some(status) = n.child.try_wait()? {
                    anyhow::bail!("{} exited with {status} (log: {})", n.name, n.log.display());
                }
            }
            let last = match self.probe().await {
                Ok(()) => return Ok(()),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                anyhow::bail!("not ready after {timeout:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn probe(&self) -> anyhow::Result<()> {
        for n in &self.nodes {
            crate::grpc::status(&n.endpoint()).await?;
        }
        let channel = crate::grpc::connect(&self.nodes[0].endpoint()).await?;
        let mut kv = proto::etcdserverpb::kv_client::KvClient::new(channel);
        kv.put(proto::etcdserverpb::PutRequest {
            key: b"ferrobench-ready".to_vec(),
            value: b"1".to_vec(),
            ..Default::default()
        })
        .await?;
        Ok(())
    }

    /// Summed CPU and disk writes, largest peak RSS, over the nodes.
    pub fn sample(&self) -> ProcSample {
        self.nodes
            .iter()
            .map(Node::sample)
            .fold(ProcSample::default(), |a, s| ProcSample {
                cpu_s: a.cpu_s + s.cpu_s,
                peak_rss_bytes: a.peak_rss_bytes.max(s.peak_rss_bytes),
                write_bytes: a.write_bytes + s.write_bytes,
            })
    }

    pub fn data_dir_bytes(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| procstat::dir_bytes(&n.data_dir))
            .sum()
    }

    /// Resets every node's peak RSS to its current RSS (see
    /// `procstat::reset_peak_rss`).
    pub fn reset_peak_rss(&self) {
        for n in &self.nodes {
            procstat::reset_peak_rss(n.child.id());
        }
    }

    /// Stops the nodes one at a time: SIGTERM, then SIGKILL after the grace
    /// period. One at a time because an etcd member stopped together with
    /// its peers spends seconds trying to hand its leadership over to them.
    pub fn stop(&mut self) {
        for n in &mut self.nodes {
            // SAFETY: kill has no memory-safety preconditions; the pid is our
            // child's, not yet reaped.
            unsafe { libc::kill(n.child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + STOP_GRACE;
            loop {
                match n.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = n.child.kill();
                        let _ = n.child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }
        self.stopped = std::mem::take(&mut self.nodes);
    }

    /// Removes the logs of stopped nodes that wrote nothing.
    pub fn remove_empty_logs(&self) {
        for n in &self.stopped {
            if std::fs::metadata(&n.log).is_ok_and(|m| m.len() == 0) {
                let _ = std::fs::remove_file(&n.log);
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
    }
}
