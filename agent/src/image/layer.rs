//! Turning a layer blob into a snapshot: decompress (gzip, zstd or none),
//! hash the tar for its diff_id, and unpack, all in one pass; when the blob
//! comes from the network the same pass also writes it to the content store.

use std::io::{Read, Write};

use flate2::read::MultiGzDecoder;

use super::content::BlobWriter;
use super::digest::HashingReader;
use super::manifest::Compression;
use super::meta::LayerRecord;
use super::snapshot::SnapshotInfo;
use super::space::{ImageBudget, limit_in};
use super::store::{ImageError, ImageStore};
use super::unpack::{UnpackError, UnpackLimits, unpack_layer};

/// Copies what is read into a blob writer.
struct Tee<'a, R> {
    inner: R,
    out: Option<&'a mut BlobWriter>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(w) = self.out.as_mut() {
            w.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}

fn decoder<'a>(c: Compression, r: impl Read + 'a) -> std::io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(MultiGzDecoder::new(std::io::BufReader::with_capacity(
            256 << 10,
            r,
        ))),
        Compression::Zstd => Box::new(zstd::Decoder::new(r)?),
    })
}

impl ImageStore {
    /// Read a layer blob from `src` and make its snapshot (if `unpack`) and,
    /// with `blob`, store the blob too. Blob digest and diff_id are both
    /// verified before anything is moved into the store; the unpack is held
    /// to the store's reserve and to `budget`.
    pub(crate) fn ingest_layer(
        &self,
        src: impl Read,
        layer: &LayerRecord,
        compression: Compression,
        mut blob: Option<BlobWriter>,
        unpack: bool,
        budget: &ImageBudget,
    ) -> Result<(), ImageError> {
        let lerr = |message: String| ImageError::Layer {
            layer: layer.digest,
            message,
        };
        let mut tee = Tee {
            inner: src,
            out: blob.as_mut(),
        };
        let mut outcome = None;
        let charge = budget.layer();
        let pending = if unpack {
            Some(self.snapshots.begin()?)
        } else {
            None
        };
        if let Some(p) = &pending {
            let mut tar = HashingReader::new(
                decoder(compression, &mut tee).map_err(|e| lerr(format!("decompress: {e}")))?,
            );
            let limits = UnpackLimits {
                reserve: Some(&self.reserve),
                budget: Some(&charge),
            };
            let res = unpack_layer(&mut tar, &p.fs_path(), limits);
            let diff = tar.finish();
            outcome = Some((res, diff));
        }
        // Drain what the decoder did not need, so the blob digest covers everything.
        let drained = std::io::copy(&mut tee, &mut std::io::sink());
        drop(tee);
        if let Some(b) = blob {
            // A corrupt blob is reported as such, whatever the unpack made of it.
            drained.map_err(|e| match limit_in(&e) {
                Some(source) => ImageError::Limit {
                    image: budget.image().to_string(),
                    layer: layer.digest,
                    entry: None,
                    source: Box::new(source),
                },
                None => lerr(format!("read: {e}")),
            })?;
            b.commit(&layer.digest, Some(layer.size))?;
        }
        let (Some(p), Some((res, diff))) = (pending, outcome) else {
            return Ok(());
        };
        let stats = res.map_err(|e| match e {
            UnpackError::Limit { path, source } => ImageError::Limit {
                image: budget.image().to_string(),
                layer: layer.digest,
                entry: Some(path),
                source: Box::new(source),
            },
            cause => ImageError::Unpack {
                layer: layer.digest,
                cause,
            },
        })?;
        let (diff_id, _) = diff.map_err(|e| lerr(format!("decompress: {e}")))?;
        if diff_id != layer.diff_id {
            return Err(ImageError::DiffIdMismatch {
                layer: layer.digest,
                expected: layer.diff_id,
                actual: diff_id,
            });
        }
        self.snapshots.commit(
            p,
            &SnapshotInfo {
                diff_id,
                entries: stats.entries,
                bytes: stats.bytes,
            },
        )?;
        charge.keep();
        Ok(())
    }

    /// Make the snapshot of a layer whose blob is already stored.
    pub(crate) fn unpack_stored_layer(
        &self,
        layer: &LayerRecord,
        budget: &ImageBudget,
    ) -> Result<(), ImageError> {
        let mut f = self.content.open_blob(&layer.digest)?;
        let compression = match Compression::from_media_type(&layer.media_type) {
            Some(c) => c,
            None => {
                let mut head = [0u8; 4];
                let n = f
                    .read(&mut head)
                    .map_err(super::store::io_err(&self.content.path(&layer.digest)))?;
                let c = Compression::sniff(&head[..n]);
                f = self.content.open_blob(&layer.digest)?;
                c
            }
        };
        self.ingest_layer(
            std::io::BufReader::with_capacity(256 << 10, f),
            layer,
            compression,
            None,
            true,
            budget,
        )
    }

    /// A budget for one image's unpacked size, named `image` in messages.
    pub(crate) fn budget(&self, image: impl Into<String>) -> ImageBudget {
        ImageBudget::new(image, self.limits.max_image_size)
    }

    /// Charge a layer whose snapshot already exists to `budget` (its size
    /// counts towards the image's all the same).
    pub(crate) fn charge_existing(
        &self,
        layer: &LayerRecord,
        budget: &ImageBudget,
    ) -> Result<(), ImageError> {
        let bytes = self
            .snapshots
            .info(&layer.diff_id)
            .map(|i| i.bytes)
            .unwrap_or(0);
        budget.charge(bytes).map_err(|source| ImageError::Limit {
            image: budget.image().to_string(),
            layer: layer.digest,
            entry: None,
            source: Box::new(source),
        })
    }
}
