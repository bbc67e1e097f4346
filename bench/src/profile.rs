//! `ferrobench profile`: a CPU flamegraph (SVG) of a workload, sampled
//! in-process with pprof (SIGPROF timer, no perf needed). With the embedded
//! target the profile is the engine itself serving the workload; with an
//! endpoint list (etcd, whose Go process pprof cannot sample from here) it
//! is ferrobench's client side: request encoding, HTTP/2, the tonic stack.

use crate::embedded::EmbeddedTarget;
use crate::grpc::GrpcTarget;
use crate::run::{run_target, RunArgs};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Clone, Debug)]
pub struct ProfileArgs {
    /// `embedded` (engine in-process) or `endpoints` (client side of
    /// --endpoints).
    #[arg(long, default_value = "embedded")]
    pub target: String,
    /// Samples per second.
    #[arg(long, default_value_t = 499)]
    pub frequency: i32,
    /// The flamegraph SVG to write.
    #[arg(long, default_value = "flamegraphs/embedded-put.svg")]
    pub svg: PathBuf,
    /// Scratch dir for the embedded store.
    #[arg(long, default_value = "target/ferrobench-data/profile")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub run: RunArgs,
}

pub async fn main(args: ProfileArgs) -> anyhow::Result<()> {
    let wl = args.run.workload();
    let load = args.run.load();
    wl.validate().map_err(anyhow::Error::msg)?;
    load.validate().map_err(anyhow::Error::msg)?;
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(args.frequency)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()?;
    let (outcome, title) = match args.target.as_str() {
        "embedded" => {
            let _ = std::fs::remove_dir_all(&args.data_dir);
            let t = EmbeddedTarget::open(&args.data_dir)?;
            let o = run_target(&t, &wl, &load, true, !args.run.no_progress).await?;
            drop(t);
            let _ = std::fs::remove_dir_all(&args.data_dir);
            (
                o,
                format!("embedded engine, {} c{}", wl.label(), load.clients),
            )
        }
        "endpoints" => {
            let t = GrpcTarget::connect(&args.run.endpoints, load.conns).await?;
            let o = run_target(&t, &wl, &load, !args.run.no_preload, !args.run.no_progress).await?;
            (
                o,
                format!(
                    "ferrobench client side against {}, {} c{}",
                    args.run.endpoints.join(","),
                    wl.label(),
                    load.clients
                ),
            )
        }
        other => anyhow::bail!("unknown profile target {other:?} (embedded | endpoints)"),
    };
    let report = guard.report().build()?;
    if let Some(parent) = args.svg.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let file = std::fs::File::create(&args.svg)?;
    let mut opts = pprof::flamegraph::Options::default();
    opts.title = format!("{title}: {:.0} ops/s", outcome.throughput);
    report.flamegraph_with_options(file, &mut opts)?;
    eprintln!(
        "{:.0} ops/s; wrote {}",
        outcome.throughput,
        args.svg.display()
    );
    Ok(())
}
