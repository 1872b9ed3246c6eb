//! `/exec/{ns}/{pod}/{container}`, `/attach/...` and
//! `/portForward/{ns}/{pod}`: the apiserver proxies kubectl's upgrade
//! request here. The pod and container are resolved to CRI ids, the CRI
//! `Exec`/`Attach`/`PortForward` call issues a streaming URL as for any
//! CRI client, and when that URL is husklet's own streaming server the
//! upgrade is served right here by its protocol handlers (SPDY or
//! WebSocket, exec through a husk-shim session), with no second hop; another
//! runtime's URL is proxied ([`super::proxy`]).

use http::StatusCode;
use hyper::body::Incoming;
use hyper::{Request, Response};
use k8s_cri::v1 as cri;

use super::logs::form_pairs;
use super::{Body, NodeApi, full, text};
use crate::cri::CriError;

/// The CRI id of a status's `<runtime>://<id>` container id.
fn cri_id(container_id: &str) -> &str {
    container_id
        .split_once("://")
        .map_or(container_id, |(_, id)| id)
}

/// The exec/attach query as kubelet reads it (`command` repeated; the
/// streams `input`, `output`, `error`, `tty` as "1").
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CommandQuery {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl CommandQuery {
    pub fn parse(query: &str) -> Self {
        let mut q = CommandQuery::default();
        for (k, v) in form_pairs(query) {
            let on = matches!(v.as_str(), "1" | "true");
            match k.as_str() {
                "command" => q.command.push(v),
                "input" | "stdin" => q.stdin = on,
                "output" | "stdout" => q.stdout = on,
                "error" | "stderr" => q.stderr = on,
                "tty" => q.tty = on,
                _ => {}
            }
        }
        q
    }
}

fn cri_status(e: &CriError) -> StatusCode {
    match e {
        CriError::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
        CriError::NotFound { .. } => StatusCode::NOT_FOUND,
        CriError::FailedPrecondition(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `/exec` or `/attach` (`kind`).
pub async fn command(
    api: &NodeApi,
    req: Request<Incoming>,
    kind: &str,
    ns: &str,
    pod: &str,
    container: &str,
) -> Response<Body> {
    let Some(rt) = api.deps.runtime.clone() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "no container runtime");
    };
    let Some(report) = api.find_pod(ns, pod) else {
        return text(
            StatusCode::NOT_FOUND,
            &format!("pod {pod:?} does not exist"),
        );
    };
    let st = &report.status;
    let Some(status) = st
        .container_statuses
        .iter()
        .chain(st.init_container_statuses.iter())
        .chain(st.ephemeral_container_statuses.iter())
        .flatten()
        .find(|c| c.name == container)
    else {
        return text(
            StatusCode::NOT_FOUND,
            &format!("container {container:?} not found in pod {ns}/{pod}"),
        );
    };
    let running = status.state.as_ref().is_some_and(|s| s.running.is_some());
    let Some(id) = status.container_id.as_deref().filter(|_| running) else {
        return text(
            StatusCode::BAD_REQUEST,
            &format!("container {container:?} in pod {ns}/{pod} is not running"),
        );
    };
    let id = cri_id(id).to_string();
    let q = CommandQuery::parse(req.uri().query().unwrap_or(""));
    let url = if kind == "exec" {
        if q.command.is_empty() {
            return text(
                StatusCode::BAD_REQUEST,
                "no command given (query: command=...)",
            );
        }
        rt.exec(cri::ExecRequest {
            container_id: id,
            cmd: q.command,
            tty: q.tty,
            stdin: q.stdin,
            stdout: q.stdout,
            stderr: q.stderr,
        })
        .await
        .map(|r| r.url)
    } else {
        rt.attach(cri::AttachRequest {
            container_id: id,
            stdin: q.stdin,
            tty: q.tty,
            stdout: q.stdout,
            stderr: q.stderr,
        })
        .await
        .map(|r| r.url)
    };
    match url {
        Ok(url) => redeem(api, req, &url).await,
        Err(e) => text(cri_status(&e), &crate::cri::error::chain(&e)),
    }
}

/// `/portForward/{ns}/{pod}`: the ports come in the streams' headers.
pub async fn port_forward(
    api: &NodeApi,
    req: Request<Incoming>,
    ns: &str,
    pod: &str,
) -> Response<Body> {
    let Some(rt) = api.deps.runtime.clone() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "no container runtime");
    };
    let Some(report) = api.find_pod(ns, pod) else {
        return text(
            StatusCode::NOT_FOUND,
            &format!("pod {pod:?} does not exist"),
        );
    };
    let Some(sandbox) = report.sandbox_id.clone() else {
        return text(
            StatusCode::BAD_REQUEST,
            &format!("pod {ns}/{pod} has no sandbox yet"),
        );
    };
    // WebSocket clients name the ports in the query.
    let port = form_pairs(req.uri().query().unwrap_or(""))
        .into_iter()
        .filter(|(k, _)| k == "port")
        .filter_map(|(_, v)| v.parse::<i32>().ok())
        .collect();
    match rt
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: sandbox,
            port,
        })
        .await
    {
        Ok(r) => redeem(api, req, &r.url).await,
        Err(e) => text(cri_status(&e), &crate::cri::error::chain(&e)),
    }
}

/// Serve a streaming URL: one issued by husklet's own streaming server in
/// place (the request, with its pending upgrade, goes to the server's
/// handler under the URL's path); another runtime's through the upgrade
/// proxy ([`super::proxy`]), as kubelet does.
async fn redeem(api: &NodeApi, mut req: Request<Incoming>, url: &str) -> Response<Body> {
    let own = api
        .deps
        .streams
        .as_ref()
        .and_then(|s| url.strip_prefix(s.base_url()).map(|rest| (s, rest)));
    let Some((streams, rest)) = own else {
        // Another runtime's streaming server (--container-runtime-endpoint).
        tracing::debug!(%url, "kubelet API: proxying to the runtime's streaming server");
        return super::proxy::upgrade(req, url).await;
    };
    let mut path = rest.to_string();
    if let Some(q) = req.uri().query() {
        path = format!("{path}?{q}");
    }
    match path.parse::<http::Uri>() {
        Ok(u) => *req.uri_mut() = u,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
    streams.handle(req).map(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_query_as_the_apiserver_sends_it() {
        let q =
            CommandQuery::parse("command=sh&command=-c&command=exit+3&input=1&output=1&error=1");
        assert_eq!(q.command, ["sh", "-c", "exit 3"]);
        assert!(q.stdin && q.stdout && q.stderr && !q.tty);
        let q = CommandQuery::parse("command=sh&output=1&tty=1");
        assert!(!q.stdin && q.stdout && !q.stderr && q.tty);
        assert_eq!(cri_id("husk://abc"), "abc");
        assert_eq!(cri_id("abc"), "abc");
    }
}
