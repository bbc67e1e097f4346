//! `ferrobench-micro <name>`: one micro-workload of the deterministic
//! callgrind gate (`ferrobench gate --callgrind` runs it under valgrind).
//! A binary of its own because it must run on the plain allocator:
//! `ferrobench` wraps its allocator to count heap bytes for the embedded
//! target, and that wrapper's instructions would be counted with the
//! engine's.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let name = std::env::args().nth(1).ok_or_else(|| {
        anyhow::anyhow!(
            "usage: ferrobench-micro <name>; names: {}",
            bench::callgrind::MICRO.join(", ")
        )
    })?;
    bench::callgrind::run_micro(&name)
}
