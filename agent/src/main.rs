//! `husklet`: husk's node agent. Each subcommand family is its own module
//! under `cli/` (`images`, `rootfs`; later `run`, `cri`, ...).

mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    cli::init_tracing(args.global.debug);
    if let Err(e) = cli::run(args) {
        eprintln!("husklet: {}", cli::error_chain(&e));
        std::process::exit(1);
    }
}
