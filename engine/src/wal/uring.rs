//! The io_uring path: the batch write is linked to an fdatasync
//! (`IORING_OP_WRITEV` with `IOSQE_IO_LINK`, then `IORING_OP_FSYNC` with
//! `IORING_FSYNC_DATASYNC`), submitted with one system call. The writer
//! notifies the previous batch's appenders while this pair is in flight.

use super::fault::Faults;
use super::io::{short_write, FaultCounter, Io, IoFailure, WriteJob};
use super::options::IoPath;
use io_uring::{opcode, squeue, types, IoUring, Probe};
use std::io;

const WRITE: u64 = 1;
const SYNC: u64 = 2;

struct Inflight {
    job: WriteJob,
    /// Heap-pinned: the kernel reads the iovecs at submission, or later
    /// from a worker if the write is punted.
    iov: Box<[libc::iovec; 2]>,
    iov_len: u32,
    /// Bytes of the job already written by earlier (short) writes.
    written: usize,
    sync_fd: i32,
    /// Completions still owed by the kernel for the pair in flight.
    owed: usize,
    write_res: Option<i32>,
    sync_res: Option<i32>,
}

pub(crate) struct Uring {
    ring: IoUring,
    faults: FaultCounter,
    inflight: Option<Inflight>,
}

// SAFETY: the raw pointers in `Inflight` point into buffers that `Inflight`
// itself owns (the boxed iovec array and the job's buffers), not into any
// thread's stack or thread-local state, and the ring is driven by one
// thread at a time (the holder of the writer mutex), which submits and
// reaps each pair before releasing it. Moving the whole struct between
// threads therefore moves the pointees with it.
unsafe impl Send for Uring {}

impl Uring {
    /// Sets up a small ring and checks the two opcodes exist; any error
    /// means "use the portable path".
    pub fn new(faults: Faults) -> io::Result<Self> {
        // A plain ring: the writer role moves between threads (the writer
        // thread, or a thread in `append_wait`), so SINGLE_ISSUER and
        // DEFER_TASKRUN, which tie the ring to one task, do not apply. Each
        // turn submits and reaps on the same thread.
        let ring = IoUring::new(8)?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for code in [opcode::Writev::CODE, opcode::Fsync::CODE] {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("io_uring opcode {code} unsupported"),
                ));
            }
        }
        Ok(Uring {
            ring,
            faults: FaultCounter::new(faults),
            inflight: None,
        })
    }

    fn push_pair(&mut self) -> io::Result<()> {
        let f = self.inflight.as_mut().expect("in flight");
        let mut skip = f.written;
        let parts: [&[u8]; 2] = [
            f.job.header.as_deref().map_or(&[][..], |h| &h[..]),
            &f.job.batch,
        ];
        let mut n = 0;
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            let rest = &part[skip..];
            skip = 0;
            f.iov[n] = libc::iovec {
                iov_base: rest.as_ptr() as *mut libc::c_void,
                iov_len: rest.len(),
            };
            n += 1;
        }
        f.iov_len = n as u32;
        let write = opcode::Writev::new(types::Fd(write_fd(f)), f.iov.as_ptr(), f.iov_len)
            .offset(f.job.offset + f.written as u64)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(WRITE);
        let sync = opcode::Fsync::new(types::Fd(f.sync_fd))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(SYNC);
        f.owed = 2;
        f.write_res = None;
        f.sync_res = None;
        // SAFETY: the entries point at `f.iov` (boxed) and the job's buffers,
        // both owned by `self.inflight` until `wait` has reaped both
        // completions (Drop waits too), so they outlive the kernel's use.
        unsafe {
            let mut sq = self.ring.submission();
            sq.push_multiple(&[write, sync])
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        // If this submit fails (EINTR, EAGAIN), the entries stay queued and
        // `reap`'s submit_and_wait submits them.
        if let Err(e) = self.ring.submit() {
            tracing::debug!(error = %e, "io_uring submit deferred to the wait");
        }
        Ok(())
    }

    /// Takes the completions already posted (the kernel posts them while
    /// this thread runs in user space), without entering the kernel.
    fn reap_ready(&mut self) {
        let f = self.inflight.as_mut().expect("in flight");
        for cqe in self.ring.completion() {
            match cqe.user_data() {
                WRITE => f.write_res = Some(cqe.result()),
                SYNC => f.sync_res = Some(cqe.result()),
                other => panic!("unexpected io_uring completion {other}"),
            }
            f.owed -= 1;
        }
    }

    /// Reaps completions until both of the pair have arrived.
    fn reap(&mut self) -> io::Result<()> {
        loop {
            let owed = self.inflight.as_ref().expect("in flight").owed;
            if owed == 0 {
                return Ok(());
            }
            match self.ring.submit_and_wait(owed) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
            self.reap_ready();
        }
    }
}

fn write_fd(f: &Inflight) -> i32 {
    f.job.fd
}

impl Io for Uring {
    fn path(&self) -> IoPath {
        IoPath::IoUring
    }

    fn overlaps(&self) -> bool {
        true
    }

    fn submit(&mut self, mut job: WriteJob) {
        assert!(self.inflight.is_none(), "one job in flight");
        let (write_fd, sync_fd) = self.faults.next(job.fd);
        job.fd = write_fd;
        self.inflight = Some(Inflight {
            job,
            iov: Box::new(
                [libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                }; 2],
            ),
            iov_len: 0,
            written: 0,
            sync_fd,
            owed: 0,
            write_res: None,
            sync_res: None,
        });
        if let Err(e) = self.push_pair() {
            // Nothing reached the kernel: report it from `wait`.
            let f = self.inflight.as_mut().expect("in flight");
            f.owed = 0;
            f.write_res = Some(-e.raw_os_error().unwrap_or(libc::EIO));
        }
    }

    fn poll(&mut self) -> bool {
        match self.inflight {
            None => true,
            Some(ref f) if f.owed == 0 => true,
            Some(_) => {
                self.reap_ready();
                self.inflight.as_ref().is_some_and(|f| f.owed == 0)
            }
        }
    }

    fn wait(&mut self) -> (WriteJob, Result<(), IoFailure>) {
        let result = loop {
            if let Err(error) = self.reap() {
                // The ring itself failed; the pair may still be in the
                // kernel, so keep the buffers alive (leak) rather than free
                // memory the kernel could read.
                let f = self.inflight.take().expect("in flight");
                let job = WriteJob {
                    fd: f.job.fd,
                    offset: f.job.offset,
                    header: None,
                    batch: Vec::new(),
                };
                std::mem::forget(f);
                return (
                    job,
                    Err(IoFailure {
                        op: "io_uring wait",
                        error,
                    }),
                );
            }
            let f = self.inflight.as_mut().expect("in flight");
            let want = f.job.len() - f.written;
            let wrote = f.write_res.expect("write completion");
            if wrote < 0 {
                break Err(IoFailure {
                    op: "write",
                    error: io::Error::from_raw_os_error(-wrote),
                });
            }
            let wrote = wrote as usize;
            if wrote < want {
                // A short write severs the link (the fdatasync completes
                // with ECANCELED); continue with the rest.
                if wrote == 0 {
                    break Err(IoFailure {
                        op: "write",
                        error: short_write(f.written, f.job.len()),
                    });
                }
                f.written += wrote;
                if let Err(error) = self.push_pair() {
                    break Err(IoFailure { op: "write", error });
                }
                continue;
            }
            let synced = f.sync_res.expect("sync completion");
            if synced < 0 {
                break Err(IoFailure {
                    op: "fdatasync",
                    error: io::Error::from_raw_os_error(-synced),
                });
            }
            break Ok(());
        };
        let f = self.inflight.take().expect("in flight");
        (f.job, result)
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        if self.inflight.is_some() {
            // Never free buffers the kernel may still read.
            if self.reap().is_err() {
                std::mem::forget(self.inflight.take());
            }
        }
    }
}
