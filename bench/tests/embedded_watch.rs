//! The embedded target's watch workload: watchers on the engine's own watch
//! streams receive every put of the run once per watcher, and put-to-event
//! latencies are recorded for the measured puts.

use bench::embedded::EmbeddedTarget;
use bench::workload::{Load, Workload, WorkloadKind};

#[test]
fn every_put_reaches_every_watcher() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let target = EmbeddedTarget::open(tmp.path()).unwrap();
    let mut wl = Workload::new(WorkloadKind::Watch);
    wl.watchers = 3;
    wl.watch_streams = 2;
    let load = Load {
        conns: 1,
        clients: 2,
        total: Some(2_000),
        duration_s: Some(30.0),
        warmup_s: 0.0,
        rate: None,
    };
    let out = rt
        .block_on(bench::driver::run(&target, &wl, &load, false))
        .unwrap();
    let puts = &out.recorders.ops["put"];
    let events = &out.recorders.ops["watch-event"];
    assert_eq!(puts.latency_ns.len(), 2_000);
    assert!(puts.errors.is_empty(), "{:?}", puts.errors);
    // Every put, warm-up or not, once per watcher; none missing.
    assert_eq!(events.ok_all, puts.ok_all * 3);
    assert!(events.errors.is_empty(), "{:?}", events.errors);
    // Each measured put's events carry its latency.
    assert_eq!(events.latency_ns.len(), 2_000 * 3);
    assert!(events.latency_ns.min() > 0);
    let rate = out.events_per_s.unwrap();
    assert!(rate > 0.0 && rate.is_finite(), "{rate}");
}
