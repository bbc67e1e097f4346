//! The etcd v3 gRPC target: any list of endpoints that speaks etcd's API
//! (etcd itself, ferrokv), through the client generated in the `proto` crate.

use crate::target::{Client, EventSink, Op, OpError, Target, WatchGuard};
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::lease_client::LeaseClient;
use proto::etcdserverpb::maintenance_client::MaintenanceClient;
use proto::etcdserverpb::watch_client::WatchClient;
use proto::etcdserverpb::*;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};

/// Leases granted for keep-alive runs live this long without renewal.
const LEASE_TTL_S: i64 = 60;

/// A set of connections to one system's endpoints.
#[derive(Clone)]
pub struct GrpcTarget {
    channels: Vec<Channel>,
}

fn url(endpoint: &str) -> String {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

/// One HTTP/2 connection to `endpoint`.
pub async fn connect(endpoint: &str) -> anyhow::Result<Channel> {
    let channel = Endpoint::from_shared(url(endpoint))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("connecting to {endpoint}: {e}"))?;
    Ok(channel)
}

impl GrpcTarget {
    /// Opens `conns` connections, round robin over `endpoints`.
    pub async fn connect(endpoints: &[String], conns: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(!endpoints.is_empty(), "no endpoints given");
        let mut channels = Vec::with_capacity(conns);
        for i in 0..conns {
            channels.push(connect(&endpoints[i % endpoints.len()]).await?);
        }
        Ok(Self { channels })
    }
}

impl Target for GrpcTarget {
    type Client = GrpcClient;

    fn client(&self, idx: usize) -> GrpcClient {
        let channel = self.channels[idx % self.channels.len()].clone();
        GrpcClient {
            kv: KvClient::new(channel.clone()),
            channel,
            keepalive: None,
        }
    }

    async fn watch(
        &self,
        idx: usize,
        key: Vec<u8>,
        range_end: Vec<u8>,
        watchers: usize,
        mut sink: EventSink,
    ) -> Result<WatchGuard, OpError> {
        let channel = self.channels[idx % self.channels.len()].clone();
        let mut client = WatchClient::new(channel);
        let (tx, rx) = mpsc::channel(watchers.max(1));
        for _ in 0..watchers {
            let create = WatchRequest {
                request_union: Some(watch_request::RequestUnion::CreateRequest(
                    WatchCreateRequest {
                        key: key.clone(),
                        range_end: range_end.clone(),
                        ..Default::default()
                    },
                )),
            };
            tx.send(create).await.expect("receiver is alive");
        }
        let mut responses = client
            .watch(ReceiverStream::new(rx))
            .await
            .map_err(OpError::from)?
            .into_inner();
        let mut created = 0;
        while created < watchers {
            match responses.next().await {
                Some(Ok(r)) if r.created => created += 1,
                Some(Ok(r)) if r.canceled => {
                    return Err(OpError::new("Canceled", r.cancel_reason));
                }
                Some(Ok(_)) => {}
                Some(Err(s)) => return Err(s.into()),
                None => return Err(OpError::new("Unavailable", "watch stream closed")),
            }
        }
        let task = tokio::spawn(async move {
            // Holding the sender keeps the request stream (and so the watch) open.
            let _requests = tx;
            while let Some(Ok(r)) = responses.next().await {
                let arrived = Instant::now();
                for ev in &r.events {
                    if let Some(kv) = &ev.kv {
                        sink(&kv.value, arrived);
                    }
                }
            }
        });
        Ok(WatchGuard { task })
    }
}

/// A keep-alive stream of one lease.
struct KeepAliveStream {
    lease: i64,
    requests: mpsc::Sender<LeaseKeepAliveRequest>,
    responses: tonic::Streaming<LeaseKeepAliveResponse>,
}

pub struct GrpcClient {
    channel: Channel,
    kv: KvClient<Channel>,
    keepalive: Option<KeepAliveStream>,
}

fn range_request(key: Vec<u8>, range_end: Vec<u8>, limit: i64, serializable: bool) -> RangeRequest {
    RangeRequest {
        key,
        range_end,
        limit,
        serializable,
        ..Default::default()
    }
}

impl GrpcClient {
    /// Grants the client's lease and opens its keep-alive stream with the
    /// first request already queued: etcd (grpc-go) sends a stream's response
    /// headers only with its first message, so the call returns only after a
    /// request went out.
    async fn open_keepalive(&mut self) -> Result<(), OpError> {
        let mut lease = LeaseClient::new(self.channel.clone());
        let granted = lease
            .lease_grant(LeaseGrantRequest {
                ttl: LEASE_TTL_S,
                id: 0,
            })
            .await?
            .into_inner();
        let (tx, rx) = mpsc::channel(1);
        tx.send(LeaseKeepAliveRequest { id: granted.id })
            .await
            .expect("receiver is alive");
        let responses = lease
            .lease_keep_alive(ReceiverStream::new(rx))
            .await?
            .into_inner();
        self.keepalive = Some(KeepAliveStream {
            lease: granted.id,
            requests: tx,
            responses,
        });
        Ok(())
    }

    async fn keep_alive(&mut self) -> Result<(), OpError> {
        if self.keepalive.is_none() {
            self.open_keepalive().await?;
        } else {
            let ka = self.keepalive.as_mut().expect("checked above");
            let sent = ka
                .requests
                .send(LeaseKeepAliveRequest { id: ka.lease })
                .await;
            if sent.is_err() {
                self.keepalive = None;
                return Err(OpError::new("Unavailable", "keep-alive stream closed"));
            }
        }
        let ka = self.keepalive.as_mut().expect("opened above");
        match ka.responses.next().await {
            Some(Ok(r)) if r.ttl > 0 => Ok(()),
            Some(Ok(_)) => Err(OpError::new("NotFound", "lease expired")),
            Some(Err(s)) => {
                self.keepalive = None;
                Err(s.into())
            }
            None => {
                self.keepalive = None;
                Err(OpError::new("Unavailable", "keep-alive stream closed"))
            }
        }
    }
}

impl Client for GrpcClient {
    async fn execute(&mut self, op: Op) -> Result<(), OpError> {
        match op {
            Op::Put { key, value } => {
                let req = PutRequest {
                    key,
                    value,
                    ..Default::default()
                };
                self.kv.put(req).await?;
            }
            Op::Range {
                key,
                range_end,
                limit,
                serializable,
            } => {
                self.kv
                    .range(range_request(key, range_end, limit, serializable))
                    .await?;
            }
            Op::TxnPut { puts } => {
                let success = puts
                    .into_iter()
                    .map(|(key, value)| RequestOp {
                        request: Some(request_op::Request::RequestPut(PutRequest {
                            key,
                            value,
                            ..Default::default()
                        })),
                    })
                    .collect();
                let req = TxnRequest {
                    compare: vec![],
                    success,
                    failure: vec![],
                };
                self.kv.txn(req).await?;
            }
            Op::Delete { key } => {
                let req = DeleteRangeRequest {
                    key,
                    ..Default::default()
                };
                self.kv.delete_range(req).await?;
            }
            Op::ReadModifyWrite {
                key,
                value,
                serializable,
            } => {
                self.kv
                    .range(range_request(key.clone(), vec![], 0, serializable))
                    .await?;
                let req = PutRequest {
                    key,
                    value,
                    ..Default::default()
                };
                self.kv.put(req).await?;
            }
            Op::KeepAlive => self.keep_alive().await?,
        }
        Ok(())
    }
}

/// Maintenance.Status of one endpoint: version, DB size, leader.
pub async fn status(endpoint: &str) -> anyhow::Result<StatusResponse> {
    let channel = connect(endpoint).await?;
    let mut client = MaintenanceClient::new(channel);
    Ok(client.status(StatusRequest {}).await?.into_inner())
}
