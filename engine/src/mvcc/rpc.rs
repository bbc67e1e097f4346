//! Requests and responses, field for field as etcd's rpc.proto
//! (etcdserverpb) and kv.proto (mvccpb) define them, so the gRPC server maps
//! them one to one. The header carries only the revision; cluster id, member
//! id and raft term are the server's to fill in.

pub use super::kv::KeyValue;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseHeader {
    pub revision: i64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SortOrder {
    #[default]
    None,
    Ascend,
    Descend,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SortTarget {
    #[default]
    Key,
    Version,
    Create,
    Mod,
    Value,
}

/// rpc.proto RangeRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    /// First key of the range (the key itself if `range_end` is empty).
    pub key: Vec<u8>,
    /// End of the range, exclusive; empty: only `key`; `"\0"`: every key
    /// ≥ `key` (and `key = "\0"` with it: all keys).
    pub range_end: Vec<u8>,
    /// At most this many keys; 0 or less: no limit.
    pub limit: i64,
    /// Point in time of the read; 0 or less: the current revision.
    pub revision: i64,
    pub sort_order: SortOrder,
    pub sort_target: SortTarget,
    /// Whether a server may answer from its local state (the engine always
    /// does; kept for the server's routing).
    pub serializable: bool,
    pub keys_only: bool,
    pub count_only: bool,
    /// Filters (0: off), applied after the range and before the limit.
    pub min_mod_revision: i64,
    pub max_mod_revision: i64,
    pub min_create_revision: i64,
    pub max_create_revision: i64,
}

/// rpc.proto RangeResponse.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    pub header: ResponseHeader,
    pub kvs: Vec<KeyValue>,
    /// More keys than `limit` were left out.
    pub more: bool,
    /// Number of keys in the range at the revision (before limit and the
    /// min/max filters, as etcd counts).
    pub count: i64,
}

/// rpc.proto PutRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutRequest {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub lease: i64,
    pub prev_kv: bool,
    /// Keep the current value (error if the key does not exist).
    pub ignore_value: bool,
    /// Keep the current lease (error if the key does not exist).
    pub ignore_lease: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutResponse {
    pub header: ResponseHeader,
    pub prev_kv: Option<KeyValue>,
}

/// rpc.proto DeleteRangeRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeRequest {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub prev_kv: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeResponse {
    pub header: ResponseHeader,
    pub deleted: i64,
    pub prev_kvs: Vec<KeyValue>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOp {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseOp {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CompareResult {
    #[default]
    Equal,
    Greater,
    Less,
    NotEqual,
}

/// rpc.proto Compare's `target` with its `target_union` value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CompareTarget {
    Version(i64),
    Create(i64),
    Mod(i64),
    Value(Vec<u8>),
    Lease(i64),
}

/// rpc.proto Compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    pub result: CompareResult,
    pub target: CompareTarget,
    pub key: Vec<u8>,
    /// As RangeRequest.range_end: every key in the range must satisfy it.
    pub range_end: Vec<u8>,
}

/// rpc.proto TxnRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnResponse {
    pub header: ResponseHeader,
    pub succeeded: bool,
    pub responses: Vec<ResponseOp>,
}

/// rpc.proto CompactionRequest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionRequest {
    pub revision: i64,
    /// The caller waits until the removal is on disk
    /// (`Store::wait_compaction`); the command itself does not wait.
    pub physical: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionResponse {
    pub header: ResponseHeader,
}

/// rpc.proto LeaseGrantRequest. The proposer picks the ID (etcd's server
/// does so before proposing); 0 is rejected at apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseGrantRequest {
    pub ttl: i64,
    pub id: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseGrantResponse {
    pub header: ResponseHeader,
    pub id: i64,
    /// Granted TTL in seconds (raised to the minimum TTL if below it).
    pub ttl: i64,
    pub error: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseRevokeRequest {
    pub id: i64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseRevokeResponse {
    pub header: ResponseHeader,
}

/// rpc.proto LeaseCheckpoint: the remaining TTL the leader saw, persisted
/// so that a restart (or a new leader) does not grant a long lease anew.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseCheckpoint {
    pub id: i64,
    pub remaining_ttl: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseCheckpointRequest {
    pub checkpoints: Vec<LeaseCheckpoint>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseCheckpointResponse {
    pub header: ResponseHeader,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseKeepAliveResponse {
    pub header: ResponseHeader,
    pub id: i64,
    pub ttl: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseTimeToLiveResponse {
    pub header: ResponseHeader,
    pub id: i64,
    /// Remaining seconds; -1 if the lease has expired (rpc.proto).
    pub ttl: i64,
    pub granted_ttl: i64,
    pub keys: Vec<Vec<u8>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseLeasesResponse {
    pub header: ResponseHeader,
    pub leases: Vec<i64>,
}

/// rpc.proto HashKVResponse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashKvResponse {
    pub header: ResponseHeader,
    pub hash: u32,
    pub compact_revision: i64,
}

/// What the Maintenance.Status RPC needs from the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStatus {
    pub revision: i64,
    pub compact_revision: i64,
    pub consistent_index: u64,
    pub db_size_bytes: u64,
    pub key_count: usize,
}

/// One compaction pass, for metrics and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub revision: i64,
    /// Revisions removed from the key bucket.
    pub removed: u64,
    /// Steps taken under the writer lock.
    pub steps: u64,
    /// The longest step: the longest any apply could wait for compaction
    /// (on a loaded machine this includes time the thread was descheduled).
    pub step_max_us: u64,
    /// Time spent in steps altogether.
    pub step_total_us: u64,
    /// From the start of the walk to the commit of its last deletes.
    pub elapsed_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Put,
    Delete,
}

/// kv.proto Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventType,
    /// For a delete: the key and its mod revision (the delete's), the rest 0.
    pub kv: KeyValue,
    pub prev_kv: Option<KeyValue>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WatchFilter {
    NoPut,
    NoDelete,
}

/// rpc.proto WatchCreateRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchCreateRequest {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// First revision to deliver; 0: from the next one.
    pub start_revision: i64,
    /// Send an empty response with the current revision when nothing was
    /// sent for the progress interval.
    pub progress_notify: bool,
    pub filters: Vec<WatchFilter>,
    pub prev_kv: bool,
    /// Requested watch id; 0: the stream picks one.
    pub watch_id: i64,
}

/// rpc.proto WatchResponse.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchResponse {
    pub header: ResponseHeader,
    /// -1 for a stream-wide progress notification.
    pub watch_id: i64,
    pub created: bool,
    pub canceled: bool,
    /// Set (with `canceled`) when the watcher's next revision was compacted.
    pub compact_revision: i64,
    pub cancel_reason: String,
    /// Events of whole revisions, oldest first.
    pub events: Vec<Event>,
}
