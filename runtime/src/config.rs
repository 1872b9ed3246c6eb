//! Loading and validating a bundle's config.json, before anything changes on
//! the host. Errors name the JSON path of the offending field.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// Errors in a bundle or its config.json.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("bundle {}", path.display())]
    Bundle {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config.json: {0}")]
    Invalid(String),
    #[error("config.json: {path}: {message}")]
    Field { path: String, message: String },
}

fn field(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        path: path.into(),
        message: message.into(),
    }
}

/// A loaded, validated bundle.
#[derive(Debug)]
pub struct Bundle {
    /// Absolute bundle directory.
    pub dir: PathBuf,
    /// The parsed config.
    pub spec: Spec,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// The raw config.json bytes (kept with the state for `exec`).
    pub raw: Vec<u8>,
}

/// Read `<bundle>/config.json` and validate it.
pub fn load(bundle: &Path) -> Result<Bundle, ConfigError> {
    let dir = std::path::absolute(bundle).map_err(|e| ConfigError::Bundle {
        path: bundle.into(),
        source: e,
    })?;
    let cfg = dir.join("config.json");
    let raw = std::fs::read(&cfg).map_err(|e| ConfigError::Bundle {
        path: cfg.clone(),
        source: e,
    })?;
    let spec = parse(&raw)?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| field("root", "missing"))?;
    let rootfs = dir.join(root.path());
    match std::fs::metadata(&rootfs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(field(
                "root.path",
                format!("{} is not a directory", rootfs.display()),
            ));
        }
        Err(e) => return Err(field("root.path", format!("{}: {e}", rootfs.display()))),
    }
    validate(&spec)?;
    Ok(Bundle {
        dir,
        spec,
        rootfs,
        raw,
    })
}

/// Parse config.json bytes, reporting the JSON path of a bad field.
pub fn parse(raw: &[u8]) -> Result<Spec, ConfigError> {
    serde_json::from_slice::<Spec>(raw).map_err(|e| {
        let at = crate::json_path::locate(raw, &e);
        if at.path.ends_with(".type") && at.path.contains("namespaces[") {
            if let Some(v) = at
                .message
                .strip_prefix("unknown variant `")
                .and_then(|r| r.split('`').next())
            {
                return field(at.path, format!("unknown namespace \"{v}\""));
            }
        }
        if at.is_root() {
            ConfigError::Invalid(at.message)
        } else {
            field(at.path, at.message)
        }
    })
}

/// Checks that need more than the JSON schema.
pub fn validate(spec: &Spec) -> Result<(), ConfigError> {
    if let Some(p) = spec.process() {
        if p.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(field("process.args", "must not be empty"));
        }
        if !p.cwd().is_absolute() {
            return Err(field("process.cwd", "must be an absolute path"));
        }
    } else {
        return Err(field("process", "missing"));
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if !m.destination().is_absolute() {
            return Err(field(
                format!("mounts[{i}].destination"),
                format!("{:?} is not an absolute path", m.destination()),
            ));
        }
    }
    let linux = spec.linux().as_ref();
    let mut seen = HashSet::new();
    let namespaces = linux.and_then(|l| l.namespaces().as_ref());
    for (i, ns) in namespaces.into_iter().flatten().enumerate() {
        let typ = ns.typ();
        if !seen.insert(typ as i64) {
            return Err(field(
                format!("linux.namespaces[{i}].type"),
                format!("duplicate namespace \"{typ}\""),
            ));
        }
        if typ == LinuxNamespaceType::Time {
            return Err(field(
                format!("linux.namespaces[{i}].type"),
                "time namespaces are not supported",
            ));
        }
        if let Some(path) = ns.path() {
            if !path.exists() {
                return Err(field(
                    format!("linux.namespaces[{i}].path"),
                    format!("{}: no such file", path.display()),
                ));
            }
        }
    }
    let has_new = |t: LinuxNamespaceType| {
        namespaces
            .into_iter()
            .flatten()
            .any(|n| n.typ() == t && n.path().is_none())
    };
    let has = |t: LinuxNamespaceType| namespaces.into_iter().flatten().any(|n| n.typ() == t);
    if has_new(LinuxNamespaceType::User) {
        let l = linux.expect("namespaces come from linux");
        if l.uid_mappings().as_ref().is_none_or(|m| m.is_empty()) {
            return Err(field(
                "linux.uidMappings",
                "a new user namespace needs uid mappings",
            ));
        }
        if l.gid_mappings().as_ref().is_none_or(|m| m.is_empty()) {
            return Err(field(
                "linux.gidMappings",
                "a new user namespace needs gid mappings",
            ));
        }
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(field("hostname", "needs a private UTS namespace"));
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(field("domainname", "needs a private UTS namespace"));
    }
    if let Some(l) = linux {
        if let Some(p) = l.rootfs_propagation() {
            if crate::rootfs::propagation_flags(p).is_none() {
                return Err(field(
                    "linux.rootfsPropagation",
                    format!("unknown propagation \"{p}\""),
                ));
            }
        }
        if l.sysctl().as_ref().is_some_and(|s| !s.is_empty()) && !has(LinuxNamespaceType::Mount) {
            return Err(field("linux.sysctl", "needs a private mount namespace"));
        }
        for (k, _) in l.sysctl().iter().flatten() {
            if k.contains("..") || k.contains('/') && k.starts_with('/') {
                return Err(field(format!("linux.sysctl.{k}"), "invalid sysctl name"));
            }
        }
    }
    // Without a mount namespace the runtime's is inherited (the spec's rule
    // for a namespace type that is not listed): the container is chrooted
    // into its rootfs and its mounts are made in the runtime's namespace, as
    // runc does. What would change mounts of the runtime's namespace outside
    // the rootfs, or the rootfs mount itself, needs a namespace of its own
    // (runc's validator refuses the same).
    if !has(LinuxNamespaceType::Mount) {
        let no_ns = "needs a private mount namespace (no \"mount\" in linux.namespaces)";
        if let Some(l) = linux {
            if l.masked_paths().as_ref().is_some_and(|p| !p.is_empty()) {
                return Err(field("linux.maskedPaths", no_ns));
            }
            if l.readonly_paths().as_ref().is_some_and(|p| !p.is_empty()) {
                return Err(field("linux.readonlyPaths", no_ns));
            }
        }
        if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
            return Err(field("root.readonly", no_ns));
        }
    }
    Ok(())
}

/// Validate a container id: runc's rule `^[\w+-\.]+$`, and never `.`/`..`.
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("container id must not be empty".into());
    }
    if id == "." || id == ".." {
        return Err(format!("invalid container id {id:?}"));
    }
    if id.len() > 1024
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'))
    {
        return Err(format!(
            "invalid container id {id:?}: only letters, digits, '_', '+', '-' and '.' are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_namespace_names_the_path() {
        let raw = br#"{"ociVersion":"1.0.2","process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}},
          "root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"foo"}]}}"#;
        let err = parse(raw).unwrap_err().to_string();
        assert_eq!(
            err,
            "config.json: linux.namespaces[2].type: unknown namespace \"foo\""
        );
    }

    #[test]
    fn parse_errors_name_the_path_or_the_file() {
        let raw = br#"{"process":{"cwd":"/","user":{"uid":"root","gid":0}}}"#;
        assert_eq!(
            parse(raw).unwrap_err().to_string(),
            "config.json: process.user.uid: invalid type: string \"root\", expected u32"
        );
        assert_eq!(
            parse(b"{ not json").unwrap_err().to_string(),
            "config.json: key must be a string"
        );
    }

    #[test]
    fn duplicate_namespace_is_rejected() {
        let raw = br#"{"ociVersion":"1.0.2","process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}},
          "root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"pid"}]}}"#;
        let spec = parse(raw).unwrap();
        let err = validate(&spec).unwrap_err().to_string();
        assert!(err.contains("linux.namespaces[2].type: duplicate"), "{err}");
    }

    #[test]
    fn ids() {
        assert!(validate_id("abc-1.2_x+y").is_ok());
        for bad in ["", ".", "..", "../x", "a/b", "a b"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }
}
