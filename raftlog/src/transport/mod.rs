//! Peer transports: the TCP transport the node runs with, and the faulty
//! in-process network the simulator runs with.
//!
//! A transport moves raft messages between nodes and streams snapshot files
//! next to them. It never blocks the raft loop: every send is queued (with
//! a bound) or dropped, and a drop is reported as the peer being
//! unreachable so raft stops pipelining to it and probes instead.

use std::path::PathBuf;

use raft::eraftpb::Message;

pub mod frame;
pub mod sim;
pub mod tcp;

/// What a transport hands to its node.
#[derive(Debug)]
pub enum Incoming {
    /// A raft message from a peer. A MsgSnapshot arrives only after its file
    /// was received and verified into the node's snapshot directory.
    Message(Message),
    /// The snapshot stream to `to` finished (`delivered`) or failed.
    SnapshotStatus { to: u64, delivered: bool },
    /// Messages to `to` were dropped (queue full, connection failed).
    Unreachable { to: u64 },
    /// A member told this node it was removed from the cluster.
    Removed { from: u64 },
}

/// Where a transport delivers incoming traffic (the node's event queue).
pub trait Inbox: Send + Sync + 'static {
    fn deliver(&self, incoming: Incoming);
}

/// The sending side a node drives.
pub trait Transport: Send + Sync + 'static {
    /// Queues messages to their peers; never blocks.
    fn send(&self, msgs: Vec<Message>);
    /// Streams a MsgSnapshot with the snapshot file at `file`; the outcome
    /// comes back as `Incoming::SnapshotStatus`.
    fn send_snapshot(&self, msg: Message, file: PathBuf);
    /// Tells a removed member that it was removed.
    fn tell_removed(&self, to: u64);
    /// Learns (or updates) a peer's address (`host:port` or `http://host:port`).
    fn add_peer(&self, id: u64, url: &str);
    fn remove_peer(&self, id: u64);
}
