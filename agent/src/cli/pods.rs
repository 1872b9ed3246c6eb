//! `husklet pods`, `describe pod`, `logs` and `exec`: the pods a running
//! `husklet serve` reports (its pod files under `--state`), as kubectl
//! shows them.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::Args;
use husklet::pod::report_file::{self, PodFile};
use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus};

use super::{Global, Output, print_json};

/// Where to find the agent's pod files.
#[derive(Args, Clone)]
pub struct StateArg {
    /// husklet serve's --state.
    #[arg(long, default_value = "/run/husk")]
    pub state: PathBuf,
}

#[derive(Args)]
pub struct PodsArgs {
    #[command(flatten)]
    pub state: StateArg,
}

#[derive(Args)]
pub struct DescribeArgs {
    /// `pod`.
    #[arg(value_parser = ["pod", "pods", "po"])]
    pub kind: String,
    pub name: String,
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub state: StateArg,
}

#[derive(Args)]
pub struct LogsArgs {
    pub pod: String,
    #[arg(long, short = 'c')]
    pub container: Option<String>,
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Keep printing new lines.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// The previous instance's log.
    #[arg(long, short = 'p')]
    pub previous: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
    #[command(flatten)]
    pub state: StateArg,
}

#[derive(Args)]
pub struct ExecArgs {
    pub pod: String,
    #[arg(long, short = 'c')]
    pub container: Option<String>,
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// husklet's CRI socket.
    #[arg(long, default_value = "unix:///run/husk/husklet.sock")]
    pub endpoint: String,
    #[arg(long, default_value_t = 0)]
    pub timeout: i64,
    #[command(flatten)]
    pub state: StateArg,
    #[arg(last = true, required = true)]
    pub cmd: Vec<String>,
}

fn pods(state: &Path) -> Vec<PodFile> {
    report_file::read_all(&report_file::dir(state))
}

fn find(state: &Path, name: &str, ns: Option<&str>) -> anyhow::Result<PodFile> {
    let all = pods(state);
    let mut hits = all.into_iter().filter(|p| {
        p.pod.metadata.name.as_deref() == Some(name)
            && ns.is_none_or(|ns| p.pod.metadata.namespace.as_deref() == Some(ns))
    });
    match (hits.next(), hits.next()) {
        (Some(p), None) => Ok(p),
        (Some(_), Some(_)) => bail!("pod {name:?} is in several namespaces: give -n"),
        _ => bail!("pod {name:?} not found"),
    }
}

/// kubectl's STATUS column.
pub fn status_word(p: &PodFile) -> String {
    let st = &p.status;
    if p.error.is_some() {
        return "Invalid".into();
    }
    if p.stage == "Terminating" {
        return "Terminating".into();
    }
    let mut reason = st.reason.clone().or(st.phase.clone()).unwrap_or_default();
    let init = st.init_container_statuses.as_deref().unwrap_or_default();
    for (i, c) in init.iter().enumerate() {
        let s = c.state.clone().unwrap_or_default();
        if let Some(t) = s.terminated {
            if t.exit_code == 0 {
                continue;
            }
            return format!(
                "Init:{}",
                t.reason
                    .unwrap_or_else(|| format!("ExitCode:{}", t.exit_code))
            );
        }
        if let Some(w) = s.waiting {
            if let Some(r) = w
                .reason
                .filter(|r| r != "PodInitializing" && r != "ContainerCreating")
            {
                return format!("Init:{r}");
            }
        }
        if c.started == Some(true) && init_is_sidecar(p, &c.name) {
            continue;
        }
        return format!("Init:{i}/{}", init.len());
    }
    for c in st.container_statuses.iter().flatten().rev() {
        let s = c.state.clone().unwrap_or_default();
        if let Some(w) = s.waiting.and_then(|w| w.reason) {
            reason = w;
        } else if let Some(t) = s.terminated {
            reason = t
                .reason
                .unwrap_or_else(|| format!("ExitCode:{}", t.exit_code));
        }
    }
    reason
}

fn init_is_sidecar(p: &PodFile, name: &str) -> bool {
    p.pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .any(|c| c.name == name && c.restart_policy.as_deref() == Some("Always"))
}

fn ready(st: &PodStatus) -> (usize, usize) {
    let cs = st.container_statuses.as_deref().unwrap_or_default();
    (cs.iter().filter(|c| c.ready).count(), cs.len())
}

fn restarts(st: &PodStatus) -> i32 {
    st.container_statuses
        .iter()
        .flatten()
        .chain(st.init_container_statuses.iter().flatten())
        .map(|c| c.restart_count)
        .sum()
}

fn age(p: &PodFile) -> String {
    let Some(t) = p.status.start_time.as_ref() else {
        return "-".into();
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let secs = (now - t.0.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

pub fn run_pods(g: &Global, a: PodsArgs) -> anyhow::Result<()> {
    let all = pods(&a.state.state);
    if g.output == Output::Json {
        return print_json(&all);
    }
    println!(
        "{:<32} {:<6} {:<24} {:<9} {:<6} IP",
        "NAME", "READY", "STATUS", "RESTARTS", "AGE"
    );
    for p in &all {
        let (r, n) = ready(&p.status);
        println!(
            "{:<32} {:<6} {:<24} {:<9} {:<6} {}",
            p.pod.metadata.name.as_deref().unwrap_or("?"),
            format!("{r}/{n}"),
            status_word(p),
            restarts(&p.status),
            age(p),
            p.status.pod_ip.as_deref().unwrap_or("<none>")
        );
    }
    Ok(())
}

fn state_line(c: &ContainerStatus) -> String {
    let s = c.state.clone().unwrap_or_default();
    if let Some(r) = s.running {
        format!(
            "Running (since {})",
            r.started_at.map(|t| t.0.to_string()).unwrap_or_default()
        )
    } else if let Some(t) = s.terminated {
        format!(
            "Terminated: {} (exit code {}){}",
            t.reason.unwrap_or_default(),
            t.exit_code,
            t.message.map(|m| format!(": {m}")).unwrap_or_default()
        )
    } else if let Some(w) = s.waiting {
        format!(
            "Waiting: {}{}",
            w.reason.unwrap_or_default(),
            w.message.map(|m| format!(": {m}")).unwrap_or_default()
        )
    } else {
        "Unknown".into()
    }
}

pub fn run_describe(g: &Global, a: DescribeArgs) -> anyhow::Result<()> {
    let p = find(&a.state.state, &a.name, a.namespace.as_deref())?;
    if g.output == Output::Json {
        return print_json(&p);
    }
    let m = &p.pod.metadata;
    let st = &p.status;
    let mut out = std::io::stdout().lock();
    writeln!(out, "Name:         {}", m.name.as_deref().unwrap_or(""))?;
    writeln!(
        out,
        "Namespace:    {}",
        m.namespace.as_deref().unwrap_or("")
    )?;
    writeln!(out, "UID:          {}", m.uid.as_deref().unwrap_or(""))?;
    writeln!(out, "Status:       {}", status_word(&p))?;
    writeln!(
        out,
        "IP:           {}",
        st.pod_ip.as_deref().unwrap_or("<none>")
    )?;
    writeln!(
        out,
        "QoS Class:    {}",
        st.qos_class.as_deref().unwrap_or("")
    )?;
    if let Some(e) = &p.error {
        writeln!(out, "Error:        {e}")?;
    }
    let spec = p.pod.spec.clone().unwrap_or_default();
    for (title, statuses, specs) in [
        (
            "Init Containers",
            st.init_container_statuses.clone(),
            spec.init_containers.clone().unwrap_or_default(),
        ),
        (
            "Containers",
            st.container_statuses.clone(),
            spec.containers.clone(),
        ),
    ] {
        if specs.is_empty() {
            continue;
        }
        writeln!(out, "{title}:")?;
        for c in &specs {
            writeln!(out, "  {}:", c.name)?;
            writeln!(
                out,
                "    Image:         {}",
                c.image.as_deref().unwrap_or("")
            )?;
            if let Some(s) = statuses.iter().flatten().find(|s| s.name == c.name) {
                writeln!(out, "    State:         {}", state_line(s))?;
                if let Some(l) = &s.last_state {
                    let l = ContainerStatus {
                        state: Some(l.clone()),
                        ..Default::default()
                    };
                    writeln!(out, "    Last State:    {}", state_line(&l))?;
                }
                writeln!(out, "    Ready:         {}", s.ready)?;
                writeln!(out, "    Restart Count: {}", s.restart_count)?;
            }
        }
    }
    writeln!(out, "Conditions:")?;
    for c in st.conditions.iter().flatten() {
        writeln!(out, "  {:<28} {}", c.type_, c.status)?;
    }
    if !p.timeline.is_empty() {
        writeln!(out, "Start-up timeline (since accepted):")?;
        for (step, ms) in &p.timeline {
            match ms {
                Some(ms) => writeln!(out, "  {step:<16} {:>8.3}s", *ms as f64 / 1000.0)?,
                None => writeln!(out, "  {step:<16}        -")?,
            }
        }
    }
    writeln!(out, "Events:")?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    for e in &p.events {
        writeln!(
            out,
            "  {:<8} {:<22} {:>5}s ago x{:<3} {:<28} {}",
            e.type_,
            e.reason,
            now.saturating_sub(e.last),
            e.count,
            e.object,
            e.message
        )?;
    }
    Ok(())
}

/// The container to act on: `-c`, else the only (or first) app container.
fn pick<'a>(p: &'a PodFile, want: Option<&str>) -> anyhow::Result<&'a ContainerStatus> {
    let all: Vec<&ContainerStatus> = p
        .status
        .container_statuses
        .iter()
        .flatten()
        .chain(p.status.init_container_statuses.iter().flatten())
        .collect();
    match want {
        Some(n) => all
            .into_iter()
            .find(|c| c.name == n)
            .with_context(|| format!("container {n:?} not found in pod")),
        None => p
            .status
            .container_statuses
            .iter()
            .flatten()
            .next()
            .context("the pod has no container status yet"),
    }
}

/// The body of a CRI log line (`<time> <stream> <F|P> <body>`), and whether
/// it ends a line.
fn cri_line(line: &str) -> Option<(&str, bool)> {
    let mut it = line.splitn(4, ' ');
    let (_, _, tag) = (it.next()?, it.next()?, it.next()?);
    Some((it.next().unwrap_or(""), tag == "F"))
}

pub fn run_logs(a: LogsArgs) -> anyhow::Result<()> {
    let p = find(&a.state.state, &a.pod, a.namespace.as_deref())?;
    let c = pick(&p, a.container.as_deref())?;
    let n = if a.previous {
        if c.last_state.is_none() {
            bail!("previous terminated container {:?} not found", c.name);
        }
        c.restart_count - 1
    } else {
        c.restart_count
    };
    if p.log_directory.is_empty() {
        bail!("pod {}: no log directory yet", a.pod);
    }
    let logs = &p.log_directory;
    let path = Path::new(&logs).join(&c.name).join(format!("{n}.log"));
    let f = std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
    let mut r = std::io::BufReader::new(f);
    let mut lines: Vec<String> = vec![];
    let mut partial = String::new();
    let mut out = std::io::stdout().lock();
    let mut buf = String::new();
    loop {
        buf.clear();
        let got = r
            .read_line(&mut buf)
            .with_context(|| format!("read {}", path.display()))?;
        if got == 0 || !buf.ends_with('\n') {
            if got > 0 {
                // A line being written: read it again whole.
                let back = i64::try_from(got).unwrap_or(0);
                r.seek_relative(-back)?;
            }
            if !lines.is_empty() {
                let skip = a.tail.map_or(0, |t| lines.len().saturating_sub(t));
                for l in lines.drain(..).skip(skip) {
                    writeln!(out, "{l}")?;
                }
            }
            out.flush()?;
            if !a.follow {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        if let Some((body, full)) = cri_line(buf.trim_end_matches('\n')) {
            partial.push_str(body);
            if full {
                lines.push(std::mem::take(&mut partial));
                if a.follow && a.tail.is_none() {
                    for l in lines.drain(..) {
                        writeln!(out, "{l}")?;
                    }
                }
            }
        }
    }
}

pub fn run_exec(a: ExecArgs) -> anyhow::Result<i32> {
    let p = find(&a.state.state, &a.pod, a.namespace.as_deref())?;
    let c = pick(&p, a.container.as_deref())?;
    let id = c
        .container_id
        .as_deref()
        .and_then(|s| s.split_once("://").map(|(_, id)| id.to_string()))
        .with_context(|| format!("container {:?} has not started", c.name))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let resp = rt.block_on(husklet::cri::remote::exec_sync(
        &a.endpoint,
        &id,
        a.cmd.clone(),
        a.timeout,
    ))?;
    std::io::stdout().write_all(&resp.stdout)?;
    std::io::stderr().write_all(&resp.stderr)?;
    Ok(resp.exit_code)
}
