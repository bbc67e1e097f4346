//! A live progress line on stderr: operations done, rate over the last
//! half second, elapsed time. Hidden when stderr is not a terminal.

use crate::workload::Load;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(500);

pub struct Progress {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    pub fn start(done: Arc<AtomicU64>, load: &Load) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .expect("static template"),
        );
        let horizon = match (load.total, load.duration_s) {
            (Some(t), _) => format!("of {t} measured"),
            (None, Some(d)) => format!("for {:.0} s after {:.0} s warm-up", d, load.warmup_s),
            _ => String::new(),
        };
        let b = bar.clone();
        let task = tokio::spawn(async move {
            let (mut last_n, mut last_t) = (0, Instant::now());
            loop {
                tokio::time::sleep(TICK).await;
                let n = done.load(Ordering::Relaxed);
                let now = Instant::now();
                let rate = (n - last_n) as f64 / now.duration_since(last_t).as_secs_f64();
                (last_n, last_t) = (n, now);
                b.set_message(format!("{n} ops {horizon}  {rate:.0} ops/s"));
                b.tick();
            }
        });
        Self { bar, task }
    }

    pub fn finish(self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}
