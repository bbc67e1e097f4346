//! Tickets: how an appender learns that its records are durable.
//!
//! One `Completion` per append, completed once by the writer thread. A
//! thread blocks in `Ticket::wait`; an async task awaits the ticket (it is
//! a `std::future::Future`, no runtime needed); a driver loop can hand a
//! callback to `Ticket::on_durable`, which runs on the writer thread.

use super::error::{Error, Result};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Proof that an append reached the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Durable {
    /// The append's sequence number: appends are numbered 1, 2, … in the
    /// order they entered the queue, which is their order in the log, and
    /// become durable in that order.
    pub seq: u64,
    /// The batch (one write + one fdatasync) that carried it.
    pub batch_seq: u64,
}

/// How an append ended, kept until its ticket takes it.
#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    Durable(Durable),
    Failed(Arc<str>),
}

impl Outcome {
    fn into_result(self) -> Result<Durable> {
        match self {
            Outcome::Durable(d) => Ok(d),
            Outcome::Failed(why) => Err(Error::Failed(why.to_string())),
        }
    }
}

type Callback = Box<dyn FnOnce(Result<Durable>) + Send>;

#[derive(Default)]
struct State {
    outcome: Option<Outcome>,
    waker: Option<Waker>,
    callback: Option<Callback>,
    thread_waiting: bool,
}

#[derive(Default)]
pub(crate) struct Completion {
    done: AtomicBool,
    state: Mutex<State>,
    cond: Condvar,
}

impl Completion {
    /// Called exactly once, by the writer thread.
    pub fn complete(&self, outcome: Outcome) {
        let (waker, callback, notify) = {
            let mut st = self.state.lock().unwrap();
            assert!(st.outcome.is_none(), "an append completed twice");
            self.done.store(true, Ordering::Release);
            let callback = st.callback.take();
            if callback.is_none() {
                st.outcome = Some(outcome.clone());
            }
            (st.waker.take(), callback, st.thread_waiting)
        };
        if notify {
            self.cond.notify_one();
        }
        if let Some(w) = waker {
            w.wake();
        }
        if let Some(cb) = callback {
            cb(outcome.into_result());
        }
    }

    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }
}

/// Lets at most one waiter at a time spin before it sleeps: with more
/// spinners than cores, spinning only delays the writer.
#[derive(Debug)]
pub(crate) struct SpinGate {
    spinners: AtomicU32,
    pub spin: Duration,
}

impl SpinGate {
    pub fn new(spin: Duration) -> Self {
        SpinGate {
            spinners: AtomicU32::new(0),
            spin,
        }
    }

    fn spin_until(&self, done: &AtomicBool) {
        if self.spin.is_zero()
            || self
                .spinners
                .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let deadline = Instant::now() + self.spin;
        let mut i = 0u32;
        while !done.load(Ordering::Acquire) {
            std::hint::spin_loop();
            i = i.wrapping_add(1);
            if i.is_multiple_of(64) && Instant::now() >= deadline {
                break;
            }
        }
        self.spinners.store(0, Ordering::Release);
    }
}

/// The handle an append returns. Dropping it does not cancel the append.
#[must_use = "a ticket says when the append is durable; dropping it does not cancel the append"]
pub struct Ticket {
    completion: Arc<Completion>,
    gate: Arc<SpinGate>,
    seq: u64,
    taken: bool,
}

impl Ticket {
    pub(crate) fn new(completion: Arc<Completion>, gate: Arc<SpinGate>, seq: u64) -> Self {
        Ticket {
            completion,
            gate,
            seq,
            taken: false,
        }
    }

    /// The append's sequence number (see `Durable::seq`).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Whether the outcome is known (`wait` would not block).
    pub fn is_done(&self) -> bool {
        self.completion.is_done()
    }

    /// Blocks until the records are durable or the WAL failed.
    pub fn wait(mut self) -> Result<Durable> {
        if !self.completion.is_done() {
            self.gate.spin_until(&self.completion.done);
        }
        let c = &self.completion;
        let mut st = c.state.lock().unwrap();
        while st.outcome.is_none() {
            st.thread_waiting = true;
            st = c.cond.wait(st).unwrap();
        }
        self.taken = true;
        st.outcome.take().expect("checked").into_result()
    }

    /// Runs `f` with the outcome: at once (on this thread) if it is known,
    /// else on the WAL's writer thread when it is, so `f` must be quick and
    /// must not block on the WAL (a channel send or a waker is fine).
    pub fn on_durable(mut self, f: impl FnOnce(Result<Durable>) + Send + 'static) {
        let c = Arc::clone(&self.completion);
        self.taken = true;
        let mut st = c.state.lock().unwrap();
        match st.outcome.take() {
            Some(o) => {
                drop(st);
                f(o.into_result());
            }
            None => st.callback = Some(Box::new(f)),
        }
    }
}

impl Future for Ticket {
    type Output = Result<Durable>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(!self.taken, "Ticket polled after it completed");
        let c = Arc::clone(&self.completion);
        let mut st = c.state.lock().unwrap();
        match st.outcome.take() {
            Some(o) => {
                drop(st);
                self.taken = true;
                Poll::Ready(o.into_result())
            }
            None => {
                match &st.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => st.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("seq", &self.seq)
            .field("done", &self.is_done())
            .finish()
    }
}
