//! The on-disk cache of ADD results, keyed like libcni's
//! (`<dir>/results/<network>-<containerID>-<ifname>`), read by CHECK and DEL.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::types::validate;

/// One cached attachment (libcni's `cniCacheV1` document; `config` is kept
/// as JSON rather than base64 bytes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedAttachment {
    /// Always `cniCacheV1`.
    pub kind: String,
    /// Container id.
    #[serde(rename = "containerId")]
    pub container_id: String,
    /// Interface name.
    #[serde(rename = "ifName")]
    pub if_name: String,
    /// Network name.
    #[serde(rename = "networkName")]
    pub network_name: String,
    /// The netns path used at ADD.
    #[serde(default)]
    pub netns: String,
    /// CNI_ARGS pairs.
    #[serde(rename = "cniArgs", default)]
    pub cni_args: Vec<(String, String)>,
    /// Capability arguments.
    #[serde(rename = "capabilityArgs", default)]
    pub capability_args: Map<String, Value>,
    /// The network config list at ADD time.
    #[serde(default)]
    pub config: Value,
    /// The final result of the chain.
    pub result: Value,
}

/// A result cache directory.
#[derive(Debug, Clone)]
pub struct ResultCache {
    dir: PathBuf,
}

impl ResultCache {
    /// A cache rooted at `dir` (libcni's default is `/var/lib/cni`).
    pub fn new(dir: PathBuf) -> Self {
        ResultCache { dir }
    }

    /// The entry's file; names that could leave `results/` are refused
    /// (callers validate them first; this is the last line).
    fn path(&self, network: &str, container_id: &str, ifname: &str) -> std::io::Result<PathBuf> {
        let bad = validate::network_name(network)
            .and_then(|_| validate::container_id(container_id))
            .and_then(|_| validate::ifname(ifname));
        if let Err(e) = bad {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} ({})", e.msg, e.details),
            ));
        }
        Ok(self
            .dir
            .join("results")
            .join(format!("{network}-{container_id}-{ifname}")))
    }

    /// Store an attachment atomically (temp file + rename); on failure no
    /// temp file is left.
    pub fn put(&self, entry: &CachedAttachment) -> std::io::Result<()> {
        let path = self.path(&entry.network_name, &entry.container_id, &entry.if_name)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let (tmp, mut f) = tempfile_in(dir)?;
        let written = serde_json::to_vec(entry)
            .map_err(std::io::Error::other)
            .and_then(|b| f.write_all(&b))
            .and_then(|_| f.sync_all())
            .and_then(|_| std::fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// The cached attachment, if any.
    pub fn get(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> std::io::Result<Option<CachedAttachment>> {
        match std::fs::read(self.path(network, container_id, ifname)?) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Forget an attachment (no error when absent).
    pub fn remove(&self, network: &str, container_id: &str, ifname: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(network, container_id, ifname)?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// All cached attachments of `network`.
    pub fn list(&self, network: &str) -> std::io::Result<Vec<CachedAttachment>> {
        let dir = self.dir.join("results");
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent?;
            let Ok(b) = std::fs::read(ent.path()) else {
                continue;
            };
            if let Ok(a) = serde_json::from_slice::<CachedAttachment>(&b) {
                if a.network_name == network {
                    out.push(a);
                }
            }
        }
        Ok(out)
    }
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        ".tmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let p = dir.join(name);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)?;
    Ok((p, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_remove() {
        let d = tempfile::tempdir().unwrap();
        let c = ResultCache::new(d.path().to_path_buf());
        assert!(c.get("n", "c1", "eth0").unwrap().is_none());
        let e = CachedAttachment {
            kind: "cniCacheV1".into(),
            container_id: "c1".into(),
            if_name: "eth0".into(),
            network_name: "n".into(),
            netns: "/run/netns/x".into(),
            cni_args: vec![],
            capability_args: Map::new(),
            config: Value::Null,
            result: serde_json::json!({"cniVersion":"1.0.0"}),
        };
        c.put(&e).unwrap();
        assert_eq!(
            c.get("n", "c1", "eth0").unwrap().unwrap().container_id,
            "c1"
        );
        assert!(d.path().join("results/n-c1-eth0").exists());
        assert_eq!(c.list("n").unwrap().len(), 1);
        assert_eq!(c.list("other").unwrap().len(), 0);
        c.remove("n", "c1", "eth0").unwrap();
        c.remove("n", "c1", "eth0").unwrap();
        assert!(c.get("n", "c1", "eth0").unwrap().is_none());
    }

    fn entry(id: &str) -> CachedAttachment {
        CachedAttachment {
            kind: "cniCacheV1".into(),
            container_id: id.into(),
            if_name: "eth0".into(),
            network_name: "n".into(),
            netns: String::new(),
            cni_args: vec![],
            capability_args: Map::new(),
            config: Value::Null,
            result: Value::Null,
        }
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            out.push(e.path());
            if e.path().is_dir() {
                out.extend(files(&e.path()));
            }
        }
        out
    }

    #[test]
    fn traversal_keys_are_refused_and_write_nothing() {
        let d = tempfile::tempdir().unwrap();
        let c = ResultCache::new(d.path().join("cache"));
        let e = c.put(&entry("../../x/y")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(c.get("n", "../../x/y", "eth0").is_err());
        assert!(c.remove("n", "../../x/y", "eth0").is_err());
        assert!(files(d.path()).is_empty(), "{:?}", files(d.path()));
    }

    #[test]
    fn failed_put_leaves_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let c = ResultCache::new(d.path().to_path_buf());
        // A directory where the entry should go: the rename fails.
        std::fs::create_dir_all(d.path().join("results/n-c1-eth0/x")).unwrap();
        c.put(&entry("c1")).unwrap_err();
        let tmp: Vec<_> = files(d.path())
            .into_iter()
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(".tmp"))
            .collect();
        assert!(tmp.is_empty(), "temp files left: {tmp:?}");
    }
}
