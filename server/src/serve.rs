//! Listeners: gRPC (etcd's services) and HTTP (/metrics, /health) on every
//! client URL, HTTP alone on every metrics URL.

use std::sync::Arc;

use proto::etcdserverpb::cluster_server::ClusterServer;
use proto::etcdserverpb::kv_server::KvServer;
use proto::etcdserverpb::lease_server::LeaseServer;
use proto::etcdserverpb::maintenance_server::MaintenanceServer;
use proto::etcdserverpb::watch_server::WatchServer;
use tokio::net::TcpListener;
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
    for url in &node.cfg.listen_client_urls {
        let addr = url.socket_addr().map_err(anyhow::Error::msg)?;
        let listener = TcpListener::bind(addr).await?;
        tracing::info!(%url, "serving client requests (gRPC, /metrics, /health)");
        let routes = routes(&node);
        // Nagle's algorithm would hold a response written behind another
        // on the same connection until the client's delayed ACK (40 ms).
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        tasks.push(tokio::spawn(async move {
            tonic::transport::Server::builder()
                .accept_http1(true)
                .add_routes(routes)
                .serve_with_incoming(incoming)
                .await
        }));
    }
    for url in &node.cfg.listen_metrics_urls {
        let addr = url.socket_addr().map_err(anyhow::Error::msg)?;
        let listener = TcpListener::bind(addr).await?;
        tracing::info!(%url, "serving /metrics and /health");
        let router = crate::http::routes(axum::Router::new(), node.clone());
        tasks.push(tokio::spawn(async move {
            tonic::transport::Server::builder()
                .accept_http1(true)
                .add_routes(Routes::from(router))
                .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
                .await
        }));
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping");
    Ok(())
}
