//! The portable path: `pwritev` then `fdatasync`, on the writer thread.

use super::fault::Faults;
use super::io::{short_write, FaultCounter, Io, IoFailure, WriteJob};
use super::options::IoPath;
use std::io;

pub(crate) struct Portable {
    faults: FaultCounter,
    done: Option<(WriteJob, Result<(), IoFailure>)>,
}

impl Portable {
    pub fn new(faults: Faults) -> Self {
        Portable {
            faults: FaultCounter::new(faults),
            done: None,
        }
    }
}

impl Io for Portable {
    fn path(&self) -> IoPath {
        IoPath::Portable
    }

    fn overlaps(&self) -> bool {
        false
    }

    fn submit(&mut self, job: WriteJob) {
        assert!(self.done.is_none(), "one job in flight");
        let (write_fd, sync_fd) = self.faults.next(job.fd);
        let result = write_all(write_fd, &job).and_then(|()| {
            // SAFETY: fdatasync takes no memory; an invalid descriptor only
            // makes it fail with EBADF.
            let rc = unsafe { libc::fdatasync(sync_fd) };
            if rc == 0 {
                Ok(())
            } else {
                Err(IoFailure {
                    op: "fdatasync",
                    error: io::Error::last_os_error(),
                })
            }
        });
        self.done = Some((job, result));
    }

    fn poll(&mut self) -> bool {
        true
    }

    fn wait(&mut self) -> (WriteJob, Result<(), IoFailure>) {
        self.done.take().expect("wait without submit")
    }
}

/// `pwritev` of the header block and the batch, continuing after partial
/// writes (a regular file may return short under memory pressure; a write
/// that makes no progress is an error).
fn write_all(fd: i32, job: &WriteJob) -> Result<(), IoFailure> {
    let want = job.len();
    let mut done = 0usize;
    while done < want {
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 2];
        let mut n = 0;
        let mut skip = done;
        let parts: [&[u8]; 2] = [
            job.header.as_deref().map_or(&[][..], |h| &h[..]),
            &job.batch,
        ];
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            let rest = &part[skip..];
            skip = 0;
            iov[n] = libc::iovec {
                iov_base: rest.as_ptr() as *mut libc::c_void,
                iov_len: rest.len(),
            };
            n += 1;
        }
        // SAFETY: the iovecs point into `job`'s buffers, which outlive the
        // call; the kernel only reads them.
        let rc = unsafe {
            libc::pwritev(
                fd,
                iov.as_ptr(),
                n as i32,
                (job.offset + done as u64) as i64,
            )
        };
        if rc < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(IoFailure { op: "write", error });
        }
        if rc == 0 {
            return Err(IoFailure {
                op: "write",
                error: short_write(done, want),
            });
        }
        done += rc as usize;
    }
    Ok(())
}
