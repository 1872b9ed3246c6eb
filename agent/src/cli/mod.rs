//! The husklet command line: global options and dispatch to one module per
//! subcommand family.

mod images;
mod node;
mod pods;
mod rootfs;
mod serve;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use husklet::image::space::{DEFAULT_MAX_IMAGE_SIZE, parse_size};
use husklet::image::{Limits, MinFree};

#[derive(Parser)]
#[command(
    name = "husklet",
    version,
    about = "husk's node agent: images, containers, pods"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every husklet command takes.
#[derive(Args, Clone)]
pub struct Global {
    /// State directory (images, content, snapshots, containers).
    #[arg(
        long,
        global = true,
        default_value = "/var/lib/husk",
        env = "HUSK_ROOT"
    )]
    pub root: PathBuf,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// containerd-style registry hosts dir: <DIR>/<host>/hosts.toml.
    #[arg(long, global = true, env = "HUSK_REGISTRY_CONFIG")]
    pub registry_config: Option<PathBuf>,
    /// Docker config.json with registry credentials (default $DOCKER_CONFIG/config.json or ~/.docker/config.json).
    #[arg(long, global = true)]
    pub docker_config: Option<PathBuf>,
    /// Free space pulls and imports leave on the filesystem of --root: SIZE
    /// (bytes, or K, M, G, T: powers of 1024) or N% of the filesystem; 0
    /// turns the check off [default: 5% of the filesystem, at most 1G].
    #[arg(
        long,
        global = true,
        env = "HUSK_IMAGE_MIN_FREE",
        value_name = "SIZE|N%"
    )]
    pub min_free: Option<MinFree>,
    /// Largest unpacked size of one image (the sum of its files' sizes) that
    /// a pull or import accepts: SIZE as for --min-free [default: 64G].
    #[arg(long, global = true, env = "HUSK_MAX_IMAGE_SIZE", value_name = "SIZE", value_parser = parse_max_image_size)]
    pub max_image_size: Option<u64>,
    /// Log debug details to stderr.
    #[arg(long, global = true)]
    pub debug: bool,
}

fn parse_max_image_size(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        0 => Err("must be more than 0".into()),
        n => Ok(n),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Manage images: pull, import, list, inspect, rm, prune.
    #[command(subcommand)]
    Images(images::ImagesCmd),
    /// Container root filesystems (overlay mounts of an image).
    #[command(subcommand)]
    Rootfs(rootfs::RootfsCmd),
    /// Serve CRI v1 (RuntimeService, ImageService) on a unix socket.
    Serve(Box<serve::ServeArgs>),
    /// The pods husklet runs, as `kubectl get pods` shows them.
    Pods(pods::PodsArgs),
    /// A pod's spec summary, conditions, containers, start-up timeline and events.
    Describe(pods::DescribeArgs),
    /// A container's log.
    Logs(pods::LogsArgs),
    /// Run a command in a pod's container and print its output.
    Exec(pods::ExecArgs),
}

pub fn init_tracing(debug: bool) {
    let filter = if debug { "debug" } else { "warn" };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HUSK_LOG")
                .unwrap_or_else(|_| filter.into()),
        )
        .try_init();
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let mut g = cli.global;
    // Once, here: a relative root would break wherever a path is used from
    // another directory (the overlay mount is made from <root>/l).
    g.root =
        std::path::absolute(&g.root).with_context(|| format!("--root {}", g.root.display()))?;
    match cli.command {
        Command::Images(c) => images::run(&g, c),
        Command::Rootfs(c) => rootfs::run(&g, c),
        Command::Serve(a) => serve::run(&g, *a),
        Command::Pods(a) => pods::run_pods(&g, a),
        Command::Describe(a) => pods::run_describe(&g, a),
        Command::Logs(a) => pods::run_logs(a),
        Command::Exec(a) => {
            let code = pods::run_exec(a)?;
            std::process::exit(code);
        }
    }
}

/// Open the image store at the global root with the global limits and
/// registry settings.
pub fn open_store(g: &Global) -> anyhow::Result<husklet::image::ImageStore> {
    let limits = Limits {
        min_free: g.min_free.unwrap_or_default(),
        max_image_size: g.max_image_size.unwrap_or(DEFAULT_MAX_IMAGE_SIZE),
    };
    let store = husklet::image::ImageStore::open_with_limits(&g.root, limits)
        .with_context(|| format!("open image store at {}", g.root.display()))?;
    Ok(store.with_registry_config(husklet::image::RegistryConfig {
        hosts_dir: g.registry_config.clone(),
        docker_config: g.docker_config.clone(),
        ..Default::default()
    }))
}

/// Print a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// An error and its causes on one line. Each is printed as it is: no
/// Display repeats its source (the workspace's convention), and a cause whose
/// text happens to occur in an earlier message is still a cause.
pub fn error_chain(e: &anyhow::Error) -> String {
    format!("{e:#}")
}
