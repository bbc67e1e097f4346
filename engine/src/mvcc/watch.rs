//! Watch: etcd's watchableStore with synced, unsynced and victim groups.
//!
//! - *Synced* watchers have seen every revision up to the current one; the
//!   apply path hands them each new revision's events (one response per
//!   revision) right after publishing it.
//! - *Unsynced* watchers start in the past (or fell behind); a store thread
//!   reads their history from the buffers and the backend in bounded steps,
//!   outside the hub lock, and moves them to synced once they caught up.
//!   One whose next revision was compacted gets the compacted error (with
//!   the compact revision) and is canceled.
//! - *Victims* are watchers whose stream queue was full: the response stays
//!   with the watcher and the thread retries it. The apply path never
//!   waits for a reader, so a watcher that never reads costs its own
//!   queue's capacity and one pending response, nothing more, and blocks
//!   neither writes nor other watchers.
//!
//! A `WatchStream` (one per gRPC Watch stream) owns a bounded queue of
//! responses shared by its watchers. It is read with `try_recv`,
//! `recv_timeout` (threads) or `poll_recv` (async code: the queue keeps the
//! task's `Waker`); no async runtime is needed inside the engine.

use super::buffer::ValueReader;
use super::error::{Error, Result};
use super::kv::{decode_kv, KeyValue};
use super::range::read_kv;
use super::rpc::{
    Event, EventType, ResponseHeader, WatchCreateRequest, WatchFilter, WatchResponse,
};
use super::store::Inner;
use crate::index::KeyRange;
use parking_lot::{Condvar, Mutex};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

type WatcherKey = (u64, i64);

/// What the sync thread has left after a round.
pub(crate) enum Pending {
    /// Unsynced watchers: read on at once.
    CatchUp,
    /// Victims waiting for room in their queues.
    Victims,
    Nothing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Group {
    Synced,
    Unsynced,
    Victim,
}

struct Watcher {
    key: Vec<u8>,
    range_end: Vec<u8>,
    next_rev: i64,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    progress_notify: bool,
    group: Group,
    /// Responses a full queue refused (victims only).
    pending: VecDeque<WatchResponse>,
    last_sent: Instant,
    queue: Arc<StreamQueue>,
}

impl Watcher {
    fn range(&self) -> KeyRange<'_> {
        KeyRange::from_etcd(&self.key, &self.range_end)
    }

    fn wants(&self, ev: &Event) -> bool {
        match ev.kind {
            EventType::Put => !self.no_put,
            EventType::Delete => !self.no_delete,
        }
    }
}

struct StreamState {
    queue: Arc<StreamQueue>,
    next_watch_id: i64,
    progress_requested: bool,
}

#[derive(Default)]
struct HubState {
    next_stream_id: u64,
    streams: HashMap<u64, StreamState>,
    watchers: BTreeMap<WatcherKey, Watcher>,
    /// Synced single-key watchers by key, and synced range watchers.
    synced_keys: HashMap<Vec<u8>, BTreeSet<WatcherKey>>,
    synced_ranges: BTreeSet<WatcherKey>,
    unsynced: BTreeSet<WatcherKey>,
    victims: BTreeSet<WatcherKey>,
}

impl HubState {
    fn set_group(&mut self, wk: WatcherKey, group: Group) {
        let Some(w) = self.watchers.get_mut(&wk) else {
            return;
        };
        let old = w.group;
        w.group = group;
        let (single, key) = (w.range_end.is_empty(), w.key.clone());
        self.leave(wk, old, single, &key);
        match group {
            Group::Synced if single => {
                self.synced_keys.entry(key).or_default().insert(wk);
            }
            Group::Synced => {
                self.synced_ranges.insert(wk);
            }
            Group::Unsynced => {
                self.unsynced.insert(wk);
            }
            Group::Victim => {
                self.victims.insert(wk);
            }
        }
    }

    fn leave(&mut self, wk: WatcherKey, group: Group, single: bool, key: &[u8]) {
        match group {
            Group::Synced if single => {
                if let Some(set) = self.synced_keys.get_mut(key) {
                    set.remove(&wk);
                    if set.is_empty() {
                        self.synced_keys.remove(key);
                    }
                }
            }
            Group::Synced => {
                self.synced_ranges.remove(&wk);
            }
            Group::Unsynced => {
                self.unsynced.remove(&wk);
            }
            Group::Victim => {
                self.victims.remove(&wk);
            }
        }
    }

    fn remove(&mut self, wk: WatcherKey) -> Option<Watcher> {
        let w = self.watchers.remove(&wk)?;
        self.leave(wk, w.group, w.range_end.is_empty(), &w.key);
        Some(w)
    }

    /// The revision through which every watcher of `stream` has been sent
    /// everything, if all of them are synced.
    fn stream_progress(&self, stream: u64, current: i64) -> Option<i64> {
        let mut rev = current;
        for (_, w) in self.watchers.range((stream, i64::MIN)..=(stream, i64::MAX)) {
            if w.group != Group::Synced {
                return None;
            }
            rev = rev.min(w.next_rev - 1);
        }
        Some(rev)
    }
}

pub(crate) struct WatchHub {
    state: Mutex<HubState>,
    watcher_count: AtomicUsize,
    /// Wakes the sync thread early when a watcher needs catching up.
    wake: Mutex<bool>,
    wake_cv: Condvar,
}

impl WatchHub {
    pub fn new() -> Self {
        WatchHub {
            state: Mutex::new(HubState::default()),
            watcher_count: AtomicUsize::new(0),
            wake: Mutex::new(false),
            wake_cv: Condvar::new(),
        }
    }

    pub fn wake_sync(&self) {
        *self.wake.lock() = true;
        self.wake_cv.notify_one();
    }

    /// Sleeps until woken or `timeout`.
    pub fn wait_for_work(&self, timeout: Duration) {
        let mut woken = self.wake.lock();
        if !*woken {
            self.wake_cv.wait_for(&mut woken, timeout);
        }
        *woken = false;
    }

    pub fn close_all(&self) {
        let st = self.state.lock();
        for s in st.streams.values() {
            s.queue.close();
        }
    }

    /// Hands the events of revision `rev` to the synced watchers. Called by
    /// the apply path after `rev` is published.
    pub fn notify(&self, inner: &Inner, rev: i64, events: &[Event]) {
        if self.watcher_count.load(Ordering::Relaxed) == 0 || events.is_empty() {
            return;
        }
        let mut st = self.state.lock();
        let mut matched: BTreeMap<WatcherKey, Vec<usize>> = BTreeMap::new();
        for (i, ev) in events.iter().enumerate() {
            if let Some(set) = st.synced_keys.get(&ev.kv.key) {
                for wk in set {
                    matched.entry(*wk).or_default().push(i);
                }
            }
            for wk in &st.synced_ranges {
                if st.watchers[wk].range().contains(&ev.kv.key) {
                    matched.entry(*wk).or_default().push(i);
                }
            }
        }
        if matched.is_empty() {
            return;
        }
        let mut prevs: Vec<Option<Option<KeyValue>>> = vec![None; events.len()];
        let now = inner.opts.clock.now();
        let mut victims = Vec::new();
        for (wk, idxs) in matched {
            let w = st.watchers.get_mut(&wk).expect("matched watchers exist");
            if w.next_rev > rev {
                continue;
            }
            w.next_rev = rev + 1;
            let mut evs = Vec::with_capacity(idxs.len());
            for i in idxs {
                let ev = &events[i];
                if !w.wants(ev) {
                    continue;
                }
                let mut ev = ev.clone();
                if w.prev_kv {
                    ev.prev_kv = prevs[i]
                        .get_or_insert_with(|| prev_kv(inner, &ev.kv.key, rev))
                        .clone();
                }
                evs.push(ev);
            }
            if evs.is_empty() {
                continue;
            }
            let resp = WatchResponse {
                header: ResponseHeader { revision: rev },
                watch_id: wk.1,
                events: evs,
                ..Default::default()
            };
            w.last_sent = now;
            if let Err(resp) = w.queue.try_push(resp) {
                w.pending.push_back(resp);
                victims.push(wk);
            }
        }
        for wk in &victims {
            st.set_group(*wk, Group::Victim);
        }
        if !victims.is_empty() {
            drop(st);
            self.wake_sync();
        }
    }

    /// One round of the sync thread: victims, compaction, catch-up,
    /// progress. Returns what is left to do.
    pub fn sync_round(&self, inner: &Inner) -> Pending {
        self.retry_victims(inner);
        self.cancel_compacted(inner);
        let more = self.catch_up(inner);
        self.send_progress(inner);
        if more {
            Pending::CatchUp
        } else if !self.state.lock().victims.is_empty() {
            Pending::Victims
        } else {
            Pending::Nothing
        }
    }

    fn retry_victims(&self, inner: &Inner) {
        let mut st = self.state.lock();
        let current = inner.current_rev();
        let victims: Vec<WatcherKey> = st.victims.iter().copied().collect();
        for wk in victims {
            let w = st.watchers.get_mut(&wk).expect("victims exist");
            while let Some(resp) = w.pending.pop_front() {
                if let Err(resp) = w.queue.try_push(resp) {
                    w.pending.push_front(resp);
                    break;
                }
            }
            if w.pending.is_empty() {
                let group = if w.next_rev > current {
                    Group::Synced
                } else {
                    Group::Unsynced
                };
                st.set_group(wk, group);
            }
        }
    }

    fn cancel_compacted(&self, inner: &Inner) {
        let compact = inner.compact_rev();
        let mut st = self.state.lock();
        let gone: Vec<WatcherKey> = st
            .unsynced
            .iter()
            .filter(|wk| st.watchers[wk].next_rev < compact)
            .copied()
            .collect();
        for wk in gone {
            let w = st.remove(wk).expect("listed above");
            self.watcher_count.fetch_sub(1, Ordering::Relaxed);
            w.queue.push_control(WatchResponse {
                header: ResponseHeader {
                    revision: inner.current_rev(),
                },
                watch_id: wk.1,
                canceled: true,
                compact_revision: compact,
                cancel_reason: Error::Compacted {
                    compact_revision: compact,
                }
                .to_string(),
                ..Default::default()
            });
        }
    }

    fn catch_up(&self, inner: &Inner) -> bool {
        let (from, to) = {
            let st = self.state.lock();
            let Some(from) = st.unsynced.iter().map(|wk| st.watchers[wk].next_rev).min() else {
                return false;
            };
            let to = inner
                .current_rev()
                .min(from.saturating_add(inner.opts.watch_catchup_revisions_max - 1));
            (from, to)
        };
        if from > to {
            // Everyone is ahead of the store (start revision in the
            // future): they join the synced group now.
            let mut st = self.state.lock();
            let current = inner.current_rev();
            let ready: Vec<WatcherKey> = st
                .unsynced
                .iter()
                .filter(|wk| st.watchers[wk].next_rev > current)
                .copied()
                .collect();
            for wk in ready {
                st.set_group(wk, Group::Synced);
            }
            return !st.unsynced.is_empty();
        }
        let history = match read_history(inner, from, to) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, from, to, "watch catch-up read failed; retrying");
                return true;
            }
        };
        if inner.compact_rev() > from {
            // Compaction ran under the read: the compacted watchers are
            // canceled next round, the others read again.
            return true;
        }
        let mut st = self.state.lock();
        let current = inner.current_rev();
        let now = inner.opts.clock.now();
        let candidates: Vec<WatcherKey> = st
            .unsynced
            .iter()
            .filter(|wk| (from..=to).contains(&st.watchers[wk].next_rev))
            .copied()
            .collect();
        for wk in candidates {
            let w = st.watchers.get_mut(&wk).expect("listed above");
            let responses = batch_for(inner, w, wk.1, &history, to);
            w.next_rev = to + 1;
            let mut refused = false;
            for resp in responses {
                w.last_sent = now;
                if refused {
                    w.pending.push_back(resp);
                } else if let Err(resp) = w.queue.try_push(resp) {
                    w.pending.push_back(resp);
                    refused = true;
                }
            }
            let next = w.next_rev;
            if refused {
                st.set_group(wk, Group::Victim);
            } else if next > current {
                st.set_group(wk, Group::Synced);
            }
        }
        !st.unsynced.is_empty()
    }

    fn send_progress(&self, inner: &Inner) {
        let mut st = self.state.lock();
        let current = inner.current_rev();
        let now = inner.opts.clock.now();
        let interval = inner.opts.watch_progress_interval;
        let st = &mut *st;
        for (wk, w) in st.watchers.iter_mut() {
            if w.progress_notify
                && w.group == Group::Synced
                && now.saturating_duration_since(w.last_sent) >= interval
            {
                let resp = WatchResponse {
                    header: ResponseHeader {
                        revision: w.next_rev - 1,
                    },
                    watch_id: wk.1,
                    ..Default::default()
                };
                if w.queue.try_push(resp).is_ok() {
                    w.last_sent = now;
                }
            }
        }
        let requested: Vec<u64> = st
            .streams
            .iter()
            .filter(|(_, s)| s.progress_requested)
            .map(|(id, _)| *id)
            .collect();
        for id in requested {
            if let Some(rev) = st.stream_progress(id, current) {
                let s = st.streams.get_mut(&id).expect("listed above");
                s.progress_requested = false;
                s.queue.push_control(progress_response(rev));
            }
        }
    }

    pub fn open_stream(&self, inner: &Arc<Inner>) -> WatchStream {
        let queue = Arc::new(StreamQueue::new(inner.opts.watch_queue_capacity));
        let mut st = self.state.lock();
        st.next_stream_id += 1;
        let id = st.next_stream_id;
        st.streams.insert(
            id,
            StreamState {
                queue: queue.clone(),
                next_watch_id: 0,
                progress_requested: false,
            },
        );
        if inner.is_closed() {
            queue.close();
        }
        WatchStream {
            inner: inner.clone(),
            id,
            queue,
        }
    }

    fn create(&self, inner: &Inner, stream: u64, req: &WatchCreateRequest) -> Result<i64> {
        let mut st = self.state.lock();
        let s = st.streams.get_mut(&stream).ok_or(Error::Closed)?;
        let queue = s.queue.clone();
        let id = if req.watch_id != 0 {
            if st.watchers.contains_key(&(stream, req.watch_id)) {
                return Err(Error::DuplicateWatchId);
            }
            req.watch_id
        } else {
            loop {
                let s = st.streams.get_mut(&stream).expect("checked above");
                let id = s.next_watch_id;
                s.next_watch_id += 1;
                if !st.watchers.contains_key(&(stream, id)) {
                    break id;
                }
            }
        };
        let current = inner.current_rev();
        let (next_rev, group) = if req.start_revision <= 0 {
            (current + 1, Group::Synced)
        } else if req.start_revision > current {
            (req.start_revision, Group::Synced)
        } else {
            (req.start_revision, Group::Unsynced)
        };
        // The created response goes first, before any event can.
        queue.push_control(WatchResponse {
            header: ResponseHeader { revision: current },
            watch_id: id,
            created: true,
            ..Default::default()
        });
        let wk = (stream, id);
        st.watchers.insert(
            wk,
            Watcher {
                key: req.key.clone(),
                range_end: req.range_end.clone(),
                next_rev,
                no_put: req.filters.contains(&WatchFilter::NoPut),
                no_delete: req.filters.contains(&WatchFilter::NoDelete),
                prev_kv: req.prev_kv,
                progress_notify: req.progress_notify,
                group,
                pending: VecDeque::new(),
                last_sent: inner.opts.clock.now(),
                queue,
            },
        );
        // Enter the group through set_group so the synced maps are right.
        st.watchers.get_mut(&wk).expect("inserted").group = Group::Victim;
        st.victims.insert(wk);
        st.set_group(wk, group);
        self.watcher_count.fetch_add(1, Ordering::Relaxed);
        drop(st);
        if group == Group::Unsynced {
            self.wake_sync();
        }
        Ok(id)
    }

    fn cancel(&self, inner: &Inner, stream: u64, watch_id: i64) -> bool {
        let mut st = self.state.lock();
        match st.remove((stream, watch_id)) {
            Some(w) => {
                self.watcher_count.fetch_sub(1, Ordering::Relaxed);
                w.queue.push_control(WatchResponse {
                    header: ResponseHeader {
                        revision: inner.current_rev(),
                    },
                    watch_id,
                    canceled: true,
                    ..Default::default()
                });
                true
            }
            None => false,
        }
    }

    fn close_stream(&self, stream: u64) {
        let mut st = self.state.lock();
        let keys: Vec<WatcherKey> = st
            .watchers
            .range((stream, i64::MIN)..=(stream, i64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for wk in keys {
            st.remove(wk);
            self.watcher_count.fetch_sub(1, Ordering::Relaxed);
        }
        st.streams.remove(&stream);
    }
}

fn progress_response(rev: i64) -> WatchResponse {
    WatchResponse {
        header: ResponseHeader { revision: rev },
        watch_id: -1,
        ..Default::default()
    }
}

/// The value of `key` just before revision `rev`, if still stored.
fn prev_kv(inner: &Inner, key: &[u8], rev: i64) -> Option<KeyValue> {
    let before = rev - 1;
    if before < inner.compact_rev() {
        return None;
    }
    let r = inner.index.get(key, before)?;
    let guard = crossbeam_epoch::pin();
    let mut reader =
        ValueReader::new(inner.view.load(&guard), &*inner.backend).cached(&inner.cache);
    read_kv(&mut reader, r, true, inner.compact_rev_cell()).ok()
}

/// Events of revisions `from..=to`, in order, from buffers and backend.
fn read_history(inner: &Inner, from: i64, to: i64) -> Result<Vec<(i64, Event)>> {
    let guard = crossbeam_epoch::pin();
    let mut reader = ValueReader::new(inner.view.load(&guard), &*inner.backend);
    let mut out = Vec::new();
    let mut bad = None;
    reader.scan(
        from,
        to,
        &mut |rev, tombstone, bytes| match decode_kv(bytes) {
            Ok(kv) => {
                let ev = if tombstone {
                    Event {
                        kind: EventType::Delete,
                        kv: KeyValue {
                            key: kv.key.to_vec(),
                            mod_revision: rev.main,
                            ..Default::default()
                        },
                        prev_kv: None,
                    }
                } else {
                    Event {
                        kind: EventType::Put,
                        kv: kv.to_owned(),
                        prev_kv: None,
                    }
                };
                out.push((rev.main, ev));
                true
            }
            Err(e) => {
                bad = Some(format!("record of revision {rev}: {e}"));
                false
            }
        },
    )?;
    match bad {
        Some(why) => Err(Error::Corrupt(why)),
        None => Ok(out),
    }
}

/// The catch-up responses of one watcher: its events of `history`, whole
/// revisions per response, at most the configured events per response
/// unless a single revision has more.
fn batch_for(
    inner: &Inner,
    w: &Watcher,
    watch_id: i64,
    history: &[(i64, Event)],
    to: i64,
) -> Vec<WatchResponse> {
    let max = inner.opts.watch_response_events_max;
    let range = w.range();
    let mut out: Vec<WatchResponse> = Vec::new();
    let mut cur: Vec<Event> = Vec::new();
    let mut cur_rev = 0;
    let start = history.partition_point(|(r, _)| *r < w.next_rev);
    for (rev, ev) in &history[start..] {
        if !range.contains(&ev.kv.key) || !w.wants(ev) {
            continue;
        }
        if *rev != cur_rev && cur.len() >= max {
            out.push(WatchResponse {
                header: ResponseHeader { revision: cur_rev },
                watch_id,
                events: std::mem::take(&mut cur),
                ..Default::default()
            });
        }
        cur_rev = *rev;
        let mut ev = ev.clone();
        if w.prev_kv {
            ev.prev_kv = prev_kv(inner, &ev.kv.key, *rev);
        }
        cur.push(ev);
    }
    if !cur.is_empty() {
        out.push(WatchResponse {
            header: ResponseHeader { revision: to },
            watch_id,
            events: cur,
            ..Default::default()
        });
    }
    out
}

/// A stream's bounded queue of responses.
pub(crate) struct StreamQueue {
    state: Mutex<QueueState>,
    cv: Condvar,
    capacity: usize,
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<WatchResponse>,
    waker: Option<Waker>,
    callback: Option<Arc<dyn Fn() + Send + Sync>>,
    closed: bool,
}

impl StreamQueue {
    fn new(capacity: usize) -> Self {
        StreamQueue {
            state: Mutex::new(QueueState::default()),
            cv: Condvar::new(),
            capacity,
        }
    }

    /// Queues an event response unless the queue is full.
    fn try_push(&self, resp: WatchResponse) -> Result<(), WatchResponse> {
        let mut st = self.state.lock();
        if st.items.len() >= self.capacity {
            return Err(resp);
        }
        st.items.push_back(resp);
        self.wake(st);
        Ok(())
    }

    /// Queues a control response (created, canceled, compacted, progress)
    /// regardless of capacity: these are bounded by the consumer's own
    /// requests, and dropping one would leave it waiting.
    fn push_control(&self, resp: WatchResponse) {
        let mut st = self.state.lock();
        st.items.push_back(resp);
        self.wake(st);
    }

    fn wake(&self, mut st: parking_lot::MutexGuard<'_, QueueState>) {
        let waker = st.waker.take();
        let callback = st.callback.clone();
        drop(st);
        self.cv.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
        if let Some(f) = callback {
            f();
        }
    }

    fn close(&self) {
        let mut st = self.state.lock();
        st.closed = true;
        self.wake(st);
    }
}

/// One watch stream: create and cancel watchers, receive their responses.
/// Dropping it cancels its watchers.
pub struct WatchStream {
    inner: Arc<Inner>,
    id: u64,
    queue: Arc<StreamQueue>,
}

impl WatchStream {
    /// Starts a watcher; its `created` response is queued first. Returns
    /// the watch id.
    pub fn watch(&self, req: &WatchCreateRequest) -> Result<i64> {
        self.inner.watch.create(&self.inner, self.id, req)
    }

    /// Cancels a watcher (a `canceled` response follows); false if unknown.
    pub fn cancel(&self, watch_id: i64) -> bool {
        self.inner.watch.cancel(&self.inner, self.id, watch_id)
    }

    /// Asks for a progress notification (watch id -1) carrying a revision
    /// through which every watcher of the stream has been sent all events;
    /// it is sent once all of them are synced.
    pub fn request_progress(&self) {
        let current = self.inner.current_rev();
        let mut st = self.inner.watch.state.lock();
        match st.stream_progress(self.id, current) {
            Some(rev) => self.queue.push_control(progress_response(rev)),
            None => {
                if let Some(s) = st.streams.get_mut(&self.id) {
                    s.progress_requested = true;
                }
            }
        }
    }

    pub fn try_recv(&self) -> Option<WatchResponse> {
        self.queue.state.lock().items.pop_front()
    }

    /// Waits up to `timeout`; None on timeout or when the store closed and
    /// the queue is drained.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<WatchResponse> {
        let deadline = Instant::now() + timeout;
        let mut st = self.queue.state.lock();
        loop {
            if let Some(r) = st.items.pop_front() {
                return Some(r);
            }
            if st.closed || self.queue.cv.wait_until(&mut st, deadline).timed_out() {
                return st.items.pop_front();
            }
        }
    }

    /// For async callers: Ready(Some) with the next response, Ready(None)
    /// once the store closed and the queue is drained, else Pending with
    /// the task's waker kept for the next push.
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<WatchResponse>> {
        let mut st = self.queue.state.lock();
        if let Some(r) = st.items.pop_front() {
            return Poll::Ready(Some(r));
        }
        if st.closed {
            return Poll::Ready(None);
        }
        st.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Calls `f` from the pushing thread whenever a response is queued; for
    /// consumers that are neither threads nor futures. `f` runs while the
    /// store's watch state is locked: it may signal or `try_recv`, but must
    /// not create or cancel watchers.
    pub fn set_wake_callback(&self, f: impl Fn() + Send + Sync + 'static) {
        self.queue.state.lock().callback = Some(Arc::new(f));
    }

    /// Responses waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queue.state.lock().items.len()
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.inner.watch.close_stream(self.id);
    }
}
