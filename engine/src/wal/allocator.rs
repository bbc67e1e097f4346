//! Prepares the next segment in the background (etcd's file pipeline), so a
//! roll only opens a file that is already preallocated and durable.

use super::error::{Error, Result};
use super::options::Preallocate;
use super::segment;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

#[derive(Default)]
struct State {
    /// The segment sequence number the writer will need next.
    wanted: Option<u64>,
    ready: Option<(u64, PathBuf)>,
    error: Option<String>,
    stop: bool,
}

pub(crate) struct Allocator {
    state: Mutex<State>,
    cond: Condvar,
}

impl Allocator {
    /// Starts the thread; `ready` is a spare segment recovery found.
    pub fn start(
        dir: PathBuf,
        segment_bytes: u64,
        mode: Preallocate,
        ready: Option<(u64, PathBuf)>,
        wanted: u64,
    ) -> Result<(Arc<Allocator>, JoinHandle<()>)> {
        let a = Arc::new(Allocator {
            state: Mutex::new(State {
                wanted: Some(wanted),
                ready,
                ..State::default()
            }),
            cond: Condvar::new(),
        });
        let me = Arc::clone(&a);
        let handle = std::thread::Builder::new()
            .name("wal-allocator".into())
            .spawn(move || me.run(&dir, segment_bytes, mode))
            .map_err(|e| Error::io(PathBuf::new(), "spawn WAL allocator thread", e))?;
        Ok((a, handle))
    }

    fn run(&self, dir: &Path, segment_bytes: u64, mode: Preallocate) {
        loop {
            let seq = {
                let mut st = self.state.lock().unwrap();
                loop {
                    if st.stop {
                        return;
                    }
                    match (st.wanted, &st.ready) {
                        (Some(w), Some((r, _))) if *r == w => {}
                        (Some(w), _) if st.error.is_none() => break w,
                        _ => {}
                    }
                    st = self.cond.wait(st).unwrap();
                }
            };
            let made = segment::prepare(dir, seq, segment_bytes, mode);
            let mut st = self.state.lock().unwrap();
            match made {
                Ok(path) => st.ready = Some((seq, path)),
                Err(e) => {
                    tracing::error!(error = %e, "preparing a WAL segment failed");
                    st.error = Some(e.to_string());
                }
            }
            drop(st);
            self.cond.notify_all();
        }
    }

    /// Takes segment `seq`, waiting until it is prepared, and asks for the
    /// one after it.
    pub fn take(&self, seq: u64) -> Result<PathBuf, String> {
        let mut st = self.state.lock().unwrap();
        if st.wanted != Some(seq) && st.ready.as_ref().is_none_or(|(r, _)| *r != seq) {
            st.wanted = Some(seq);
            self.cond.notify_all();
        }
        loop {
            if let Some(e) = &st.error {
                return Err(format!("preparing segment {seq:016x} failed: {e}"));
            }
            if st.ready.as_ref().is_some_and(|(r, _)| *r == seq) {
                let (_, path) = st.ready.take().expect("checked");
                st.wanted = Some(seq + 1);
                drop(st);
                self.cond.notify_all();
                return Ok(path);
            }
            if st.stop {
                return Err("the WAL is closing".into());
            }
            st = self.cond.wait(st).unwrap();
        }
    }

    pub fn stop(&self) {
        self.state.lock().unwrap().stop = true;
        self.cond.notify_all();
    }
}
