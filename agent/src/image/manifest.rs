//! Manifests, indexes and image configs (OCI and docker schema2), and the
//! choice of the linux/amd64 entry of an index.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The media types a registry may answer a manifest request with.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Why a manifest, index or config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{what}: invalid JSON: {cause}")]
    Json {
        what: String,
        cause: serde_json::Error,
    },
    #[error("{0}: docker schema1 manifests are not supported (deprecated; re-push the image)")]
    Schema1(String),
    #[error("{what}: unsupported media type {media_type:?}")]
    MediaType { what: String, media_type: String },
    #[error("{what}: no linux/{arch} entry in the index (has: {available})")]
    NoPlatform {
        what: String,
        arch: String,
        available: String,
    },
    #[error("{what}: layer {index}: unsupported media type {media_type:?}")]
    LayerType {
        what: String,
        index: usize,
        media_type: String,
    },
    #[error("{what}: config lists {diff_ids} diff_ids but the manifest has {layers} layers")]
    LayerCount {
        what: String,
        diff_ids: usize,
        layers: usize,
    },
}

/// A reference to a blob (OCI content descriptor).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI or docker schema2: the same shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// An image index / docker manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// A parsed manifest document.
#[derive(Debug, Clone)]
pub enum ManifestDoc {
    Image(Manifest),
    Index(Index),
}

/// Detect the kind of a manifest document from its media type (the HTTP
/// Content-Type, or the `mediaType` field when that is missing).
pub fn parse_manifest(
    what: &str,
    content_type: Option<&str>,
    data: &[u8],
) -> Result<ManifestDoc, ManifestError> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        #[serde(rename = "schemaVersion")]
        schema_version: Option<u32>,
        manifests: Option<serde_json::Value>,
    }
    let json_err = |cause| ManifestError::Json {
        what: what.to_string(),
        cause,
    };
    let probe: Probe = serde_json::from_slice(data).map_err(json_err)?;
    if probe.schema_version == Some(1) {
        return Err(ManifestError::Schema1(what.to_string()));
    }
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim().to_string())
        .filter(|c| c != "application/json" && c != "text/plain" && !c.is_empty());
    let mt = probe.media_type.or(ct).unwrap_or_else(|| {
        if probe.manifests.is_some() {
            OCI_INDEX.to_string()
        } else {
            OCI_MANIFEST.to_string()
        }
    });
    match mt.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => Ok(ManifestDoc::Image(
            serde_json::from_slice(data).map_err(json_err)?,
        )),
        OCI_INDEX | DOCKER_LIST => Ok(ManifestDoc::Index(
            serde_json::from_slice(data).map_err(json_err)?,
        )),
        DOCKER_SCHEMA1 | "application/vnd.docker.distribution.manifest.v1+json" => {
            Err(ManifestError::Schema1(what.to_string()))
        }
        other => Err(ManifestError::MediaType {
            what: what.to_string(),
            media_type: other.to_string(),
        }),
    }
}

/// The platform husk runs images for.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// Pick the linux entry for `arch` from an index.
pub fn select_platform<'a>(
    what: &str,
    index: &'a Index,
    arch: &str,
) -> Result<&'a Descriptor, ManifestError> {
    let found = index.manifests.iter().find(|d| {
        d.platform.as_ref().is_some_and(|p| {
            p.os == "linux"
                && p.architecture == arch
                && (arch != "arm64" || p.variant.as_deref().is_none_or(|v| v == "v8"))
        })
    });
    // A single-entry index without a platform (as some OCI layouts have) is that image.
    let found = found.or_else(|| {
        if index.manifests.len() == 1 && index.manifests[0].platform.is_none() {
            index.manifests.first()
        } else {
            None
        }
    });
    found.ok_or_else(|| ManifestError::NoPlatform {
        what: what.to_string(),
        arch: arch.to_string(),
        available: index
            .manifests
            .iter()
            .filter_map(|d| {
                d.platform
                    .as_ref()
                    .map(|p| format!("{}/{}", p.os, p.architecture))
            })
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From a layer media type; `None` for types husk cannot unpack.
    pub fn from_media_type(mt: &str) -> Option<Compression> {
        match mt {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => {
                Some(Compression::Gzip)
            }
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Some(Compression::Zstd)
            }
            _ => None,
        }
    }

    /// Sniff from the first bytes (docker-archive layers carry no media type).
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// The parts of an image config that a container needs (`config` in the JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunConfig {
    #[serde(rename = "User", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(
        rename = "ExposedPorts",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(rename = "Env", default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Volumes", default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub working_dir: Option<String>,
    #[serde(rename = "Labels", default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(
        rename = "StopSignal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_signal: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

/// An image config blob (OCI image config / docker image JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageConfigBlob {
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
}

impl ImageConfigBlob {
    pub fn parse(what: &str, data: &[u8]) -> Result<Self, ManifestError> {
        serde_json::from_slice(data).map_err(|cause| ManifestError::Json {
            what: what.to_string(),
            cause,
        })
    }
}

/// Check that a manifest and its config agree and every layer type is known.
pub fn check_layers(
    what: &str,
    m: &Manifest,
    cfg: &ImageConfigBlob,
) -> Result<Vec<Compression>, ManifestError> {
    if cfg.rootfs.diff_ids.len() != m.layers.len() {
        return Err(ManifestError::LayerCount {
            what: what.to_string(),
            diff_ids: cfg.rootfs.diff_ids.len(),
            layers: m.layers.len(),
        });
    }
    m.layers
        .iter()
        .enumerate()
        .map(|(index, l)| {
            Compression::from_media_type(&l.media_type).ok_or_else(|| ManifestError::LayerType {
                what: what.to_string(),
                index,
                media_type: l.media_type.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(arch: &str) -> serde_json::Value {
        serde_json::json!({"mediaType": OCI_MANIFEST, "digest": Digest::of(arch.as_bytes()).to_string(), "size": 1,
            "platform": {"architecture": arch, "os": "linux"}})
    }

    #[test]
    fn index_resolves_to_amd64() {
        let idx = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc("arm64"), desc("amd64")]});
        let ManifestDoc::Index(i) = parse_manifest("t", None, idx.to_string().as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            select_platform("t", &i, "amd64").unwrap().digest,
            Digest::of(b"amd64")
        );
        let err = select_platform("t", &i, "s390x").unwrap_err().to_string();
        assert!(err.contains("linux/arm64, linux/amd64"), "{err}");
    }

    #[test]
    fn schema1_is_refused_clearly() {
        let e = parse_manifest("x", None, br#"{"schemaVersion":1,"name":"a"}"#).unwrap_err();
        assert!(e.to_string().contains("schema1"));
    }
}
