//! `ferrokv`: an etcd-compatible key-value store.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let flags = server::config::Flags::parse();
    let config = match flags.validate() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferrokv: error verifying flags, {e}. See 'ferrokv --help'.");
            std::process::exit(1);
        }
    };
    println!("{config:?}");
    Ok(())
}
