//! The KV model as a network service: what the crash test and the
//! benchmark run against `raftlog-node` processes. A test harness, not the
//! product's API (that is the server crate's etcd v3 gRPC).
//!
//! One TCP connection carries requests answered in order: request
//! `len u32 | op u8 | body`, response `len u32 | status u8 | body`,
//! little-endian. Ops: PUT (`klen u16 | key | value`) → the previous value;
//! GET (`klen u16 | key`) → the value, read after a ReadIndex barrier;
//! STATE → applied index, state hash, role, leader, term, commit; VERSION
//! (`klen u16 | key`) → the key's version (puts applied to it), read
//! locally without a barrier. Status
//! 0 = done, 1 = refused (it did not and will not happen), 2 = unknown
//! (timeout, node stopping: it may or may not happen).

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::error::Error;
use crate::kv::{decode_opt, KvCommand, SharedKv};
use crate::node::Node;

pub const OP_PUT: u8 = 1;
pub const OP_GET: u8 = 2;
pub const OP_STATE: u8 = 3;
pub const OP_VERSION: u8 = 4;

pub const DONE: u8 = 0;
pub const REFUSED: u8 = 1;
pub const UNKNOWN: u8 = 2;

/// Serves one client connection until it closes.
pub fn serve_connection(
    conn: TcpStream,
    node: &Node,
    kv: &SharedKv,
    timeout: Duration,
) -> io::Result<()> {
    conn.set_nodelay(true)?;
    let mut r = BufReader::new(&conn);
    let mut w = BufWriter::new(&conn);
    let mut req = Vec::new();
    loop {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)?;
        let len = u32::from_le_bytes(len) as usize;
        if len == 0 || len > 16 << 20 {
            return Ok(());
        }
        req.resize(len, 0);
        r.read_exact(&mut req)?;
        let (status, body) = handle(&req, node, kv, timeout);
        w.write_all(&((body.len() + 1) as u32).to_le_bytes())?;
        w.write_all(&[status])?;
        w.write_all(&body)?;
        w.flush()?;
    }
}

fn split_key(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let klen = u16::from_le_bytes(body.get(..2)?.try_into().ok()?) as usize;
    let key = body.get(2..2 + klen)?;
    Some((key, &body[2 + klen..]))
}

fn status_of(e: &Error) -> u8 {
    match e {
        Error::NotLeader { .. }
        | Error::Busy(_)
        | Error::CommandTooLarge { .. }
        | Error::ProposalDropped(_) => REFUSED,
        _ => UNKNOWN,
    }
}

fn handle(req: &[u8], node: &Node, kv: &SharedKv, timeout: Duration) -> (u8, Vec<u8>) {
    match req[0] {
        OP_PUT => {
            let Some((key, value)) = split_key(&req[1..]) else {
                return (REFUSED, b"bad request".to_vec());
            };
            let cmd = KvCommand::Put {
                key: key.to_vec(),
                value: value.to_vec(),
            }
            .encode();
            match node.propose(cmd).and_then(|p| p.wait_timeout(timeout)) {
                Ok(resp) => match decode_opt(&resp) {
                    Some(prev) => (DONE, encode_opt(prev.as_deref())),
                    None => (UNKNOWN, b"undecodable response".to_vec()),
                },
                Err(e) => (status_of(&e), e.to_string().into_bytes()),
            }
        }
        OP_GET => {
            let Some((key, _)) = split_key(&req[1..]) else {
                return (REFUSED, b"bad request".to_vec());
            };
            match node.read_index().and_then(|p| p.wait_timeout(timeout)) {
                Ok(_) => (DONE, encode_opt(kv.state().get(key))),
                // A read that did not complete has no effect either way.
                Err(e) => (REFUSED, e.to_string().into_bytes()),
            }
        }
        OP_STATE => {
            let st = node.status();
            let (applied, hash) = {
                let s = kv.state();
                (s.applied(), s.hash())
            };
            let mut b = Vec::with_capacity(41);
            b.extend_from_slice(&applied.to_le_bytes());
            b.extend_from_slice(&hash.to_le_bytes());
            b.push(match st.role {
                raft::StateRole::Leader => 1,
                raft::StateRole::Follower => 0,
                _ => 2,
            });
            b.extend_from_slice(&st.leader_id.to_le_bytes());
            b.extend_from_slice(&st.term.to_le_bytes());
            b.extend_from_slice(&st.commit_index.to_le_bytes());
            (DONE, b)
        }
        OP_VERSION => {
            let Some((key, _)) = split_key(&req[1..]) else {
                return (REFUSED, b"bad request".to_vec());
            };
            (DONE, kv.state().version(key).to_le_bytes().to_vec())
        }
        _ => (REFUSED, b"unknown op".to_vec()),
    }
}

fn encode_opt(v: Option<&[u8]>) -> Vec<u8> {
    match v {
        None => vec![0],
        Some(v) => {
            let mut b = vec![1];
            b.extend_from_slice(v);
            b
        }
    }
}

/// What a request came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Done; the value read, or the value a put replaced.
    Done(Option<Vec<u8>>),
    /// It did not happen (not leader, queue full, ...).
    Refused(String),
    /// It may or may not happen (timeout, connection lost).
    Unknown(String),
}

/// A node's state as STATE reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    pub applied: u64,
    pub hash: u64,
    pub is_leader: bool,
    pub leader: u64,
    pub term: u64,
    pub commit: u64,
}

/// A blocking client of one node.
pub struct KvClient {
    conn: TcpStream,
    buf: Vec<u8>,
}

impl KvClient {
    pub fn connect(addr: &str, timeout: Duration) -> io::Result<KvClient> {
        let sockaddr = std::net::ToSocketAddrs::to_socket_addrs(addr)?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, addr.to_string()))?;
        let conn = TcpStream::connect_timeout(&sockaddr, timeout)?;
        conn.set_nodelay(true)?;
        conn.set_read_timeout(Some(timeout))?;
        Ok(KvClient {
            conn,
            buf: Vec::new(),
        })
    }

    fn call(&mut self, op: u8, key: &[u8], value: &[u8]) -> io::Result<(u8, Vec<u8>)> {
        self.buf.clear();
        let len = 1 + if op == OP_STATE {
            0
        } else {
            2 + key.len() + value.len()
        };
        self.buf.extend_from_slice(&(len as u32).to_le_bytes());
        self.buf.push(op);
        if op != OP_STATE {
            self.buf
                .extend_from_slice(&(key.len() as u16).to_le_bytes());
            self.buf.extend_from_slice(key);
            self.buf.extend_from_slice(value);
        }
        self.conn.write_all(&self.buf)?;
        let mut len = [0u8; 4];
        self.conn.read_exact(&mut len)?;
        let len = u32::from_le_bytes(len) as usize;
        if len == 0 || len > 16 << 20 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad response length",
            ));
        }
        let mut resp = vec![0u8; len];
        self.conn.read_exact(&mut resp)?;
        Ok((resp[0], resp[1..].to_vec()))
    }

    fn reply(r: io::Result<(u8, Vec<u8>)>) -> Reply {
        match r {
            Ok((DONE, body)) => match decode_opt(&body) {
                Some(v) => Reply::Done(v),
                None => Reply::Unknown("undecodable reply".into()),
            },
            Ok((REFUSED, body)) => Reply::Refused(String::from_utf8_lossy(&body).into_owned()),
            Ok((_, body)) => Reply::Unknown(String::from_utf8_lossy(&body).into_owned()),
            Err(e) => Reply::Unknown(e.to_string()),
        }
    }

    /// A put; after an `Unknown` reply the connection should be dropped.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Reply {
        Self::reply(self.call(OP_PUT, key, value))
    }

    /// A linearizable get.
    pub fn get(&mut self, key: &[u8]) -> Reply {
        match Self::reply(self.call(OP_GET, key, &[])) {
            // A read has no effect: an unanswered one simply did not happen.
            Reply::Unknown(e) => Reply::Refused(e),
            r => r,
        }
    }

    /// The key's version on this node (local, no barrier).
    pub fn version(&mut self, key: &[u8]) -> io::Result<u64> {
        let (status, b) = self.call(OP_VERSION, key, &[])?;
        if status != DONE || b.len() != 8 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad VERSION reply",
            ));
        }
        Ok(u64::from_le_bytes(b.try_into().unwrap()))
    }

    pub fn state(&mut self) -> io::Result<NodeState> {
        let (status, b) = self.call(OP_STATE, &[], &[])?;
        if status != DONE || b.len() != 41 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad STATE reply",
            ));
        }
        let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        Ok(NodeState {
            applied: u(0),
            hash: u(8),
            is_leader: b[16] == 1,
            leader: u(17),
            term: u(25),
            commit: u(33),
        })
    }
}
