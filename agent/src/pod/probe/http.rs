//! HTTP(S) GET for probes and hooks, as kubelet's `httpprobe`: TLS without
//! verification, `User-Agent: kube-probe/<version>`, redirects followed
//! only to the same host (a redirect elsewhere ends the probe with a
//! warning, which counts as success), 200–399 succeed, at most 10 KiB of
//! body read.

use std::time::Duration;

use k8s_openapi::api::core::v1::HTTPGetAction;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::{Outcome, Target, join_host_port, resolve_port};

/// The Kubernetes version kubelet's User-Agent names.
pub const USER_AGENT: &str = "kube-probe/1.33";
const MAX_BODY: usize = 10 * 1024;

/// The request a probe or hook sends: URL and headers.
pub fn request(h: &HTTPGetAction, target: &Target<'_>) -> Result<(String, HeaderMap), String> {
    let port = resolve_port(&h.port, target.container)?;
    let scheme = h.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
    let host = h
        .host
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or(target.pod_ip);
    let path = h.path.as_deref().unwrap_or("");
    let slash = if path.starts_with('/') { "" } else { "/" };
    let url = format!("{scheme}://{}{slash}{path}", join_host_port(host, port));
    let mut headers = HeaderMap::new();
    for hdr in h.http_headers.iter().flatten() {
        let name = HeaderName::from_bytes(hdr.name.as_bytes())
            .map_err(|e| format!("header {:?}: {e}", hdr.name))?;
        let value =
            HeaderValue::from_str(&hdr.value).map_err(|e| format!("header {:?}: {e}", hdr.name))?;
        headers.append(name, value);
    }
    if !headers.contains_key(reqwest::header::USER_AGENT) {
        headers.insert(
            reqwest::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        );
    }
    if !headers.contains_key(reqwest::header::ACCEPT) {
        headers.insert(reqwest::header::ACCEPT, HeaderValue::from_static("*/*"));
    }
    Ok((url, headers))
}

/// A client as kubelet's probe transport: no certificate checks, no
/// keep-alive, no proxy, redirects only to the same host (or any, for hooks).
pub fn client(timeout: Duration, follow_other_hosts: bool) -> Result<reqwest::Client, String> {
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        let first_host = attempt
            .previous()
            .first()
            .and_then(|u| u.host_str().map(str::to_string));
        if !follow_other_hosts && first_host.as_deref() != attempt.url().host_str() {
            attempt.stop()
        } else if attempt.previous().len() >= 10 {
            attempt.error("stopped after 10 redirects")
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .redirect(policy)
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(timeout)
        .build()
        .map_err(|e| format!("http client: {e}"))
}

/// One HTTP probe (`DoHTTPProbe`).
pub async fn probe(h: &HTTPGetAction, target: &Target<'_>, timeout: Duration) -> Outcome {
    let (url, headers) = match request(h, target) {
        Ok(r) => r,
        Err(e) => return Outcome::Unknown(e),
    };
    let client = match client(timeout, false) {
        Ok(c) => c,
        Err(e) => return Outcome::Unknown(e),
    };
    let mut resp = match client.get(&url).headers(headers).send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Failure(error_chain(&e)),
    };
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    while body.len() < MAX_BODY {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => return Outcome::Failure(error_chain(&e)),
        }
    }
    body.truncate(MAX_BODY);
    let body = String::from_utf8_lossy(&body);
    match status {
        200..=299 => Outcome::Success,
        300..=399 => Outcome::Warning(format!("Probe terminated redirects, Response body: {body}")),
        _ => Outcome::Failure(format!("HTTP probe failed with statuscode: {status}")),
    }
}

/// `error: cause: cause`, each once.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}
