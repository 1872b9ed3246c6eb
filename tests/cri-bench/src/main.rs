//! `cri-bench`: a CRI v1 client and benchmark.
//!
//! Every run labels what it creates with a run id and removes all of it at
//! the end: after success, after a failed call, and on SIGINT/SIGTERM.

mod cleanup;
mod cli;
mod client;
mod compare;
mod modes;
mod procfs;
mod report;
mod spec;
mod stats;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::cleanup::Tracker;
use crate::cli::{Cli, Command, Output, PodArgs};
use crate::client::CriClient;
use crate::modes::{Outcome, PodRun};
use crate::report::Report;
use crate::spec::PodTemplate;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CRI_BENCH_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cri-bench: start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cri-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Why a mode did not finish.
enum Stop {
    Failed(anyhow::Error),
    Interrupted(&'static str),
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Compare { a, b } = &cli.command {
        let (a, b) = (Report::load(a)?, Report::load(b)?);
        print!("{}", compare::table(&a, &b));
        return Ok(ExitCode::SUCCESS);
    }
    let (client, version) =
        CriClient::connect(&cli.endpoint, Duration::from_secs(cli.timeout)).await?;
    let runtime = format!("{} {}", version.name, version.version);
    tracing::info!("connected to {runtime} (CRI {})", version.api_version);

    match &cli.command {
        Command::List { run } => {
            let left = modes::list::run(&client, run.as_deref()).await?;
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&left)?),
                Output::Table => {
                    for (kind, items) in [
                        ("sandbox", &left.sandboxes),
                        ("container", &left.containers),
                    ] {
                        for o in items {
                            println!(
                                "{kind:<10} {:<16} {:<24} {:<22} {}",
                                o.id.chars().take(13).collect::<String>(),
                                o.run,
                                o.state,
                                o.name
                            );
                        }
                    }
                    for image in &left.images {
                        println!("{:<10} {image}", "image");
                    }
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        Command::Cleanup => {
            let left = modes::list::run(&client, None).await?;
            let mut runs: Vec<&str> = left
                .sandboxes
                .iter()
                .chain(&left.containers)
                .map(|o| o.run.as_str())
                .collect();
            runs.sort_unstable();
            runs.dedup();
            let mut failed = false;
            for r in runs {
                let out = Tracker::new(r).cleanup(&client).await;
                eprintln!(
                    "run {r}: removed {} containers, {} sandboxes",
                    out.containers, out.sandboxes
                );
                for e in &out.errors {
                    eprintln!("cri-bench: cleanup: {e}");
                    failed = true;
                }
            }
            return Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
        }
        _ => {}
    }

    let run_id = spec::new_run_id();
    let tracker = Tracker::new(&run_id);
    let started_at = report::now_rfc3339();
    let Some((mode, count, concurrency)) = mode_of(&cli.command) else {
        anyhow::bail!("not a benchmark mode");
    };

    let work = run_mode(&cli.command, &client, &tracker, &run_id);
    let result = tokio::select! {
        r = work => r.map_err(Stop::Failed),
        s = interrupted() => Err(Stop::Interrupted(s)),
    };
    if let Err(Stop::Interrupted(sig)) = &result {
        eprintln!("cri-bench: {sig}: removing what run {run_id} created");
    }
    let cleaned = tracker.cleanup(&client).await;
    tracing::info!(
        "cleanup of {run_id}: {} containers, {} sandboxes, {} images removed",
        cleaned.containers,
        cleaned.sandboxes,
        cleaned.images
    );
    for e in &cleaned.errors {
        eprintln!("cri-bench: cleanup of run {run_id}: {e}");
    }
    let outcome = match result {
        Ok(o) => o,
        Err(Stop::Failed(e)) => {
            eprintln!("cri-bench: {mode} run {run_id} failed: {e:#}");
            return Ok(ExitCode::FAILURE);
        }
        // The shell convention: 128 + the signal's number.
        Err(Stop::Interrupted(sig)) => {
            return Ok(ExitCode::from(if sig == "SIGTERM" { 143 } else { 130 }));
        }
    };

    let report = Report {
        mode: mode.into(),
        endpoint: cli.endpoint.clone(),
        runtime,
        run_id,
        started_at,
        host: report::host_description(),
        count,
        concurrency,
        ops: outcome.ops,
        metrics: outcome.metrics,
        processes: outcome.processes,
    };
    if let Some(path) = &cli.save {
        std::fs::write(path, report.to_json())
            .with_context(|| format!("write the report to {}", path.display()))?;
    }
    match cli.output {
        Output::Json => println!("{}", report.to_json()),
        Output::Table => print!("{}", report.table()),
    }
    Ok(if cleaned.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A benchmark mode's name, count and concurrency; None for the other commands.
fn mode_of(command: &Command) -> Option<(&'static str, usize, Option<usize>)> {
    match command {
        Command::Lifecycle(p) => Some(("lifecycle", p.count, None)),
        Command::Parallel { pods, concurrency } => {
            Some(("parallel", pods.count, Some(*concurrency)))
        }
        Command::Images { count, .. } => Some(("images", *count, None)),
        Command::Density {
            pods, concurrency, ..
        } => Some(("density", pods.count, Some(*concurrency))),
        Command::List { .. } | Command::Cleanup | Command::Compare { .. } => None,
    }
}

async fn run_mode(
    command: &Command,
    client: &CriClient,
    tracker: &Tracker,
    run_id: &str,
) -> anyhow::Result<Outcome> {
    let pod_run = |mode: &str, p: &PodArgs| -> anyhow::Result<PodRun> {
        if p.cgroup_parent.is_empty() || !p.cgroup_parent.starts_with('/') {
            anyhow::bail!(
                "--cgroup-parent {:?}: must be an absolute cgroup path",
                p.cgroup_parent
            );
        }
        let command: Vec<String> = p.command.split_whitespace().map(String::from).collect();
        if command.is_empty() {
            anyhow::bail!("--command: empty");
        }
        if p.count == 0 {
            anyhow::bail!("--count: must be at least 1");
        }
        Ok(PodRun {
            client: client.clone(),
            tracker: tracker.clone(),
            template: PodTemplate {
                run_id: run_id.into(),
                mode: mode.into(),
                image: p.image.clone(),
                command,
                cgroup_parent: p.cgroup_parent.clone(),
            },
            stop_timeout: p.stop_timeout,
        })
    };
    match command {
        Command::Lifecycle(p) => modes::lifecycle::run(&pod_run("lifecycle", p)?, p.count).await,
        Command::Parallel { concurrency: 0, .. } | Command::Density { concurrency: 0, .. } => {
            anyhow::bail!("--concurrency: must be at least 1")
        }
        Command::Parallel { pods, concurrency } => {
            modes::parallel::run(&pod_run("parallel", pods)?, pods.count, *concurrency).await
        }
        Command::Images { count: 0, .. } => anyhow::bail!("--count: must be at least 1"),
        Command::Images { count, image } => {
            modes::images::run(client, tracker, image, *count).await
        }
        Command::Density {
            pods,
            concurrency,
            settle,
            daemon_pid,
        } => {
            let opts = modes::density::DensityOptions {
                count: pods.count,
                concurrency: *concurrency,
                settle: Duration::try_from_secs_f64(*settle)
                    .map_err(|e| anyhow::anyhow!("--settle {settle}: {e}"))?,
                daemon_pid: *daemon_pid,
            };
            modes::density::run(&pod_run("density", pods)?, &opts).await
        }
        Command::List { .. } | Command::Cleanup | Command::Compare { .. } => {
            anyhow::bail!("not a benchmark mode")
        }
    }
}

/// Resolves on SIGINT or SIGTERM, with the signal's name.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without handlers the default action ends the process; wait forever.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
