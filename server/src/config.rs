//! The `ferrokv` command line: etcd's flags with etcd's defaults, and the
//! checks etcd makes on them (etcdmain/config.go, embed/config.go), so a
//! script that starts etcd starts ferrokv by changing the binary's name.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// etcd's default `--max-request-bytes` (embed.DefaultMaxRequestBytes).
pub const DEFAULT_MAX_REQUEST_BYTES: u32 = 1536 * 1024;
/// gRPC headroom over `--max-request-bytes` (embed.grpcOverheadBytes): a
/// message up to this much larger is decoded and then refused with etcd's
/// "request is too large"; beyond it gRPC itself refuses the message.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// etcd's default backend quota (etcdserver.DefaultQuotaBytes): 2 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// etcd's default `--max-txn-ops` (embed.DefaultMaxTxnOps).
pub const DEFAULT_MAX_TXN_OPS: u32 = 128;
/// etcd refuses election timeouts of 50 s and more (etcdmain/config.go).
pub const ELECTION_TIMEOUT_MS_MAX: u64 = 50_000;

/// Storage engine under the MVCC store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// The own copy-on-write B+tree (one fsync per commit).
    Btree,
    /// redb, for comparison.
    Redb,
    /// LMDB through heed, for comparison.
    Lmdb,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Btree => "btree",
            BackendKind::Redb => "redb",
            BackendKind::Lmdb => "lmdb",
        }
    }
}

/// How the raft log's WAL submits its writes and fdatasyncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WalIo {
    /// io_uring (linked write + fsync) when a ring can be set up, else
    /// portable.
    Auto,
    /// io_uring or refuse to start.
    IoUring,
    /// `pwritev` + `fdatasync` on the thread that writes (the raft loop
    /// itself when it is idle, else the WAL's writer thread): no io-wq
    /// worker wake-up for a lone write, but no write prepared while an
    /// fdatasync is in flight.
    Portable,
}

impl WalIo {
    pub fn mode(self) -> engine::wal::IoMode {
        match self {
            WalIo::Portable => engine::wal::IoMode::Portable,
            WalIo::Auto => engine::wal::IoMode::Auto,
            WalIo::IoUring => engine::wal::IoMode::IoUring,
        }
    }
}

/// `--initial-cluster-state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ClusterState {
    New,
    Existing,
}

/// A URL as etcd accepts it in its URL flags: `scheme://host:port`, scheme
/// http, https, unix or unixs (pkg/types/urls.go).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, String> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("URL scheme must be http, https, unix, or unixs: {s}"))?;
        if !matches!(scheme, "http" | "https" | "unix" | "unixs") {
            return Err(format!(
                "URL scheme must be http, https, unix, or unixs: {s}"
            ));
        }
        let authority = rest.split('/').next().unwrap_or("");
        let not_host_port = || format!("URL address does not have the form \"host:port\": {s}");
        let (host, port) = authority.rsplit_once(':').ok_or_else(not_host_port)?;
        if host.is_empty() && port.is_empty() {
            return Err(not_host_port());
        }
        let port: u16 = port.parse().map_err(|_| not_host_port())?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if rest.len() > authority.len() && rest[authority.len()..] != *"/" {
            return Err(format!("URL must not contain a path: {s}"));
        }
        Ok(Url {
            scheme: scheme.to_string(),
            host,
            port,
        })
    }

    /// The socket address to bind or dial (host names are resolved; an
    /// empty host means every interface, as in Go's net.Listen).
    pub fn socket_addr(&self) -> Result<SocketAddr, String> {
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            &self.host
        };
        (host, self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}:{}: {e}", self.port))?
            .next()
            .ok_or_else(|| format!("cannot resolve {host}:{}", self.port))
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// A comma-separated URL list flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Urls(pub Vec<Url>);

fn parse_urls(s: &str) -> Result<Urls, String> {
    let urls = s
        .split(',')
        .filter(|p| !p.is_empty())
        .map(Url::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err("no valid URLs given".to_string());
    }
    Ok(Urls(urls))
}

impl std::fmt::Display for Urls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|u| u.to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

/// The flags, named and defaulted as etcd 3.4's.
#[derive(Parser, Clone, Debug)]
#[command(
    name = "ferrokv",
    version,
    about = "An etcd-compatible key-value store (etcd v3 API)"
)]
pub struct Flags {
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: ${name}.etcd).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// URLs to listen on for client traffic (gRPC, /metrics and /health).
    #[arg(long, default_value = "http://localhost:2379", value_parser = parse_urls)]
    pub listen_client_urls: Urls,
    /// This member's client URLs to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2379", value_parser = parse_urls)]
    pub advertise_client_urls: Urls,
    /// URLs to listen on for peer (raft) traffic.
    #[arg(long, default_value = "http://localhost:2380", value_parser = parse_urls)]
    pub listen_peer_urls: Urls,
    /// This member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2380", value_parser = parse_urls)]
    pub initial_advertise_peer_urls: Urls,
    /// Initial cluster configuration for bootstrapping: name=peerURL,...
    /// (default: ${name}=${initial-advertise-peer-urls}).
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, value_enum, default_value = "new")]
    pub initial_cluster_state: ClusterState,
    /// Initial cluster token, mixed into the cluster and member IDs.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Raise an alarm (NOSPACE) when the backend size exceeds this quota;
    /// 0 means the default (2 GiB).
    #[arg(long, default_value_t = 0)]
    pub quota_backend_bytes: u64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: u32,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, default_value_t = DEFAULT_MAX_TXN_OPS)]
    pub max_txn_ops: u32,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Entries kept in the WAL behind a snapshot, so a slow follower
    /// catches up from the log instead of a snapshot (etcd 3.5's flag).
    #[arg(long, default_value_t = 5000)]
    pub experimental_snapshot_catchup_entries: u64,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, default_value_t = 1000)]
    pub election_timeout: u64,
    /// List of URLs to listen on for /metrics and /health only (as etcd's
    /// --listen-metrics-urls); the client URLs serve them too.
    #[arg(long, value_parser = parse_urls)]
    pub listen_metrics_urls: Option<Urls>,
    /// Storage engine under the MVCC store.
    #[arg(long, value_enum, default_value = "btree")]
    pub backend: BackendKind,
    /// Backend batch commit interval in milliseconds (etcd's
    /// --backend-batch-interval); 0 keeps the engine's default.
    #[arg(long, default_value_t = 0)]
    pub backend_batch_interval: u64,
    /// Backend batch commit limit in operations (etcd's
    /// --backend-batch-limit); 0 keeps the engine's default.
    #[arg(long, default_value_t = 0)]
    pub backend_batch_limit: u64,
    /// How the raft log's WAL writes: auto (io_uring when available),
    /// io-uring, or portable (pwritev + fdatasync). See results/server.md.
    #[arg(long, value_enum, default_value = "auto")]
    pub wal_io: WalIo,
    /// Log level (debug, info, warn, error).
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

/// A member of the initial cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    pub peer_urls: Vec<Url>,
}

/// The checked configuration the server runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client_urls: Vec<Url>,
    pub advertise_client_urls: Vec<Url>,
    pub listen_peer_urls: Vec<Url>,
    pub initial_advertise_peer_urls: Vec<Url>,
    /// Members in the order of `--initial-cluster`.
    pub initial_cluster: Vec<InitialMember>,
    pub initial_cluster_state: ClusterState,
    pub initial_cluster_token: String,
    pub quota_backend_bytes: u64,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub snapshot_count: u64,
    pub snapshot_catchup_entries: u64,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    pub listen_metrics_urls: Vec<Url>,
    pub backend: BackendKind,
    pub backend_batch_interval: Option<Duration>,
    pub backend_batch_limit: Option<u64>,
    pub wal_io: WalIo,
    pub log_level: String,
}

/// A flag combination etcd would refuse, with etcd's wording.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--election-timeout[{election_ms}ms] should be at least as 5 times as --heartbeat-interval[{heartbeat_ms}ms]")]
    ElectionTooShort { election_ms: u64, heartbeat_ms: u64 },
    #[error("--election-timeout[{0}ms] is too long, and should be set less than {ELECTION_TIMEOUT_MS_MAX}ms")]
    ElectionTooLong(u64),
    #[error("--heartbeat-interval must be > 0")]
    ZeroHeartbeat,
    #[error("couldn't find local name {0:?} in the initial cluster configuration")]
    NameNotInCluster(String),
    #[error("--initial-cluster has {0} but missing from --initial-advertise-peer-urls={1} ({2})")]
    AdvertiseMismatch(String, String, String),
    #[error("invalid value {0:?} for flag -initial-cluster: {1}")]
    BadInitialCluster(String, String),
    #[error("member name {0:?} appears twice in --initial-cluster")]
    DuplicateMember(String),
    #[error("--max-request-bytes must be > 0")]
    ZeroMaxRequest,
    #[error("--max-txn-ops must be > 0")]
    ZeroMaxTxnOps,
    #[error("{0}")]
    Url(String),
}

impl Flags {
    /// Checks the flags as etcd does and fills the derived defaults.
    pub fn validate(self) -> Result<Config, ConfigError> {
        if self.heartbeat_interval == 0 {
            return Err(ConfigError::ZeroHeartbeat);
        }
        if self.election_timeout < 5 * self.heartbeat_interval {
            return Err(ConfigError::ElectionTooShort {
                election_ms: self.election_timeout,
                heartbeat_ms: self.heartbeat_interval,
            });
        }
        if self.election_timeout >= ELECTION_TIMEOUT_MS_MAX {
            return Err(ConfigError::ElectionTooLong(self.election_timeout));
        }
        if self.max_request_bytes == 0 {
            return Err(ConfigError::ZeroMaxRequest);
        }
        if self.max_txn_ops == 0 {
            return Err(ConfigError::ZeroMaxTxnOps);
        }
        let initial_cluster_text = self.initial_cluster.clone().unwrap_or_else(|| {
            let urls: Vec<String> = self
                .initial_advertise_peer_urls
                .0
                .iter()
                .map(|u| format!("{}={}", self.name, u))
                .collect();
            urls.join(",")
        });
        let initial_cluster = parse_initial_cluster(&initial_cluster_text)?;
        let me = initial_cluster
            .iter()
            .find(|m| m.name == self.name)
            .ok_or_else(|| ConfigError::NameNotInCluster(self.name.clone()))?;
        let mut mine: Vec<String> = me.peer_urls.iter().map(|u| u.to_string()).collect();
        let mut advertised: Vec<String> = self
            .initial_advertise_peer_urls
            .0
            .iter()
            .map(|u| u.to_string())
            .collect();
        mine.sort();
        advertised.sort();
        if mine != advertised {
            return Err(ConfigError::AdvertiseMismatch(
                format!("{}={}", self.name, mine.join(",")),
                advertised.join(","),
                "peer URLs differ".to_string(),
            ));
        }
        for url in self
            .listen_client_urls
            .0
            .iter()
            .chain(&self.listen_peer_urls.0)
        {
            url.socket_addr().map_err(ConfigError::Url)?;
        }
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", self.name)));
        Ok(Config {
            name: self.name,
            data_dir,
            listen_client_urls: self.listen_client_urls.0,
            advertise_client_urls: self.advertise_client_urls.0,
            listen_peer_urls: self.listen_peer_urls.0,
            initial_advertise_peer_urls: self.initial_advertise_peer_urls.0,
            initial_cluster,
            initial_cluster_state: self.initial_cluster_state,
            initial_cluster_token: self.initial_cluster_token,
            quota_backend_bytes: if self.quota_backend_bytes == 0 {
                DEFAULT_QUOTA_BYTES
            } else {
                self.quota_backend_bytes
            },
            max_request_bytes: self.max_request_bytes as usize,
            max_txn_ops: self.max_txn_ops as usize,
            snapshot_count: self.snapshot_count,
            snapshot_catchup_entries: self.experimental_snapshot_catchup_entries,
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval),
            election_timeout: Duration::from_millis(self.election_timeout),
            listen_metrics_urls: self.listen_metrics_urls.map(|u| u.0).unwrap_or_default(),
            backend: self.backend,
            backend_batch_interval: (self.backend_batch_interval > 0)
                .then(|| Duration::from_millis(self.backend_batch_interval)),
            backend_batch_limit: (self.backend_batch_limit > 0).then_some(self.backend_batch_limit),
            wal_io: self.wal_io,
            log_level: self.log_level,
        })
    }
}

/// Parses `name1=url1,name1=url2,name2=url3` into members in first-seen
/// order (etcd's types.NewURLsMap: a name may repeat to give several URLs).
pub fn parse_initial_cluster(s: &str) -> Result<Vec<InitialMember>, ConfigError> {
    let mut order: Vec<String> = Vec::new();
    let mut urls: BTreeMap<String, Vec<Url>> = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (name, url) = part.split_once('=').ok_or_else(|| {
            ConfigError::BadInitialCluster(s.to_string(), format!("{part:?} is not name=URL"))
        })?;
        if name.is_empty() {
            return Err(ConfigError::BadInitialCluster(
                s.to_string(),
                "empty member name".to_string(),
            ));
        }
        let url = Url::parse(url).map_err(|e| ConfigError::BadInitialCluster(s.to_string(), e))?;
        if !urls.contains_key(name) {
            order.push(name.to_string());
        }
        let list = urls.entry(name.to_string()).or_default();
        if list.contains(&url) {
            return Err(ConfigError::DuplicateMember(name.to_string()));
        }
        list.push(url);
    }
    if order.is_empty() {
        return Err(ConfigError::BadInitialCluster(
            s.to_string(),
            "no members".to_string(),
        ));
    }
    Ok(order
        .into_iter()
        .map(|name| InitialMember {
            peer_urls: urls.remove(&name).unwrap_or_default(),
            name,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Result<Flags, clap::Error> {
        let mut v = vec!["ferrokv"];
        v.extend_from_slice(args);
        Flags::try_parse_from(v)
    }

    #[test]
    fn defaults_are_etcds() {
        let c = flags(&[]).unwrap().validate().unwrap();
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.etcd"));
        assert_eq!(c.max_request_bytes, 1_572_864);
        assert_eq!(c.max_txn_ops, 128);
        assert_eq!(c.quota_backend_bytes, 2 << 30);
        assert_eq!(c.snapshot_count, 100_000);
        assert_eq!(c.heartbeat_interval, Duration::from_millis(100));
        assert_eq!(c.election_timeout, Duration::from_millis(1000));
        assert_eq!(c.initial_cluster.len(), 1);
        assert_eq!(c.initial_cluster[0].name, "default");
        assert_eq!(
            c.initial_cluster[0].peer_urls[0].to_string(),
            "http://localhost:2380"
        );
        assert_eq!(c.backend, BackendKind::Btree);
        assert_eq!(c.wal_io, WalIo::Auto);
    }

    #[test]
    fn url_errors_use_etcds_words() {
        let e = flags(&["--listen-client-urls", "foo"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("URL scheme must be http, https, unix, or unixs: foo"),
            "{e}"
        );
        let e = flags(&["--listen-client-urls", "http://127.0.0.1"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("URL address does not have the form \"host:port\""),
            "{e}"
        );
        assert!(flags(&["--initial-cluster-state", "foo"]).is_err());
        assert!(flags(&["--bogus"]).is_err());
        assert!(flags(&["--snapshot-count", "x"]).is_err());
        assert!(flags(&["--backend", "bolt"]).is_err());
        let u = flags(&["--wal-io", "io-uring"])
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(u.wal_io.mode(), engine::wal::IoMode::IoUring);
        assert!(flags(&["--wal-io", "aio"]).is_err());
    }

    #[test]
    fn timeouts_are_checked_as_etcd_does() {
        let e = flags(&["--heartbeat-interval", "500", "--election-timeout", "1000"])
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[500ms]"
        );
        let e = flags(&["--election-timeout", "60000"])
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--election-timeout[60000ms] is too long, and should be set less than 50000ms"
        );
    }

    #[test]
    fn three_member_cluster() {
        let c = flags(&[
            "--name",
            "n2",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2382",
            "--initial-cluster",
            "n1=http://127.0.0.1:2380,n2=http://127.0.0.1:2382,n3=http://127.0.0.1:2384",
        ])
        .unwrap()
        .validate()
        .unwrap();
        let names: Vec<&str> = c.initial_cluster.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["n1", "n2", "n3"]);
        let e = flags(&["--name", "b", "--initial-cluster", "a=http://127.0.0.1:1"])
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "couldn't find local name \"b\" in the initial cluster configuration"
        );
        assert!(parse_initial_cluster("a").is_err());
        assert!(parse_initial_cluster("=http://x:1").is_err());
        assert!(parse_initial_cluster("a=ftp://x:1").is_err());
    }
}
