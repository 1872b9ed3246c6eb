//! Registry credentials (per request, as CRI's AuthConfig passes them, or
//! from a docker-style `config.json`), `WWW-Authenticate` challenges, and
//! bearer token requests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

/// Credentials for one registry. Mirrors CRI's `AuthConfig`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<String>,
    /// base64 of `username:password`.
    pub auth: Option<String>,
    /// An OAuth2 refresh token exchanged for access tokens.
    pub identity_token: Option<String>,
    /// A bearer token sent as is.
    pub registry_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("registry credentials: auth: not base64 of \"user:password\"")]
    BadAuth,
    #[error("docker config {path}: {message}")]
    Config { path: PathBuf, message: String },
}

impl Credentials {
    pub fn basic(username: &str, password: &str) -> Self {
        Credentials {
            username: Some(username.into()),
            password: Some(password.into()),
            ..Default::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.username.is_none()
            && self.auth.is_none()
            && self.identity_token.is_none()
            && self.registry_token.is_none()
    }

    /// Username and password, from the fields or decoded from `auth`.
    pub fn user_pass(&self) -> Result<Option<(String, String)>, AuthError> {
        if let Some(a) = self.auth.as_deref().filter(|a| !a.is_empty()) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(a.trim())
                .map_err(|_| AuthError::BadAuth)?;
            let s = String::from_utf8(raw).map_err(|_| AuthError::BadAuth)?;
            let (u, p) = s.split_once(':').ok_or(AuthError::BadAuth)?;
            return Ok(Some((u.to_string(), p.to_string())));
        }
        match &self.username {
            Some(u) if !u.is_empty() => {
                Ok(Some((u.clone(), self.password.clone().unwrap_or_default())))
            }
            _ => Ok(None),
        }
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
    registrytoken: Option<String>,
}

/// The default docker config: `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
pub fn default_docker_config() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// Credentials for `host` from a docker config.json, if it has any.
pub fn from_docker_config(path: &Path, host: &str) -> Result<Option<Credentials>, AuthError> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(AuthError::Config {
                path: path.into(),
                message: e.to_string(),
            });
        }
    };
    let cfg: DockerConfig = serde_json::from_slice(&data).map_err(|e| AuthError::Config {
        path: path.into(),
        message: format!("invalid JSON: {e}"),
    })?;
    let wanted: Vec<String> = if host == "docker.io" {
        vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
            "registry-1.docker.io".into(),
        ]
    } else {
        vec![host.to_string()]
    };
    for (key, a) in cfg.auths {
        let k = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let k = k.split('/').next().unwrap_or(k);
        if wanted.iter().any(|w| w == &key || w == k) {
            return Ok(Some(Credentials {
                username: a.username,
                password: a.password,
                auth: a.auth,
                identity_token: a.identitytoken,
                registry_token: a.registrytoken,
            }));
        }
    }
    Ok(None)
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `bearer` or `basic` (lowercase).
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// Parse `Bearer realm="https://auth",service="registry",scope="repository:x:pull"`.
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(char::is_whitespace).unwrap_or((h, ""));
    let mut params = BTreeMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            out.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => out.push(c),
                }
            }
            (out, &q[end?..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(key, value);
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// The token endpoint's answer.
#[derive(Deserialize)]
pub struct TokenResponse {
    pub token: Option<String>,
    pub access_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge() {
        let c = parse_challenge(r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#).unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example/token");
        assert_eq!(c.params["scope"], "repository:a/b:pull");
        let c = parse_challenge("Basic realm=\"Registry Realm\"").unwrap();
        assert_eq!(c.scheme, "basic");
    }

    #[test]
    fn docker_config_credentials() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        std::fs::write(&p, format!(r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{auth}"}},"https://index.docker.io/v1/":{{"username":"bob","password":"pw"}}}}}}"#)).unwrap();
        let c = from_docker_config(&p, "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(
            c.user_pass().unwrap(),
            Some(("alice".into(), "s3cret".into()))
        );
        let c = from_docker_config(&p, "docker.io").unwrap().unwrap();
        assert_eq!(c.user_pass().unwrap(), Some(("bob".into(), "pw".into())));
        assert!(from_docker_config(&p, "quay.io").unwrap().is_none());
        let bad = Credentials {
            auth: Some("!!".into()),
            ..Default::default()
        };
        assert!(bad.user_pass().is_err());
    }
}
