//! The `ferrobench` binary: run, campaign, report, gate, profile.

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: bench::alloc::CountingAlloc<mimalloc::MiMalloc> =
    bench::alloc::CountingAlloc(mimalloc::MiMalloc);

#[derive(Parser)]
#[command(
    name = "ferrobench",
    version,
    about = "Benchmarks etcd v3 API servers and the ferrokv engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one workload against etcd v3 endpoints.
    Run(bench::run::RunArgs),
    /// Run a campaign spec: start systems, run the matrix, write results.
    Campaign(bench::campaign::CampaignArgs),
    /// Re-render summary and plots from results JSON, or compare two runs.
    Report(bench::report::ReportArgs),
    /// Regression verdict of current results against a baseline (exit 1 on
    /// regression), or the deterministic callgrind gate.
    Gate(bench::gate::GateArgs),
    /// CPU flamegraph (SVG) of a workload, sampled in-process.
    Profile(bench::profile::ProfileArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Run(_) | Command::Campaign(_) | Command::Profile(_)
    ) {
        // The embedded target reports the engine's heap (bench::alloc).
        bench::alloc::enable();
    }
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    match cli.command {
        Command::Run(args) => runtime()?.block_on(bench::run::main(args)),
        Command::Campaign(args) => runtime()?.block_on(bench::campaign::main(args)).map(|_| ()),
        Command::Report(args) => bench::report::main(args),
        Command::Gate(args) => {
            let code = bench::gate::main(args)?;
            std::process::exit(code);
        }
        Command::Profile(args) => runtime()?.block_on(bench::profile::main(args)),
    }
}
