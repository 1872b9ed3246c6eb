//! `husk-cni-tool`: drive a CNI network with husk's invocation library
//! (like the reference `cnitool`), for scripts, tests and benchmarks.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use husk_cni::libcni::{Attachment, CniConfig, Network, NetworkConfigList, RuntimeConf};

#[derive(Parser)]
#[command(about = "Run CNI ADD/CHECK/DEL/GC/STATUS on a network config")]
struct Cli {
    /// A .conflist/.conf file (default: the first network in --conf-dir).
    #[arg(long)]
    conf: Option<PathBuf>,
    /// Directory of network configs.
    #[arg(long, default_value = "/etc/cni/net.d")]
    conf_dir: PathBuf,
    /// Pick the network with this name from --conf-dir.
    #[arg(long)]
    net: Option<String>,
    /// Plugin directories, colon-separated (CNI_PATH).
    #[arg(long, env = "CNI_PATH", default_value = "/opt/cni/bin")]
    plugin_dir: String,
    /// Result cache directory.
    #[arg(long, default_value = "/var/lib/cni")]
    cache_dir: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct Attach {
    /// Container id.
    container_id: String,
    /// Network namespace path (may be empty for del).
    netns: String,
    /// Interface name in the container.
    #[arg(long, default_value = "eth0")]
    ifname: String,
    /// portMappings capability argument, as JSON (check and del default to
    /// the capability args given at add).
    #[arg(long)]
    port_mappings: Option<String>,
    /// CNI_ARGS, `K=V;K2=V2` (check and del default to those given at add).
    #[arg(long, default_value = "")]
    args: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// ADD; prints the result.
    Add(Attach),
    /// CHECK.
    Check(Attach),
    /// DEL.
    Del(Attach),
    /// GC, keeping the given `containerID/ifname` attachments.
    Gc {
        /// Valid attachments as `id/ifname`.
        keep: Vec<String>,
    },
    /// STATUS.
    Status,
    /// Time ADD then DEL of one container per netns path; prints medians.
    Bench {
        /// Netns paths, one pod each.
        netns: Vec<String>,
        /// First hostPort (pod i gets base+i → 80/tcp).
        #[arg(long, default_value_t = 30000)]
        port_base: u16,
    },
}

fn rt_of(a: &Attach) -> Result<RuntimeConf> {
    let mut rt = RuntimeConf::new(&a.container_id, &a.netns, &a.ifname);
    for kv in a.args.split(';').filter(|s| !s.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--args: {kv:?} is not K=V"))?;
        rt.args.push((k.into(), v.into()));
    }
    if let Some(pm) = &a.port_mappings {
        let v: serde_json::Value = serde_json::from_str(pm).context("--port-mappings")?;
        rt = rt.with_capability("portMappings", v);
    }
    Ok(rt)
}

fn load(cli: &Cli) -> Result<Network> {
    let list = match &cli.conf {
        Some(f) => NetworkConfigList::from_file(f)?,
        None => {
            let lists = CniConfig::load_dir(&cli.conf_dir)?;
            match &cli.net {
                Some(n) => lists
                    .into_iter()
                    .find(|l| &l.name == n)
                    .with_context(|| format!("no network {n:?}"))?,
                None => lists.into_iter().next().context("no network config")?,
            }
        }
    };
    let dirs = cli
        .plugin_dir
        .split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect();
    Ok(CniConfig::new(dirs, cli.cache_dir.clone()).network(list))
}

/// Print a plugin's CNI error JSON on stdout (for callers that check the
/// code) and fail.
fn fail(e: husk_cni::libcni::NetworkError) -> anyhow::Error {
    if let Some(ce) = e.cni_error() {
        println!("{}", serde_json::to_string(ce).unwrap_or_default());
    }
    anyhow::Error::new(e)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

fn main() -> Result<()> {
    husk_cni::plugin::init_logging();
    let cli = Cli::parse();
    let net = load(&cli)?;
    match &cli.cmd {
        Cmd::Add(a) => {
            let r = net.add(&rt_of(a)?).map_err(fail)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        Cmd::Check(a) => net.check(&rt_of(a)?).map_err(fail)?,
        Cmd::Del(a) => net.del(&rt_of(a)?).map_err(fail)?,
        Cmd::Gc { keep } => {
            let mut valid = Vec::new();
            for k in keep {
                let (id, ifname) = k
                    .split_once('/')
                    .with_context(|| format!("{k:?} is not id/ifname"))?;
                valid.push(Attachment {
                    container_id: id.into(),
                    ifname: ifname.into(),
                });
            }
            net.gc(&valid).map_err(fail)?;
        }
        Cmd::Status => net.status().map_err(fail)?,
        Cmd::Bench { netns, port_base } => {
            let mut adds = Vec::new();
            let mut dels = Vec::new();
            let rts: Vec<RuntimeConf> = netns
                .iter()
                .enumerate()
                .map(|(i, ns)| {
                    RuntimeConf::new(&format!("bench-{i}"), ns, "eth0").with_capability(
                        "portMappings",
                        serde_json::json!([{"hostPort": port_base + i as u16, "containerPort": 80, "protocol": "tcp"}]),
                    )
                })
                .collect();
            for rt in &rts {
                let t = Instant::now();
                net.add(rt).map_err(fail)?;
                adds.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            for rt in &rts {
                let t = Instant::now();
                net.del(rt).map_err(fail)?;
                dels.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            if rts.is_empty() {
                bail!("bench: give at least one netns");
            }
            println!("{:.2} {:.2}", median(adds), median(dels));
        }
    }
    Ok(())
}
