//! Listeners: gRPC (etcd's services) and HTTP (/metrics, /health) on every
//! client URL, HTTP alone on every metrics URL.
//!
//! Client connections are served by one single-threaded runtime per core
//! (`GrpcThreads`), each connection wholly on one of them; the main
//! runtime accepts and deals connections out in turn. Measured against the
//! multi-threaded runtime on the same code (results/server.md): as fast or
//! faster for puts, gets and txns, and far fewer futex wake-ups. Responses
//! still leave in about one `writev` each at 1000 clients over 100
//! connections: a batch of ~120 entries per fdatasync gives a connection
//! about one response to write per batch.

use std::sync::Arc;

use proto::etcdserverpb::cluster_server::ClusterServer;
use proto::etcdserverpb::kv_server::KvServer;
use proto::etcdserverpb::lease_server::LeaseServer;
use proto::etcdserverpb::maintenance_server::MaintenanceServer;
use proto::etcdserverpb::watch_server::WatchServer;
use tokio::net::TcpListener;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;

use crate::config::GRPC_OVERHEAD_BYTES;
use crate::node::Node;
use crate::service::{cluster, kv, lease, maintenance, watch};

fn routes(node: &Arc<Node>) -> Routes {
    // gRPC refuses messages beyond the request limit plus headroom; the
    // server refuses requests beyond the limit itself, with etcd's error.
    let recv_max = node.cfg.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let send_max = usize::MAX;
    let mut b = Routes::builder();
    b.add_service(
        KvServer::new(kv::KvService { node: node.clone() })
            .max_decoding_message_size(recv_max)
            .max_encoding_message_size(send_max),
    )
    .add_service(
        WatchServer::new(watch::WatchService { node: node.clone() })
            .max_decoding_message_size(recv_max)
            .max_encoding_message_size(send_max),
    )
    .add_service(
        LeaseServer::new(lease::LeaseService { node: node.clone() })
            .max_decoding_message_size(recv_max)
            .max_encoding_message_size(send_max),
    )
    .add_service(
        ClusterServer::new(cluster::ClusterService { node: node.clone() })
            .max_decoding_message_size(recv_max)
            .max_encoding_message_size(send_max),
    )
    .add_service(
        MaintenanceServer::new(maintenance::MaintenanceService { node: node.clone() })
            .max_decoding_message_size(recv_max)
            .max_encoding_message_size(send_max),
    );
    let mut routes = b.routes();
    let router = std::mem::take(routes.axum_router_mut());
    *routes.axum_router_mut() = crate::http::routes(router, node.clone())
        .layer(axum::middleware::map_response(grpc_limit_status));
    routes
}

/// gRPC's own refusal of a message beyond the receive limit, in etcd's
/// (grpc-go's) words and code: ResourceExhausted "grpc: received message
/// larger than max (N vs. M)" instead of tonic's OutOfRange wording.
async fn grpc_limit_status(mut res: axum::response::Response) -> axum::response::Response {
    let Some(status) = tonic::Status::from_header_map(res.headers()) else {
        return res;
    };
    if status.code() != tonic::Code::OutOfRange {
        return res;
    }
    let msg = status.message();
    let Some(rest) = msg.strip_prefix("Error, decoded message length too large: found ") else {
        return res;
    };
    let mut nums = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    let (Some(found), Some(limit)) = (nums.next(), nums.next()) else {
        return res;
    };
    let fixed = tonic::Status::resource_exhausted(format!(
        "grpc: received message larger than max ({found} vs. {limit})"
    ));
    let _ = fixed.add_header(res.headers_mut());
    res
}

/// The single-threaded runtimes that serve client connections, one per
/// core; each takes the connections dealt to it.
struct GrpcThreads {
    conns: Vec<UnboundedSender<std::net::TcpStream>>,
    next: usize,
}

impl GrpcThreads {
    fn start(node: &Arc<Node>, threads: usize) -> anyhow::Result<GrpcThreads> {
        let mut conns = Vec::with_capacity(threads);
        for i in 0..threads.max(1) {
            let (tx, rx) = unbounded_channel::<std::net::TcpStream>();
            let routes = routes(node);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            std::thread::Builder::new()
                .name(format!("grpc-{i}"))
                .spawn(move || {
                    let incoming = UnboundedReceiverStream::new(rx).map(|s| {
                        s.set_nonblocking(true)
                            .and_then(|_| tokio::net::TcpStream::from_std(s))
                    });
                    let served = rt.block_on(
                        tonic::transport::Server::builder()
                            .accept_http1(true)
                            .add_routes(routes)
                            .serve_with_incoming(incoming),
                    );
                    if let Err(e) = served {
                        tracing::error!("gRPC thread {i} stopped: {e}");
                    }
                })?;
            conns.push(tx);
        }
        Ok(GrpcThreads { conns, next: 0 })
    }

    /// Accepts connections on `listener` and deals them out in turn.
    async fn accept(mut self, listener: TcpListener) -> anyhow::Result<()> {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: wait, then go on.
                    tracing::warn!("accepting a client connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Nagle's algorithm would hold a response written behind
            // another on the same connection until the client's delayed
            // ACK (40 ms).
            let stream = match stream.set_nodelay(true).and_then(|_| stream.into_std()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!("dropping a client connection: {e}");
                    continue;
                }
            };
            let i = self.next % self.conns.len();
            self.next = self.next.wrapping_add(1);
            if self.conns[i].send(stream).is_err() {
                anyhow::bail!("gRPC thread {i} is gone");
            }
        }
    }
}

/// Serves until the process is told to stop (SIGINT / SIGTERM). Client
/// listeners open once the member has published itself through the log
/// (a leader is known and the log is replayed), as etcd's do.
pub async fn serve(node: Arc<Node>) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    node.spawn_background();
    tokio::select! {
        _ = node.publish() => {}
        _ = tokio::signal::ctrl_c() => return Ok(()),
        _ = term.recv() => return Ok(()),
    }
    tracing::info!(
        member = format!("{:x}", node.member_id),
        "published; serving clients"
    );
    let mut tasks = Vec::new();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    for url in &node.cfg.listen_client_urls {
        let addr = url.socket_addr().map_err(anyhow::Error::msg)?;
        let listener = TcpListener::bind(addr).await?;
        tracing::info!(%url, "serving client requests (gRPC, /metrics, /health)");
        let grpc = GrpcThreads::start(&node, threads)?;
        tasks.push(tokio::spawn(async move {
            if let Err(e) = grpc.accept(listener).await {
                tracing::error!("client listener stopped: {e}");
            }
        }));
    }
    for url in &node.cfg.listen_metrics_urls {
        let addr = url.socket_addr().map_err(anyhow::Error::msg)?;
        let listener = TcpListener::bind(addr).await?;
        tracing::info!(%url, "serving /metrics and /health");
        let router = crate::http::routes(axum::Router::new(), node.clone());
        tasks.push(tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .accept_http1(true)
                .add_routes(Routes::from(router))
                .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
                .await;
            if let Err(e) = served {
                tracing::error!("metrics listener stopped: {e}");
            }
        }));
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping");
    Ok(())
}
