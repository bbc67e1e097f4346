//! Raft log recovery through the WAL (`RaftStorage::recover` over
//! `WalStore`): the log a node had before a restart is the log it has
//! after it, also when a snapshot marker was taken right after a follower's
//! log was truncated or replaced, and before any later entry arrived.
#![allow(clippy::field_reassign_with_default)]

use bytes::Bytes;
use engine::wal;
use raft::eraftpb::{ConfState, Entry, HardState, Message, MessageType};
use raftlog::log_store::WalStore;
use raftlog::record::{LogRecord, SnapshotOrigin};
use raftlog::snapshot::Descriptor;
use raftlog::storage::{snapshot_metadata, RaftStorage};

fn ent(index: u64, term: u64) -> LogRecord {
    let mut e = Entry::default();
    e.index = index;
    e.term = term;
    e.data = Bytes::from(vec![index as u8; 16]);
    LogRecord::Entry(e)
}

fn hs(term: u64, commit: u64) -> LogRecord {
    let mut h = HardState::default();
    h.term = term;
    h.commit = commit;
    LogRecord::HardState(h)
}

fn opts() -> wal::Options {
    wal::Options {
        segment_bytes: 1 << 20,
        queue_bytes_max: 256 << 10,
        record_bytes_max: 64 << 10,
        ..Default::default()
    }
}

/// A follower holds uncommitted entries 1..=15 of term 1 (commit 7). A new
/// leader of term 2 replaces 8..=15 with 8..=10 (raft truncates the
/// follower's log to 10). Entry 10 commits and is applied, and the
/// periodic snapshot is taken at the applied index, 10 (a marker without a
/// file, as ferrokv's store takes every `--snapshot-count` entries), before
/// any entry beyond 10 arrives. A restart (a SIGKILL, or a clean stop)
/// must give back the log the node had: entries up to 10, the last of term
/// 2 — not the stale 11..=15 of term 1, which would make the node's log
/// look older than it is and let it vote for a candidate that lacks the
/// committed entry 10.
/// The periodic snapshot at entry 10 (term 2), a marker without a file,
/// and the hard state written after it, as `Core::on_snapshot_taken` does.
fn take_marker_at_10(store: &WalStore, cs: &ConfState) {
    store
        .append_sync(&[
            LogRecord::Snapshot {
                origin: SnapshotOrigin::Taken,
                meta: snapshot_metadata(10, 2, cs.clone()),
                descriptor: Descriptor::LOCAL.encode(),
            },
            hs(2, 10),
        ])
        .unwrap();
}

#[test]
fn a_truncating_append_before_a_taken_marker_stays_truncated_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cs = ConfState::default();
    cs.voters = vec![1, 2, 3];
    {
        let (store, records) = WalStore::open(dir.path(), opts()).unwrap();
        assert!(records.is_empty());
        let mut first: Vec<LogRecord> = (1..=15).map(|i| ent(i, 1)).collect();
        first.push(hs(1, 7));
        store.append_sync(&first).unwrap();
        // The new leader's append, as the follower's Ready writes it.
        store
            .append_sync(&[ent(8, 2), ent(9, 2), ent(10, 2), hs(2, 7)])
            .unwrap();
        // Core::on_snapshot_taken: marker at the applied index, then the
        // hard state (commit 10 by now).
        take_marker_at_10(&store, &cs);
    }
    let (_store, records) = WalStore::open(dir.path(), opts()).unwrap();
    let s = RaftStorage::recover(&records).unwrap();

    // What raft-rs will believe: (last index, last term).
    let last = s.last();
    let last_term = s.term_of(last).unwrap();
    // The consequence: a candidate of term 3 whose log ends at (9, term 2)
    // lacks the committed entry 10, and this node must refuse its vote.
    let mut cfg = raft::Config::new(2);
    cfg.election_tick = 10;
    cfg.heartbeat_tick = 1;
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let mut raw = raft::RawNode::new(&cfg, s, &logger).unwrap();
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgRequestVote);
    m.from = 3;
    m.to = 2;
    m.term = 3;
    m.index = 9;
    m.log_term = 2;
    raw.step(m).unwrap();
    let granted = raw
        .raft
        .msgs
        .iter()
        .any(|r| r.get_msg_type() == MessageType::MsgRequestVoteResponse && !r.reject);

    assert_eq!(
        (last, last_term, granted),
        (10, 2, false),
        "recovered log ends at ({last}, term {last_term}) instead of (10, term 2): the \
         stale term-1 entries 11..=15 came back after the snapshot, and the node \
         {} its vote to a candidate missing the committed entry 10",
        if granted { "grants" } else { "refuses" }
    );
}

/// A node holds stale entries 1..=15 of term 1, installs the leader's
/// snapshot at 8 (term 2), which replaces its whole log, receives 9..=10,
/// applies 10 and takes its periodic marker there. After a restart the log
/// ends at 10 of term 2: the stale 11..=15 from before the installed
/// snapshot stay gone.
#[test]
fn entries_an_installed_snapshot_replaced_stay_gone_after_a_taken_marker() {
    let dir = tempfile::tempdir().unwrap();
    let mut cs = ConfState::default();
    cs.voters = vec![1, 2, 3];
    {
        let (store, _) = WalStore::open(dir.path(), opts()).unwrap();
        let mut first: Vec<LogRecord> = (1..=15).map(|i| ent(i, 1)).collect();
        first.push(hs(1, 3));
        store.append_sync(&first).unwrap();
        store
            .append_sync(&[
                LogRecord::Snapshot {
                    origin: SnapshotOrigin::Installed,
                    meta: snapshot_metadata(8, 2, cs.clone()),
                    descriptor: Descriptor {
                        file_len: 100,
                        crc: 1,
                    }
                    .encode(),
                },
                ent(9, 2),
                ent(10, 2),
                hs(2, 8),
            ])
            .unwrap();
        take_marker_at_10(&store, &cs);
    }
    let (_store, records) = WalStore::open(dir.path(), opts()).unwrap();
    let s = RaftStorage::recover(&records).unwrap();
    let last = s.last();
    assert_eq!(
        (last, s.term_of(last).unwrap()),
        (10, 2),
        "entries the installed snapshot replaced are back after the taken marker"
    );
}
