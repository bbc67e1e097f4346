//! Snapshot files: the state machine's image at an index, with the raft
//! metadata it needs, checksummed, written atomically, and streamed to
//! followers in chunks.
//!
//! File `snap/<term:016x>-<index:016x>.snap` (format in docs/format.md):
//! magic, index, term, conf state, payload length, payload, CRC32C of all of
//! it. The raft `Snapshot` that travels in messages carries only a
//! descriptor (file length and CRC) in its `data`; the file follows on the
//! snapshot stream, so a large image never sits inside one message.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use raft::eraftpb::{Snapshot, SnapshotMetadata};

use crate::error::{Error, Result};
use crate::record::encode_conf_state;

const MAGIC: &[u8; 8] = b"FKVRSNP1";
const DESCRIPTOR_LEN: usize = 12;

/// What travels in `Snapshot.data`: the length and CRC32C of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub file_len: u64,
    pub crc: u32,
}

impl Descriptor {
    /// The descriptor of a snapshot without a file: the state machine's
    /// own storage holds the state durably at the snapshot's index
    /// (`StateMachine::make_durable`). It lets the log before it be
    /// released and is never sent: a follower that needs a snapshot gets
    /// a file taken for it.
    pub const LOCAL: Descriptor = Descriptor {
        file_len: 0,
        crc: 0,
    };

    pub fn is_local(&self) -> bool {
        self.file_len == 0
    }

    pub fn encode(&self) -> Bytes {
        let mut b = Vec::with_capacity(DESCRIPTOR_LEN);
        b.extend_from_slice(&self.file_len.to_le_bytes());
        b.extend_from_slice(&self.crc.to_le_bytes());
        Bytes::from(b)
    }

    pub fn decode(b: &[u8]) -> Option<Descriptor> {
        if b.len() != DESCRIPTOR_LEN {
            return None;
        }
        Some(Descriptor {
            file_len: u64::from_le_bytes(b[..8].try_into().unwrap()),
            crc: u32::from_le_bytes(b[8..].try_into().unwrap()),
        })
    }
}

/// Whether `snap` has no file (its descriptor is `Descriptor::LOCAL`).
pub fn is_local(snap: &Snapshot) -> bool {
    Descriptor::decode(&snap.data).is_some_and(|d| d.is_local())
}

/// A writer that counts the bytes it passes on.
struct CountingWriter<W: Write> {
    inner: W,
    len: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The directory of snapshot files of one node.
#[derive(Clone, Debug)]
pub struct SnapDir {
    dir: PathBuf,
}

fn snap_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Snapshot {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl SnapDir {
    /// Opens (creating) `dir` and removes partial files a crash left behind.
    pub fn open(dir: impl Into<PathBuf>) -> Result<SnapDir> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        for ent in fs::read_dir(&dir)? {
            let path = ent?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                fs::remove_file(&path)?;
            }
        }
        Ok(SnapDir { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_of(&self, index: u64, term: u64) -> PathBuf {
        self.dir.join(format!("{term:016x}-{index:016x}.snap"))
    }

    /// Writes a snapshot file for `meta` whose payload `write_payload`
    /// produces, durably (fsync file, rename, fsync directory), and returns
    /// the raft snapshot describing it.
    pub fn save(
        &self,
        meta: &SnapshotMetadata,
        write_payload: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<Snapshot> {
        let path = self.path_of(meta.index, meta.term);
        let tmp = path.with_extension("tmp");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        let mut w = CountingWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            len: 0,
        };
        let mut header = Vec::with_capacity(64);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&meta.index.to_le_bytes());
        header.extend_from_slice(&meta.term.to_le_bytes());
        encode_conf_state(meta.get_conf_state(), &mut header);
        w.write_all(&header)?;
        // The payload length goes in front of the payload; it is patched in
        // once the payload is written.
        let len_pos = w.len;
        w.write_all(&0u64.to_le_bytes())?;
        let payload_start = w.len;
        write_payload(&mut w)?;
        let payload_len = w.len - payload_start;
        let mut file = w.inner.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(len_pos))?;
        file.write_all(&payload_len.to_le_bytes())?;
        // The CRC is computed over the final bytes in a second sequential
        // pass, cheap next to the fsync, so the patched length is covered.
        file.seek(SeekFrom::Start(0))?;
        let crc = crc_of_reader(
            &mut BufReader::with_capacity(1 << 20, &mut file),
            len_pos + 8 + payload_len,
        )?;
        file.seek(SeekFrom::End(0))?;
        file.write_all(&crc.to_le_bytes())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)?;
        let file_len = len_pos + 8 + payload_len + 4;
        let mut snap = Snapshot::default();
        snap.set_metadata(meta.clone());
        snap.data = Descriptor { file_len, crc }.encode();
        Ok(snap)
    }

    /// Checks a snapshot file end to end and returns its metadata, the
    /// offset and length of its payload, and its descriptor.
    pub fn verify(&self, path: &Path) -> Result<(SnapshotMetadata, u64, u64, Descriptor)> {
        let mut f = File::open(path)?;
        let file_len = f.metadata()?.len();
        if file_len < 8 + 16 + 17 + 8 + 4 {
            return Err(snap_err(
                path,
                format!("file of {file_len} bytes is too short"),
            ));
        }
        let crc = crc_of_reader(&mut BufReader::with_capacity(1 << 20, &mut f), file_len - 4)?;
        let mut trailer = [0u8; 4];
        f.seek(SeekFrom::Start(file_len - 4))?;
        f.read_exact(&mut trailer)?;
        if u32::from_le_bytes(trailer) != crc {
            return Err(snap_err(path, "checksum mismatch"));
        }
        f.seek(SeekFrom::Start(0))?;
        let mut r = BufReader::new(f);
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(snap_err(path, "bad magic"));
        }
        let mut meta = SnapshotMetadata::default();
        meta.index = read_u64(&mut r)?;
        meta.term = read_u64(&mut r)?;
        let mut cs = raft::eraftpb::ConfState::default();
        let mut pos = 8 + 16;
        for i in 0..4 {
            let n = read_u32(&mut r)? as u64;
            pos += 4;
            if n > file_len / 8 {
                return Err(snap_err(path, format!("conf state list of {n} ids")));
            }
            let ids: Vec<u64> = (0..n)
                .map(|_| read_u64(&mut r))
                .collect::<io::Result<_>>()?;
            pos += 8 * n;
            match i {
                0 => cs.voters = ids,
                1 => cs.learners = ids,
                2 => cs.voters_outgoing = ids,
                _ => cs.learners_next = ids,
            }
        }
        let mut b = [0u8; 1];
        r.read_exact(&mut b)?;
        cs.auto_leave = b[0] != 0;
        pos += 1;
        meta.set_conf_state(cs);
        let payload_len = read_u64(&mut r)?;
        pos += 8;
        if pos + payload_len + 4 != file_len {
            return Err(snap_err(
                path,
                format!("payload length {payload_len} does not fit file of {file_len}"),
            ));
        }
        Ok((meta, pos, payload_len, Descriptor { file_len, crc }))
    }

    /// Opens a verified snapshot for reading its payload.
    pub fn open_payload(&self, path: &Path) -> Result<(SnapshotMetadata, impl Read)> {
        let (meta, offset, len, _) = self.verify(path)?;
        let mut f = File::open(path)?;
        f.seek(SeekFrom::Start(offset))?;
        Ok((meta, BufReader::with_capacity(1 << 20, f).take(len)))
    }

    /// The newest snapshot file that verifies, with its raft snapshot.
    /// Damaged files are skipped with a warning: an older intact snapshot
    /// plus the log is still a correct state.
    pub fn latest(&self) -> Result<Option<(Snapshot, PathBuf)>> {
        let mut files = self.list()?;
        files.sort_by_key(|(index, term, _)| (*index, *term));
        while let Some((_, _, path)) = files.pop() {
            match self.verify(&path) {
                Ok((meta, _, _, desc)) => {
                    let mut snap = Snapshot::default();
                    snap.set_metadata(meta);
                    snap.data = desc.encode();
                    return Ok(Some((snap, path)));
                }
                Err(e) => tracing::warn!("skipping damaged snapshot: {e}"),
            }
        }
        Ok(None)
    }

    fn list(&self) -> Result<Vec<(u64, u64, PathBuf)>> {
        let mut out = Vec::new();
        for ent in fs::read_dir(&self.dir)? {
            let path = ent?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(stem) = name.strip_suffix(".snap") else {
                continue;
            };
            let Some((t, i)) = stem.split_once('-') else {
                continue;
            };
            if let (Ok(term), Ok(index)) = (u64::from_str_radix(t, 16), u64::from_str_radix(i, 16))
            {
                out.push((index, term, path));
            }
        }
        Ok(out)
    }

    /// Deletes all but the newest `keep` snapshot files.
    pub fn retain_latest(&self, keep: usize) -> Result<()> {
        let mut files = self.list()?;
        files.sort_by_key(|(index, term, _)| (*index, *term));
        let n = files.len().saturating_sub(keep);
        for (_, _, path) in files.into_iter().take(n) {
            fs::remove_file(path)?;
        }
        Ok(())
    }

    /// Starts receiving the file of `snap` from a snapshot stream.
    pub fn receive(&self, snap: &Snapshot) -> Result<SnapReceiver> {
        let meta = snap.get_metadata();
        let path = self.path_of(meta.index, meta.term);
        let desc = Descriptor::decode(&snap.data)
            .ok_or_else(|| snap_err(&path, "bad descriptor in message"))?;
        let tmp = path.with_extension("tmp");
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        Ok(SnapReceiver {
            w: BufWriter::with_capacity(1 << 20, file),
            len: 0,
            desc,
            tmp,
            path,
        })
    }
}

/// Assembles a snapshot file from stream chunks; `finish` checks it against
/// the descriptor before it becomes visible.
pub struct SnapReceiver {
    w: BufWriter<File>,
    len: u64,
    desc: Descriptor,
    tmp: PathBuf,
    path: PathBuf,
}

impl SnapReceiver {
    pub fn expected_len(&self) -> u64 {
        self.desc.file_len
    }

    pub fn received_len(&self) -> u64 {
        self.len
    }

    pub fn write_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        if self.len + chunk.len() as u64 > self.desc.file_len {
            return Err(snap_err(
                &self.path,
                "stream longer than the descriptor says",
            ));
        }
        self.w.write_all(chunk)?;
        self.len += chunk.len() as u64;
        Ok(())
    }

    /// Verifies length and checksum, makes the file durable and visible.
    pub fn finish(self, dir: &SnapDir) -> Result<PathBuf> {
        if self.len != self.desc.file_len {
            return Err(snap_err(
                &self.path,
                format!(
                    "stream ended at {} of {} bytes",
                    self.len, self.desc.file_len
                ),
            ));
        }
        let file = self.w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        let (_, _, _, desc) = dir.verify(&self.tmp)?;
        if desc != self.desc {
            return Err(snap_err(
                &self.path,
                "received file does not match its descriptor",
            ));
        }
        fs::rename(&self.tmp, &self.path)?;
        sync_dir(&dir.dir)?;
        Ok(self.path)
    }
}

fn crc_of_reader(r: &mut impl Read, mut len: u64) -> io::Result<u32> {
    let mut crc = 0u32;
    let mut buf = vec![0u8; 1 << 16];
    while len > 0 {
        let n = (buf.len() as u64).min(len) as usize;
        r.read_exact(&mut buf[..n])?;
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        len -= n as u64;
    }
    Ok(crc)
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::snapshot_metadata;

    fn meta(index: u64) -> SnapshotMetadata {
        let mut cs = raft::eraftpb::ConfState::default();
        cs.voters = vec![1, 2, 3];
        snapshot_metadata(index, 2, cs)
    }

    #[test]
    fn save_verify_and_stream() {
        let tmp = tempfile::tempdir().unwrap();
        let a = SnapDir::open(tmp.path().join("a")).unwrap();
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let snap = a.save(&meta(10), |w| w.write_all(&payload)).unwrap();
        let (latest, path) = a.latest().unwrap().unwrap();
        assert_eq!(latest, snap);
        let (m, mut r) = a.open_payload(&path).unwrap();
        assert_eq!(m.index, 10);
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        assert_eq!(back, payload);

        // Stream it to another directory in chunks.
        let b = SnapDir::open(tmp.path().join("b")).unwrap();
        let bytes = fs::read(&path).unwrap();
        let mut rx = b.receive(&snap).unwrap();
        for chunk in bytes.chunks(4096) {
            rx.write_chunk(chunk).unwrap();
        }
        let got = rx.finish(&b).unwrap();
        assert_eq!(fs::read(got).unwrap(), bytes);

        // A flipped byte or a short stream is refused.
        let mut bad = bytes.clone();
        bad[5000] ^= 1;
        let mut rx = b.receive(&snap).unwrap();
        rx.write_chunk(&bad).unwrap();
        assert!(rx.finish(&b).is_err());
        let mut rx = b.receive(&snap).unwrap();
        rx.write_chunk(&bytes[..100]).unwrap();
        assert!(rx.finish(&b).is_err());
    }

    #[test]
    fn latest_skips_damaged_and_retain_prunes() {
        let tmp = tempfile::tempdir().unwrap();
        let d = SnapDir::open(tmp.path()).unwrap();
        for i in [5, 10, 15] {
            d.save(&meta(i), |w| w.write_all(&[i as u8; 100])).unwrap();
        }
        let newest = d.path_of(15, 2);
        let mut bytes = fs::read(&newest).unwrap();
        bytes[60] ^= 0xff;
        fs::write(&newest, bytes).unwrap();
        let (snap, _) = d.latest().unwrap().unwrap();
        assert_eq!(snap.get_metadata().index, 10);
        d.retain_latest(1).unwrap();
        assert_eq!(d.list().unwrap().len(), 1);
    }
}
