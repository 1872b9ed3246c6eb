//! The runc-compatible command line: global flags here, one module per command.

mod create;
mod delete;
mod events;
mod exec;
mod features;
mod kill;
mod list;
mod pause;
mod ps;
mod run;
mod spec;
mod start;
mod state;
mod update;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::state::Store;

/// husk: an OCI container runtime (runc-compatible command line).
#[derive(Debug, Parser)]
#[command(name = "husk", version, about, long_about = None)]
pub struct Cli {
    /// Root directory for the containers' state.
    #[arg(long, global = true, default_value = "/run/husk")]
    root: PathBuf,
    /// Log file (errors and warnings are also written there).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text")]
    log_format: LogFormat,
    /// Debug logging.
    #[arg(long, global = true)]
    debug: bool,
    /// Use systemd for cgroups (not supported).
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Accepted for compatibility with runc; husk detects rootless mode itself.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true", hide = true)]
    rootless: Option<String>,
    /// Accepted for compatibility with runc (checkpointing is not supported).
    #[arg(long, global = true, hide = true)]
    criu: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a container (its process waits for `start`).
    Create(create::Args),
    /// Start a created container's process.
    Start(start::Args),
    /// Print a container's OCI state.
    State(state::Args),
    /// Send a signal to a container's init (or every process with --all).
    Kill(kill::Args),
    /// Delete a container.
    Delete(delete::Args),
    /// Create and start a container.
    Run(run::Args),
    /// List containers.
    #[command(alias = "ls")]
    List(list::Args),
    /// List a container's processes.
    Ps(ps::Args),
    /// Run a process in a running container.
    Exec(exec::Args),
    /// Write a default config.json.
    Spec(spec::Args),
    /// Print the runtime's OCI features.
    Features,
    /// Suspend a container's processes.
    Pause(pause::Args),
    /// Resume a paused container.
    Resume(pause::Args),
    /// Change a running container's resource limits.
    Update(update::Args),
    /// Print a container's resource statistics (and OOM events).
    Events(events::Args),
}

/// Parse the command line, run the command, exit with its status.
pub fn main() -> ! {
    let cli = Cli::parse();
    let json = cli.log_format == LogFormat::Json;
    if let Err(e) = crate::logging::init(cli.log.as_deref(), json, cli.debug) {
        eprintln!("husk: open log file: {e}");
    }
    let code = match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            crate::logging::error(&format!("{e:#}"));
            1
        }
    };
    std::process::exit(code)
}

fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    if cli.systemd_cgroup {
        anyhow::bail!(
            "--systemd-cgroup: systemd cgroup management is not supported by husk; use cgroupfs paths"
        );
    }
    let store = Store::new(&cli.root);
    match cli.command {
        Command::Create(a) => create::run(&store, a),
        Command::Start(a) => start::run(&store, a),
        Command::State(a) => state::run(&store, a),
        Command::Kill(a) => kill::run(&store, a),
        Command::Delete(a) => delete::run(&store, a),
        Command::Run(a) => run::run(&store, a),
        Command::List(a) => list::run(&store, a),
        Command::Ps(a) => ps::run(&store, a),
        Command::Exec(a) => exec::run(&store, a),
        Command::Spec(a) => spec::run(a),
        Command::Features => features::run(),
        Command::Pause(a) => pause::run(&store, a, true),
        Command::Resume(a) => pause::run(&store, a, false),
        Command::Update(a) => update::run(&store, a),
        Command::Events(a) => events::run(&store, a),
    }
}
