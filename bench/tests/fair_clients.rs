//! Clients whose requests never wait (as the embedded engine's: answered
//! synchronously, no await point) still all run during a duration-bounded
//! run: none keeps a worker thread to itself until the deadline.

use bench::target::{Client, EventSink, Op, OpError, Target, WatchGuard};
use bench::workload::{Load, Workload, WorkloadKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Clone)]
struct Counting {
    ops_by_client: Arc<Vec<AtomicU64>>,
}

struct CountingClient {
    idx: usize,
    ops_by_client: Arc<Vec<AtomicU64>>,
}

impl Client for CountingClient {
    async fn execute(&mut self, _op: Op) -> Result<(), OpError> {
        // Some work and no await, as a synchronous engine call.
        let mut x = self.idx as u64;
        for i in 0..200u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        std::hint::black_box(x);
        self.ops_by_client[self.idx].fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl Target for Counting {
    type Client = CountingClient;

    fn client(&self, idx: usize) -> CountingClient {
        CountingClient {
            idx,
            ops_by_client: self.ops_by_client.clone(),
        }
    }

    async fn watch(
        &self,
        _idx: usize,
        _key: Vec<u8>,
        _range_end: Vec<u8>,
        _watchers: usize,
        _sink: EventSink,
    ) -> Result<WatchGuard, OpError> {
        Err(OpError::new("Unimplemented", "no watch"))
    }
}

#[test]
fn every_client_of_a_never_waiting_target_runs() {
    const CLIENTS: usize = 8;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let target = Counting {
        ops_by_client: Arc::new((0..CLIENTS).map(|_| AtomicU64::new(0)).collect()),
    };
    let load = Load {
        conns: 1,
        clients: CLIENTS,
        total: None,
        duration_s: Some(0.3),
        warmup_s: 0.0,
        rate: None,
    };
    let out = rt
        .block_on(bench::driver::run(
            &target,
            &Workload::new(WorkloadKind::Put),
            &load,
            false,
        ))
        .unwrap();
    let counts: Vec<u64> = target
        .ops_by_client
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), out.recorders.ops["put"].ok_all);
    assert!(
        counts.iter().all(|&n| n > 0),
        "clients that never ran: {counts:?}"
    );
}
