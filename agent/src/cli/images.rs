//! `husklet images pull|import|list|inspect|rm|prune`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use husklet::image::{Credentials, ImageRecord, PullOptions};

use super::{Global, Output, open_store, print_json};

#[derive(Subcommand)]
pub enum ImagesCmd {
    /// Pull an image from a registry.
    Pull {
        /// Image reference: [registry/]repo[:tag][@sha256:...].
        reference: String,
        /// Registry user name (with --password or --password-stdin).
        #[arg(long)]
        username: Option<String>,
        #[arg(long, env = "HUSK_REGISTRY_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Read the password from stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Layers fetched at once.
        #[arg(long, default_value_t = 4)]
        max_concurrent: usize,
        /// Architecture to choose from a multi-platform image.
        #[arg(long)]
        arch: Option<String>,
        /// No progress line on the terminal.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Import an OCI image layout (dir or tar) or a docker-archive tar.
    Import {
        path: PathBuf,
        /// Name for the image (single-image archives).
        #[arg(long)]
        name: Option<String>,
    },
    /// List images.
    #[command(alias = "ls")]
    List,
    /// Show an image with its config (Entrypoint, Cmd, Env, ...).
    Inspect { image: String },
    /// Remove images (a tag, a repo digest or an id) and the content only they used.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove blobs and snapshots no image or container uses.
    Prune,
}

pub fn run(g: &Global, cmd: ImagesCmd) -> anyhow::Result<()> {
    let store = open_store(g)?;
    match cmd {
        ImagesCmd::Pull {
            reference,
            username,
            password,
            password_stdin,
            max_concurrent,
            arch,
            quiet,
        } => {
            let password = if password_stdin {
                let mut s = String::new();
                std::io::stdin()
                    .read_line(&mut s)
                    .context("read password from stdin")?;
                Some(s.trim_end_matches(['\n', '\r']).to_string())
            } else {
                password
            };
            let credentials = match (username, password) {
                (Some(u), p) => Some(Credentials::basic(&u, &p.unwrap_or_default())),
                (None, Some(_)) => anyhow::bail!("--password needs --username"),
                (None, None) => None,
            };
            let opts = PullOptions {
                credentials,
                progress: !quiet && g.output == Output::Text,
                max_concurrent,
                arch,
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("start tokio runtime")?;
            let t0 = std::time::Instant::now();
            let rec = rt
                .block_on(store.pull(&reference, &opts))
                .with_context(|| format!("pull {reference}"))?;
            match g.output {
                Output::Json => print_json(&rec)?,
                Output::Text => println!(
                    "{} {} ({:.1} MB in {:.2}s)",
                    rec.id,
                    reference,
                    rec.size as f64 / 1e6,
                    t0.elapsed().as_secs_f64()
                ),
            }
        }
        ImagesCmd::Import { path, name } => {
            let recs = store
                .import(&path, name.as_deref())
                .with_context(|| format!("import {}", path.display()))?;
            match g.output {
                Output::Json => print_json(&recs)?,
                Output::Text => {
                    for r in recs {
                        println!("{} {}", r.id, r.names.join(" "));
                    }
                }
            }
        }
        ImagesCmd::List => {
            let mut recs = store.list().context("list images")?;
            recs.sort_by(|a, b| a.names.cmp(&b.names));
            match g.output {
                Output::Json => print_json(&recs)?,
                Output::Text => print_table(&recs),
            }
        }
        ImagesCmd::Inspect { image } => {
            let d = store
                .inspect(&image)
                .with_context(|| format!("inspect {image}"))?;
            print_json(&d)?;
        }
        ImagesCmd::Rm { images } => {
            let mut removed = Vec::new();
            for i in &images {
                removed.push(
                    store
                        .remove(i)
                        .with_context(|| format!("remove image {i}"))?,
                );
            }
            match g.output {
                Output::Json => print_json(&removed)?,
                Output::Text => {
                    for (i, r) in images.iter().zip(&removed) {
                        println!("removed {i} ({})", r.id);
                    }
                }
            }
        }
        ImagesCmd::Prune => {
            let report = store.prune().context("prune")?;
            match g.output {
                Output::Json => print_json(&report)?,
                Output::Text => println!(
                    "removed {} blobs and {} snapshots, {:.1} MB reclaimed",
                    report.blobs.len(),
                    report.snapshots.len(),
                    report.reclaimed_bytes as f64 / 1e6
                ),
            }
        }
    }
    Ok(())
}

fn print_table(recs: &[ImageRecord]) {
    println!("{:<60} {:<14} {:>10}  CREATED", "NAME", "IMAGE ID", "SIZE");
    for r in recs {
        let names = if r.names.is_empty() {
            r.repo_digests.clone()
        } else {
            r.names.clone()
        };
        let names = if names.is_empty() {
            vec!["<none>".to_string()]
        } else {
            names
        };
        for n in names {
            println!(
                "{:<60} {:<14} {:>8.1}MB  {}",
                n,
                r.id.short(),
                r.size as f64 / 1e6,
                r.created.as_deref().unwrap_or("-")
            );
        }
    }
}
