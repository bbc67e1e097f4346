//! A raftlog node replicating the KV model, with etcd-style flags and a
//! tiny client protocol: the child process of the crash test and the
//! benchmark. Not a product binary (the product is `ferrokv`).
//!
//! Clients talk to it with [`raftlog::kv_service`]'s protocol.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use raftlog::cluster::{member_id, url_host_port, ClusterState, InitialCluster};
use raftlog::kv::SharedKv;
use raftlog::kv_service::serve_connection;
use raftlog::{Config, Node, NodeConfig};

#[derive(Parser, Debug)]
#[command(about = "raftlog KV node (test and benchmark child)")]
struct Args {
    #[arg(long)]
    name: String,
    #[arg(long)]
    data_dir: PathBuf,
    /// etcd's `name=url,...`
    #[arg(long)]
    initial_cluster: String,
    #[arg(long, default_value = "raftlog-cluster")]
    initial_cluster_token: String,
    #[arg(long, default_value = "new")]
    initial_cluster_state: String,
    /// Client protocol address.
    #[arg(long)]
    listen_client: String,
    #[arg(long, default_value_t = 100)]
    tick_ms: u64,
    #[arg(long, default_value_t = 10)]
    election_ticks: usize,
    #[arg(long, default_value_t = 10_000)]
    snapshot_count: u64,
    #[arg(long, default_value_t = 5_000)]
    compaction_margin: u64,
    #[arg(long, default_value_t = 256)]
    max_inflight: usize,
    /// The leader waits for its own log write before sending appends.
    #[arg(long)]
    no_parallel_persist: bool,
    #[arg(long, default_value_t = 64)]
    wal_segment_mib: u64,
    /// How long a request may wait for its outcome.
    #[arg(long, default_value_t = 2000)]
    request_timeout_ms: u64,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let cluster = InitialCluster::parse(&args.initial_cluster, &args.initial_cluster_token)?;
    let me = cluster
        .member_by_name(&args.name)
        .with_context(|| format!("{} is not in --initial-cluster", args.name))?;
    let id = member_id(&args.initial_cluster_token, &args.name);
    let mut raft = Config::new(id);
    raft.tick_interval = Duration::from_millis(args.tick_ms);
    raft.election_tick = args.election_ticks;
    raft.read_index_retry_ticks = args.election_ticks;
    raft.snapshot_interval_entries = args.snapshot_count;
    raft.compaction_margin_entries = args.compaction_margin;
    raft.max_inflight_msgs = args.max_inflight;
    raft.parallel_leader_persist = !args.no_parallel_persist;
    let mut cfg = NodeConfig::new(
        raft,
        &args.data_dir,
        cluster.clone(),
        url_host_port(&me.peer_urls[0]),
    );
    cfg.cluster_state = match args.initial_cluster_state.as_str() {
        "new" => ClusterState::New,
        "existing" => ClusterState::Existing,
        s => bail!("--initial-cluster-state {s}: expected new or existing"),
    };
    cfg.wal.segment_bytes = args.wal_segment_mib << 20;
    cfg.wal.queue_bytes_max = cfg
        .wal
        .queue_bytes_max
        .min((cfg.wal.segment_bytes / 2) as usize);
    cfg.wal.record_bytes_max = cfg.wal.record_bytes_max.min(cfg.wal.queue_bytes_max / 2);
    let kv = SharedKv::new();
    let node = Arc::new(Node::open(cfg, kv.clone())?);
    let listener = TcpListener::bind(&args.listen_client)
        .with_context(|| format!("bind {}", args.listen_client))?;
    let timeout = Duration::from_millis(args.request_timeout_ms);
    // A node that stops on its own (removed, failed WAL) ends the process.
    let watched = Arc::clone(&node);
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(100));
        if watched.is_stopped() {
            eprintln!(
                "node stopped: {}",
                watched.failure().unwrap_or_else(|| "removed".into())
            );
            std::process::exit(3);
        }
    });
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let (node, kv) = (Arc::clone(&node), kv.clone());
        std::thread::spawn(move || {
            let _ = serve_connection(conn, &node, &kv, timeout);
        });
    }
    Ok(())
}
