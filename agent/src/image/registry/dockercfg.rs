//! Credentials from a docker `config.json`, chosen as the docker CLI does
//! (cli/config/configfile: `GetCredentialsStore` and the native store):
//!
//! 1. `credHelpers[<key>]`, the helper for this registry, else
//! 2. `credsStore`, the helper for every registry, else
//! 3. `auths[<key>]`.
//!
//! When a helper applies, its answer is the answer: a helper without
//! credentials for the server means none, and `auths` is not consulted (an
//! empty `credHelpers` entry opts a registry out of `credsStore`).
//! `<key>` is `https://index.docker.io/v1/` for Docker Hub and the registry
//! host otherwise; it is also what the helper gets on stdin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::auth::{AuthError, Credentials};
use super::credhelper::{self, HelperEnv};

/// The key docker files Docker Hub's credentials under.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
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

/// The config key (and helper server URL) for a registry host.
pub fn server_key(host: &str) -> &str {
    if host == "docker.io" {
        DOCKER_HUB_KEY
    } else {
        host
    }
}

/// `host[:port]` of a config key: `https://index.docker.io/v1/` → `index.docker.io`.
fn key_host(key: &str) -> &str {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    k.split('/').next().unwrap_or(k)
}

impl DockerConfig {
    /// The helper for `host` and the config field that named it, if any applies.
    fn helper(&self, host: &str) -> Option<(&str, String)> {
        let key = server_key(host);
        let (name, field) = match self.cred_helpers.get(key) {
            Some(h) => (h.as_str(), format!("credHelpers.{key:?}")),
            None => (self.creds_store.as_deref()?, "credsStore".to_string()),
        };
        (!name.is_empty()).then_some((name, field))
    }

    /// The `auths` entry for `host`, matched on the key's host part as docker does
    /// (for Docker Hub also under the names people write for it).
    fn auths(&self, host: &str) -> Option<Credentials> {
        let wanted: &[&str] = if host == "docker.io" {
            &[
                "index.docker.io",
                "docker.io",
                "registry-1.docker.io",
                DOCKER_HUB_KEY,
            ]
        } else {
            &[host]
        };
        let (_, a) = self
            .auths
            .iter()
            .find(|(key, _)| wanted.iter().any(|w| w == key || *w == key_host(key)))?;
        Some(Credentials {
            username: a.username.clone(),
            password: a.password.clone(),
            auth: a.auth.clone(),
            identity_token: a.identitytoken.clone(),
            registry_token: a.registrytoken.clone(),
        })
    }
}

/// Credentials for registry `host` from the docker config at `path`, if it has
/// any; a missing file has none. Helpers are run as `helpers` says.
pub fn from_docker_config(
    path: &Path,
    host: &str,
    helpers: &HelperEnv,
) -> Result<Option<Credentials>, AuthError> {
    let bad = |message: String| AuthError::Config {
        path: path.into(),
        message,
    };
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    let cfg: DockerConfig =
        serde_json::from_slice(&data).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    if let Some((name, field)) = cfg.helper(host) {
        if name.contains('/') {
            return Err(bad(format!(
                "{field}: helper name {name:?} must not contain '/' (it names docker-credential-<name> in PATH)"
            )));
        }
        return Ok(credhelper::get(helpers, name, server_key(host))?);
    }
    Ok(cfg.auths(host))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::Engine as _;

    use super::super::credhelper::testing::Helpers;
    use super::*;

    fn write(dir: &Path, json: &str) -> PathBuf {
        let p = dir.join("config.json");
        std::fs::write(&p, json).unwrap();
        p
    }

    fn user(c: Option<Credentials>) -> Option<(String, String)> {
        c.and_then(|c| c.user_pass().unwrap())
    }

    #[test]
    fn auths_only() {
        let t = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let p = write(
            t.path(),
            &format!(
                r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{auth}"}},"https://index.docker.io/v1/":{{"username":"bob","password":"pw"}}}}}}"#
            ),
        );
        let env = HelperEnv::default();
        let c = from_docker_config(&p, "127.0.0.1:5000", &env).unwrap();
        assert_eq!(user(c), Some(("alice".into(), "s3cret".into())));
        let c = from_docker_config(&p, "docker.io", &env).unwrap();
        assert_eq!(user(c), Some(("bob".into(), "pw".into())));
        assert!(from_docker_config(&p, "quay.io", &env).unwrap().is_none());
        assert!(
            from_docker_config(&t.path().join("absent.json"), "quay.io", &env)
                .unwrap()
                .is_none()
        );
        std::fs::write(&p, "{").unwrap();
        let err = from_docker_config(&p, "quay.io", &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("config.json") && err.contains("invalid JSON"),
            "{err}"
        );
        let bad = Credentials {
            auth: Some("!!".into()),
            ..Default::default()
        };
        assert!(bad.user_pass().is_err());
    }

    /// Helper `name`, answering username `<name>/<server>`, or "not found" for
    /// servers matching the shell `case` pattern `not_found_for`.
    fn helper(h: &Helpers, name: &str, not_found_for: &str) {
        h.add(
            name,
            &format!(
                r#"read -r url
case "$url" in {not_found_for}) echo 'credentials not found in native keychain'; exit 1;; esac
printf '{{"ServerURL":"%s","Username":"{name}/%s","Secret":"pw"}}' "$url" "$url""#
            ),
        );
    }

    #[test]
    fn cred_helpers_then_creds_store_then_auths() {
        let t = tempfile::tempdir().unwrap();
        let h = Helpers::new();
        helper(&h, "per-host", "nothing-here");
        helper(&h, "store", "c.example");
        let env = h.env(Duration::from_secs(10));
        let p = write(
            t.path(),
            r#"{"auths":{"a.example":{"username":"file-a","password":"x"},
                         "b.example":{"username":"file-b","password":"x"},
                         "c.example":{"username":"file-c","password":"x"},
                         "d.example":{"username":"file-d","password":"x"}},
                "credsStore":"store",
                "credHelpers":{"a.example":"per-host","d.example":"",
                               "https://index.docker.io/v1/":"per-host"}}"#,
        );
        let get = |host| user(from_docker_config(&p, host, &env).unwrap()).map(|(u, _)| u);
        // credHelpers wins over credsStore and auths.
        assert_eq!(get("a.example").as_deref(), Some("per-host/a.example"));
        // credsStore wins over auths.
        assert_eq!(get("b.example").as_deref(), Some("store/b.example"));
        // The store has nothing: no credentials (docker does not fall back to auths).
        assert_eq!(get("c.example"), None);
        // An empty credHelpers entry opts out of credsStore.
        assert_eq!(get("d.example").as_deref(), Some("file-d"));
        // Docker Hub is keyed, and asked for, as https://index.docker.io/v1/.
        assert_eq!(
            get("docker.io").as_deref(),
            Some("per-host/https://index.docker.io/v1/")
        );

        // Without credsStore, a host without a helper uses auths.
        let p = write(
            t.path(),
            r#"{"auths":{"b.example":{"username":"file-b","password":"x"}},
                "credHelpers":{"a.example":"per-host"}}"#,
        );
        let get = |host| user(from_docker_config(&p, host, &env).unwrap()).map(|(u, _)| u);
        assert_eq!(get("b.example").as_deref(), Some("file-b"));
        assert_eq!(get("a.example").as_deref(), Some("per-host/a.example"));
    }

    #[test]
    fn helper_errors_name_helper_and_host() {
        let t = tempfile::tempdir().unwrap();
        let h = Helpers::new();
        h.add("locked", "echo 'keychain is locked' >&2\nexit 1");
        let env = h.env(Duration::from_secs(10));
        let p = write(t.path(), r#"{"credsStore":"locked"}"#);
        let err = from_docker_config(&p, "reg.example", &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("docker-credential-locked")
                && err.contains("reg.example")
                && err.contains("keychain is locked"),
            "{err}"
        );
        let p = write(t.path(), r#"{"credHelpers":{"reg.example":"../evil"}}"#);
        let err = from_docker_config(&p, "reg.example", &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("credHelpers.\"reg.example\"") && err.contains("../evil"),
            "{err}"
        );
    }
}
