//! Registry credentials (per request, as CRI's AuthConfig passes them, or
//! from a docker `config.json`, see `dockercfg`), `WWW-Authenticate`
//! challenges, and bearer token requests.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use serde::Deserialize;

use super::credhelper::HelperError;

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
    #[error(transparent)]
    Helper(#[from] HelperError),
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
}
