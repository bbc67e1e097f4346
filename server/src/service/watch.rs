//! Watch: one bidirectional stream per client stream. Requests (create,
//! cancel, progress) go to the store's watch stream; its responses come
//! back converted, split into fragments when a watcher asked for them and
//! a response exceeds the request size limit (etcd's sendFragments).

use std::collections::HashSet;
use std::future::poll_fn;
use std::sync::Arc;

use engine::mvcc;
use parking_lot::Mutex;
use proto::etcdserverpb::watch_request::RequestUnion;
use proto::etcdserverpb::watch_server::Watch;
use proto::etcdserverpb::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::convert;
use crate::metrics::{Metrics, RpcKind};
use crate::node::Node;

const SVC: &str = "etcdserverpb.Watch";
/// Responses buffered per stream towards the client; beyond it the store's
/// per-stream queue holds them (and marks slow watchers as victims).
const OUT_QUEUE_MAX: usize = 256;

pub struct WatchService {
    pub node: Arc<Node>,
}

fn fragments(resp: WatchResponse, limit: usize) -> Vec<WatchResponse> {
    if resp.events.len() < 2 || prost::Message::encoded_len(&resp) <= limit {
        return vec![resp];
    }
    let mut out = Vec::new();
    let mut cur = WatchResponse {
        events: Vec::new(),
        ..resp.clone()
    };
    let mut size = 0;
    for ev in resp.events {
        let n = prost::Message::encoded_len(&ev) + 4;
        if !cur.events.is_empty() && size + n > limit {
            let next = WatchResponse {
                events: Vec::new(),
                ..cur.clone()
            };
            let mut done = std::mem::replace(&mut cur, next);
            done.fragment = true;
            out.push(done);
            size = 0;
        }
        size += n;
        cur.events.push(ev);
    }
    cur.fragment = false;
    out.push(cur);
    out
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(
        &self,
        r: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let m = Metrics::global();
        m.rpc_started(RpcKind::BidiStream, SVC, "Watch");
        self.node.learner_guard()?;
        m.watch_streams.inc();
        let mut inbound = r.into_inner();
        let ws = Arc::new(self.node.store().watch_stream());
        let fragmenting: Arc<Mutex<HashSet<i64>>> = Arc::default();
        let (tx, rx) = mpsc::channel(OUT_QUEUE_MAX);

        // Client → store.
        let (node, ws_in, tx_in, frag_in) = (
            self.node.clone(),
            ws.clone(),
            tx.clone(),
            fragmenting.clone(),
        );
        tokio::spawn(async move {
            while let Some(msg) = inbound.next().await {
                let req = match msg {
                    Ok(req) => req,
                    Err(status) => {
                        Metrics::global().rpc_handled(
                            RpcKind::BidiStream,
                            SVC,
                            "Watch",
                            status.code(),
                        );
                        let _ = tx_in.send(Err(status)).await;
                        break;
                    }
                };
                match req.request_union {
                    Some(RequestUnion::CreateRequest(c)) => {
                        let fragment = c.fragment;
                        match ws_in.watch(&convert::watch_create(c)) {
                            Ok(id) => {
                                Metrics::global().watchers.inc();
                                if fragment {
                                    frag_in.lock().insert(id);
                                }
                            }
                            Err(e) => {
                                // etcd: created and canceled at once, id -1.
                                let resp = WatchResponse {
                                    header: Some(node.header()),
                                    watch_id: -1,
                                    created: true,
                                    canceled: true,
                                    cancel_reason: e.to_string(),
                                    ..Default::default()
                                };
                                if tx_in.send(Ok(resp)).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    Some(RequestUnion::CancelRequest(c)) => {
                        if ws_in.cancel(c.watch_id) {
                            Metrics::global().watchers.dec();
                        }
                        frag_in.lock().remove(&c.watch_id);
                    }
                    Some(RequestUnion::ProgressRequest(_)) => ws_in.request_progress(),
                    None => {}
                }
            }
        });

        // Store → client.
        let node = self.node.clone();
        let limit = node.cfg.max_request_bytes;
        tokio::spawn(async move {
            loop {
                let next: Option<mvcc::WatchResponse> = poll_fn(|cx| ws.poll_recv(cx)).await;
                let Some(resp) = next else { break };
                let id = resp.watch_id;
                let resp = convert::watch_response(resp, node.header_at(0));
                let parts = if fragmenting.lock().contains(&id) {
                    fragments(resp, limit)
                } else {
                    vec![resp]
                };
                for p in parts {
                    if tx.send(Ok(p)).await.is_err() {
                        Metrics::global().watch_streams.dec();
                        return;
                    }
                }
            }
            Metrics::global().watch_streams.dec();
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::mvccpb::{Event, KeyValue};

    #[test]
    fn fragments_split_events_and_mark_all_but_the_last() {
        let ev = |i: u8| Event {
            kv: Some(KeyValue {
                key: vec![i],
                value: vec![0; 100],
                ..Default::default()
            }),
            ..Default::default()
        };
        let resp = WatchResponse {
            watch_id: 3,
            events: (0..10).map(ev).collect(),
            ..Default::default()
        };
        let parts = fragments(resp, 350);
        assert!(parts.len() > 1);
        assert_eq!(parts.iter().map(|p| p.events.len()).sum::<usize>(), 10);
        assert!(parts[..parts.len() - 1].iter().all(|p| p.fragment));
        assert!(!parts.last().unwrap().fragment);
    }
}
