//! Acceptance 1: against a real etcd 3.4 started the way campaigns start it,
//! ferrobench's put / range / txn / watch figures agree within 15% with
//! etcd's own counters from /metrics over the same run.

use bench::campaign::run_cell;
use bench::grpc::GrpcTarget;
use bench::results::Repetition;
use bench::system::{Running, SystemKind, SystemSpec};
use bench::workload::{Consistency, Load, Workload, WorkloadKind};

const TOLERANCE: f64 = 0.15;

fn etcd_spec() -> SystemSpec {
    SystemSpec {
        name: "etcd-1".into(),
        kind: SystemKind::Process,
        nodes: 1,
        command: "etcd --name {name} --data-dir {data_dir} --listen-client-urls {client_url} \
                  --advertise-client-urls {client_url} --listen-peer-urls {peer_url} \
                  --initial-advertise-peer-urls {peer_url} --initial-cluster {initial_cluster} \
                  --initial-cluster-token {cluster_token} --initial-cluster-state new \
                  --listen-metrics-urls http://127.0.0.1:{metrics_port} --log-level warn"
            .into(),
        version_command: "etcd --version".into(),
        baseline: None,
        endpoints: vec![],
        ready_timeout_s: 30.0,
    }
}

fn load(clients: usize) -> Load {
    Load {
        conns: 2,
        clients,
        total: None,
        duration_s: Some(1.5),
        warmup_s: 0.3,
        rate: None,
    }
}

fn counter(rep: &Repetition, name: &str) -> f64 {
    let cc = rep.crosscheck.as_ref().expect("metrics were scraped");
    *cc.counters
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing: {:?}", cc.counters))
}

/// Our count (warm-up included: the server cannot tell it apart) against the
/// server's, and our rate against the server's over the scrape window.
fn agree(what: &str, ours: f64, ours_wall_s: f64, server: f64, window_s: f64) {
    assert!(
        ours > 100.0,
        "{what}: only {ours} operations; the run did not load the server"
    );
    let count_err = (ours - server).abs() / server;
    let (our_rate, server_rate) = (ours / ours_wall_s, server / window_s);
    let rate_err = (our_rate - server_rate).abs() / server_rate;
    eprintln!("{what}: ours {ours} ({our_rate:.0}/s), etcd {server} ({server_rate:.0}/s)");
    assert!(
        count_err <= TOLERANCE,
        "{what}: count ours {ours} vs etcd {server}"
    );
    assert!(
        rate_err <= TOLERANCE,
        "{what}: rate ours {our_rate:.0}/s vs etcd {server_rate:.0}/s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_agree_with_etcd_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let mut etcd = Running::start(
        &etcd_spec(),
        &tmp.path().join("data"),
        &tmp.path().join("logs"),
        "t",
    )
    .await
    .expect("etcd starts (make deps installs it)");
    let target = GrpcTarget::connect(&etcd.endpoints(), 2).await.unwrap();
    let run = |wl: Workload, clients: usize| {
        let (target, etcd) = (&target, &etcd);
        async move {
            run_cell(
                target,
                Some(etcd),
                None,
                &wl,
                &load(clients),
                true,
                false,
                0,
            )
            .await
            .unwrap()
        }
    };
    let window = |rep: &Repetition| rep.crosscheck.as_ref().unwrap().window_s;

    let (rep, _) = run(Workload::new(WorkloadKind::Put), 8).await;
    let put = &rep.ops["put"];
    agree(
        "put",
        put.ok_all as f64,
        rep.wall_s,
        counter(&rep, "etcd_mvcc_put_total"),
        window(&rep),
    );
    // Every put is one raft proposal.
    agree(
        "put proposals",
        put.ok_all as f64,
        rep.wall_s,
        counter(&rep, "etcd_server_proposals_committed_total"),
        window(&rep),
    );

    let mut range = Workload::new(WorkloadKind::Range);
    range.consistency = Consistency::Serializable;
    range.key_space_size = 1000;
    let (rep, _) = run(range, 8).await;
    agree(
        "range",
        rep.ops["range"].ok_all as f64,
        rep.wall_s,
        counter(&rep, "etcd_mvcc_range_total"),
        window(&rep),
    );

    let (rep, _) = run(Workload::new(WorkloadKind::TxnPut), 8).await;
    agree(
        "txn",
        rep.ops["txn"].ok_all as f64,
        rep.wall_s,
        counter(&rep, "etcd_mvcc_txn_total"),
        window(&rep),
    );

    let (rep, _) = run(Workload::new(WorkloadKind::Watch), 4).await;
    let events = rep.ops["watch-event"].ok_all as f64;
    agree(
        "watch events",
        events,
        rep.wall_s,
        counter(&rep, "etcd_debugging_mvcc_events_total"),
        window(&rep),
    );
    etcd.stop();
}
