//! Network configuration lists (`.conflist`) and single configs (`.conf`).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::types::CniVersion;

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfListError {
    /// Reading the file or directory failed.
    #[error("{path}: {cause}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// The JSON is malformed.
    #[error("{what}: {cause}")]
    Json {
        /// Which config.
        what: String,
        /// The decoding error.
        cause: serde_json::Error,
    },
    /// The JSON is well-formed but a field is wrong.
    #[error("{what}: {field}: {reason}")]
    Invalid {
        /// Which config.
        what: String,
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

/// A parsed network configuration list.
#[derive(Debug, Clone)]
pub struct NetworkConfigList {
    /// The network name.
    pub name: String,
    /// Spec version of the list.
    pub cni_version: String,
    /// Skip CHECK.
    pub disable_check: bool,
    /// Skip GC.
    pub disable_gc: bool,
    /// Plugin configs in order (raw, so unknown fields pass through).
    pub plugins: Vec<Map<String, Value>>,
    /// The list as JSON (cached with results).
    pub raw: Value,
}

impl NetworkConfigList {
    /// Parse a `.conflist` document.
    pub fn from_bytes(what: &str, bytes: &[u8]) -> Result<Self, ConfListError> {
        let raw: Value = serde_json::from_slice(bytes).map_err(|cause| ConfListError::Json {
            what: what.to_string(),
            cause,
        })?;
        let invalid = |field: &str, reason: &str| ConfListError::Invalid {
            what: what.to_string(),
            field: field.to_string(),
            reason: reason.to_string(),
        };
        let obj = raw
            .as_object()
            .ok_or_else(|| invalid(".", "not a JSON object"))?;
        let name =
            str_field(obj, "name").ok_or_else(|| invalid("name", "missing or not a string"))?;
        if name.is_empty() {
            return Err(invalid("name", "must not be empty"));
        }
        let cni_version = str_field(obj, "cniVersion")
            .ok_or_else(|| invalid("cniVersion", "missing or not a string"))?;
        cni_version
            .parse::<CniVersion>()
            .map_err(|e| invalid("cniVersion", &e))?;
        let plugins = obj
            .get("plugins")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("plugins", "missing or not an array"))?;
        if plugins.is_empty() {
            return Err(invalid("plugins", "must not be empty"));
        }
        let mut out = Vec::new();
        for (i, p) in plugins.iter().enumerate() {
            let p = p
                .as_object()
                .ok_or_else(|| invalid(&format!("plugins[{i}]"), "not an object"))?;
            if str_field(p, "type").is_none_or(|t| t.is_empty()) {
                return Err(invalid(&format!("plugins[{i}].type"), "missing or empty"));
            }
            out.push(p.clone());
        }
        let flag = |k: &str| obj.get(k).and_then(Value::as_bool).unwrap_or(false);
        Ok(NetworkConfigList {
            name,
            cni_version,
            disable_check: flag("disableCheck"),
            disable_gc: flag("disableGC"),
            plugins: out,
            raw: raw.clone(),
        })
    }

    /// Wrap a single-plugin `.conf` document as a list of one.
    pub fn from_single_conf(what: &str, bytes: &[u8]) -> Result<Self, ConfListError> {
        let v: Value = serde_json::from_slice(bytes).map_err(|cause| ConfListError::Json {
            what: what.to_string(),
            cause,
        })?;
        let obj = v.as_object().cloned().unwrap_or_default();
        let mut list = Map::new();
        for k in ["name", "cniVersion"] {
            if let Some(x) = obj.get(k) {
                list.insert(k.into(), x.clone());
            }
        }
        list.insert("plugins".into(), Value::Array(vec![v]));
        let bytes = serde_json::to_vec(&list).map_err(|cause| ConfListError::Json {
            what: what.to_string(),
            cause,
        })?;
        Self::from_bytes(what, &bytes)
    }

    /// Load a `.conflist`, `.conf` or `.json` file.
    pub fn from_file(path: &Path) -> Result<Self, ConfListError> {
        let bytes = std::fs::read(path).map_err(|cause| ConfListError::Io {
            path: path.to_path_buf(),
            cause,
        })?;
        let what = path.display().to_string();
        if path.extension().is_some_and(|e| e == "conflist") {
            Self::from_bytes(&what, &bytes)
        } else {
            Self::from_single_conf(&what, &bytes)
        }
    }

    /// Load every config in `dir`, sorted by file name (libcni's order: the
    /// first one is the default network).
    pub fn load_dir(dir: &Path) -> Result<Vec<Self>, ConfListError> {
        let io = |cause| ConfListError::Io {
            path: dir.to_path_buf(),
            cause,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e == "conflist" || e == "conf" || e == "json")
            })
            .collect();
        files.sort();
        files.iter().map(|f| Self::from_file(f)).collect()
    }
}

fn str_field(obj: &Map<String, Value>, k: &str) -> Option<String> {
    obj.get(k).and_then(Value::as_str).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{"cniVersion":"1.0.0","name":"podnet","plugins":[
        {"type":"husk-bridge","bridge":"cni0","ipam":{"type":"host-local","subnet":"10.22.0.0/24"}},
        {"type":"husk-portmap","capabilities":{"portMappings":true}}]}"#;

    #[test]
    fn parses_conflist() {
        let l = NetworkConfigList::from_bytes("t", LIST.as_bytes()).unwrap();
        assert_eq!(l.name, "podnet");
        assert_eq!(l.plugins.len(), 2);
        assert_eq!(l.plugins[1]["type"], "husk-portmap");
        assert!(!l.disable_check);
    }

    #[test]
    fn names_the_bad_field() {
        let e = NetworkConfigList::from_bytes(
            "t",
            br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"x":1}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("plugins[0].type"), "{e}");
        let e = NetworkConfigList::from_bytes("t", br#"{"cniVersion":"1.0.0","plugins":[]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("name"), "{e}");
    }

    #[test]
    fn loads_dir_sorted_and_single_confs() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("20-b.conflist"), LIST).unwrap();
        std::fs::write(
            d.path().join("10-a.conf"),
            r#"{"cniVersion":"0.4.0","name":"single","type":"bridge"}"#,
        )
        .unwrap();
        std::fs::write(d.path().join("README"), "ignored").unwrap();
        let lists = NetworkConfigList::load_dir(d.path()).unwrap();
        assert_eq!(lists.len(), 2);
        assert_eq!(lists[0].name, "single");
        assert_eq!(lists[0].plugins[0]["type"], "bridge");
        assert_eq!(lists[1].name, "podnet");
    }
}
