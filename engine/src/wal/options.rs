//! Open options with documented defaults and a `validate()` step.

use super::error::{Error, Result};
use super::record::{BATCH_RECORD_BYTES, RECORD_HEADER_BYTES};
use super::segment::SEGMENT_HEADER_BYTES;
use std::time::Duration;

/// Which system calls carry the batches to the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoMode {
    /// Default: io_uring if a ring can be set up (and supports linked
    /// write + fsync), the portable path otherwise.
    Auto,
    /// io_uring or fail to open (`Error::IoUringUnavailable`).
    IoUring,
    /// `pwritev` + `fdatasync` on the writer thread.
    Portable,
}

/// The path actually in use, reported by `Wal::io_path` and in the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoPath {
    IoUring,
    Portable,
}

impl IoPath {
    pub fn name(self) -> &'static str {
        match self {
            IoPath::IoUring => "io_uring",
            IoPath::Portable => "portable",
        }
    }
}

/// How a new segment file is prepared before it is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preallocate {
    /// Default. `fallocate`, then write zeros over the whole file and
    /// fdatasync once. The extents are then "written", so an fdatasync
    /// after an append only flushes data: no journal commit to convert an
    /// unwritten extent (on ext4 that conversion made every fdatasync about
    /// 1.5× slower on the reference machine; see results/wal.md).
    ZeroFill,
    /// `fallocate` only (etcd's choice): cheaper to prepare, dearer to sync.
    Fallocate,
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Size of every segment file in bytes; a multiple of 4096. Default 64 MiB.
    pub segment_bytes: u64,
    /// Longest record payload. Default 8 MiB.
    pub record_bytes_max: usize,
    /// Bound of the queue of records waiting for the next write, in encoded
    /// bytes. One write carries at most this much; an appender that would
    /// exceed it blocks (`append`) or is refused (`try_append`). A single
    /// append may not be larger. Default 16 MiB.
    pub queue_bytes_max: usize,
    /// Bound of the number of appends waiting for the next write. Default 65536.
    pub queue_appends_max: usize,
    /// Default `IoMode::Auto`.
    pub io: IoMode,
    /// Default `Preallocate::ZeroFill`.
    pub preallocate: Preallocate,
    /// The writer polls for new records this long before it sleeps, so a
    /// closed-loop appender's next record does not pay a thread wake-up.
    /// Default 50 µs; zero disables it.
    pub writer_spin: Duration,
    /// A thread waiting in `Ticket::wait` polls this long before it sleeps
    /// (at most one waiter spins at a time). Default 50 µs; zero disables it.
    pub waiter_spin: Duration,
    /// Whether the writer may tell a durable batch's appenders while the
    /// next batch is in flight (io_uring only): `None` (default) decides
    /// per batch from measured costs, `Some(false)` never, `Some(true)`
    /// always. For experiments.
    #[doc(hidden)]
    pub overlap: Option<bool>,
    /// Fault injection for tests; inert by default.
    #[doc(hidden)]
    pub faults: super::fault::Faults,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: 64 << 20,
            record_bytes_max: 8 << 20,
            queue_bytes_max: 16 << 20,
            queue_appends_max: 65536,
            io: IoMode::Auto,
            preallocate: Preallocate::ZeroFill,
            writer_spin: Duration::from_micros(50),
            waiter_spin: Duration::from_micros(50),
            overlap: None,
            faults: Default::default(),
        }
    }
}

/// Every offset and size in a segment is a multiple of this.
pub const SEGMENT_ALIGN: u64 = 4096;

impl Options {
    pub fn validate(&self) -> Result<()> {
        let bad = |s: String| Err(Error::InvalidOptions(s));
        if !self.segment_bytes.is_multiple_of(SEGMENT_ALIGN)
            || self.segment_bytes < 4 * SEGMENT_ALIGN
        {
            return bad(format!(
                "segment_bytes {} is not a multiple of 4096 of at least 16 KiB",
                self.segment_bytes
            ));
        }
        if self.record_bytes_max == 0 || self.record_bytes_max > u32::MAX as usize / 2 {
            return bad(format!(
                "record_bytes_max {} is zero or beyond 2 GiB",
                self.record_bytes_max
            ));
        }
        if self.queue_bytes_max < RECORD_HEADER_BYTES + self.record_bytes_max + 8 {
            return bad(format!(
                "queue_bytes_max {} cannot hold one record of record_bytes_max {}",
                self.queue_bytes_max, self.record_bytes_max
            ));
        }
        // Any queued batch must fit into an empty segment, so a roll always
        // makes room.
        let need =
            SEGMENT_HEADER_BYTES as u64 + BATCH_RECORD_BYTES as u64 + self.queue_bytes_max as u64;
        if need > self.segment_bytes {
            return bad(format!(
                "queue_bytes_max {} does not fit into a segment of {} bytes (needs {need})",
                self.queue_bytes_max, self.segment_bytes
            ));
        }
        if self.queue_appends_max == 0 {
            return bad("queue_appends_max is zero".into());
        }
        Ok(())
    }
}
