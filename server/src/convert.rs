//! Between the wire types (`proto::etcdserverpb`, `proto::mvccpb`, prost
//! generated) and the store's types (`engine::mvcc`). Field for field; the
//! only judgment calls are enum values outside their range (refused with
//! InvalidArgument: etcd 3.4 itself crashes on an out-of-range sort order)
//! and Compare's target / target_union pair (etcd reads the union member
//! the target names, so a mismatched member reads as zero).

use engine::mvcc;
use proto::etcdserverpb as pb;
use proto::mvccpb;
use tonic::Status;

fn bad_enum(what: &str, v: i32) -> Status {
    Status::invalid_argument(format!("etcdserver: invalid {what} {v}"))
}

pub fn sort_order(v: i32) -> Result<mvcc::SortOrder, Status> {
    Ok(match v {
        0 => mvcc::SortOrder::None,
        1 => mvcc::SortOrder::Ascend,
        2 => mvcc::SortOrder::Descend,
        _ => return Err(bad_enum("sort order", v)),
    })
}

pub fn sort_target(v: i32) -> Result<mvcc::SortTarget, Status> {
    Ok(match v {
        0 => mvcc::SortTarget::Key,
        1 => mvcc::SortTarget::Version,
        2 => mvcc::SortTarget::Create,
        3 => mvcc::SortTarget::Mod,
        4 => mvcc::SortTarget::Value,
        _ => return Err(bad_enum("sort target", v)),
    })
}

pub fn range(r: pb::RangeRequest) -> Result<mvcc::RangeRequest, Status> {
    Ok(mvcc::RangeRequest {
        key: r.key,
        range_end: r.range_end,
        limit: r.limit,
        revision: r.revision,
        sort_order: sort_order(r.sort_order)?,
        sort_target: sort_target(r.sort_target)?,
        serializable: r.serializable,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    })
}

pub fn put(r: pb::PutRequest) -> mvcc::PutRequest {
    mvcc::PutRequest {
        key: r.key,
        value: r.value,
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

pub fn delete(r: pb::DeleteRangeRequest) -> mvcc::DeleteRangeRequest {
    mvcc::DeleteRangeRequest {
        key: r.key,
        range_end: r.range_end,
        prev_kv: r.prev_kv,
    }
}

fn compare(c: pb::Compare) -> Result<mvcc::Compare, Status> {
    use pb::compare::TargetUnion as U;
    let result = match c.result {
        0 => mvcc::CompareResult::Equal,
        1 => mvcc::CompareResult::Greater,
        2 => mvcc::CompareResult::Less,
        3 => mvcc::CompareResult::NotEqual,
        v => return Err(bad_enum("compare result", v)),
    };
    let u = c.target_union;
    let target = match c.target {
        0 => mvcc::CompareTarget::Version(match u {
            Some(U::Version(v)) => v,
            _ => 0,
        }),
        1 => mvcc::CompareTarget::Create(match u {
            Some(U::CreateRevision(v)) => v,
            _ => 0,
        }),
        2 => mvcc::CompareTarget::Mod(match u {
            Some(U::ModRevision(v)) => v,
            _ => 0,
        }),
        3 => mvcc::CompareTarget::Value(match u {
            Some(U::Value(v)) => v,
            _ => Vec::new(),
        }),
        4 => mvcc::CompareTarget::Lease(match u {
            Some(U::Lease(v)) => v,
            _ => 0,
        }),
        v => return Err(bad_enum("compare target", v)),
    };
    Ok(mvcc::Compare {
        result,
        target,
        key: c.key,
        range_end: c.range_end,
    })
}

fn request_op(op: pb::RequestOp) -> Result<mvcc::RequestOp, Status> {
    use pb::request_op::Request as R;
    Ok(match op.request {
        Some(R::RequestRange(r)) => mvcc::RequestOp::Range(range(r)?),
        Some(R::RequestPut(r)) => mvcc::RequestOp::Put(put(r)),
        Some(R::RequestDeleteRange(r)) => mvcc::RequestOp::DeleteRange(delete(r)),
        Some(R::RequestTxn(r)) => mvcc::RequestOp::Txn(txn(r)?),
        // Validation refuses empty ops before conversion.
        None => return Err(crate::errors::EtcdError::KeyNotFound.into()),
    })
}

pub fn txn(r: pb::TxnRequest) -> Result<mvcc::TxnRequest, Status> {
    Ok(mvcc::TxnRequest {
        compare: r
            .compare
            .into_iter()
            .map(compare)
            .collect::<Result<_, _>>()?,
        success: r
            .success
            .into_iter()
            .map(request_op)
            .collect::<Result<_, _>>()?,
        failure: r
            .failure
            .into_iter()
            .map(request_op)
            .collect::<Result<_, _>>()?,
    })
}

/// Whether a txn only reads (etcd serves those without raft).
pub fn txn_is_read_only(r: &pb::TxnRequest) -> bool {
    use pb::request_op::Request as R;
    r.success
        .iter()
        .chain(&r.failure)
        .all(|op| match &op.request {
            Some(R::RequestRange(_)) => true,
            Some(R::RequestTxn(t)) => txn_is_read_only(t),
            _ => false,
        })
}

/// Whether every op of a (read-only) txn is a serializable range (etcd
/// isTxnSerializable: a nested txn makes it linearizable).
pub fn txn_is_serializable(r: &pb::TxnRequest) -> bool {
    use pb::request_op::Request as R;
    r.success
        .iter()
        .chain(&r.failure)
        .all(|op| matches!(&op.request, Some(R::RequestRange(g)) if g.serializable))
}

pub fn kv(k: mvcc::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: k.key,
        create_revision: k.create_revision,
        mod_revision: k.mod_revision,
        version: k.version,
        value: k.value,
        lease: k.lease,
    }
}

/// The response header with the store's revision; cluster-wide fields are
/// filled by the caller.
pub type Header = pb::ResponseHeader;

pub fn range_response(r: mvcc::RangeResponse, h: Header) -> pb::RangeResponse {
    pb::RangeResponse {
        header: Some(Header {
            revision: r.header.revision,
            ..h
        }),
        kvs: r.kvs.into_iter().map(kv).collect(),
        more: r.more,
        count: r.count,
    }
}

pub fn put_response(r: mvcc::PutResponse, h: Header) -> pb::PutResponse {
    pb::PutResponse {
        header: Some(Header {
            revision: r.header.revision,
            ..h
        }),
        prev_kv: r.prev_kv.map(kv),
    }
}

pub fn delete_response(r: mvcc::DeleteRangeResponse, h: Header) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: Some(Header {
            revision: r.header.revision,
            ..h
        }),
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(kv).collect(),
    }
}

pub fn txn_response(r: mvcc::TxnResponse, h: Header) -> pb::TxnResponse {
    use pb::response_op::Response as R;
    pb::TxnResponse {
        header: Some(Header {
            revision: r.header.revision,
            ..h
        }),
        succeeded: r.succeeded,
        responses: r
            .responses
            .into_iter()
            .map(|op| pb::ResponseOp {
                response: Some(match op {
                    mvcc::ResponseOp::Range(x) => R::ResponseRange(range_response(x, h)),
                    mvcc::ResponseOp::Put(x) => R::ResponsePut(put_response(x, h)),
                    mvcc::ResponseOp::DeleteRange(x) => {
                        R::ResponseDeleteRange(delete_response(x, h))
                    }
                    mvcc::ResponseOp::Txn(x) => R::ResponseTxn(txn_response(x, h)),
                }),
            })
            .collect(),
    }
}

pub fn watch_create(r: pb::WatchCreateRequest) -> mvcc::WatchCreateRequest {
    mvcc::WatchCreateRequest {
        key: r.key,
        range_end: r.range_end,
        start_revision: r.start_revision,
        progress_notify: r.progress_notify,
        // etcd ignores filter values it does not know.
        filters: r
            .filters
            .into_iter()
            .filter_map(|f| match f {
                0 => Some(mvcc::WatchFilter::NoPut),
                1 => Some(mvcc::WatchFilter::NoDelete),
                _ => None,
            })
            .collect(),
        prev_kv: r.prev_kv,
        watch_id: r.watch_id,
    }
}

pub fn event(e: mvcc::Event) -> mvccpb::Event {
    mvccpb::Event {
        r#type: match e.kind {
            mvcc::EventType::Put => mvccpb::event::EventType::Put as i32,
            mvcc::EventType::Delete => mvccpb::event::EventType::Delete as i32,
        },
        kv: Some(kv(e.kv)),
        prev_kv: e.prev_kv.map(kv),
    }
}

pub fn watch_response(r: mvcc::WatchResponse, h: Header) -> pb::WatchResponse {
    pb::WatchResponse {
        header: Some(Header {
            revision: r.header.revision,
            ..h
        }),
        watch_id: r.watch_id,
        created: r.created,
        canceled: r.canceled,
        compact_revision: r.compact_revision,
        cancel_reason: r.cancel_reason,
        fragment: false,
        events: r.events.into_iter().map(event).collect(),
    }
}
