//! Per-registry endpoints, configured as containerd's `hosts.toml` does:
//! `<config_path>/<host>/hosts.toml` with `server = "..."` and
//! `[host."<url>"]` mirror tables (`capabilities`, `skip_verify`, `ca`,
//! `header`, `override_path`). A registry on a loopback address without a
//! config is reached over plain HTTP, as docker and containerd do.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: invalid hosts.toml: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("{path}: {field}: {message}")]
    Field {
        path: PathBuf,
        field: String,
        message: String,
    },
}

/// What an endpoint may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Fetch by digest (blobs, pinned manifests).
    pub pull: bool,
    /// Resolve a tag to a digest.
    pub resolve: bool,
}

/// One place to send registry requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http://127.0.0.1:5000/v2` (already including the API path).
    pub base: String,
    pub capabilities: Capabilities,
    pub skip_verify: bool,
    pub ca: Vec<PathBuf>,
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HostsFile {
    server: Option<String>,
    capabilities: Option<Vec<String>>,
    skip_verify: Option<bool>,
    ca: Option<StringOrList>,
    #[serde(default)]
    header: BTreeMap<String, StringOrList>,
    override_path: Option<bool>,
    #[serde(default)]
    host: BTreeMap<String, HostTable>,
    client: Option<toml::Value>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HostTable {
    capabilities: Option<Vec<String>>,
    skip_verify: Option<bool>,
    ca: Option<StringOrList>,
    #[serde(default)]
    header: BTreeMap<String, StringOrList>,
    override_path: Option<bool>,
    client: Option<toml::Value>,
    dial_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }
    }
}

/// Is `host` (`name[:port]`) a loopback address?
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn default_server(host: &str) -> String {
    if host == "docker.io" {
        "https://registry-1.docker.io".to_string()
    } else if is_loopback(host) {
        format!("http://{host}")
    } else {
        format!("https://{host}")
    }
}

fn caps(path: &Path, field: &str, list: Option<Vec<String>>) -> Result<Capabilities, HostsError> {
    let Some(list) = list else {
        return Ok(Capabilities {
            pull: true,
            resolve: true,
        });
    };
    let mut c = Capabilities {
        pull: false,
        resolve: false,
    };
    for v in list {
        match v.as_str() {
            "pull" => c.pull = true,
            "resolve" => c.resolve = true,
            "push" => {}
            other => {
                return Err(HostsError::Field {
                    path: path.to_path_buf(),
                    field: field.to_string(),
                    message: format!("unknown capability {other:?} (pull, resolve, push)"),
                });
            }
        }
    }
    Ok(c)
}

fn base_url(
    path: &Path,
    field: &str,
    url: &str,
    override_path: bool,
) -> Result<String, HostsError> {
    let bad = |message: String| HostsError::Field {
        path: path.to_path_buf(),
        field: field.to_string(),
        message,
    };
    let u = reqwest::Url::parse(url).map_err(|e| bad(format!("invalid URL {url:?}: {e}")))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(bad(format!("URL {url:?}: scheme must be http or https")));
    }
    let mut s = url.trim_end_matches('/').to_string();
    if !override_path && !s.ends_with("/v2") {
        s.push_str("/v2");
    }
    Ok(s)
}

fn headers(h: BTreeMap<String, StringOrList>) -> BTreeMap<String, String> {
    h.into_iter()
        .map(|(k, v)| (k, v.into_vec().join(",")))
        .collect()
}

/// The endpoints for `host` in the order they are tried: mirrors first, then
/// the server. `config_path` is the hosts.toml root (containerd's
/// `config_path`); `None` or no file means the default.
pub fn endpoints(config_path: Option<&Path>, host: &str) -> Result<Vec<Endpoint>, HostsError> {
    let file = config_path.map(|d| {
        let p = d.join(host).join("hosts.toml");
        if p.exists() {
            p
        } else {
            d.join("_default").join("hosts.toml")
        }
    });
    let Some(path) = file.filter(|p| p.exists()) else {
        return Ok(vec![Endpoint {
            base: format!("{}/v2", default_server(host)),
            capabilities: Capabilities {
                pull: true,
                resolve: true,
            },
            skip_verify: false,
            ca: vec![],
            headers: BTreeMap::new(),
        }]);
    };
    let text = std::fs::read_to_string(&path).map_err(|cause| HostsError::Io {
        path: path.clone(),
        cause,
    })?;
    let parsed: HostsFile = toml::from_str(&text).map_err(|e| HostsError::Toml {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if parsed.client.is_some() {
        return Err(HostsError::Field {
            path,
            field: "client".into(),
            message: "client certificates are not supported".into(),
        });
    }
    let mut out = Vec::new();
    // containerd keeps the file's order of [host] tables; TOML maps lose it, so
    // order by position in the text.
    let mut hosts: Vec<(usize, String, HostTable)> = parsed
        .host
        .into_iter()
        .map(|(url, t)| {
            (
                text.find(&format!("\"{url}\"")).unwrap_or(usize::MAX),
                url,
                t,
            )
        })
        .collect();
    hosts.sort_by_key(|(pos, _, _)| *pos);
    for (_, url, t) in hosts {
        let field = format!("host.\"{url}\"");
        if t.client.is_some() {
            return Err(HostsError::Field {
                path,
                field,
                message: "client certificates are not supported".into(),
            });
        }
        let _ = t.dial_timeout;
        out.push(Endpoint {
            base: base_url(&path, &field, &url, t.override_path.unwrap_or(false))?,
            capabilities: caps(&path, &format!("{field}.capabilities"), t.capabilities)?,
            skip_verify: t.skip_verify.unwrap_or(false),
            ca: t
                .ca
                .map(|c| c.into_vec().into_iter().map(PathBuf::from).collect())
                .unwrap_or_default(),
            headers: headers(t.header),
        });
    }
    let server = parsed.server.unwrap_or_else(|| default_server(host));
    out.push(Endpoint {
        base: base_url(
            &path,
            "server",
            &server,
            parsed.override_path.unwrap_or(false),
        )?,
        capabilities: caps(&path, "capabilities", parsed.capabilities)?,
        skip_verify: parsed.skip_verify.unwrap_or(false),
        ca: parsed
            .ca
            .map(|c| c.into_vec().into_iter().map(PathBuf::from).collect())
            .unwrap_or_default(),
        headers: headers(parsed.header),
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_defaults_to_http() {
        let e = endpoints(None, "127.0.0.1:5000").unwrap();
        assert_eq!(e[0].base, "http://127.0.0.1:5000/v2");
        assert_eq!(
            endpoints(None, "localhost").unwrap()[0].base,
            "http://localhost/v2"
        );
        assert_eq!(
            endpoints(None, "quay.io").unwrap()[0].base,
            "https://quay.io/v2"
        );
        assert_eq!(
            endpoints(None, "docker.io").unwrap()[0].base,
            "https://registry-1.docker.io/v2"
        );
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }

    #[test]
    fn hosts_toml_mirrors_in_order() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("example.com");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("hosts.toml"),
            r#"server = "https://example.com"
[host."http://127.0.0.1:7000"]
  capabilities = ["pull"]
[host."http://127.0.0.1:6000/custom"]
  capabilities = ["pull", "resolve"]
  override_path = true
  [host."http://127.0.0.1:6000/custom".header]
    x-test = "1"
"#,
        )
        .unwrap();
        let e = endpoints(Some(t.path()), "example.com").unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].base, "http://127.0.0.1:7000/v2");
        assert!(!e[0].capabilities.resolve);
        assert_eq!(e[1].base, "http://127.0.0.1:6000/custom");
        assert_eq!(e[1].headers.get("x-test").map(String::as_str), Some("1"));
        assert_eq!(e[2].base, "https://example.com/v2");
    }

    #[test]
    fn bad_hosts_toml_names_the_field() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("h");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("hosts.toml"), "[host.\"ftp://x\"]\n").unwrap();
        let err = endpoints(Some(t.path()), "h").unwrap_err().to_string();
        assert!(
            err.contains("host.\"ftp://x\"") && err.contains("scheme"),
            "{err}"
        );
        std::fs::write(
            d.join("hosts.toml"),
            "server = \"https://x\"\ncapabilities = [\"fly\"]\n",
        )
        .unwrap();
        let err = endpoints(Some(t.path()), "h").unwrap_err().to_string();
        assert!(err.contains("capabilities") && err.contains("fly"), "{err}");
    }
}
