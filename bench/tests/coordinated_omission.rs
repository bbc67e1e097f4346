//! Acceptance 2: an endpoint that stalls once for 1 s. The open-loop run
//! times every request from when it was due, so the requests held up behind
//! the stall carry it and the p99 shows it; the closed-loop run times each
//! request from when it was sent, so the stall is one slow sample and its
//! p99 does not show it (coordinated omission).

use bench::driver;
use bench::grpc::GrpcTarget;
use bench::workload::{Load, Workload, WorkloadKind};
use proto::etcdserverpb::kv_server::{Kv, KvServer};
use proto::etcdserverpb::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

const STALL: Duration = Duration::from_secs(1);
/// The stall hits the first request that arrives this long after the fake
/// server started (inside the measured window of both runs).
const STALL_AFTER: Duration = Duration::from_secs(1);

/// A fake etcd KV service: answers puts at once, except that the first one
/// after `STALL_AFTER` waits `STALL` first.
struct Stalling {
    puts: Arc<AtomicU64>,
    started: Instant,
    stalled: AtomicBool,
}

#[tonic::async_trait]
impl Kv for Stalling {
    async fn put(&self, _: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        if self.started.elapsed() >= STALL_AFTER && !self.stalled.swap(true, Ordering::SeqCst) {
            tokio::time::sleep(STALL).await;
        }
        Ok(Response::new(PutResponse::default()))
    }
    async fn range(&self, _: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        Err(Status::unimplemented("range"))
    }
    async fn delete_range(
        &self,
        _: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        Err(Status::unimplemented("delete"))
    }
    async fn txn(&self, _: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        Err(Status::unimplemented("txn"))
    }
    async fn compact(
        &self,
        _: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        Err(Status::unimplemented("compact"))
    }
}

async fn start_fake() -> (String, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let puts = Arc::new(AtomicU64::new(0));
    let svc = KvServer::new(Stalling {
        puts: puts.clone(),
        started: Instant::now(),
        stalled: AtomicBool::new(false),
    });
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (addr, puts, task)
}

fn load(rate: Option<f64>) -> Load {
    Load {
        conns: 1,
        clients: 1,
        total: None,
        duration_s: Some(3.0),
        warmup_s: 0.2,
        rate,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_p99_carries_the_stall_closed_loop_does_not() {
    let wl = Workload::new(WorkloadKind::Put);

    let (addr, puts, server) = start_fake().await;
    let target = GrpcTarget::connect(&[addr], 1).await.unwrap();
    let closed = driver::run(&target, &wl, &load(None), false).await.unwrap();
    assert!(puts.load(Ordering::SeqCst) > 1000);
    server.abort();
    let c = &closed.recorders.ops["put"].latency_ns;
    let (c_p99, c_max) = (c.value_at_percentile(99.0), c.max());
    eprintln!(
        "closed loop: {} puts, p99 {} µs, max {} µs",
        c.len(),
        c_p99 / 1000,
        c_max / 1000
    );

    // Open loop at 1000/s for 3 s.
    let (addr, puts, server) = start_fake().await;
    let target = GrpcTarget::connect(&[addr], 1).await.unwrap();
    let open = driver::run(&target, &wl, &load(Some(1000.0)), false)
        .await
        .unwrap();
    assert!(puts.load(Ordering::SeqCst) > 1000);
    server.abort();
    let o = &open.recorders.ops["put"].latency_ns;
    let o_p99 = o.value_at_percentile(99.0);
    eprintln!(
        "open loop: {} puts, p99 {} µs, max {} µs",
        o.len(),
        o_p99 / 1000,
        o.max() / 1000
    );

    let stall_ns = STALL.as_nanos() as u64;
    // Both saw the stall itself ...
    assert!(c_max >= stall_ns * 9 / 10, "closed loop max {c_max} ns");
    assert!(o.max() >= stall_ns * 9 / 10, "open loop max {} ns", o.max());
    // ... but only the corrected open loop charges the ~1000 requests that
    // were due during it: a third of a 3 s run waited, so p99 is near 1 s.
    assert!(
        o_p99 >= stall_ns / 2,
        "open-loop p99 {o_p99} ns does not reflect the stall"
    );
    // Closed loop: one slow sample among thousands leaves p99 far below it.
    assert!(
        c_p99 < stall_ns / 4,
        "closed-loop p99 {c_p99} ns reflects the stall"
    );
    // Open loop kept its schedule: every request due in the measured
    // window (rate × duration) was sent and timed, none dropped behind the
    // stall, however long the backlog took to clear.
    let due = 1000.0 * load(None).duration_s.unwrap();
    assert!(
        (o.len() as f64 - due).abs() <= 1.0,
        "{} of the {due} requests due were timed",
        o.len()
    );
}
