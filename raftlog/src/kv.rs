//! A small replicated KV map: the state machine the tests, the process
//! crash test and the benchmark replicate. It is deliberately simple so a
//! failure points at replication, not at the model.
//!
//! Commands: put(key, value) → previous value; get(key) → value (through the
//! log); delete(key) → whether it existed. Every key keeps a version (the
//! number of puts applied to it), so a lost acknowledged put shows up as a
//! version lower than the number of acknowledged puts.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::state_machine::{ApplyError, Committed, Payload, SnapshotImage, StateMachine};

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;
const TAG_GET: u8 = 3;

/// A KV command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvCommand {
    Put { key: Vec<u8>, value: Vec<u8> },
    Delete { key: Vec<u8> },
    Get { key: Vec<u8> },
}

impl KvCommand {
    pub fn encode(&self) -> Bytes {
        let (tag, key, value): (u8, &[u8], &[u8]) = match self {
            KvCommand::Put { key, value } => (TAG_PUT, key, value),
            KvCommand::Delete { key } => (TAG_DELETE, key, &[]),
            KvCommand::Get { key } => (TAG_GET, key, &[]),
        };
        assert!(key.len() <= u16::MAX as usize, "keys are at most 64 KiB");
        let mut b = Vec::with_capacity(3 + key.len() + value.len());
        b.push(tag);
        b.extend_from_slice(&(key.len() as u16).to_le_bytes());
        b.extend_from_slice(key);
        b.extend_from_slice(value);
        Bytes::from(b)
    }

    pub fn decode(b: &[u8]) -> Option<KvCommand> {
        if b.len() < 3 {
            return None;
        }
        let klen = u16::from_le_bytes([b[1], b[2]]) as usize;
        let key = b.get(3..3 + klen)?.to_vec();
        let rest = &b[3 + klen..];
        match b[0] {
            TAG_PUT => Some(KvCommand::Put {
                key,
                value: rest.to_vec(),
            }),
            TAG_DELETE if rest.is_empty() => Some(KvCommand::Delete { key }),
            TAG_GET if rest.is_empty() => Some(KvCommand::Get { key }),
            _ => None,
        }
    }
}

/// Encodes an optional value as a response: 0 = absent, 1 + bytes = present.
pub fn encode_opt(v: Option<&[u8]>) -> Bytes {
    match v {
        None => Bytes::from_static(&[0]),
        Some(v) => {
            let mut b = Vec::with_capacity(1 + v.len());
            b.push(1);
            b.extend_from_slice(v);
            Bytes::from(b)
        }
    }
}

pub fn decode_opt(b: &[u8]) -> Option<Option<Vec<u8>>> {
    match b.first()? {
        0 if b.len() == 1 => Some(None),
        1 => Some(Some(b[1..].to_vec())),
        _ => None,
    }
}

/// The state: key → (value, version), and the last applied index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvState {
    map: BTreeMap<Vec<u8>, (Vec<u8>, u64)>,
    applied: u64,
    /// Commands applied (not counting skipped replays), for tests.
    pub commands_applied: u64,
}

impl KvState {
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(|(v, _)| v.as_slice())
    }

    pub fn version(&self, key: &[u8]) -> u64 {
        self.map.get(key).map_or(0, |(_, ver)| *ver)
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8], u64)> {
        self.map
            .iter()
            .map(|(k, (v, ver))| (k.as_slice(), v.as_slice(), *ver))
    }

    /// A hash of the contents (not of the applied index), equal on every
    /// node that applied the same commands.
    pub fn hash(&self) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for (k, (v, ver)) in &self.map {
            h.update(&(k.len() as u64).to_le_bytes());
            h.update(k);
            h.update(&(v.len() as u64).to_le_bytes());
            h.update(v);
            h.update(&ver.to_le_bytes());
        }
        h.digest()
    }

    /// Applies one command, returning the response bytes.
    pub fn execute(&mut self, cmd: &KvCommand) -> Bytes {
        match cmd {
            KvCommand::Put { key, value } => {
                let slot = self
                    .map
                    .entry(key.clone())
                    .or_insert_with(|| (Vec::new(), 0));
                let had = slot.1 > 0;
                let prev = std::mem::replace(&mut slot.0, value.clone());
                slot.1 += 1;
                encode_opt(had.then_some(prev.as_slice()))
            }
            KvCommand::Delete { key } => Bytes::from(vec![self.map.remove(key).is_some() as u8]),
            KvCommand::Get { key } => encode_opt(self.get(key)),
        }
    }

    fn apply_entry(&mut self, entry: &Committed) -> Result<Bytes, ApplyError> {
        if entry.index <= self.applied {
            // A replay after restart: already reflected.
            return Ok(Bytes::new());
        }
        if self.applied != 0 && entry.index != self.applied + 1 {
            return Err(format!(
                "kv: entry {} after applied {} leaves a gap",
                entry.index, self.applied
            )
            .into());
        }
        self.applied = entry.index;
        match &entry.payload {
            Payload::Command(data) => {
                let cmd = KvCommand::decode(data).ok_or("kv: undecodable command")?;
                self.commands_applied += 1;
                Ok(self.execute(&cmd))
            }
            Payload::Empty | Payload::Membership { .. } => Ok(Bytes::new()),
        }
    }

    fn write_image(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(&(self.map.len() as u64).to_le_bytes())?;
        for (k, (v, ver)) in &self.map {
            out.write_all(&(k.len() as u32).to_le_bytes())?;
            out.write_all(k)?;
            out.write_all(&(v.len() as u32).to_le_bytes())?;
            out.write_all(v)?;
            out.write_all(&ver.to_le_bytes())?;
        }
        out.write_all(&self.commands_applied.to_le_bytes())
    }

    fn read_image(input: &mut dyn Read, index: u64) -> io::Result<KvState> {
        fn u32_of(r: &mut dyn Read) -> io::Result<u32> {
            let mut b = [0u8; 4];
            r.read_exact(&mut b)?;
            Ok(u32::from_le_bytes(b))
        }
        fn u64_of(r: &mut dyn Read) -> io::Result<u64> {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            Ok(u64::from_le_bytes(b))
        }
        fn bytes_of(r: &mut dyn Read) -> io::Result<Vec<u8>> {
            let n = u32_of(r)? as usize;
            if n > 64 << 20 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "kv image: oversized item",
                ));
            }
            let mut v = vec![0u8; n];
            r.read_exact(&mut v)?;
            Ok(v)
        }
        let n = u64_of(input)?;
        let mut map = BTreeMap::new();
        for _ in 0..n {
            let k = bytes_of(input)?;
            let v = bytes_of(input)?;
            let ver = u64_of(input)?;
            map.insert(k, (v, ver));
        }
        let commands_applied = u64_of(input)?;
        Ok(KvState {
            map,
            applied: index,
            commands_applied,
        })
    }
}

/// The KV state behind a shared lock: the apply path writes it, readers
/// (serving linearizable reads after ReadIndex) read it.
#[derive(Clone, Default)]
pub struct SharedKv(pub Arc<Mutex<KvState>>);

impl SharedKv {
    pub fn new() -> SharedKv {
        SharedKv::default()
    }

    pub fn state(&self) -> parking_lot::MutexGuard<'_, KvState> {
        self.0.lock()
    }
}

impl StateMachine for SharedKv {
    fn apply(&mut self, entry: &Committed) -> Result<Bytes, ApplyError> {
        self.0.lock().apply_entry(entry)
    }

    fn applied_index(&self) -> u64 {
        self.0.lock().applied
    }

    fn snapshot(&mut self) -> io::Result<SnapshotImage> {
        // The model is small: a copy is its read snapshot.
        let state = self.0.lock().clone();
        Ok(Box::new(move |out| state.write_image(out)))
    }

    fn restore_snapshot(&mut self, input: &mut dyn Read, index: u64, _term: u64) -> io::Result<()> {
        let state = KvState::read_image(input, index)?;
        *self.0.lock() = state;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(index: u64, cmd: &KvCommand) -> Committed {
        Committed {
            index,
            term: 1,
            proposal: None,
            payload: Payload::Command(cmd.encode()),
        }
    }

    #[test]
    fn commands_round_trip() {
        for cmd in [
            KvCommand::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            },
            KvCommand::Put {
                key: vec![],
                value: vec![],
            },
            KvCommand::Delete { key: b"k".to_vec() },
            KvCommand::Get {
                key: b"abc".to_vec(),
            },
        ] {
            assert_eq!(KvCommand::decode(&cmd.encode()), Some(cmd));
        }
        assert_eq!(KvCommand::decode(&[9, 0, 0]), None);
        assert_eq!(KvCommand::decode(&[1, 5, 0, 1]), None);
    }

    #[test]
    fn apply_skips_replays_and_snapshots_round_trip() {
        let mut kv = SharedKv::new();
        let put = |k: &str, v: &str| KvCommand::Put {
            key: k.into(),
            value: v.into(),
        };
        assert_eq!(&kv.apply(&committed(1, &put("a", "1"))).unwrap()[..], &[0]);
        assert_eq!(
            &kv.apply(&committed(2, &put("a", "2"))).unwrap()[..],
            b"\x011"
        );
        // Replay of index 2 is skipped.
        kv.apply(&committed(2, &put("a", "3"))).unwrap();
        assert_eq!(kv.state().get(b"a"), Some(&b"2"[..]));
        assert_eq!(kv.state().version(b"a"), 2);
        // A gap is an error.
        assert!(kv.apply(&committed(5, &put("a", "4"))).is_err());

        let mut image = Vec::new();
        let writer = kv.snapshot().unwrap();
        // Entries applied after the capture are not in the image.
        kv.apply(&committed(3, &put("b", "1"))).unwrap();
        writer(&mut image).unwrap();
        let mut other = SharedKv::new();
        other.restore_snapshot(&mut image.as_slice(), 2, 1).unwrap();
        assert_eq!(other.state().get(b"b"), None);
        other.apply(&committed(3, &put("b", "1"))).unwrap();
        assert_eq!(*other.state(), *kv.state());
        assert_eq!(other.state().hash(), kv.state().hash());
    }
}
