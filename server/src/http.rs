//! `/metrics` (Prometheus text) and `/health` over HTTP/1.1, on the client
//! port beside gRPC (as etcd serves them) and on `--listen-metrics-urls`.

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::metrics::Metrics;
use crate::node::Node;

pub fn routes(router: Router, node: Arc<Node>) -> Router {
    let n = node.clone();
    router
        .route("/metrics", get(metrics))
        .route("/health", get(move || health(n.clone())))
        .route("/version", get(version))
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        Metrics::global().render(),
    )
}

async fn version() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!(
            "{{\"etcdserver\":\"{}\",\"etcdcluster\":\"3.4.0\"}}",
            crate::ETCD_API_VERSION
        ),
    )
}

/// etcd's health check: no active alarm, a leader, and a linearizable read
/// barrier that completes.
async fn health(node: Arc<Node>) -> impl IntoResponse {
    let ok = node.applier.alarms.list().is_empty()
        && node.repl.status().leader_id != 0
        && node.read_barrier().await.is_ok();
    let (code, body) = if ok {
        (StatusCode::OK, "{\"health\":\"true\"}")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "{\"health\":\"false\"}")
    };
    (code, [(header::CONTENT_TYPE, "application/json")], body)
}
