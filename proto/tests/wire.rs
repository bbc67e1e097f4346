//! The generated code speaks etcd's wire format and its gRPC paths.

use prost::Message;
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::kv_server::{Kv, KvServer};
use proto::etcdserverpb::*;
use tonic::{Request, Response, Status};

/// etcd rpc.proto PutRequest: key = 1 (bytes), value = 2 (bytes), lease = 3 (int64),
/// prev_kv = 4 (bool). Bytes as etcd's gogoproto marshaller writes them.
#[test]
fn put_request_encodes_as_etcd_does() {
    let req = PutRequest {
        key: b"a".to_vec(),
        value: b"bc".to_vec(),
        lease: 5,
        prev_kv: true,
        ..Default::default()
    };
    assert_eq!(
        req.encode_to_vec(),
        [0x0a, 1, b'a', 0x12, 2, b'b', b'c', 0x18, 5, 0x20, 1]
    );
    assert_eq!(PutRequest::decode(&req.encode_to_vec()[..]).unwrap(), req);
}

/// Compare.range_end is field 64 (two-byte tag 0x82 0x04), mod_revision field 6
/// inside the target_union oneof.
#[test]
fn compare_high_field_number_and_oneof() {
    let cmp = Compare {
        result: compare::CompareResult::Greater as i32,
        target: compare::CompareTarget::Mod as i32,
        key: b"k".to_vec(),
        range_end: b"l".to_vec(),
        target_union: Some(compare::TargetUnion::ModRevision(7)),
    };
    assert_eq!(
        cmp.encode_to_vec(),
        [0x08, 1, 0x10, 2, 0x1a, 1, b'k', 0x30, 7, 0x82, 0x04, 1, b'l']
    );
}

#[test]
fn prefix_range_end_matches_clientv3() {
    assert_eq!(proto::prefix_range_end(b"abc"), b"abd");
    assert_eq!(proto::prefix_range_end(b"a\xff"), b"b");
    assert_eq!(proto::prefix_range_end(b"\xff\xff"), [0]);
}

struct Echo;

#[tonic::async_trait]
impl Kv for Echo {
    async fn range(&self, r: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let key = r.into_inner().key;
        Ok(Response::new(RangeResponse {
            kvs: vec![proto::mvccpb::KeyValue {
                key,
                value: b"v".to_vec(),
                version: 1,
                ..Default::default()
            }],
            count: 1,
            ..Default::default()
        }))
    }
    async fn put(&self, _: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        Err(Status::resource_exhausted(
            "etcdserver: mvcc: database space exceeded",
        ))
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

/// The generated server and client meet over a real HTTP/2 connection on
/// loopback at etcd's paths; a server error arrives as its gRPC status code.
#[tokio::test]
async fn client_and_server_round_trip() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(KvServer::new(Echo))
            .serve_with_incoming(incoming),
    );
    let mut client = KvClient::connect(format!("http://{addr}")).await.unwrap();
    let got = client
        .range(RangeRequest {
            key: b"hello".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.kvs[0].key, b"hello");
    let err = client.put(PutRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    server.abort();
}
