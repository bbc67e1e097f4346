//! The two ways a batch reaches the disk, behind one interface: a write of
//! (optionally) the segment header block and the batch, then an
//! fdatasync that is issued only after the write completed.

use super::fault::Faults;
use super::options::IoPath;
use super::segment::SEGMENT_HEADER_BYTES;
use std::io;
use std::os::fd::RawFd;

/// One batch write. The I/O layer owns the buffers while the write is in
/// flight and hands them back from `wait`, so nothing can touch them while
/// the kernel may still read them.
pub(crate) struct WriteJob {
    pub fd: RawFd,
    pub offset: u64,
    /// The segment's header block, for the first write into a segment
    /// (then `offset` is 0 and the batch follows the block).
    pub header: Option<Box<[u8; SEGMENT_HEADER_BYTES]>>,
    pub batch: Vec<u8>,
}

impl WriteJob {
    pub fn len(&self) -> usize {
        self.header.as_ref().map_or(0, |h| h.len()) + self.batch.len()
    }
}

/// Which step failed, and how.
#[derive(Debug)]
pub(crate) struct IoFailure {
    pub op: &'static str,
    pub error: io::Error,
}

impl std::fmt::Display for IoFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.op, self.error)
    }
}

/// Driven by one thread at a time: whoever holds the writer role.
pub(crate) trait Io {
    fn path(&self) -> IoPath;

    /// Whether `submit` returns before the I/O is done, so the writer can
    /// notify the previous batch's appenders while this one is in flight.
    fn overlaps(&self) -> bool;

    /// Starts the write and its fdatasync. At most one job is in flight.
    fn submit(&mut self, job: WriteJob);

    /// Whether the job in flight has completed, without blocking or a
    /// system call (for timing while the writer does other work).
    fn poll(&mut self) -> bool;

    /// Waits for the job `submit` started; returns its buffers and outcome.
    fn wait(&mut self) -> (WriteJob, Result<(), IoFailure>);
}

/// Counts batch writes for fault injection.
pub(crate) struct FaultCounter {
    faults: Faults,
    writes: u64,
}

impl FaultCounter {
    pub fn new(faults: Faults) -> Self {
        FaultCounter { faults, writes: 0 }
    }

    /// Descriptors for the next batch's write and fdatasync.
    pub fn next(&mut self, fd: RawFd) -> (RawFd, RawFd) {
        self.writes += 1;
        if !self.faults.delay_each_write.is_zero() {
            std::thread::sleep(self.faults.delay_each_write);
        }
        self.faults.fds(self.writes, fd)
    }
}

pub(crate) fn short_write(done: usize, want: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::WriteZero,
        format!("short write: {done} of {want} bytes"),
    )
}
