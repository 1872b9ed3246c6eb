//! Pull an image from a registry: resolve the reference (an index to its
//! linux/<host arch> manifest), fetch config and layers — layers
//! concurrently, each streamed through digest check, decompression and
//! unpack in one pass, from the next endpoint when one fails midway — and
//! record the image once everything is in place.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::content::ContentError;
use super::digest::Digest;
use super::manifest::{self, Compression, ImageConfigBlob, ManifestDoc};
use super::meta::{ImageRecord, LayerRecord};
use super::progress::{Progress, ProgressView};
use super::reference::Reference;
use super::registry::{Attempt, Credentials, EndpointId, Session};
use super::space::ImageBudget;
use super::store::{ImageError, ImageStore};

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Credentials for this pull (CRI AuthConfig); else the docker config's.
    pub credentials: Option<Credentials>,
    /// Draw progress on stderr when it is a terminal.
    pub progress: bool,
    /// Layers fetched at once.
    pub max_concurrent: usize,
    /// Architecture to choose from an index (default: the host's).
    pub arch: Option<String>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            credentials: None,
            progress: false,
            max_concurrent: 4,
            arch: None,
        }
    }
}

/// What the layer fetches of one pull share.
struct Shared {
    progress: Arc<Progress>,
    /// The image's unpacked-size budget.
    budget: Arc<ImageBudget>,
}

/// Feeds chunks from the async download to the blocking unpacker.
struct ChannelReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

impl ImageStore {
    /// Pull `reference` and return the stored image.
    pub async fn pull(
        &self,
        reference: &str,
        opts: &PullOptions,
    ) -> Result<ImageRecord, ImageError> {
        let r: Reference = reference.parse()?;
        let store = self.clone();
        // Shared gc lock: prune waits until this pull has recorded its image.
        let gc = tokio::task::spawn_blocking(move || store.lock("gc.lock", false))
            .await
            .map_err(|e| ImageError::Pull {
                reference: reference.into(),
                message: e.to_string(),
            })??;
        // Finding credentials may run a credential helper: keep it off the runtime.
        let (cfg, rr, creds) = (self.registry.clone(), r.clone(), opts.credentials.clone());
        let session = tokio::task::spawn_blocking(move || Session::new(&cfg, &rr, creds))
            .await
            .map_err(|e| ImageError::Pull {
                reference: reference.into(),
                message: e.to_string(),
            })??;
        let session = Arc::new(session);
        let top = session.manifest(&r.object()).await?;
        let what = format!("manifest {r}");
        let (index, mdata, mdigest) =
            match manifest::parse_manifest(&what, top.content_type.as_deref(), &top.data)? {
                ManifestDoc::Image(_) => (None, top.data.clone(), top.digest),
                ManifestDoc::Index(idx) => {
                    let arch = opts
                        .arch
                        .clone()
                        .unwrap_or_else(|| manifest::host_arch().to_string());
                    let d = manifest::select_platform(&what, &idx, &arch)?;
                    let m = session.manifest(&d.digest.to_string()).await?;
                    self.content.put(&top.data, &top.digest)?;
                    (Some(top.digest), m.data, m.digest)
                }
            };
        let what = format!("manifest {mdigest} of {r}");
        let ManifestDoc::Image(m) = manifest::parse_manifest(&what, None, &mdata)? else {
            return Err(ImageError::Pull {
                reference: r.to_string(),
                message: format!("{mdigest}: an index inside an index is not supported"),
            });
        };
        self.content.put(&mdata, &mdigest)?;
        let cdata = match self.content.read(&m.config.digest) {
            Ok(d) => d,
            Err(_) => {
                let d = session.small_blob(&m.config.digest).await?;
                self.content.put(&d, &m.config.digest)?;
                d
            }
        };
        let cfg = ImageConfigBlob::parse(&format!("config {} of {r}", m.config.digest), &cdata)?;
        let comps = manifest::check_layers(&what, &m, &cfg)?;
        let layers: Vec<LayerRecord> = m
            .layers
            .iter()
            .zip(&cfg.rootfs.diff_ids)
            .map(|(l, d)| LayerRecord {
                digest: l.digest,
                diff_id: *d,
                size: l.size,
                media_type: l.media_type.clone(),
            })
            .collect();

        let progress = Arc::new(Progress::default());
        progress
            .layers
            .store(layers.len() as u64, Ordering::Relaxed);
        progress
            .total
            .store(layers.iter().map(|l| l.size).sum(), Ordering::Relaxed);
        let view = ProgressView::start(r.to_string(), progress.clone(), opts.progress);
        let shared = Arc::new(Shared {
            progress: progress.clone(),
            budget: Arc::new(self.budget(r.to_string())),
        });
        let results: Vec<Result<(), ImageError>> =
            futures::stream::iter(layers.iter().cloned().zip(comps))
                .map(|(layer, comp)| {
                    let store = self.clone();
                    let session = session.clone();
                    let shared = shared.clone();
                    async move {
                        let res = store.fetch_layer(&session, &layer, comp, &shared).await;
                        shared.progress.layers_done.fetch_add(1, Ordering::Relaxed);
                        res
                    }
                })
                .buffer_unordered(opts.max_concurrent.max(1))
                .collect()
                .await;
        view.finish().await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;

        let name = r.name();
        let rec = ImageRecord {
            id: m.config.digest,
            names: r
                .tagged_name()
                .filter(|_| r.digest.is_none())
                .into_iter()
                .collect(),
            repo_digests: vec![format!("{name}@{}", index.unwrap_or(mdigest))],
            manifest: mdigest,
            index,
            config: m.config.digest,
            size: m.config.size + layers.iter().map(|l| l.size).sum::<u64>(),
            layers,
            created: cfg.created.clone(),
            added: chrono::Utc::now().to_rfc3339(),
        };
        let out = self.commit_image(rec)?;
        drop(gc);
        Ok(out)
    }

    async fn fetch_layer(
        &self,
        session: &Session,
        layer: &LayerRecord,
        comp: Compression,
        shared: &Shared,
    ) -> Result<(), ImageError> {
        let progress = &shared.progress;
        let have_blob = self.content.has(&layer.digest);
        let have_snap = self.snapshots.has(&layer.diff_id);
        if have_snap {
            self.charge_existing(layer, &shared.budget)?;
        }
        if have_blob && have_snap {
            progress.done.fetch_add(layer.size, Ordering::Relaxed);
            return Ok(());
        }
        let join_err = |e: tokio::task::JoinError| ImageError::Layer {
            layer: layer.digest,
            message: format!("unpack task: {e}"),
        };
        if have_blob {
            let store = self.clone();
            let l = layer.clone();
            let budget = shared.budget.clone();
            tokio::task::spawn_blocking(move || store.unpack_stored_layer(&l, &budget))
                .await
                .map_err(join_err)??;
            progress.done.fetch_add(layer.size, Ordering::Relaxed);
            return Ok(());
        }
        let what = format!("blob {}", layer.digest);
        session
            .with_fallback(false, &what, |ep| {
                self.download_layer(session, ep, layer, comp, !have_snap, shared)
            })
            .await
    }

    /// Stream a layer blob from one endpoint into the content store (and into
    /// its snapshot when `unpack`). A download that breaks off, runs long or
    /// does not match its digest is the endpoint's fault: the next may do better.
    async fn download_layer(
        &self,
        session: &Session,
        ep: EndpointId,
        layer: &LayerRecord,
        comp: Compression,
        unpack: bool,
        shared: &Shared,
    ) -> Result<(), Attempt<ImageError>> {
        let progress = &shared.progress;
        let budget = shared.budget.clone();
        let resp = session.blob_from(ep, &layer.digest).await?;
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(64);
        let store = self.clone();
        let l = layer.clone();
        let worker = tokio::task::spawn_blocking(move || {
            let blob = store.content.writer()?;
            store.ingest_layer(
                ChannelReader {
                    rx,
                    cur: Bytes::new(),
                },
                &l,
                comp,
                Some(blob),
                unpack,
                &budget,
            )
        });
        let mut body = resp.bytes_stream();
        let mut seen: u64 = 0;
        // What went wrong with the download itself, if anything.
        let mut fault: Option<String> = None;
        let mut hung_up = false;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(b) => {
                    seen += b.len() as u64;
                    progress.done.fetch_add(b.len() as u64, Ordering::Relaxed);
                    if seen > layer.size {
                        fault = Some(format!(
                            "the endpoint sent more than the {} bytes the manifest says",
                            layer.size
                        ));
                        Err(std::io::Error::other(
                            "download longer than the manifest says",
                        ))
                    } else {
                        Ok(b)
                    }
                }
                Err(e) => {
                    fault = Some(format!(
                        "download broke off after {seen} of {} bytes: {e}",
                        layer.size
                    ));
                    Err(std::io::Error::other(e))
                }
            };
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() {
                hung_up = true;
                break;
            }
            if failed {
                break;
            }
        }
        drop(tx);
        if fault.is_none() && !hung_up && seen < layer.size {
            fault = Some(format!(
                "download ended after {seen} of {} bytes",
                layer.size
            ));
        }
        let res = worker.await.map_err(|e| {
            Attempt::Stop(ImageError::Layer {
                layer: layer.digest,
                message: format!("unpack task: {e}"),
            })
        })?;
        let Err(e) = res else {
            return Ok(());
        };
        progress.done.fetch_sub(seen, Ordering::Relaxed);
        Err(match (e, fault) {
            (_, Some(message)) => Attempt::Next(ImageError::Layer {
                layer: layer.digest,
                message,
            }),
            (
                e @ ImageError::Content(
                    ContentError::DigestMismatch { .. } | ContentError::SizeMismatch { .. },
                ),
                None,
            ) => Attempt::Next(e),
            (e, None) => Attempt::Stop(e),
        })
    }
}

/// The digest a pull by this reference would be recorded under (for tests and tools).
pub fn repo_digest(reference: &Reference, manifest: &Digest) -> String {
    reference.digested_name(manifest)
}
