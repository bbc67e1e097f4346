//! The commands raft replicates and `Store::apply` executes, with their
//! compact, versioned binary encoding (raft carries them as opaque bytes).
//!
//! ```text
//! u8   format version (1)
//! u8   tag: 1 Put, 2 DeleteRange, 3 Txn, 4 Compact, 5 LeaseGrant,
//!      6 LeaseRevoke, 7 LeaseCheckpoint
//! ...  the request's fields in declaration order: byte strings as uvarint
//!      length + bytes, revisions/limits/TTLs/IDs as zigzag varints, flags
//!      as one bit set byte, enums as one byte, lists as uvarint count
//! ```
//! Decoding rejects an unknown version or tag, an out-of-range enum or flag
//! bit, a length or count beyond the input, nesting deeper than
//! `TXN_DEPTH_MAX`, and trailing bytes, each with its byte offset.

use super::codec::{put_bytes, put_ivarint, put_uvarint, DecodeError, Reader};
use super::rpc::*;

pub const COMMAND_FORMAT: u8 = 1;
/// Nested txns deeper than this are rejected (etcd has no limit; a bound
/// keeps decoding and execution from exhausting the stack).
pub const TXN_DEPTH_MAX: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
    LeaseGrant(LeaseGrantRequest),
    LeaseRevoke(LeaseRevokeRequest),
    LeaseCheckpoint(LeaseCheckpointRequest),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    LeaseCheckpoint(LeaseCheckpointResponse),
}

impl Response {
    pub fn header(&self) -> ResponseHeader {
        match self {
            Response::Put(r) => r.header,
            Response::DeleteRange(r) => r.header,
            Response::Txn(r) => r.header,
            Response::Compact(r) => r.header,
            Response::LeaseGrant(r) => r.header,
            Response::LeaseRevoke(r) => r.header,
            Response::LeaseCheckpoint(r) => r.header,
        }
    }
}

const TAG_PUT: u8 = 1;
const TAG_DELETE_RANGE: u8 = 2;
const TAG_TXN: u8 = 3;
const TAG_COMPACT: u8 = 4;
const TAG_LEASE_GRANT: u8 = 5;
const TAG_LEASE_REVOKE: u8 = 6;
const TAG_LEASE_CHECKPOINT: u8 = 7;

const OP_RANGE: u8 = 1;
const OP_PUT: u8 = 2;
const OP_DELETE_RANGE: u8 = 3;
const OP_TXN: u8 = 4;

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(COMMAND_FORMAT);
        match self {
            Command::Put(r) => {
                out.push(TAG_PUT);
                put_put(out, r);
            }
            Command::DeleteRange(r) => {
                out.push(TAG_DELETE_RANGE);
                put_delete(out, r);
            }
            Command::Txn(r) => {
                out.push(TAG_TXN);
                put_txn(out, r);
            }
            Command::Compact(r) => {
                out.push(TAG_COMPACT);
                put_ivarint(out, r.revision);
                out.push(r.physical as u8);
            }
            Command::LeaseGrant(r) => {
                out.push(TAG_LEASE_GRANT);
                put_ivarint(out, r.ttl);
                put_ivarint(out, r.id);
            }
            Command::LeaseRevoke(r) => {
                out.push(TAG_LEASE_REVOKE);
                put_ivarint(out, r.id);
            }
            Command::LeaseCheckpoint(r) => {
                out.push(TAG_LEASE_CHECKPOINT);
                put_uvarint(out, r.checkpoints.len() as u64);
                for c in &r.checkpoints {
                    put_ivarint(out, c.id);
                    put_ivarint(out, c.remaining_ttl);
                }
            }
        }
    }

    pub fn decode(buf: &[u8]) -> Result<Command, DecodeError> {
        let mut r = Reader::new(buf);
        let format = r.u8("format version")?;
        if format != COMMAND_FORMAT {
            return Err(DecodeError::Version {
                found: format,
                supported: COMMAND_FORMAT,
            });
        }
        let at = r.pos();
        let cmd = match r.u8("command tag")? {
            TAG_PUT => Command::Put(get_put(&mut r)?),
            TAG_DELETE_RANGE => Command::DeleteRange(get_delete(&mut r)?),
            TAG_TXN => Command::Txn(get_txn(&mut r, 0)?),
            TAG_COMPACT => Command::Compact(CompactionRequest {
                revision: r.ivarint("compact revision")?,
                physical: r.bool("physical")?,
            }),
            TAG_LEASE_GRANT => Command::LeaseGrant(LeaseGrantRequest {
                ttl: r.ivarint("ttl")?,
                id: r.ivarint("lease id")?,
            }),
            TAG_LEASE_REVOKE => Command::LeaseRevoke(LeaseRevokeRequest {
                id: r.ivarint("lease id")?,
            }),
            TAG_LEASE_CHECKPOINT => {
                let n = r.count("checkpoint count")?;
                let mut checkpoints = Vec::with_capacity(n);
                for _ in 0..n {
                    checkpoints.push(LeaseCheckpoint {
                        id: r.ivarint("lease id")?,
                        remaining_ttl: r.ivarint("remaining ttl")?,
                    });
                }
                Command::LeaseCheckpoint(LeaseCheckpointRequest { checkpoints })
            }
            tag => {
                return Err(DecodeError::Invalid {
                    what: "command tag",
                    at,
                    detail: format!("unknown tag {tag}"),
                })
            }
        };
        r.finish()?;
        Ok(cmd)
    }
}

fn flags(out: &mut Vec<u8>, bits: &[bool]) {
    out.push(
        bits.iter()
            .enumerate()
            .fold(0u8, |acc, (i, &b)| acc | (b as u8) << i),
    );
}

fn get_flags<const N: usize>(
    r: &mut Reader<'_>,
    what: &'static str,
) -> Result<[bool; N], DecodeError> {
    let b = r.u8(what)?;
    if b >> N != 0 {
        return Err(DecodeError::Invalid {
            what,
            at: r.pos() - 1,
            detail: format!("unknown flag bits {b:#04x}"),
        });
    }
    Ok(std::array::from_fn(|i| b & (1 << i) != 0))
}

fn put_put(out: &mut Vec<u8>, p: &PutRequest) {
    put_bytes(out, &p.key);
    put_bytes(out, &p.value);
    put_ivarint(out, p.lease);
    flags(out, &[p.prev_kv, p.ignore_value, p.ignore_lease]);
}

fn get_put(r: &mut Reader<'_>) -> Result<PutRequest, DecodeError> {
    let key = r.bytes("put key")?.to_vec();
    let value = r.bytes("put value")?.to_vec();
    let lease = r.ivarint("put lease")?;
    let [prev_kv, ignore_value, ignore_lease] = get_flags::<3>(r, "put flags")?;
    Ok(PutRequest {
        key,
        value,
        lease,
        prev_kv,
        ignore_value,
        ignore_lease,
    })
}

fn put_delete(out: &mut Vec<u8>, d: &DeleteRangeRequest) {
    put_bytes(out, &d.key);
    put_bytes(out, &d.range_end);
    out.push(d.prev_kv as u8);
}

fn get_delete(r: &mut Reader<'_>) -> Result<DeleteRangeRequest, DecodeError> {
    Ok(DeleteRangeRequest {
        key: r.bytes("delete key")?.to_vec(),
        range_end: r.bytes("delete range_end")?.to_vec(),
        prev_kv: r.bool("delete prev_kv")?,
    })
}

fn sort_order_byte(o: SortOrder) -> u8 {
    match o {
        SortOrder::None => 0,
        SortOrder::Ascend => 1,
        SortOrder::Descend => 2,
    }
}

fn sort_target_byte(t: SortTarget) -> u8 {
    match t {
        SortTarget::Key => 0,
        SortTarget::Version => 1,
        SortTarget::Create => 2,
        SortTarget::Mod => 3,
        SortTarget::Value => 4,
    }
}

fn put_range(out: &mut Vec<u8>, q: &RangeRequest) {
    put_bytes(out, &q.key);
    put_bytes(out, &q.range_end);
    put_ivarint(out, q.limit);
    put_ivarint(out, q.revision);
    out.push(sort_order_byte(q.sort_order));
    out.push(sort_target_byte(q.sort_target));
    flags(out, &[q.serializable, q.keys_only, q.count_only]);
    put_ivarint(out, q.min_mod_revision);
    put_ivarint(out, q.max_mod_revision);
    put_ivarint(out, q.min_create_revision);
    put_ivarint(out, q.max_create_revision);
}

fn get_range(r: &mut Reader<'_>) -> Result<RangeRequest, DecodeError> {
    let key = r.bytes("range key")?.to_vec();
    let range_end = r.bytes("range range_end")?.to_vec();
    let limit = r.ivarint("range limit")?;
    let revision = r.ivarint("range revision")?;
    let sort_order = match r.u8("sort order")? {
        0 => SortOrder::None,
        1 => SortOrder::Ascend,
        2 => SortOrder::Descend,
        b => return Err(enum_err(r, "sort order", b)),
    };
    let sort_target = match r.u8("sort target")? {
        0 => SortTarget::Key,
        1 => SortTarget::Version,
        2 => SortTarget::Create,
        3 => SortTarget::Mod,
        4 => SortTarget::Value,
        b => return Err(enum_err(r, "sort target", b)),
    };
    let [serializable, keys_only, count_only] = get_flags::<3>(r, "range flags")?;
    Ok(RangeRequest {
        key,
        range_end,
        limit,
        revision,
        sort_order,
        sort_target,
        serializable,
        keys_only,
        count_only,
        min_mod_revision: r.ivarint("min_mod_revision")?,
        max_mod_revision: r.ivarint("max_mod_revision")?,
        min_create_revision: r.ivarint("min_create_revision")?,
        max_create_revision: r.ivarint("max_create_revision")?,
    })
}

fn enum_err(r: &Reader<'_>, what: &'static str, b: u8) -> DecodeError {
    DecodeError::Invalid {
        what,
        at: r.pos() - 1,
        detail: format!("unknown value {b}"),
    }
}

fn put_compare(out: &mut Vec<u8>, c: &Compare) {
    out.push(match c.result {
        CompareResult::Equal => 0,
        CompareResult::Greater => 1,
        CompareResult::Less => 2,
        CompareResult::NotEqual => 3,
    });
    match &c.target {
        CompareTarget::Version(v) => {
            out.push(0);
            put_ivarint(out, *v)
        }
        CompareTarget::Create(v) => {
            out.push(1);
            put_ivarint(out, *v)
        }
        CompareTarget::Mod(v) => {
            out.push(2);
            put_ivarint(out, *v)
        }
        CompareTarget::Value(v) => {
            out.push(3);
            put_bytes(out, v)
        }
        CompareTarget::Lease(v) => {
            out.push(4);
            put_ivarint(out, *v)
        }
    }
    put_bytes(out, &c.key);
    put_bytes(out, &c.range_end);
}

fn get_compare(r: &mut Reader<'_>) -> Result<Compare, DecodeError> {
    let result = match r.u8("compare result")? {
        0 => CompareResult::Equal,
        1 => CompareResult::Greater,
        2 => CompareResult::Less,
        3 => CompareResult::NotEqual,
        b => return Err(enum_err(r, "compare result", b)),
    };
    let target = match r.u8("compare target")? {
        0 => CompareTarget::Version(r.ivarint("compare version")?),
        1 => CompareTarget::Create(r.ivarint("compare create_revision")?),
        2 => CompareTarget::Mod(r.ivarint("compare mod_revision")?),
        3 => CompareTarget::Value(r.bytes("compare value")?.to_vec()),
        4 => CompareTarget::Lease(r.ivarint("compare lease")?),
        b => return Err(enum_err(r, "compare target", b)),
    };
    Ok(Compare {
        result,
        target,
        key: r.bytes("compare key")?.to_vec(),
        range_end: r.bytes("compare range_end")?.to_vec(),
    })
}

fn put_ops(out: &mut Vec<u8>, ops: &[RequestOp]) {
    put_uvarint(out, ops.len() as u64);
    for op in ops {
        match op {
            RequestOp::Range(q) => {
                out.push(OP_RANGE);
                put_range(out, q)
            }
            RequestOp::Put(p) => {
                out.push(OP_PUT);
                put_put(out, p)
            }
            RequestOp::DeleteRange(d) => {
                out.push(OP_DELETE_RANGE);
                put_delete(out, d)
            }
            RequestOp::Txn(t) => {
                out.push(OP_TXN);
                put_txn(out, t)
            }
        }
    }
}

fn get_ops(r: &mut Reader<'_>, depth: usize) -> Result<Vec<RequestOp>, DecodeError> {
    let n = r.count("op count")?;
    let mut ops = Vec::with_capacity(n);
    for _ in 0..n {
        ops.push(match r.u8("op tag")? {
            OP_RANGE => RequestOp::Range(get_range(r)?),
            OP_PUT => RequestOp::Put(get_put(r)?),
            OP_DELETE_RANGE => RequestOp::DeleteRange(get_delete(r)?),
            OP_TXN => RequestOp::Txn(get_txn(r, depth + 1)?),
            b => return Err(enum_err(r, "op tag", b)),
        });
    }
    Ok(ops)
}

fn put_txn(out: &mut Vec<u8>, t: &TxnRequest) {
    put_uvarint(out, t.compare.len() as u64);
    for c in &t.compare {
        put_compare(out, c);
    }
    put_ops(out, &t.success);
    put_ops(out, &t.failure);
}

fn get_txn(r: &mut Reader<'_>, depth: usize) -> Result<TxnRequest, DecodeError> {
    if depth >= TXN_DEPTH_MAX {
        return Err(DecodeError::TooDeep(TXN_DEPTH_MAX));
    }
    let n = r.count("compare count")?;
    let mut compare = Vec::with_capacity(n);
    for _ in 0..n {
        compare.push(get_compare(r)?);
    }
    Ok(TxnRequest {
        compare,
        success: get_ops(r, depth)?,
        failure: get_ops(r, depth)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_txn() -> TxnRequest {
        TxnRequest {
            compare: vec![
                Compare {
                    result: CompareResult::NotEqual,
                    target: CompareTarget::Value(b"v".to_vec()),
                    key: b"a".to_vec(),
                    range_end: vec![],
                },
                Compare {
                    result: CompareResult::Less,
                    target: CompareTarget::Mod(-3),
                    key: b"a".to_vec(),
                    range_end: b"z".to_vec(),
                },
            ],
            success: vec![
                RequestOp::Put(PutRequest {
                    key: b"k".to_vec(),
                    value: vec![0; 200],
                    lease: 7,
                    prev_kv: true,
                    ignore_value: false,
                    ignore_lease: true,
                }),
                RequestOp::Range(RangeRequest {
                    key: b"a".to_vec(),
                    range_end: vec![0],
                    limit: 5,
                    revision: 9,
                    sort_order: SortOrder::Descend,
                    sort_target: SortTarget::Mod,
                    keys_only: true,
                    max_create_revision: 4,
                    ..Default::default()
                }),
            ],
            failure: vec![
                RequestOp::DeleteRange(DeleteRangeRequest {
                    key: b"x".to_vec(),
                    range_end: b"y".to_vec(),
                    prev_kv: true,
                }),
                RequestOp::Txn(TxnRequest::default()),
            ],
        }
    }

    #[test]
    fn every_command_round_trips() {
        let cmds = vec![
            Command::Put(PutRequest {
                key: b"foo".to_vec(),
                value: b"bar".to_vec(),
                ..Default::default()
            }),
            Command::DeleteRange(DeleteRangeRequest::default()),
            Command::Txn(sample_txn()),
            Command::Compact(CompactionRequest {
                revision: 42,
                physical: true,
            }),
            Command::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 99 }),
            Command::LeaseRevoke(LeaseRevokeRequest { id: i64::MIN }),
            Command::LeaseCheckpoint(LeaseCheckpointRequest {
                checkpoints: vec![LeaseCheckpoint {
                    id: 1,
                    remaining_ttl: 5,
                }],
            }),
        ];
        for c in cmds {
            let bytes = c.encode();
            assert_eq!(Command::decode(&bytes).unwrap(), c);
            // Every strict prefix is an error, never a panic.
            for cut in 0..bytes.len() {
                assert!(Command::decode(&bytes[..cut]).is_err());
            }
        }
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        assert!(matches!(
            Command::decode(&[2, 1]),
            Err(DecodeError::Version { found: 2, .. })
        ));
        assert!(matches!(
            Command::decode(&[1, 99]),
            Err(DecodeError::Invalid {
                what: "command tag",
                ..
            })
        ));
        let mut put = Command::Put(PutRequest::default()).encode();
        *put.last_mut().unwrap() = 0x80;
        assert!(matches!(
            Command::decode(&put),
            Err(DecodeError::Invalid {
                what: "put flags",
                ..
            })
        ));
        let mut deep = TxnRequest::default();
        for _ in 0..TXN_DEPTH_MAX + 1 {
            deep = TxnRequest {
                success: vec![RequestOp::Txn(deep)],
                ..Default::default()
            };
        }
        assert_eq!(
            Command::decode(&Command::Txn(deep).encode()),
            Err(DecodeError::TooDeep(TXN_DEPTH_MAX))
        );
        // A huge count with nothing behind it does not allocate.
        assert!(Command::decode(&[1, 7, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }
}
