//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A CRI v1 client and benchmark for any CRI endpoint (containerd, CRI-O, husklet).
#[derive(Debug, Parser)]
#[command(name = "cri-bench", version)]
pub struct Cli {
    /// The CRI endpoint: unix:///path/to/socket.
    #[arg(
        long,
        global = true,
        env = "CRI_ENDPOINT",
        default_value = "unix:///run/containerd/containerd.sock"
    )]
    pub endpoint: String,

    /// How to print results.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,

    /// Also write the JSON report to this file.
    #[arg(long, global = true)]
    pub save: Option<PathBuf>,

    /// Timeout of each CRI call, in seconds.
    #[arg(long, global = true, default_value_t = 120)]
    pub timeout: u64,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// N pods one after the other; every call of a pod's life timed.
    Lifecycle(PodArgs),
    /// N pods started with concurrency C; time until all run.
    Parallel {
        #[command(flatten)]
        pods: PodArgs,
        /// Pods started at once.
        #[arg(long, short = 'c', default_value_t = 10)]
        concurrency: usize,
    },
    /// PullImage, ImageStatus, ListImages, RemoveImage, N times.
    Images {
        /// Pull/remove cycles.
        #[arg(long, short = 'n', default_value_t = 10)]
        count: usize,
        /// The image to pull.
        #[arg(long, env = "IMAGE", default_value = DEFAULT_IMAGE)]
        image: String,
    },
    /// N long-running pods; RSS of the daemon (idle and loaded) and of its shims.
    Density {
        #[command(flatten)]
        pods: PodArgs,
        /// Pods started at once.
        #[arg(long, short = 'c', default_value_t = 4)]
        concurrency: usize,
        /// Seconds to wait after the last pod started before reading memory.
        #[arg(long, default_value_t = 2.0)]
        settle: f64,
        /// The CRI daemon's pid (default: the process serving the socket).
        #[arg(long)]
        daemon_pid: Option<i32>,
    },
    /// The sandboxes and containers cri-bench created that still exist, and the runtime's images.
    List {
        /// Only those of this run id.
        #[arg(long)]
        run: Option<String>,
    },
    /// Remove every sandbox and container cri-bench created (all runs).
    Cleanup,
    /// Compare two JSON reports: B's figures as ratios of A's.
    Compare { a: PathBuf, b: PathBuf },
}

/// The test image as `scripts/bench/containerd-cri` serves it.
pub const DEFAULT_IMAGE: &str = "docker.io/husk/busybox:latest";

/// Options of the modes that create pods.
#[derive(Debug, Args)]
pub struct PodArgs {
    /// Number of pods.
    #[arg(long, short = 'n', default_value_t = 10)]
    pub count: usize,
    /// The containers' image.
    #[arg(long, env = "IMAGE", default_value = DEFAULT_IMAGE)]
    pub image: String,
    /// The containers' command, split on spaces.
    #[arg(long, default_value = "sleep 3600")]
    pub command: String,
    /// The pods' cgroup parent (required: pods must not land in the caller's cgroup).
    #[arg(long, env = "CGROUP_PARENT")]
    pub cgroup_parent: String,
    /// StopContainer's timeout in seconds (0 kills at once, as critest's benchmark does).
    #[arg(long, default_value_t = 0)]
    pub stop_timeout: i64,
}
