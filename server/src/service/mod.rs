//! The etcd v3 gRPC services, one file each. Every handler validates the
//! request as etcd does, then reads locally (serializable), after a read
//! barrier (linearizable), or proposes through the log (writes).

pub mod cluster;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod watch;

use tonic::{Response, Status};

use crate::metrics::{Metrics, RpcKind};

/// Counts a unary RPC as go-grpc-prometheus does (started, handled by code).
pub(crate) fn observe<T>(
    service: &'static str,
    method: &'static str,
    r: Result<T, Status>,
) -> Result<Response<T>, Status> {
    let m = Metrics::global();
    m.rpc_started(RpcKind::Unary, service, method);
    let code = match &r {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    };
    m.rpc_handled(RpcKind::Unary, service, method, code);
    r.map(Response::new)
}
