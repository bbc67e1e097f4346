//! Child process of the WAL crash test (engine/tests/wal_crash.rs).
//!
//! Usage: wal-crash-child <dir> <io_uring|portable>
//!
//! Opens the log, finds where each stream left off, and appends forever
//! from nine streams at once: six threads that append one record and wait
//! (three with `append_wait`, which may write the batch themselves, three
//! with blocking tickets), one that keeps up to 16 batches of 1–4 records in
//! flight (as a raft leader's async append does), one that awaits its
//! tickets as futures, and one that is told by callbacks. After a record is
//! durable it prints "<stream> <n>" on stdout. The parent SIGKILLs it at a
//! random moment.

use engine::wal::{Error, IoMode, RecordRef, Ticket, Wal};
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

const SYNC_STREAMS: u32 = 6;
const PIPELINED: u32 = 6;
const FUTURES: u32 = 7;
const CALLBACKS: u32 = 8;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("dir");
    let io = match args.next().as_deref() {
        Some("portable") => IoMode::Portable,
        _ => IoMode::IoUring,
    };
    let (wal, rec) = open_retrying(&dir, io);
    let mut next: HashMap<u32, u64> = HashMap::new();
    for r in &rec.records {
        let (stream, n) = wal_support::check_payload(&r.payload).expect("intact record");
        next.insert(stream, n + 1);
    }
    drop(rec);
    let wal = Arc::new(wal);
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let ack = move |out: &Mutex<std::io::Stdout>, stream: u32, n: u64| {
        let mut o = out.lock().unwrap();
        writeln!(o, "{stream} {n}").expect("stdout");
        o.flush().expect("flush");
    };
    let start = |s: u32| next.get(&s).copied().unwrap_or(0);
    let mut threads = Vec::new();
    for s in 0..SYNC_STREAMS {
        let (wal, out, mut n) = (Arc::clone(&wal), Arc::clone(&out), start(s));
        threads.push(std::thread::spawn(move || loop {
            wal.append(n, 1, &wal_support::payload(s, n))
                .unwrap()
                .wait()
                .unwrap();
            ack(&out, s, n);
            n += 1;
        }));
    }
    {
        let (wal, out, mut n) = (Arc::clone(&wal), Arc::clone(&out), start(PIPELINED));
        threads.push(std::thread::spawn(move || {
            let mut inflight: VecDeque<(Ticket, u64, u64)> = VecDeque::new();
            let mut size = 1;
            loop {
                if inflight.len() == 16 {
                    let (t, first, end) = inflight.pop_front().unwrap();
                    t.wait().unwrap();
                    for k in first..end {
                        ack(&out, PIPELINED, k);
                    }
                }
                let ps: Vec<Vec<u8>> = (n..n + size)
                    .map(|k| wal_support::payload(PIPELINED, k))
                    .collect();
                let recs: Vec<RecordRef> = ps
                    .iter()
                    .enumerate()
                    .map(|(i, p)| RecordRef {
                        index: n + i as u64,
                        kind: 2,
                        payload: p,
                    })
                    .collect();
                inflight.push_back((wal.append_batch(&recs).unwrap(), n, n + size));
                n += size;
                size = size % 4 + 1;
            }
        }));
    }
    {
        let (wal, out, mut n) = (Arc::clone(&wal), Arc::clone(&out), start(FUTURES));
        threads.push(std::thread::spawn(move || loop {
            let t = wal.append(n, 3, &wal_support::payload(FUTURES, n)).unwrap();
            block_on(t).unwrap();
            ack(&out, FUTURES, n);
            n += 1;
        }));
    }
    {
        let (wal, out, mut n) = (Arc::clone(&wal), Arc::clone(&out), start(CALLBACKS));
        threads.push(std::thread::spawn(move || {
            let (tx, rx) = mpsc::channel();
            loop {
                let tx = tx.clone();
                wal.append(n, 4, &wal_support::payload(CALLBACKS, n))
                    .unwrap()
                    .on_durable(move |r| tx.send(r.map(|_| ())).unwrap());
                rx.recv().unwrap().unwrap();
                ack(&out, CALLBACKS, n);
                n += 1;
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
}

struct ThreadWaker(std::thread::Thread);
impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// Opens the log, waiting while the lock is held: the parent test runs two
/// crash loops in parallel threads, and a fork of one briefly inherits the
/// other's lock descriptor until it execs.
fn open_retrying(dir: &str, io: IoMode) -> (Wal, engine::wal::Recovery) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Wal::open(dir, wal_support::small(io)) {
            Ok(v) => return v,
            Err(Error::Locked(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => panic!("open: {e}"),
        }
    }
}

#[path = "../../tests/wal_support/mod.rs"]
mod wal_support;
