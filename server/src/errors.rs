//! etcd's gRPC errors: the same status code and the same message as etcd
//! 3.4's `etcdserver/api/v3rpc/rpctypes` table, because clients match on the
//! message text (clientv3's `rpctypes.Error` maps a message back to a typed
//! error) and etcdctl prints it.

use tonic::{Code, Status};

/// Every error the server answers with, one variant per rpctypes entry that
/// ferrokv can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EtcdError {
    EmptyKey,
    KeyNotFound,
    ValueProvided,
    LeaseProvided,
    TooManyOps,
    DuplicateKey,
    Compacted,
    FutureRev,
    NoSpace,
    LeaseNotFound,
    LeaseExist,
    LeaseTtlTooLarge,
    MemberExist,
    PeerUrlExist,
    MemberNotEnoughStarted,
    MemberBadUrls,
    MemberNotFound,
    MemberNotLearner,
    LearnerNotReady,
    TooManyLearners,
    RequestTooLarge,
    TooManyRequests,
    AuthNotEnabled,
    PermissionDenied,
    NoLeader,
    NotLeader,
    LeaderChanged,
    NotCapable,
    Stopped,
    Timeout,
    TimeoutDueToLeaderFail,
    TimeoutDueToConnectionLost,
    Unhealthy,
    Corrupt,
    NotSupportedForLearner,
    BadLeaderTransferee,
}

impl EtcdError {
    /// Every variant, for tables and tests.
    pub const ALL: [EtcdError; 36] = [
        EtcdError::EmptyKey,
        EtcdError::KeyNotFound,
        EtcdError::ValueProvided,
        EtcdError::LeaseProvided,
        EtcdError::TooManyOps,
        EtcdError::DuplicateKey,
        EtcdError::Compacted,
        EtcdError::FutureRev,
        EtcdError::NoSpace,
        EtcdError::LeaseNotFound,
        EtcdError::LeaseExist,
        EtcdError::LeaseTtlTooLarge,
        EtcdError::MemberExist,
        EtcdError::PeerUrlExist,
        EtcdError::MemberNotEnoughStarted,
        EtcdError::MemberBadUrls,
        EtcdError::MemberNotFound,
        EtcdError::MemberNotLearner,
        EtcdError::LearnerNotReady,
        EtcdError::TooManyLearners,
        EtcdError::RequestTooLarge,
        EtcdError::TooManyRequests,
        EtcdError::AuthNotEnabled,
        EtcdError::PermissionDenied,
        EtcdError::NoLeader,
        EtcdError::NotLeader,
        EtcdError::LeaderChanged,
        EtcdError::NotCapable,
        EtcdError::Stopped,
        EtcdError::Timeout,
        EtcdError::TimeoutDueToLeaderFail,
        EtcdError::TimeoutDueToConnectionLost,
        EtcdError::Unhealthy,
        EtcdError::Corrupt,
        EtcdError::NotSupportedForLearner,
        EtcdError::BadLeaderTransferee,
    ];

    /// The gRPC status code etcd uses.
    pub fn code(self) -> Code {
        use EtcdError::*;
        match self {
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey
            | MemberBadUrls | RequestTooLarge => Code::InvalidArgument,
            Compacted | FutureRev | LeaseTtlTooLarge => Code::OutOfRange,
            NoSpace | TooManyRequests => Code::ResourceExhausted,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            LeaseExist
            | MemberExist
            | PeerUrlExist
            | MemberNotEnoughStarted
            | MemberNotLearner
            | LearnerNotReady
            | TooManyLearners
            | AuthNotEnabled
            | NotLeader
            | BadLeaderTransferee => Code::FailedPrecondition,
            PermissionDenied => Code::PermissionDenied,
            NoLeader
            | LeaderChanged
            | NotCapable
            | Stopped
            | Timeout
            | TimeoutDueToLeaderFail
            | TimeoutDueToConnectionLost
            | Unhealthy
            | NotSupportedForLearner => Code::Unavailable,
            Corrupt => Code::DataLoss,
        }
    }

    /// The message etcd sends, byte for byte.
    pub fn message(self) -> &'static str {
        use EtcdError::*;
        match self {
            EmptyKey => "etcdserver: key is not provided",
            KeyNotFound => "etcdserver: key not found",
            ValueProvided => "etcdserver: value is provided",
            LeaseProvided => "etcdserver: lease is provided",
            TooManyOps => "etcdserver: too many operations in txn request",
            DuplicateKey => "etcdserver: duplicate key given in txn request",
            Compacted => "etcdserver: mvcc: required revision has been compacted",
            FutureRev => "etcdserver: mvcc: required revision is a future revision",
            NoSpace => "etcdserver: mvcc: database space exceeded",
            LeaseNotFound => "etcdserver: requested lease not found",
            LeaseExist => "etcdserver: lease already exists",
            LeaseTtlTooLarge => "etcdserver: too large lease TTL",
            MemberExist => "etcdserver: member ID already exist",
            PeerUrlExist => "etcdserver: Peer URLs already exists",
            MemberNotEnoughStarted => {
                "etcdserver: re-configuration failed due to not enough started members"
            }
            MemberBadUrls => "etcdserver: given member URLs are invalid",
            MemberNotFound => "etcdserver: member not found",
            MemberNotLearner => "etcdserver: can only promote a learner member",
            LearnerNotReady => {
                "etcdserver: can only promote a learner member which is in sync with leader"
            }
            TooManyLearners => "etcdserver: too many learner members in cluster",
            RequestTooLarge => "etcdserver: request is too large",
            TooManyRequests => "etcdserver: too many requests",
            AuthNotEnabled => "etcdserver: authentication is not enabled",
            PermissionDenied => "etcdserver: permission denied",
            NoLeader => "etcdserver: no leader",
            NotLeader => "etcdserver: not leader",
            LeaderChanged => "etcdserver: leader changed",
            NotCapable => "etcdserver: not capable",
            Stopped => "etcdserver: server stopped",
            Timeout => "etcdserver: request timed out",
            TimeoutDueToLeaderFail => {
                "etcdserver: request timed out, possibly due to previous leader failure"
            }
            TimeoutDueToConnectionLost => {
                "etcdserver: request timed out, possibly due to connection lost"
            }
            Unhealthy => "etcdserver: unhealthy cluster",
            Corrupt => "etcdserver: corrupt cluster",
            NotSupportedForLearner => "etcdserver: rpc not supported for learner",
            BadLeaderTransferee => "etcdserver: bad leader transferee",
        }
    }

    pub fn status(self) -> Status {
        Status::new(self.code(), self.message())
    }
}

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for EtcdError {}

impl From<EtcdError> for Status {
    fn from(e: EtcdError) -> Status {
        e.status()
    }
}

/// Anything else becomes `Unknown` with the error's text, as etcd's
/// `togRPCError` does for errors outside its table.
pub fn unknown(e: impl std::fmt::Display) -> Status {
    Status::new(Code::Unknown, e.to_string())
}

/// The store's answer to a request, as etcd's `togRPCError` maps mvcc,
/// lease and etcdserver errors.
pub fn from_mvcc(e: &engine::mvcc::Error) -> Status {
    use engine::mvcc::Error as E;
    match e {
        E::Compacted { .. } => EtcdError::Compacted.status(),
        E::FutureRevision { .. } => EtcdError::FutureRev.status(),
        E::LeaseNotFound => EtcdError::LeaseNotFound.status(),
        E::LeaseExists => EtcdError::LeaseExist.status(),
        E::LeaseTtlTooLarge => EtcdError::LeaseTtlTooLarge.status(),
        E::KeyNotFound => EtcdError::KeyNotFound.status(),
        E::EmptyKey => EtcdError::EmptyKey.status(),
        E::DuplicateKey => EtcdError::DuplicateKey.status(),
        E::TooManyOps => EtcdError::TooManyOps.status(),
        E::InvalidRequest(why) => Status::invalid_argument(format!("etcdserver: {why}")),
        other => unknown(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_is_etcdserver_prefixed_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for e in EtcdError::ALL {
            assert!(e.message().starts_with("etcdserver: "), "{e:?}");
            assert!(seen.insert(e.message()), "duplicate message {e:?}");
            let s: Status = e.into();
            assert_eq!(s.code(), e.code());
            assert_eq!(s.message(), e.message());
        }
    }
}
