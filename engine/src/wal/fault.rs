//! Fault injection for tests. The injected faults travel the real error
//! path: the write or fdatasync of the chosen batch is issued on an invalid
//! descriptor, so the kernel itself fails it (EBADF) through the io_uring
//! completion queue or the system call's return value, and the WAL handles
//! it exactly as it would handle EIO from the device.

use std::time::Duration;

#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Fail the fdatasync of the n-th batch write (1-based).
    pub fail_sync_at: Option<u64>,
    /// Fail the write of the n-th batch write (1-based).
    pub fail_write_at: Option<u64>,
    /// Sleep this long before every batch write (slows the writer so tests
    /// can fill the queue).
    pub delay_each_write: Duration,
}

/// An invalid descriptor: the kernel fails any operation on it with EBADF.
pub(crate) const BAD_FD: i32 = -1;

impl Faults {
    /// Descriptors to use for the write and the fdatasync of batch write
    /// number `n` (1-based).
    pub(crate) fn fds(&self, n: u64, fd: i32) -> (i32, i32) {
        let write = if self.fail_write_at == Some(n) {
            BAD_FD
        } else {
            fd
        };
        let sync = if self.fail_sync_at == Some(n) {
            BAD_FD
        } else {
            fd
        };
        (write, sync)
    }
}
