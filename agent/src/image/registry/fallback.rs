//! Per-request fallback across a registry's endpoints, as containerd does:
//! every fetch (manifest, config, layer) walks the hosts.toml endpoints in
//! order and moves on when one fails in a way the next might not
//! (unreachable, an HTTP error, content cut short or not matching its
//! digest). The fetch fails only when every endpoint failed, and then names
//! each endpoint with what went wrong there.

use std::future::Future;

use super::{RegistryError, Session};

/// One endpoint of a session, as handed to an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointId(pub(super) usize);

/// How an attempt on one endpoint failed.
#[derive(Debug)]
pub enum Attempt<E> {
    /// The endpoint's fault (network, HTTP status, bad content): try the next.
    Next(E),
    /// It would fail the same anywhere (local store, credentials config): stop.
    Stop(E),
}

impl RegistryError {
    /// Could another endpoint do better? False for errors of our own configuration.
    pub fn is_endpoint_fault(&self) -> bool {
        !matches!(
            self,
            RegistryError::Hosts(_)
                | RegistryError::Auth(_)
                | RegistryError::Tls { .. }
                | RegistryError::NoEndpoint { .. }
                | RegistryError::AllEndpoints { .. }
        )
    }
}

impl<E: From<RegistryError>> From<RegistryError> for Attempt<E> {
    fn from(e: RegistryError) -> Self {
        if e.is_endpoint_fault() {
            Attempt::Next(e.into())
        } else {
            Attempt::Stop(e.into())
        }
    }
}

impl Session {
    /// The endpoint's base URL (`http://host:port/v2`), for messages.
    pub fn endpoint_base(&self, ep: EndpointId) -> &str {
        self.endpoints
            .get(ep.0)
            .map_or("", |(e, _)| e.base.as_str())
    }

    /// The endpoint and its client (an id of another session may not fit this one).
    pub(super) fn endpoint(
        &self,
        ep: EndpointId,
    ) -> Result<&(super::Endpoint, reqwest::Client), RegistryError> {
        self.endpoints.get(ep.0).ok_or(RegistryError::NoEndpoint {
            registry: self.registry.clone(),
            capability: "serve this request",
        })
    }

    /// Run `attempt` on each endpoint that may `resolve` (tags) or pull (by
    /// digest), in order, until one succeeds. With a single endpoint tried,
    /// its error is returned as is; with several, all of them, each named.
    pub async fn with_fallback<T, E, F, Fut>(
        &self,
        resolve: bool,
        what: &str,
        mut attempt: F,
    ) -> Result<T, E>
    where
        E: std::fmt::Display + From<RegistryError>,
        F: FnMut(EndpointId) -> Fut,
        Fut: Future<Output = Result<T, Attempt<E>>>,
    {
        let mut failures: Vec<(String, E)> = Vec::new();
        for (i, (ep, _)) in self.endpoints.iter().enumerate() {
            let capable = if resolve {
                ep.capabilities.resolve
            } else {
                ep.capabilities.pull
            };
            if !capable {
                continue;
            }
            match attempt(EndpointId(i)).await {
                Ok(v) => {
                    if !failures.is_empty() {
                        tracing::info!(registry = %self.registry, endpoint = %ep.base, %what, "fetched after other endpoints failed");
                    }
                    return Ok(v);
                }
                Err(Attempt::Stop(e)) => return Err(e),
                Err(Attempt::Next(e)) => {
                    tracing::debug!(endpoint = %ep.base, %what, error = %e, "registry endpoint failed, trying the next");
                    failures.push((ep.base.clone(), e));
                }
            }
        }
        if failures.len() == 1
            && let Some((_, e)) = failures.pop()
        {
            return Err(e);
        }
        if failures.is_empty() {
            return Err(RegistryError::NoEndpoint {
                registry: self.registry.clone(),
                capability: if resolve { "resolve" } else { "pull" },
            }
            .into());
        }
        Err(RegistryError::AllEndpoints {
            registry: self.registry.clone(),
            what: what.to_string(),
            failures: failures
                .into_iter()
                .map(|(base, e)| format!("{base}: {e}"))
                .collect(),
        }
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::super::RegistryConfig;
    use super::*;

    /// A session for example.com with two mirrors (the first pull-only) and the server.
    fn session(dir: &std::path::Path) -> Session {
        let d = dir.join("example.com");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("hosts.toml"),
            r#"server = "https://example.com"
[host."http://127.0.0.1:7001"]
  capabilities = ["pull"]
[host."http://127.0.0.1:7002"]
"#,
        )
        .unwrap();
        let cfg = RegistryConfig {
            hosts_dir: Some(dir.to_path_buf()),
            docker_config: Some(dir.join("no-config.json")),
            ..Default::default()
        };
        Session::new(&cfg, &"example.com/app:1".parse().unwrap(), None).unwrap()
    }

    fn status(url: &str) -> RegistryError {
        RegistryError::Status {
            registry: "example.com".into(),
            url: url.into(),
            status: reqwest::StatusCode::BAD_GATEWAY,
            body: "upstream down".into(),
        }
    }

    #[tokio::test]
    async fn tries_endpoints_in_order_until_one_succeeds() {
        let t = tempfile::tempdir().unwrap();
        let s = session(t.path());
        let mut tried = Vec::new();
        let got: Result<&str, RegistryError> = s
            .with_fallback(false, "blob x", |ep| {
                tried.push(s.endpoint_base(ep).to_string());
                let n = tried.len();
                async move {
                    if n < 3 {
                        Err(Attempt::Next(status("u")))
                    } else {
                        Ok("data")
                    }
                }
            })
            .await;
        assert_eq!(got.unwrap(), "data");
        assert_eq!(
            tried,
            [
                "http://127.0.0.1:7001/v2",
                "http://127.0.0.1:7002/v2",
                "https://example.com/v2"
            ]
        );
    }

    #[tokio::test]
    async fn all_failing_names_each_endpoint() {
        let t = tempfile::tempdir().unwrap();
        let s = session(t.path());
        // Resolving skips the pull-only mirror.
        let err = s
            .with_fallback(true, "manifest 1", |ep| {
                let url = s.endpoint_base(ep).to_string();
                async move { Err::<(), _>(Attempt::Next(status(&url))) }
            })
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, RegistryError::AllEndpoints { ref failures, .. } if failures.len() == 2)
        );
        assert!(
            msg.contains("manifest 1: every endpoint failed")
                && msg.contains("http://127.0.0.1:7002/v2: registry example.com")
                && msg.contains("https://example.com/v2: registry example.com")
                && !msg.contains("7001"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn stop_ends_the_walk() {
        let t = tempfile::tempdir().unwrap();
        let s = session(t.path());
        let mut calls = 0;
        let err = s
            .with_fallback(false, "blob x", |_| {
                calls += 1;
                async { Err::<(), Attempt<RegistryError>>(Attempt::Stop(status("local"))) }
            })
            .await
            .unwrap_err();
        assert_eq!(calls, 1);
        assert!(matches!(err, RegistryError::Status { .. }), "{err}");
        // The classification: our own configuration is no endpoint's fault.
        assert!(status("u").is_endpoint_fault());
        assert!(!RegistryError::Auth(super::super::auth::AuthError::BadAuth).is_endpoint_fault());
    }
}
