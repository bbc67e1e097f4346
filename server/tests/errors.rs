//! Error parity with etcd 3.4 (issue 7, acceptance 2): each error a client
//! can provoke gets the same gRPC code and the same message as etcd gives.
//!
//! Table-driven and differential: every case runs against a real etcd 3.4
//! and against the system under test; both answers must equal the expected
//! entry of ferrokv's error table (`server::errors::EtcdError`), which is
//! thereby checked against etcd on every run.

mod common;

use std::future::Future;
use std::pin::Pin;

use common::{Cluster, Kind};
use proto::etcdserverpb::cluster_client::ClusterClient;
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::lease_client::LeaseClient;
use proto::etcdserverpb::maintenance_client::MaintenanceClient;
use proto::etcdserverpb::*;
use server::errors::EtcdError;
use tonic::transport::Channel;
use tonic::Code;

#[derive(Clone)]
struct Clients {
    kv: KvClient<Channel>,
    lease: LeaseClient<Channel>,
    cluster: ClusterClient<Channel>,
    maintenance: MaintenanceClient<Channel>,
}

impl Clients {
    async fn try_connect(endpoint: &str) -> Option<Clients> {
        let ch = Channel::from_shared(format!("http://{endpoint}"))
            .ok()?
            .connect()
            .await
            .ok()?;
        Some(Clients {
            kv: KvClient::new(ch.clone()),
            lease: LeaseClient::new(ch.clone()),
            cluster: ClusterClient::new(ch.clone()),
            maintenance: MaintenanceClient::new(ch),
        })
    }

    async fn connect(endpoint: &str) -> Clients {
        let ch = Channel::from_shared(format!("http://{endpoint}"))
            .unwrap()
            .connect()
            .await
            .expect("connect");
        let big = 64 << 20;
        Clients {
            kv: KvClient::new(ch.clone())
                .max_decoding_message_size(big)
                .max_encoding_message_size(big),
            lease: LeaseClient::new(ch.clone()),
            cluster: ClusterClient::new(ch.clone()),
            maintenance: MaintenanceClient::new(ch),
        }
    }
}

/// What a case expects: an etcd error, or a gRPC code alone (errors raised
/// by the gRPC library itself, whose wording is the library's).
#[derive(Clone, Copy, Debug)]
enum Expect {
    Etcd(EtcdError),
    Code(Code),
}

type Answer = Result<(), (Code, String)>;
type CaseFn = for<'a> fn(&'a mut Clients) -> Pin<Box<dyn Future<Output = Answer> + 'a>>;

fn answer<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Answer {
    r.map(|_| ())
        .map_err(|s| (s.code(), s.message().to_string()))
}

fn put(key: &str, value: Vec<u8>) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec(),
        value,
        ..Default::default()
    }
}

fn op_put(key: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(put(key, b"v".to_vec()))),
    }
}

fn cases() -> Vec<(&'static str, Expect, CaseFn)> {
    vec![
        (
            "put with an empty key",
            Expect::Etcd(EtcdError::EmptyKey),
            |c| Box::pin(async move { answer(c.kv.put(put("", b"v".to_vec())).await) }),
        ),
        (
            "range with an empty key",
            Expect::Etcd(EtcdError::EmptyKey),
            |c| Box::pin(async move { answer(c.kv.range(RangeRequest::default()).await) }),
        ),
        (
            "delete with an empty key",
            Expect::Etcd(EtcdError::EmptyKey),
            |c| {
                Box::pin(
                    async move { answer(c.kv.delete_range(DeleteRangeRequest::default()).await) },
                )
            },
        ),
        (
            "put ignore_value with a value",
            Expect::Etcd(EtcdError::ValueProvided),
            |c| {
                Box::pin(async move {
                    let mut p = put("k", b"v".to_vec());
                    p.ignore_value = true;
                    answer(c.kv.put(p).await)
                })
            },
        ),
        (
            "put ignore_lease with a lease",
            Expect::Etcd(EtcdError::LeaseProvided),
            |c| {
                Box::pin(async move {
                    let mut p = put("k", b"v".to_vec());
                    p.ignore_lease = true;
                    p.lease = 7;
                    answer(c.kv.put(p).await)
                })
            },
        ),
        (
            "put ignore_value on a missing key",
            Expect::Etcd(EtcdError::KeyNotFound),
            |c| {
                Box::pin(async move {
                    let mut p = put("missing", vec![]);
                    p.ignore_value = true;
                    answer(c.kv.put(p).await)
                })
            },
        ),
        (
            "txn with 129 operations",
            Expect::Etcd(EtcdError::TooManyOps),
            |c| {
                Box::pin(async move {
                    let success = (0..129).map(|i| op_put(&format!("k{i}"))).collect();
                    answer(
                        c.kv.txn(TxnRequest {
                            compare: vec![],
                            success,
                            failure: vec![],
                        })
                        .await,
                    )
                })
            },
        ),
        (
            "txn with 128 operations is fine",
            Expect::Code(Code::Ok),
            |c| {
                Box::pin(async move {
                    let success = (0..128).map(|i| op_put(&format!("k{i}"))).collect();
                    answer(
                        c.kv.txn(TxnRequest {
                            compare: vec![],
                            success,
                            failure: vec![],
                        })
                        .await,
                    )
                })
            },
        ),
        (
            "txn putting one key twice",
            Expect::Etcd(EtcdError::DuplicateKey),
            |c| {
                Box::pin(async move {
                    let success = vec![op_put("d"), op_put("d")];
                    answer(
                        c.kv.txn(TxnRequest {
                            compare: vec![],
                            success,
                            failure: vec![],
                        })
                        .await,
                    )
                })
            },
        ),
        (
            "txn putting a key it deletes",
            Expect::Etcd(EtcdError::DuplicateKey),
            |c| {
                Box::pin(async move {
                    let del = RequestOp {
                        request: Some(request_op::Request::RequestDeleteRange(
                            DeleteRangeRequest {
                                key: b"a".to_vec(),
                                range_end: b"z".to_vec(),
                                ..Default::default()
                            },
                        )),
                    };
                    let success = vec![op_put("d"), del];
                    answer(
                        c.kv.txn(TxnRequest {
                            compare: vec![],
                            success,
                            failure: vec![],
                        })
                        .await,
                    )
                })
            },
        ),
        (
            "txn with an empty request op",
            Expect::Etcd(EtcdError::KeyNotFound),
            |c| {
                Box::pin(async move {
                    let success = vec![RequestOp { request: None }];
                    answer(
                        c.kv.txn(TxnRequest {
                            compare: vec![],
                            success,
                            failure: vec![],
                        })
                        .await,
                    )
                })
            },
        ),
        (
            "txn compare with an empty key",
            Expect::Etcd(EtcdError::EmptyKey),
            |c| {
                Box::pin(async move {
                    let compare = vec![Compare::default()];
                    answer(
                        c.kv.txn(TxnRequest {
                            compare,
                            success: vec![],
                            failure: vec![],
                        })
                        .await,
                    )
                })
            },
        ),
        (
            "range at a future revision",
            Expect::Etcd(EtcdError::FutureRev),
            |c| {
                Box::pin(async move {
                    let r = RangeRequest {
                        key: b"k".to_vec(),
                        revision: 1_000_000,
                        ..Default::default()
                    };
                    answer(c.kv.range(r).await)
                })
            },
        ),
        (
            "serializable range at a future revision",
            Expect::Etcd(EtcdError::FutureRev),
            |c| {
                Box::pin(async move {
                    let r = RangeRequest {
                        key: b"k".to_vec(),
                        revision: 1_000_000,
                        serializable: true,
                        ..Default::default()
                    };
                    answer(c.kv.range(r).await)
                })
            },
        ),
        (
            "compact at a future revision",
            Expect::Etcd(EtcdError::FutureRev),
            |c| {
                Box::pin(async move {
                    answer(
                        c.kv.compact(CompactionRequest {
                            revision: 1_000_000,
                            physical: false,
                        })
                        .await,
                    )
                })
            },
        ),
        ("compact at revision 3", Expect::Code(Code::Ok), |c| {
            Box::pin(async move {
                for i in 0..3 {
                    answer(c.kv.put(put(&format!("c{i}"), b"v".to_vec())).await)?;
                }
                answer(
                    c.kv.compact(CompactionRequest {
                        revision: 3,
                        physical: true,
                    })
                    .await,
                )
            })
        }),
        (
            "range below the compacted revision",
            Expect::Etcd(EtcdError::Compacted),
            |c| {
                Box::pin(async move {
                    let r = RangeRequest {
                        key: b"k".to_vec(),
                        revision: 2,
                        ..Default::default()
                    };
                    answer(c.kv.range(r).await)
                })
            },
        ),
        (
            "compact below the compacted revision",
            Expect::Etcd(EtcdError::Compacted),
            |c| {
                Box::pin(async move {
                    answer(
                        c.kv.compact(CompactionRequest {
                            revision: 2,
                            physical: false,
                        })
                        .await,
                    )
                })
            },
        ),
        (
            "revoke an unknown lease",
            Expect::Etcd(EtcdError::LeaseNotFound),
            |c| {
                Box::pin(async move {
                    answer(c.lease.lease_revoke(LeaseRevokeRequest { id: 4242 }).await)
                })
            },
        ),
        (
            "put with an unknown lease",
            Expect::Etcd(EtcdError::LeaseNotFound),
            |c| {
                Box::pin(async move {
                    let mut p = put("k", b"v".to_vec());
                    p.lease = 4242;
                    answer(c.kv.put(p).await)
                })
            },
        ),
        ("grant a lease", Expect::Code(Code::Ok), |c| {
            Box::pin(async move {
                answer(
                    c.lease
                        .lease_grant(LeaseGrantRequest { ttl: 60, id: 777 })
                        .await,
                )
            })
        }),
        (
            "grant a lease id twice",
            Expect::Etcd(EtcdError::LeaseExist),
            |c| {
                Box::pin(async move {
                    answer(
                        c.lease
                            .lease_grant(LeaseGrantRequest { ttl: 60, id: 777 })
                            .await,
                    )
                })
            },
        ),
        (
            "grant a too large TTL",
            Expect::Etcd(EtcdError::LeaseTtlTooLarge),
            |c| {
                Box::pin(async move {
                    answer(
                        c.lease
                            .lease_grant(LeaseGrantRequest {
                                ttl: 9_000_000_001,
                                id: 0,
                            })
                            .await,
                    )
                })
            },
        ),
        (
            "a put just under --max-request-bytes",
            Expect::Code(Code::Ok),
            |c| Box::pin(async move { answer(c.kv.put(put("big", vec![b'x'; 1_500_000])).await) }),
        ),
        (
            "a put over --max-request-bytes",
            Expect::Etcd(EtcdError::RequestTooLarge),
            |c| Box::pin(async move { answer(c.kv.put(put("big", vec![b'x'; 1_600_000])).await) }),
        ),
        (
            "a txn over --max-request-bytes",
            Expect::Etcd(EtcdError::RequestTooLarge),
            |c| {
                Box::pin(async move {
                    let op = RequestOp {
                        request: Some(request_op::Request::RequestPut(put(
                            "big",
                            vec![b'x'; 1_600_000],
                        ))),
                    };
                    answer(
                        c.kv.txn(TxnRequest {
                            compare: vec![],
                            success: vec![op],
                            failure: vec![],
                        })
                        .await,
                    )
                })
            },
        ),
        (
            "a message over the gRPC limit",
            Expect::Code(Code::ResourceExhausted),
            |c| Box::pin(async move { answer(c.kv.put(put("big", vec![b'x'; 2_200_000])).await) }),
        ),
        (
            "remove an unknown member",
            Expect::Etcd(EtcdError::MemberNotFound),
            |c| {
                Box::pin(async move {
                    answer(
                        c.cluster
                            .member_remove(MemberRemoveRequest { id: 4242 })
                            .await,
                    )
                })
            },
        ),
        (
            "promote a voting member",
            Expect::Etcd(EtcdError::MemberNotLearner),
            |c| {
                Box::pin(async move {
                    let list = c
                        .cluster
                        .member_list(MemberListRequest {})
                        .await
                        .map_err(|s| (s.code(), s.message().to_string()))?;
                    let id = list.into_inner().members[0].id;
                    answer(c.cluster.member_promote(MemberPromoteRequest { id }).await)
                })
            },
        ),
        (
            "add a member with a bad URL",
            Expect::Etcd(EtcdError::MemberBadUrls),
            |c| {
                Box::pin(async move {
                    let r = MemberAddRequest {
                        peer_ur_ls: vec!["not a url".to_string()],
                        is_learner: false,
                    };
                    answer(c.cluster.member_add(r).await)
                })
            },
        ),
        (
            "add a member with an existing peer URL",
            Expect::Etcd(EtcdError::PeerUrlExist),
            |c| {
                Box::pin(async move {
                    let list = c
                        .cluster
                        .member_list(MemberListRequest {})
                        .await
                        .map_err(|s| (s.code(), s.message().to_string()))?;
                    let urls = list.into_inner().members[0].peer_ur_ls.clone();
                    let r = MemberAddRequest {
                        peer_ur_ls: urls,
                        is_learner: true,
                    };
                    answer(c.cluster.member_add(r).await)
                })
            },
        ),
        (
            "move the leadership to a non-member",
            Expect::Etcd(EtcdError::BadLeaderTransferee),
            |c| {
                Box::pin(async move {
                    answer(
                        c.maintenance
                            .move_leader(MoveLeaderRequest { target_id: 4242 })
                            .await,
                    )
                })
            },
        ),
    ]
}

fn matches(expect: Expect, got: &Answer) -> bool {
    match (expect, got) {
        (Expect::Code(Code::Ok), Ok(())) => true,
        (Expect::Code(code), Err((c, _))) => *c == code,
        (Expect::Etcd(e), Err((c, m))) => *c == e.code() && m == e.message(),
        _ => false,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn errors_match_etcd() {
    let reference = Cluster::start(Kind::Etcd, 1);
    let subject = Cluster::start(Kind::under_test(), 1);
    rt().block_on(async {
        let mut r = Clients::connect(&reference.endpoints()).await;
        let mut s = Clients::connect(&subject.endpoints()).await;
        let mut failures = Vec::new();
        for (what, expect, case) in cases() {
            let ra = case(&mut r).await;
            let sa = case(&mut s).await;
            assert!(
                matches(expect, &ra),
                "{what}: etcd itself answers {ra:?}, the table expects {expect:?}"
            );
            // The same code and the same message as etcd, whatever the case.
            if !matches(expect, &sa) || sa != ra {
                failures.push(format!(
                    "{what}: expected {expect:?} (etcd: {ra:?}), got {sa:?}"
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "differences from etcd:\n{}",
            failures.join("\n")
        );
    });
}

/// The backend quota: writes beyond it raise the NOSPACE alarm and fail
/// with "database space exceeded"; reads and deletes still work; after the
/// alarm is disarmed (with space freed), writes work again.
#[test]
fn quota_raises_nospace_as_etcd_does() {
    let quota = ["--quota-backend-bytes=2000000"];
    let reference = Cluster::start_with(Kind::Etcd, 1, &quota);
    let subject = Cluster::start_with(Kind::under_test(), 1, &quota);
    rt().block_on(async {
        for (name, c) in [("etcd", &reference), ("subject", &subject)] {
            let mut cl = Clients::connect(&c.endpoints()).await;
            let mut first_error = None;
            for i in 0..400 {
                // etcd measures its quota against the db file, which grows
                // only when its batch commits (every 100 ms): pause now
                // and then so a fast machine does not outrun the commit.
                if i % 10 == 9 {
                    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
                }
                let r = answer(
                    cl.kv
                        .put(put(&format!("fill{i}"), vec![b'q'; 100_000]))
                        .await,
                );
                if let Err(e) = r {
                    first_error = Some((i, e));
                    break;
                }
            }
            let (i, e) = first_error.unwrap_or_else(|| panic!("{name}: quota never hit"));
            assert!(
                matches(Expect::Etcd(EtcdError::NoSpace), &Err(e.clone())),
                "{name}: write {i} failed with {e:?}"
            );
            // Every later write fails too, reads go on.
            let again = answer(cl.kv.put(put("small", b"v".to_vec())).await);
            assert!(
                matches(Expect::Etcd(EtcdError::NoSpace), &again),
                "{name}: {again:?}"
            );
            let read = answer(
                cl.kv
                    .range(RangeRequest {
                        key: b"fill0".to_vec(),
                        ..Default::default()
                    })
                    .await,
            );
            assert!(read.is_ok(), "{name}: {read:?}");
            let alarms = cl
                .maintenance
                .alarm(AlarmRequest {
                    action: 0,
                    member_id: 0,
                    alarm: 0,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(alarms.alarms.len(), 1, "{name}: {alarms:?}");
            assert_eq!(alarms.alarms[0].alarm, AlarmType::Nospace as i32, "{name}");
        }
    });
    // The alarm is part of the replicated state: it survives a restart.
    let mut reference = reference;
    let mut subject = subject;
    for (name, c) in [("etcd", &mut reference), ("subject", &mut subject)] {
        c.members[0].kill();
        c.members[0].start();
        let endpoint = c.endpoints();
        let alarms = rt().block_on(async {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let listed = async {
                    let mut cl = Clients::try_connect(&endpoint).await?;
                    cl.maintenance
                        .alarm(AlarmRequest {
                            action: 0,
                            member_id: 0,
                            alarm: 0,
                        })
                        .await
                        .ok()
                };
                if let Some(a) = listed.await {
                    break a.into_inner();
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{name} did not come back"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        });
        assert_eq!(alarms.alarms.len(), 1, "{name} after restart: {alarms:?}");
        assert_eq!(alarms.alarms[0].alarm, AlarmType::Nospace as i32, "{name}");
    }
}
