//! Maintenance.Snapshot: a consistent copy of the backend (the store's
//! `snapshot_to`, which holds exactly what was applied up to one log
//! index) written to a temporary file beside the db, then streamed in
//! chunks with the bytes remaining, and removed. As etcd does, the
//! stream ends with the SHA-256 of the db (32 bytes), which etcdctl's
//! `snapshot save` requires and `snapshot restore` verifies.

use std::io::Read;

use sha2::{Digest, Sha256};
use std::pin::Pin;
use std::sync::Arc;

use proto::etcdserverpb::SnapshotResponse;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::Status;

use crate::errors;
use crate::node::Node;

/// Bytes per SnapshotResponse (etcd sends 32 KiB).
pub const CHUNK_BYTES: usize = 32 * 1024;

pub type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

pub async fn stream(node: Arc<Node>) -> Result<SnapshotStream, Status> {
    let dir = node.cfg.data_dir.join("member").join("snap");
    let n = node.clone();
    let path = tokio::task::spawn_blocking(move || -> Result<std::path::PathBuf, Status> {
        let tmp = tempfile::Builder::new()
            .prefix("snapshot-")
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(errors::unknown)?;
        let mut f = std::io::BufWriter::new(tmp.reopen().map_err(errors::unknown)?);
        n.store()
            .snapshot_to(&mut f)
            .map_err(|e| errors::from_mvcc(&e))?;
        drop(f);
        let (_, path) = tmp.keep().map_err(errors::unknown)?;
        Ok(path)
    })
    .await
    .map_err(errors::unknown)??;
    let (tx, rx) = mpsc::channel(4);
    let header = node.header();
    std::thread::spawn(move || {
        let send = |r| tx.blocking_send(r).is_ok();
        let result = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::open(&path)?;
            let mut remaining = f.metadata()?.len() + 32;
            let mut buf = vec![0u8; CHUNK_BYTES];
            let mut sha = Sha256::new();
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                sha.update(&buf[..n]);
                remaining = remaining.saturating_sub(n as u64);
                let resp = SnapshotResponse {
                    header: Some(header),
                    remaining_bytes: remaining,
                    blob: buf[..n].to_vec(),
                };
                if !send(Ok(resp)) {
                    return Ok(());
                }
            }
            send(Ok(SnapshotResponse {
                header: Some(header),
                remaining_bytes: 0,
                blob: sha.finalize().to_vec(),
            }));
            Ok(())
        })();
        if let Err(e) = result {
            send(Err(errors::unknown(e)));
        }
        let _ = std::fs::remove_file(&path);
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}
