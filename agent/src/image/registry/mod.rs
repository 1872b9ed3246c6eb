//! A lean client for the OCI distribution API (pull side): manifests and
//! blobs over HTTP(S) with bearer/basic auth, per-host mirrors from
//! containerd-style `hosts.toml` (each fetch falling back along them),
//! credentials from docker's `config.json` and its credential helpers, and
//! plain HTTP for loopback registries.
//!
//! Written directly on reqwest instead of oci-client so that blobs stream
//! straight into the store and the unpacker (one pass, hashed on the way),
//! and so mirrors, per-host TLS settings and CRI's per-request credentials
//! fit without working around a client that owns those decisions.

pub mod auth;
pub mod credhelper;
pub mod dockercfg;
pub mod fallback;
pub mod hosts;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};

pub use auth::Credentials;
use auth::{AuthError, TokenResponse, parse_challenge};
use credhelper::HelperEnv;
pub use fallback::{Attempt, EndpointId};
use hosts::{Endpoint, HostsError};

use super::digest::Digest;
use super::manifest::MANIFEST_ACCEPT;
use super::reference::Reference;

/// Where registry settings come from.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// containerd-style `config_path`: `<dir>/<host>/hosts.toml`.
    pub hosts_dir: Option<PathBuf>,
    /// A docker `config.json` (`auths`, `credHelpers`, `credsStore`).
    pub docker_config: Option<PathBuf>,
    /// Where credential helpers are looked up, and their timeout.
    pub helpers: HelperEnv,
}

/// Why talking to a registry failed. Causes are part of the message (`cause`,
/// never a `#[source]`), printed once: the text alone travels on (into
/// [`RegistryError::AllEndpoints`], a pull's failure).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {registry}: cannot reach {url}: {}", with_causes(.cause))]
    Unreachable {
        registry: String,
        url: String,
        cause: reqwest::Error,
    },
    #[error("registry {registry}: {what} not found in repository {repository}")]
    NotFound {
        registry: String,
        repository: String,
        what: String,
    },
    #[error("registry {registry}: access to {repository} denied ({detail}); check the credentials")]
    Unauthorized {
        registry: String,
        repository: String,
        detail: String,
    },
    #[error("registry {registry}: {url}: HTTP {status}: {body}")]
    Status {
        registry: String,
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("registry {registry}: token from {realm}: {message}")]
    Token {
        registry: String,
        realm: String,
        message: String,
    },
    #[error("registry {registry}: {what} is larger than {limit} bytes")]
    TooLarge {
        registry: String,
        what: String,
        limit: usize,
    },
    #[error("registry {registry}: no endpoint can {capability} (see its hosts.toml)")]
    NoEndpoint {
        registry: String,
        capability: &'static str,
    },
    #[error("registry {registry}: {url}: content has digest {actual}, not {expected}")]
    Digest {
        registry: String,
        url: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("registry {registry}: {what}: every endpoint failed: {}", .failures.join("; "))]
    AllEndpoints {
        registry: String,
        what: String,
        /// `<endpoint>: <error>` for each endpoint tried, in order.
        failures: Vec<String>,
    },
    #[error("registry {registry}: TLS settings: {message}")]
    Tls { registry: String, message: String },
    #[error(transparent)]
    Hosts(#[from] HostsError),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// A manifest as fetched.
pub struct FetchedManifest {
    pub data: Vec<u8>,
    pub content_type: Option<String>,
    pub digest: Digest,
}

/// Requests for one repository with one set of credentials.
pub struct Session {
    registry: String,
    repository: String,
    endpoints: Vec<(Endpoint, reqwest::Client)>,
    creds: Option<Credentials>,
    /// Authorization header per endpoint base, learnt from challenges.
    auth: Mutex<HashMap<String, String>>,
}

const MAX_MANIFEST: usize = 8 << 20;

fn client_for(registry: &str, ep: &Endpoint) -> Result<reqwest::Client, RegistryError> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("husklet/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(120))
        .no_proxy();
    if ep.skip_verify {
        b = b.tls_danger_accept_invalid_certs(true);
    }
    for ca in &ep.ca {
        let pem = std::fs::read(ca).map_err(|e| RegistryError::Tls {
            registry: registry.into(),
            message: format!("ca {}: {e}", ca.display()),
        })?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| RegistryError::Tls {
            registry: registry.into(),
            message: format!("ca {}: {e}", ca.display()),
        })?;
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(|e| RegistryError::Tls {
        registry: registry.into(),
        message: e.to_string(),
    })
}

impl Session {
    /// Credentials: `creds` if given, else the docker config's for the host
    /// (which may run a credential helper: call this off the async runtime).
    pub fn new(
        cfg: &RegistryConfig,
        reference: &Reference,
        creds: Option<Credentials>,
    ) -> Result<Self, RegistryError> {
        let registry = reference.registry.clone();
        let endpoints = hosts::endpoints(cfg.hosts_dir.as_deref(), &registry)?
            .into_iter()
            .map(|ep| client_for(&registry, &ep).map(|c| (ep, c)))
            .collect::<Result<Vec<_>, _>>()?;
        let creds = match creds.filter(|c| !c.is_empty()) {
            Some(c) => Some(c),
            None => match cfg
                .docker_config
                .clone()
                .or_else(dockercfg::default_docker_config)
            {
                Some(p) => dockercfg::from_docker_config(&p, &registry, &cfg.helpers)?,
                None => None,
            },
        };
        Ok(Session {
            registry,
            repository: reference.repository.clone(),
            endpoints,
            creds,
            auth: Mutex::new(HashMap::new()),
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// GET `<base>/<repo>/<kind>/<object>`, answering one auth challenge.
    async fn get(
        &self,
        ep: &Endpoint,
        client: &reqwest::Client,
        kind: &str,
        object: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, RegistryError> {
        let url = format!("{}/{}/{kind}/{object}", ep.base, self.repository);
        let mut tried_auth = false;
        loop {
            let mut req = client.get(&url);
            for (k, v) in &ep.headers {
                req = req.header(k, v);
            }
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            let cached = self.auth.lock().ok().and_then(|m| m.get(&ep.base).cloned());
            if let Some(h) = &cached {
                req = req.header(AUTHORIZATION, h);
            }
            let resp = req
                .send()
                .await
                .map_err(|cause| RegistryError::Unreachable {
                    registry: self.registry.clone(),
                    url: url.clone(),
                    cause,
                })?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !tried_auth {
                tried_auth = true;
                let challenge = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                let Some(ch) = challenge else {
                    return Err(self.unauthorized("HTTP 401 without a WWW-Authenticate challenge"));
                };
                let header = self.answer(client, &ch).await?;
                if let Ok(mut m) = self.auth.lock() {
                    m.insert(ep.base.clone(), header);
                }
                continue;
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                let body = resp.text().await.unwrap_or_default();
                return Err(self.unauthorized(&format!("HTTP {status}: {}", snippet(&body))));
            }
            if status == StatusCode::NOT_FOUND {
                return Err(RegistryError::NotFound {
                    registry: self.registry.clone(),
                    repository: self.repository.clone(),
                    what: format!(
                        "{} {object}",
                        if kind == "blobs" { "blob" } else { "manifest" }
                    ),
                });
            }
            if !status.is_success() {
                let body = resp.text().await.unwrap_or_default();
                return Err(RegistryError::Status {
                    registry: self.registry.clone(),
                    url,
                    status,
                    body: snippet(&body),
                });
            }
            return Ok(resp);
        }
    }

    fn unauthorized(&self, detail: &str) -> RegistryError {
        let detail = if self.creds.is_none() {
            format!("{detail}; no credentials were given")
        } else {
            detail.to_string()
        };
        RegistryError::Unauthorized {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            detail,
        }
    }

    /// The Authorization header value that answers a challenge.
    async fn answer(
        &self,
        client: &reqwest::Client,
        ch: &auth::Challenge,
    ) -> Result<String, RegistryError> {
        use base64::Engine as _;
        let creds = match &self.creds {
            Some(c) => Some(c.user_pass()?),
            None => None,
        }
        .flatten();
        match ch.scheme.as_str() {
            "basic" => {
                let Some((u, p)) = creds else {
                    return Err(self.unauthorized("the registry wants basic auth"));
                };
                Ok(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                ))
            }
            "bearer" => {
                if let Some(t) = self.creds.as_ref().and_then(|c| c.registry_token.clone()) {
                    return Ok(format!("Bearer {t}"));
                }
                let realm = ch
                    .params
                    .get("realm")
                    .cloned()
                    .ok_or_else(|| self.unauthorized("bearer challenge without realm"))?;
                let scope = ch
                    .params
                    .get("scope")
                    .cloned()
                    .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                let terr = |message: String| RegistryError::Token {
                    registry: self.registry.clone(),
                    realm: realm.clone(),
                    message,
                };
                let mut params: Vec<(&str, String)> = vec![("scope", scope)];
                if let Some(s) = ch.params.get("service") {
                    params.push(("service", s.clone()));
                }
                let resp = if let Some(refresh) =
                    self.creds.as_ref().and_then(|c| c.identity_token.clone())
                {
                    params.push(("grant_type", "refresh_token".into()));
                    params.push(("refresh_token", refresh));
                    params.push(("client_id", "husklet".into()));
                    let body = reqwest::Url::parse_with_params("http://x/", &params)
                        .map_err(|e| terr(e.to_string()))?
                        .query()
                        .unwrap_or("")
                        .to_string();
                    client
                        .post(&realm)
                        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(body)
                        .send()
                        .await
                } else {
                    let url = reqwest::Url::parse_with_params(&realm, &params)
                        .map_err(|e| terr(format!("invalid realm: {e}")))?;
                    let mut req = client.get(url);
                    if let Some((u, p)) = &creds {
                        req = req.basic_auth(u, Some(p));
                    }
                    req.send().await
                }
                .map_err(|e| terr(format!("{e}")))?;
                let status = resp.status();
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    return Err(self.unauthorized(&format!("token endpoint said HTTP {status}")));
                }
                if !status.is_success() {
                    let body = resp.text().await.unwrap_or_default();
                    return Err(terr(format!("HTTP {status}: {}", snippet(&body))));
                }
                let t: TokenResponse = resp
                    .json()
                    .await
                    .map_err(|e| terr(format!("bad token response: {e}")))?;
                let tok = t
                    .token
                    .or(t.access_token)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| terr("response has no token".into()))?;
                Ok(format!("Bearer {tok}"))
            }
            other => Err(self.unauthorized(&format!("unsupported auth scheme {other:?}"))),
        }
    }

    /// Fetch a manifest by tag or digest; verified against the digest when pinned.
    pub async fn manifest(&self, object: &str) -> Result<FetchedManifest, RegistryError> {
        let pinned: Option<Digest> = object.parse().ok();
        let what = format!("manifest {object}");
        self.with_fallback(pinned.is_none(), &what, |ep| async move {
            let (endpoint, client) = self.endpoint(ep)?;
            let resp = self
                .get(endpoint, client, "manifests", object, Some(MANIFEST_ACCEPT))
                .await?;
            let content_type = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let url = resp.url().to_string();
            let data = self
                .read_limited(resp, &format!("manifest {object}"))
                .await?;
            let digest = Digest::of(&data);
            if let Some(p) = pinned {
                self.check_digest(&url, &p, &digest)?;
            }
            Ok(FetchedManifest {
                data,
                content_type,
                digest,
            })
        })
        .await
    }

    /// Start fetching a blob from one endpoint; the caller streams and verifies the body.
    pub async fn blob_from(
        &self,
        ep: EndpointId,
        digest: &Digest,
    ) -> Result<reqwest::Response, RegistryError> {
        let (endpoint, client) = self.endpoint(ep)?;
        self.get(endpoint, client, "blobs", &digest.to_string(), None)
            .await
    }

    /// Fetch a small blob (a config) whole, verified, from the first endpoint that has it.
    pub async fn small_blob(&self, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        let what = format!("blob {digest}");
        self.with_fallback(false, &what, |ep| async move {
            let resp = self.blob_from(ep, digest).await?;
            let url = resp.url().to_string();
            let data = self.read_limited(resp, &format!("blob {digest}")).await?;
            self.check_digest(&url, digest, &Digest::of(&data))?;
            Ok(data)
        })
        .await
    }

    fn check_digest(
        &self,
        url: &str,
        expected: &Digest,
        actual: &Digest,
    ) -> Result<(), RegistryError> {
        if expected == actual {
            return Ok(());
        }
        Err(RegistryError::Digest {
            registry: self.registry.clone(),
            url: url.to_string(),
            expected: *expected,
            actual: *actual,
        })
    }

    async fn read_limited(
        &self,
        mut resp: reqwest::Response,
        what: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        let mut out = Vec::new();
        let url = resp.url().to_string();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|cause| RegistryError::Unreachable {
                registry: self.registry.clone(),
                url: url.clone(),
                cause,
            })?
        {
            out.extend_from_slice(&chunk);
            if out.len() > MAX_MANIFEST {
                return Err(RegistryError::TooLarge {
                    registry: self.registry.clone(),
                    what: what.to_string(),
                    limit: MAX_MANIFEST,
                });
            }
        }
        Ok(out)
    }
}

/// reqwest's error and its sources on one line: its own message ("error
/// sending request for url") leaves the reason (refused, DNS, TLS) to them.
fn with_causes(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut next = std::error::Error::source(e);
    while let Some(c) = next {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = c.source();
    }
    out
}

fn snippet(body: &str) -> String {
    let b = body.trim();
    if b.len() > 300 {
        format!(
            "{}...",
            &b[..b.char_indices().nth(300).map(|(i, _)| i).unwrap_or(b.len())]
        )
    } else {
        b.to_string()
    }
}
