//! One-shot results: how a caller of the node learns the outcome of a
//! proposal, a read or an administrative request.
//!
//! A [`Pending`] can be waited on by a thread (`wait`, `wait_timeout`) or
//! awaited by an async task (it is a `Future`; no runtime needed). If the
//! node drops the [`Resolver`] without answering (it stopped), the pending
//! result is `Error::Stopped`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

struct Slot<T> {
    value: Option<Result<T>>,
    waker: Option<Waker>,
    resolver_gone: bool,
    receiver_gone: bool,
}

struct Inner<T> {
    slot: Mutex<Slot<T>>,
    cond: Condvar,
}

/// The receiving half.
pub struct Pending<T> {
    inner: Arc<Inner<T>>,
}

/// The sending half, held by the node.
pub struct Resolver<T> {
    inner: Arc<Inner<T>>,
}

/// A connected pair.
pub fn pending<T>() -> (Resolver<T>, Pending<T>) {
    let inner = Arc::new(Inner {
        slot: Mutex::new(Slot {
            value: None,
            waker: None,
            resolver_gone: false,
            receiver_gone: false,
        }),
        cond: Condvar::new(),
    });
    (
        Resolver {
            inner: Arc::clone(&inner),
        },
        Pending { inner },
    )
}

impl<T> Resolver<T> {
    pub fn resolve(self, value: Result<T>) {
        let waker = {
            let mut slot = self.inner.slot.lock();
            slot.value = Some(value);
            slot.waker.take()
        };
        self.inner.cond.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The caller stopped waiting (dropped its `Pending`); the node can
    /// forget this request.
    pub fn is_abandoned(&self) -> bool {
        self.inner.slot.lock().receiver_gone
    }
}

impl<T> Drop for Resolver<T> {
    fn drop(&mut self) {
        let waker = {
            let mut slot = self.inner.slot.lock();
            slot.resolver_gone = true;
            slot.waker.take()
        };
        self.inner.cond.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Pending<T> {
    /// An already answered request.
    pub fn ready(value: Result<T>) -> Pending<T> {
        let (r, p) = pending();
        r.resolve(value);
        p
    }

    fn take(slot: &mut Slot<T>) -> Option<Result<T>> {
        if let Some(v) = slot.value.take() {
            return Some(v);
        }
        slot.resolver_gone.then_some(Err(Error::Stopped))
    }

    /// Blocks until answered.
    pub fn wait(self) -> Result<T> {
        let mut slot = self.inner.slot.lock();
        loop {
            if let Some(v) = Self::take(&mut slot) {
                return v;
            }
            self.inner.cond.wait(&mut slot);
        }
    }

    /// Blocks until answered or `timeout` passed (`Error::Timeout`: the
    /// outcome is unknown).
    pub fn wait_timeout(self, timeout: Duration) -> Result<T> {
        let deadline = Instant::now() + timeout;
        let mut slot = self.inner.slot.lock();
        loop {
            if let Some(v) = Self::take(&mut slot) {
                return v;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout);
            }
            self.inner.cond.wait_until(&mut slot, deadline);
        }
    }
}

impl<T> Drop for Pending<T> {
    fn drop(&mut self) {
        self.inner.slot.lock().receiver_gone = true;
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let mut slot = self.inner.slot.lock();
        if let Some(v) = Self::take(&mut slot) {
            return Poll::Ready(v);
        }
        slot.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_across_threads_and_times_out() {
        let (r, p) = pending::<u32>();
        let t = std::thread::spawn(move || r.resolve(Ok(7)));
        assert_eq!(p.wait().unwrap(), 7);
        t.join().unwrap();

        let (r, p) = pending::<u32>();
        assert!(matches!(
            p.wait_timeout(Duration::from_millis(10)),
            Err(Error::Timeout)
        ));
        assert!(r.is_abandoned());

        let (r, p) = pending::<u32>();
        drop(r);
        assert!(matches!(p.wait(), Err(Error::Stopped)));
    }

    #[test]
    fn is_a_future() {
        let (r, p) = pending::<u32>();
        r.resolve(Ok(3));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut p = Box::pin(p);
        assert!(matches!(p.as_mut().poll(&mut cx), Poll::Ready(Ok(3))));
    }
}
