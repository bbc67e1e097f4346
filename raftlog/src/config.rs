//! Node configuration with documented defaults and a `validate()` step that
//! rejects nonsense before a node starts.

use std::time::Duration;

use crate::error::{Error, Result};

/// How a raft node runs. Every field has a default chosen for a small
/// cluster on a fast network; tests and benchmarks override a few.
#[derive(Clone, Debug)]
pub struct Config {
    /// The raft id of this node; never 0 and unique in the cluster.
    pub id: u64,

    /// The length of one raft tick. Default 100 ms (etcd's heartbeat interval).
    pub tick_interval: Duration,
    /// Ticks between heartbeats sent by the leader. Default 1.
    pub heartbeat_tick: usize,
    /// Ticks without hearing from a leader before a follower campaigns.
    /// The randomized timeout lies in `[election_tick, 2 * election_tick)`
    /// unless `election_tick_range` pins it. Default 10 (1 s, etcd's default).
    pub election_tick: usize,
    /// Pins the randomized election timeout to `[min, max)` ticks. The
    /// deterministic simulator gives every node its own one-wide range,
    /// because raft-rs draws the timeout from an unseeded thread RNG.
    pub election_tick_range: Option<(usize, usize)>,

    /// Append messages a leader may have in flight to one follower before it
    /// waits for an acknowledgement (raft-rs `max_inflight_msgs`). Default
    /// 256: pipelined replication. 1 turns pipelining off.
    pub max_inflight_msgs: usize,
    /// Bytes of entries in one append message (raft-rs `max_size_per_msg`).
    /// Default 1 MiB.
    pub max_size_per_msg: u64,
    /// Bytes of committed entries handed to the state machine per ready.
    /// Default 16 MiB.
    pub max_committed_size_per_ready: u64,
    /// Bytes of uncommitted entries a leader accepts before it drops new
    /// proposals. Default 256 MiB.
    pub max_uncommitted_size: u64,

    /// Leader sends appends before its own log write is durable (raft thesis
    /// §10.2.1). Default on. Off makes the leader hold every message of a
    /// ready until that ready is durable, as a non-pipelined leader would.
    pub parallel_leader_persist: bool,

    /// Pre-vote (raft thesis §9.6) keeps a rejoining node from disrupting the
    /// cluster. Default on.
    pub pre_vote: bool,
    /// The leader steps down when it has not heard from a quorum for an
    /// election timeout. Default on; needed so a partitioned leader stops
    /// accepting proposals it can never commit.
    pub check_quorum: bool,

    /// Largest command accepted by `propose`. Default 1.5 MiB (etcd's
    /// default request limit).
    pub command_bytes_max: usize,
    /// Proposals waiting for the raft loop. A full queue makes `propose`
    /// return `Error::Busy`. Default 16384.
    pub proposal_queue_max: usize,
    /// Proposals drained into raft per loop iteration; they leave in one
    /// ready, so one log write and one append message carry them all.
    /// Default 4096.
    pub proposal_batch_max: usize,

    /// Applied entries between two state-machine snapshots. Default 10000.
    pub snapshot_interval_entries: u64,
    /// Entries kept in memory behind a snapshot so a slightly slow follower
    /// catches up from the log instead of a snapshot (etcd keeps 5000).
    pub compaction_margin_entries: u64,
    /// Size of one chunk of a snapshot stream. Default 1 MiB.
    pub snapshot_chunk_bytes: usize,

    /// Ticks a ReadIndex request may stay unanswered before it is sent again
    /// (the leader may have changed or the message may have been lost).
    /// Default: the election timeout.
    pub read_index_retry_ticks: usize,
}

impl Config {
    /// Defaults for node `id`.
    pub fn new(id: u64) -> Config {
        Config {
            id,
            tick_interval: Duration::from_millis(100),
            heartbeat_tick: 1,
            election_tick: 10,
            election_tick_range: None,
            max_inflight_msgs: 256,
            max_size_per_msg: 1 << 20,
            max_committed_size_per_ready: 16 << 20,
            max_uncommitted_size: 256 << 20,
            parallel_leader_persist: true,
            pre_vote: true,
            check_quorum: true,
            command_bytes_max: 3 << 19,
            proposal_queue_max: 16384,
            proposal_batch_max: 4096,
            snapshot_interval_entries: 10_000,
            compaction_margin_entries: 5_000,
            snapshot_chunk_bytes: 1 << 20,
            read_index_retry_ticks: 10,
        }
    }

    /// Rejects a configuration raft would misbehave with.
    pub fn validate(&self) -> Result<()> {
        let fail = |what: &str| Err(Error::Config(what.to_string()));
        if self.id == 0 {
            return fail("id must not be 0");
        }
        if self.tick_interval.is_zero() {
            return fail("tick_interval must be positive");
        }
        if self.heartbeat_tick == 0 {
            return fail("heartbeat_tick must be positive");
        }
        if self.election_tick <= self.heartbeat_tick {
            return fail("election_tick must be greater than heartbeat_tick");
        }
        if let Some((min, max)) = self.election_tick_range {
            if min < self.election_tick || max <= min {
                return fail("election_tick_range must satisfy election_tick <= min < max");
            }
        }
        if self.max_inflight_msgs == 0 {
            return fail("max_inflight_msgs must be at least 1");
        }
        if self.max_size_per_msg == 0 {
            return fail("max_size_per_msg must be positive");
        }
        if self.command_bytes_max == 0 || self.command_bytes_max as u64 > self.max_uncommitted_size
        {
            return fail("command_bytes_max must be positive and at most max_uncommitted_size");
        }
        if self.proposal_queue_max == 0 || self.proposal_batch_max == 0 {
            return fail("proposal_queue_max and proposal_batch_max must be positive");
        }
        if self.snapshot_interval_entries == 0 {
            return fail("snapshot_interval_entries must be positive");
        }
        if self.snapshot_chunk_bytes < 1024 || self.snapshot_chunk_bytes > 64 << 20 {
            return fail("snapshot_chunk_bytes must lie in [1 KiB, 64 MiB]");
        }
        if self.read_index_retry_ticks == 0 {
            return fail("read_index_retry_ticks must be positive");
        }
        self.to_raft()
            .validate()
            .map_err(|e| Error::Config(e.to_string()))
    }

    /// The raft-rs configuration this node runs with.
    pub fn to_raft(&self) -> raft::Config {
        let (min_election_tick, max_election_tick) = self.election_tick_range.unwrap_or((0, 0));
        raft::Config {
            id: self.id,
            election_tick: self.election_tick,
            heartbeat_tick: self.heartbeat_tick,
            min_election_tick,
            max_election_tick,
            max_size_per_msg: self.max_size_per_msg,
            max_inflight_msgs: self.max_inflight_msgs,
            max_committed_size_per_ready: self.max_committed_size_per_ready,
            max_uncommitted_size: self.max_uncommitted_size,
            pre_vote: self.pre_vote,
            check_quorum: self.check_quorum,
            // raft-rs 0.7's append batching can merge entries into an empty
            // MsgAppend whose index does not precede them (its continuity
            // check passes when the message has no entries), which sends a
            // follower a malformed append and trips its commit assertion. The
            // driver batches instead: one MsgPropose carries every proposal
            // of a loop iteration, so one append per follower carries them.
            batch_append: false,
            ..raft::Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_pipelined() {
        let c = Config::new(1);
        c.validate().unwrap();
        assert!(c.max_inflight_msgs >= 256);
        assert_eq!(c.max_size_per_msg, 1 << 20);
        assert!(c.parallel_leader_persist);
    }

    #[test]
    fn rejects_nonsense() {
        let mut c = Config::new(0);
        assert!(c.validate().is_err());
        c.id = 1;
        c.election_tick = 1;
        assert!(c.validate().is_err());
        c.election_tick = 10;
        c.max_inflight_msgs = 0;
        assert!(c.validate().is_err());
        c.max_inflight_msgs = 1;
        c.election_tick_range = Some((5, 6));
        assert!(c.validate().is_err());
        c.election_tick_range = Some((12, 13));
        c.validate().unwrap();
    }
}
