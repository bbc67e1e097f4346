//! The peer transport over TCP.
//!
//! Each peer has one outgoing connection, fed by a writer thread from a
//! bounded queue: the writer drains whatever is queued into one frame
//! (batching under load, one message when idle), reconnects with bounded
//! backoff when the connection breaks, and reports dropped messages as the
//! peer being unreachable so raft falls back to probing. Incoming
//! connections are read by one thread each. A snapshot travels on its own
//! connection (header, chunks, end) so it never holds up appends and
//! heartbeats; the receiver verifies the file before the MsgSnapshot
//! reaches raft, and acknowledges it so the sender can report the outcome.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};

use super::frame::{self, Hello};
use super::{Inbox, Incoming, Transport};
use crate::cluster::url_host_port;
use crate::error::{Error, Result};
use crate::snapshot::SnapDir;

/// Settings of the TCP transport.
#[derive(Clone, Debug)]
pub struct TcpConfig {
    pub id: u64,
    /// Address to listen on for peers (`host:port`).
    pub listen: String,
    /// This node's peer URL as the others know it.
    pub advertise_url: String,
    /// Connections from another cluster (another token) are refused.
    pub cluster_token: String,
    /// Messages queued per peer; beyond it messages are dropped (and the
    /// peer reported unreachable). Default 8192.
    pub peer_queue_msgs_max: usize,
    /// Bytes of messages written as one frame. Default 4 MiB.
    pub batch_bytes_max: usize,
    pub dial_timeout: Duration,
    /// Longest wait between reconnection attempts. Default 500 ms.
    pub backoff_max: Duration,
    pub snapshot_chunk_bytes: usize,
    /// How long a snapshot sender waits for the receiver's verdict.
    pub snapshot_ack_timeout: Duration,
    /// Holds every message this long before it is written: emulates a
    /// network with this one-way latency on loopback (benchmarks only).
    /// Default zero.
    pub one_way_delay: Duration,
}

impl TcpConfig {
    pub fn new(id: u64, listen: &str, advertise_url: &str, cluster_token: &str) -> TcpConfig {
        TcpConfig {
            id,
            listen: listen.to_string(),
            advertise_url: advertise_url.to_string(),
            cluster_token: cluster_token.to_string(),
            peer_queue_msgs_max: 8192,
            batch_bytes_max: 4 << 20,
            dial_timeout: Duration::from_secs(1),
            backoff_max: Duration::from_millis(500),
            snapshot_chunk_bytes: 1 << 20,
            snapshot_ack_timeout: Duration::from_secs(60),
            one_way_delay: Duration::ZERO,
        }
    }
}

// Nearly every item is a message; boxing them to shrink the rare notice
// would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
enum Outgoing {
    Msg(Message, Instant),
    Removed,
}

struct Peer {
    tx: Sender<Outgoing>,
    addr: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
}

struct Inner {
    cfg: TcpConfig,
    cluster: u64,
    inbox: Arc<dyn Inbox>,
    snaps: SnapDir,
    peers: Mutex<HashMap<u64, Peer>>,
    stop: AtomicBool,
    local_addr: SocketAddr,
    threads: Mutex<Vec<JoinHandle<()>>>,
    accepted: Mutex<Vec<TcpStream>>,
}

/// The TCP transport of one node. Dropping it stops its threads.
pub struct TcpTransport {
    inner: Arc<Inner>,
}

fn cluster_hash(token: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(token.as_bytes())
}

impl TcpTransport {
    /// Binds the listener and starts accepting peers. Incoming traffic goes
    /// to `inbox`; received snapshot files land in `snaps`.
    pub fn start(cfg: TcpConfig, inbox: Arc<dyn Inbox>, snaps: SnapDir) -> Result<TcpTransport> {
        let listener = TcpListener::bind(url_host_port(&cfg.listen))
            .map_err(|e| Error::Transport(format!("listen on {}: {e}", cfg.listen)))?;
        let local_addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            cluster: cluster_hash(&cfg.cluster_token),
            cfg,
            inbox,
            snaps,
            peers: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
            local_addr,
            threads: Mutex::new(Vec::new()),
            accepted: Mutex::new(Vec::new()),
        });
        let acceptor = Arc::clone(&inner);
        let handle = std::thread::Builder::new()
            .name(format!("raft-accept-{:x}", inner.cfg.id))
            .spawn(move || accept_loop(acceptor, listener))?;
        inner.threads.lock().unwrap().push(handle);
        Ok(TcpTransport { inner })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Stops every thread and closes every connection.
    pub fn shutdown(&self) {
        let inner = &self.inner;
        if inner.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        for (_, peer) in inner.peers.lock().unwrap().drain() {
            peer.stop.store(true, Ordering::SeqCst);
        }
        // Wake the acceptor.
        let _ = TcpStream::connect_timeout(&inner.local_addr, Duration::from_millis(200));
        for s in inner.accepted.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        let threads: Vec<JoinHandle<()>> = inner.threads.lock().unwrap().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Transport for TcpTransport {
    fn send(&self, msgs: Vec<Message>) {
        let peers = self.inner.peers.lock().unwrap();
        let mut unreachable: Vec<u64> = Vec::new();
        for m in msgs {
            let to = m.to;
            let sent = match peers.get(&to) {
                Some(p) => match p.tx.try_send(Outgoing::Msg(m, Instant::now())) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
                },
                None => false,
            };
            if !sent && !unreachable.contains(&to) {
                unreachable.push(to);
            }
        }
        drop(peers);
        for to in unreachable {
            self.inner.inbox.deliver(Incoming::Unreachable { to });
        }
    }

    fn send_snapshot(&self, msg: Message, file: PathBuf) {
        let to = msg.to;
        let addr = self
            .inner
            .peers
            .lock()
            .unwrap()
            .get(&to)
            .map(|p| p.addr.lock().unwrap().clone());
        let Some(addr) = addr else {
            self.inner.inbox.deliver(Incoming::SnapshotStatus {
                to,
                delivered: false,
            });
            return;
        };
        let inner = Arc::clone(&self.inner);
        let spawned = std::thread::Builder::new()
            .name(format!("raft-snap-{to:x}"))
            .spawn(move || {
                let result = send_snapshot_stream(&inner, &addr, &msg, &file);
                if let Err(e) = &result {
                    tracing::warn!(to = format!("{to:x}"), "snapshot stream failed: {e}");
                }
                inner.inbox.deliver(Incoming::SnapshotStatus {
                    to,
                    delivered: result.is_ok(),
                });
            });
        if spawned.is_err() {
            self.inner.inbox.deliver(Incoming::SnapshotStatus {
                to,
                delivered: false,
            });
        }
    }

    fn tell_removed(&self, to: u64) {
        if let Some(p) = self.inner.peers.lock().unwrap().get(&to) {
            let _ = p.tx.try_send(Outgoing::Removed);
        }
    }

    fn add_peer(&self, id: u64, url: &str) {
        add_peer(&self.inner, id, url);
    }

    fn remove_peer(&self, id: u64) {
        if let Some(p) = self.inner.peers.lock().unwrap().remove(&id) {
            p.stop.store(true, Ordering::SeqCst);
        }
    }
}

fn add_peer(inner: &Arc<Inner>, id: u64, url: &str) {
    if id == inner.cfg.id || inner.stop.load(Ordering::SeqCst) {
        return;
    }
    let addr = url_host_port(url).to_string();
    let mut peers = inner.peers.lock().unwrap();
    if let Some(p) = peers.get(&id) {
        *p.addr.lock().unwrap() = addr;
        return;
    }
    let (tx, rx) = bounded(inner.cfg.peer_queue_msgs_max);
    let peer = Peer {
        tx,
        addr: Arc::new(Mutex::new(addr)),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let writer = Writer {
        inner: Arc::clone(inner),
        to: id,
        addr: Arc::clone(&peer.addr),
        stop: Arc::clone(&peer.stop),
        rx,
    };
    match std::thread::Builder::new()
        .name(format!("raft-peer-{id:x}"))
        .spawn(move || writer.run())
    {
        Ok(h) => {
            peers.insert(id, peer);
            drop(peers);
            inner.threads.lock().unwrap().push(h);
        }
        Err(e) => tracing::error!("cannot start the writer for peer {id:x}: {e}"),
    }
}

fn dial(inner: &Inner, addr: &str) -> io::Result<TcpStream> {
    let sockaddr = addr.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{addr} resolves to nothing"),
        )
    })?;
    let stream = TcpStream::connect_timeout(&sockaddr, inner.cfg.dial_timeout)?;
    stream.set_nodelay(true)?;
    let hello = Hello {
        from: inner.cfg.id,
        cluster: inner.cluster,
        url: inner.cfg.advertise_url.clone(),
    };
    let mut s = &stream;
    frame::write_frame(&mut s, frame::HELLO, &hello.encode())?;
    Ok(stream)
}

struct Writer {
    inner: Arc<Inner>,
    to: u64,
    addr: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    rx: Receiver<Outgoing>,
}

impl Writer {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.inner.stop.load(Ordering::SeqCst)
    }

    /// With an emulated delay, a message is due `one_way_delay` after it was
    /// queued; the first one not yet due is held for the next frame.
    fn due(&self, o: &Outgoing) -> Option<Instant> {
        let delay = self.inner.cfg.one_way_delay;
        match o {
            Outgoing::Msg(_, at) if !delay.is_zero() => Some(*at + delay),
            _ => None,
        }
    }

    fn run(self) {
        let mut conn: Option<BufWriter<TcpStream>> = None;
        let mut backoff = Duration::from_millis(20);
        let mut payload = Vec::new();
        let mut held: Option<Outgoing> = None;
        while !self.stopped() {
            let first = match held.take() {
                Some(o) => o,
                None => match self.rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(o) => o,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
            };
            if let Some(due) = self.due(&first) {
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            // Drain what is queued (and due) into one frame, up to the batch bound.
            payload.clear();
            let mut removed = false;
            let mut next = Some(first);
            while let Some(o) = next.take() {
                match o {
                    Outgoing::Msg(m, _) => {
                        if let Err(e) = frame::push_message(&mut payload, &m) {
                            tracing::error!("cannot encode a message to {:x}: {e}", self.to);
                        }
                    }
                    Outgoing::Removed => removed = true,
                }
                if payload.len() < self.inner.cfg.batch_bytes_max {
                    next = self.rx.try_recv().ok();
                    if next
                        .as_ref()
                        .and_then(|o| self.due(o))
                        .is_some_and(|due| due > Instant::now())
                    {
                        held = next.take();
                    }
                }
            }
            if conn.is_none() {
                let addr = self.addr.lock().unwrap().clone();
                match dial(&self.inner, &addr) {
                    Ok(s) => {
                        conn = Some(BufWriter::with_capacity(256 << 10, s));
                        backoff = Duration::from_millis(20);
                    }
                    Err(e) => {
                        tracing::debug!("dial {:x} at {addr}: {e}", self.to);
                        self.inner
                            .inbox
                            .deliver(Incoming::Unreachable { to: self.to });
                        // What queued meanwhile is stale by the time we retry;
                        // raft resends what matters.
                        std::thread::sleep(backoff);
                        while self.rx.try_recv().is_ok() {}
                        backoff = (backoff * 2).min(self.inner.cfg.backoff_max);
                        continue;
                    }
                }
            }
            let w = conn.as_mut().unwrap();
            let mut result = Ok(());
            if !payload.is_empty() {
                result = frame::write_frame(w, frame::MSGS, &payload);
            }
            if removed && result.is_ok() {
                result = frame::write_frame(w, frame::REMOVED, &[]);
            }
            if let Err(e) = result.and_then(|()| w.flush()) {
                tracing::debug!("write to {:x}: {e}", self.to);
                conn = None;
                self.inner
                    .inbox
                    .deliver(Incoming::Unreachable { to: self.to });
            }
        }
        if let Some(c) = conn {
            if let Ok(s) = c.into_inner() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

fn send_snapshot_stream(inner: &Inner, addr: &str, msg: &Message, path: &PathBuf) -> Result<()> {
    let stream = dial(inner, addr)?;
    stream.set_read_timeout(Some(inner.cfg.snapshot_ack_timeout))?;
    let mut w = BufWriter::with_capacity(1 << 20, &stream);
    frame::write_frame(&mut w, frame::SNAP_HEADER, &msg.write_to_bytes()?)?;
    let mut file = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut chunk = vec![0u8; inner.cfg.snapshot_chunk_bytes];
    loop {
        let n = read_up_to(&mut file, &mut chunk)?;
        if n == 0 {
            break;
        }
        frame::write_frame(&mut w, frame::SNAP_CHUNK, &chunk[..n])?;
    }
    frame::write_frame(&mut w, frame::SNAP_END, &[])?;
    w.flush()?;
    drop(w);
    let mut buf = Vec::new();
    let mut r = &stream;
    match frame::read_frame(&mut r, &mut buf)? {
        frame::SNAP_ACK if buf == [1] => Ok(()),
        frame::SNAP_ACK => Err(Error::Transport("the receiver refused the snapshot".into())),
        k => Err(Error::Transport(format!(
            "unexpected frame {k} instead of a snapshot ack"
        ))),
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    for stream in listener.incoming() {
        if inner.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        if let Ok(clone) = stream.try_clone() {
            let mut accepted = inner.accepted.lock().unwrap();
            // Forget closed connections now and then so the list stays small.
            if accepted.len() > 256 {
                accepted.retain(|s| s.peer_addr().is_ok());
            }
            accepted.push(clone);
        }
        let reader = Arc::clone(&inner);
        let spawned = std::thread::Builder::new()
            .name(format!("raft-read-{:x}", inner.cfg.id))
            .spawn(move || {
                if let Err(e) = read_loop(&reader, stream) {
                    if e.kind() != io::ErrorKind::UnexpectedEof
                        && !reader.stop.load(Ordering::SeqCst)
                    {
                        tracing::debug!("peer connection closed: {e}");
                    }
                }
            });
        if let Ok(h) = spawned {
            let mut threads = inner.threads.lock().unwrap();
            threads.retain(|t| !t.is_finished());
            threads.push(h);
        }
    }
}

fn read_loop(inner: &Arc<Inner>, stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut r = BufReader::with_capacity(256 << 10, &stream);
    let mut buf = Vec::new();
    if frame::read_frame(&mut r, &mut buf)? != frame::HELLO {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "connection does not start with hello",
        ));
    }
    let hello = Hello::decode(&buf)?;
    if hello.cluster != inner.cluster {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("peer {:x} belongs to another cluster", hello.from),
        ));
    }
    if !hello.url.is_empty() && !inner.peers.lock().unwrap().contains_key(&hello.from) {
        add_peer(inner, hello.from, &hello.url);
    }
    loop {
        match frame::read_frame(&mut r, &mut buf)? {
            frame::MSGS => {
                for m in frame::decode_messages(&buf)? {
                    if m.from != hello.from {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "message from another sender",
                        ));
                    }
                    inner.inbox.deliver(Incoming::Message(m));
                }
            }
            frame::REMOVED => inner.inbox.deliver(Incoming::Removed { from: hello.from }),
            frame::SNAP_HEADER => {
                let msg = Message::parse_from_bytes(&buf)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let ok = receive_snapshot(inner, &mut r, &mut buf, &msg);
                let mut w = &stream;
                frame::write_frame(&mut w, frame::SNAP_ACK, &[ok as u8])?;
                if ok {
                    inner.inbox.deliver(Incoming::Message(msg));
                }
                return Ok(());
            }
            k => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected frame kind {k}"),
                ))
            }
        }
    }
}

fn receive_snapshot(inner: &Inner, r: &mut impl Read, buf: &mut Vec<u8>, msg: &Message) -> bool {
    if msg.get_msg_type() != MessageType::MsgSnapshot || msg.to != inner.cfg.id {
        return false;
    }
    let mut rx = match inner.snaps.receive(msg.get_snapshot()) {
        Ok(rx) => rx,
        Err(e) => {
            tracing::warn!("cannot receive snapshot: {e}");
            return false;
        }
    };
    loop {
        match frame::read_frame(r, buf) {
            Ok(frame::SNAP_CHUNK) => {
                if let Err(e) = rx.write_chunk(buf) {
                    tracing::warn!("snapshot stream: {e}");
                    return false;
                }
            }
            Ok(frame::SNAP_END) => break,
            Ok(k) => {
                tracing::warn!("snapshot stream: unexpected frame kind {k}");
                return false;
            }
            Err(e) => {
                tracing::warn!("snapshot stream: {e}");
                return false;
            }
        }
    }
    match rx.finish(&inner.snaps) {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!("received snapshot rejected: {e}");
            false
        }
    }
}
