//! Who is calling the kubelet API, and may they: kubelet's delegated
//! authentication and authorization.
//!
//! - Authentication, in kubelet's order: a client certificate verified
//!   against `--client-ca-file` (user = CN, groups = O); else a bearer
//!   token, looked up with a `TokenReview` (`--authentication-token-webhook`,
//!   answers cached 2 min, failures 10 s); else anonymous
//!   (`system:anonymous`) when `--anonymous-auth` allows it, otherwise 401.
//!   Authenticated users are also in `system:authenticated`.
//! - Authorization (`--authorization-mode`): `AlwaysAllow`, or `Webhook`: a
//!   `SubjectAccessReview` for the attributes kubelet derives from the
//!   request ([`attributes`]), allowed answers cached 5 min, denials 30 s.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

/// How long TokenReview answers are kept (kubelet's default cache TTL).
const TOKEN_TTL: Duration = Duration::from_secs(120);
/// How long a refused token is remembered.
const TOKEN_FAILURE_TTL: Duration = Duration::from_secs(10);
/// kubelet's `--authorization-webhook-cache-authorized-ttl` default.
const ALLOWED_TTL: Duration = Duration::from_secs(300);
/// kubelet's `--authorization-webhook-cache-unauthorized-ttl` default.
const DENIED_TTL: Duration = Duration::from_secs(30);
/// Entries kept per cache before expired ones are dropped.
const CACHE_PRUNE_AT: usize = 1024;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    /// A user known by name and groups (a client certificate).
    pub fn new(name: String, groups: Vec<String>) -> Self {
        User {
            name,
            uid: String::new(),
            groups,
            extra: BTreeMap::new(),
        }
    }

    fn anonymous() -> Self {
        User::new(
            "system:anonymous".into(),
            vec!["system:unauthenticated".into()],
        )
    }

    /// Add `system:authenticated`, as the apiserver's authenticators do.
    fn authenticated(mut self) -> Self {
        if !self.groups.iter().any(|g| g == "system:authenticated") {
            self.groups.push("system:authenticated".into());
        }
        self
    }
}

/// `--authorization-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthzMode {
    #[value(name = "AlwaysAllow")]
    AlwaysAllow,
    #[value(name = "Webhook")]
    Webhook,
}

/// A failed call to the apiserver.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("TokenReview")]
    TokenReview(#[source] kube::Error),
    #[error("SubjectAccessReview")]
    AccessReview(#[source] kube::Error),
    #[error("{0} needs an apiserver client (--kubeconfig)")]
    NoClient(&'static str),
}

/// What kubelet authorizes a request as: `verb` on `nodes/<subresource>`
/// named after the node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attributes {
    pub verb: &'static str,
    pub subresource: &'static str,
}

/// kubelet's mapping of a request to authorization attributes: the verb
/// from the HTTP method, the subresource from the path (`/stats/*`
/// → stats, `/metrics/*` → metrics, `/logs/*` → log, `/spec/*` → spec,
/// everything else → proxy).
pub fn attributes(method: &http::Method, path: &str) -> Attributes {
    let verb = match *method {
        http::Method::POST => "create",
        http::Method::GET | http::Method::HEAD => "get",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "",
    };
    let sub = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    let subresource = if sub("/stats") {
        "stats"
    } else if sub("/metrics") {
        "metrics"
    } else if sub("/logs") {
        "log"
    } else if sub("/spec") {
        "spec"
    } else {
        "proxy"
    };
    Attributes { verb, subresource }
}

/// A small TTL cache.
struct Cache<K, V> {
    map: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    fn new() -> Self {
        Cache {
            map: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, k: &K) -> Option<V> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(k)
            .filter(|(until, _)| *until > Instant::now())
            .map(|(_, v)| v.clone())
    }

    fn put(&self, k: K, v: V, ttl: Duration) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if map.len() >= CACHE_PRUNE_AT {
            map.retain(|_, (until, _)| *until > now);
        }
        map.insert(k, (now + ttl, v));
    }
}

/// The API's authenticator and authorizer.
pub struct Auth {
    client: Option<kube::Client>,
    node: String,
    token_webhook: bool,
    anonymous: bool,
    mode: AuthzMode,
    tokens: Cache<[u8; 32], Option<User>>,
    decisions: Cache<(User, Attributes), bool>,
}

impl Auth {
    /// Check the configuration: webhook modes need `client`.
    pub fn new(
        client: Option<kube::Client>,
        node: String,
        token_webhook: bool,
        anonymous: bool,
        mode: AuthzMode,
    ) -> Result<Self, AuthError> {
        if client.is_none() {
            if token_webhook {
                return Err(AuthError::NoClient("--authentication-token-webhook"));
            }
            if mode == AuthzMode::Webhook {
                return Err(AuthError::NoClient("--authorization-mode=Webhook"));
            }
        }
        Ok(Auth {
            client,
            node,
            token_webhook,
            anonymous,
            mode,
            tokens: Cache::new(),
            decisions: Cache::new(),
        })
    }

    /// The caller, or `None` (401). `cert` is the verified client
    /// certificate's user, if one was presented.
    pub async fn authenticate(
        &self,
        cert: Option<User>,
        headers: &http::HeaderMap,
    ) -> Result<Option<User>, AuthError> {
        if let Some(u) = cert {
            return Ok(Some(u.authenticated()));
        }
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        if let (Some(token), true) = (bearer, self.token_webhook) {
            // A token that fails is a 401 even with anonymous access on.
            return Ok(self.review_token(token).await?.map(User::authenticated));
        }
        Ok(self.anonymous.then(User::anonymous))
    }

    async fn review_token(&self, token: &str) -> Result<Option<User>, AuthError> {
        use sha2::Digest as _;
        let key: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.tokens.get(&key) {
            return Ok(hit);
        }
        let client = self
            .client
            .clone()
            .ok_or(AuthError::NoClient("--authentication-token-webhook"))?;
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            ..Default::default()
        };
        let got = Api::<TokenReview>::all(client)
            .create(&PostParams::default(), &review)
            .await
            .map_err(AuthError::TokenReview)?;
        let status = got.status.unwrap_or_default();
        let user = match (status.authenticated, status.user) {
            (Some(true), Some(u)) => Some(User {
                name: u.username.unwrap_or_default(),
                uid: u.uid.unwrap_or_default(),
                groups: u.groups.unwrap_or_default(),
                extra: u.extra.unwrap_or_default(),
            }),
            _ => {
                if let Some(e) = status.error.filter(|e| !e.is_empty()) {
                    tracing::info!(error = %e, "kubelet API: token refused");
                }
                None
            }
        };
        let ttl = if user.is_some() {
            TOKEN_TTL
        } else {
            TOKEN_FAILURE_TTL
        };
        self.tokens.put(key, user.clone(), ttl);
        Ok(user)
    }

    /// Whether `user` may do `attrs` on this node.
    pub async fn authorize(&self, user: &User, attrs: &Attributes) -> Result<bool, AuthError> {
        if self.mode == AuthzMode::AlwaysAllow {
            return Ok(true);
        }
        let key = (user.clone(), attrs.clone());
        if let Some(hit) = self.decisions.get(&key) {
            return Ok(hit);
        }
        let client = self
            .client
            .clone()
            .ok_or(AuthError::NoClient("--authorization-mode=Webhook"))?;
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: Some(user.uid.clone()).filter(|u| !u.is_empty()),
                groups: Some(user.groups.clone()),
                extra: Some(user.extra.clone()).filter(|e| !e.is_empty()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(attrs.verb.into()),
                    group: Some(String::new()),
                    version: Some("v1".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(attrs.subresource.into()),
                    name: Some(self.node.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let got = Api::<SubjectAccessReview>::all(client)
            .create(&PostParams::default(), &review)
            .await
            .map_err(AuthError::AccessReview)?;
        let allowed = got
            .status
            .is_some_and(|s| s.allowed && !s.denied.unwrap_or(false));
        let ttl = if allowed { ALLOWED_TTL } else { DENIED_TTL };
        self.decisions.put(key, allowed, ttl);
        Ok(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_follow_kubelet() {
        let a = |m: http::Method, p: &str| {
            let x = attributes(&m, p);
            (x.verb, x.subresource)
        };
        assert_eq!(a(http::Method::GET, "/stats/summary"), ("get", "stats"));
        assert_eq!(a(http::Method::GET, "/stats"), ("get", "stats"));
        assert_eq!(a(http::Method::GET, "/statsx"), ("get", "proxy"));
        assert_eq!(
            a(http::Method::HEAD, "/metrics/resource"),
            ("get", "metrics")
        );
        assert_eq!(a(http::Method::GET, "/logs/syslog"), ("get", "log"));
        assert_eq!(a(http::Method::GET, "/spec/"), ("get", "spec"));
        assert_eq!(a(http::Method::POST, "/exec/ns/p/c"), ("create", "proxy"));
        assert_eq!(
            a(http::Method::GET, "/containerLogs/ns/p/c"),
            ("get", "proxy")
        );
        assert_eq!(a(http::Method::PUT, "/pods"), ("update", "proxy"));
        assert_eq!(a(http::Method::DELETE, "/pods"), ("delete", "proxy"));
    }

    #[tokio::test]
    async fn anonymous_only_when_allowed_and_webhooks_need_a_client() {
        let h = http::HeaderMap::new();
        let off = Auth::new(None, "n".into(), false, false, AuthzMode::AlwaysAllow).expect("auth");
        assert_eq!(off.authenticate(None, &h).await.expect("authn"), None);
        let on = Auth::new(None, "n".into(), false, true, AuthzMode::AlwaysAllow).expect("auth");
        let u = on
            .authenticate(None, &h)
            .await
            .expect("authn")
            .expect("anonymous");
        assert_eq!(u.name, "system:anonymous");
        let cert = User::new("alice".into(), vec!["team".into()]);
        let u = off
            .authenticate(Some(cert), &h)
            .await
            .expect("authn")
            .expect("cert user");
        assert_eq!(u.groups, ["team", "system:authenticated"]);
        let e = Auth::new(None, "n".into(), false, false, AuthzMode::Webhook).err();
        assert!(e.is_some_and(|e| e.to_string().contains("--kubeconfig")));
        let e = Auth::new(None, "n".into(), true, false, AuthzMode::AlwaysAllow).err();
        assert!(e.is_some_and(|e| e.to_string().contains("token-webhook")));
    }
}
