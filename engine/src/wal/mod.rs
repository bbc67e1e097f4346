//! A segmented write-ahead log with group commit.
//!
//! Appenders (threads or async tasks) hand records to a single writer that
//! drains everything pending into one write and one fdatasync, submitted
//! through io_uring as a write linked to an fsync with DATASYNC; the next
//! batch fills while a write is in flight. When io_uring cannot be set up,
//! the same writer uses `pwritev` + `fdatasync`. Writing is a role held by
//! one thread at a time: the writer thread, or a thread in
//! `Wal::append_wait` that finds no write in progress and writes its batch
//! itself (no thread hand-off for a lone synchronous appender). Segments are preallocated
//! files of CRC32C-framed records; recovery truncates a torn tail and
//! reports damage anywhere else by segment and offset. A failed write or
//! fdatasync is permanent: that batch's appenders and every later append
//! get an error. The format and the recovery argument are in
//! docs/format.md ("WAL segment file").
//!
//! ```no_run
//! use engine::wal::{Options, Recovery, Wal};
//! let (wal, recovered) = Wal::open("/tmp/example-wal", Options::default())?;
//! // raft: entries (kind 1) superseded by re-appended lower indexes.
//! let log = Recovery::superseded(recovered.records, |kind| kind == 1);
//! let ticket = wal.append(7, 1, b"entry")?; // a Future too; or on_durable(callback)
//! ticket.wait()?; // durable (or an error: the WAL failed)
//! wal.append_wait(8, 1, b"entry")?; // append and wait in one call
//! # Ok::<(), engine::wal::Error>(())
//! ```

mod allocator;
mod completion;
mod error;
mod fault;
mod io;
mod log;
mod metrics;
mod options;
mod portable;
mod queue;
mod record;
mod recovery;
mod segment;
mod uring;
mod writer;

pub use completion::{Durable, Ticket};
pub use error::{Error, Result, TryAppendError};
pub use fault::Faults;
pub use log::{RecordRef, Wal};
pub use metrics::Metrics;
pub use options::{IoMode, IoPath, Options, Preallocate};
pub use record::encoded_len;
pub use recovery::{Record, Recovery, SegmentInfo, TornTail};

/// Format constants, for tools and tests that inspect segment files.
pub mod format {
    pub use super::record::{
        BATCH_RECORD_BYTES, FRAME_BATCH, FRAME_DATA, RECORD_ALIGN, RECORD_HEADER_BYTES,
    };
    pub use super::segment::{file_name, MAGIC, SEGMENT_HEADER_BYTES, VERSION};
}
