//! gRPC probes: `grpc.health.v1.Health/Check` over plaintext HTTP/2, as
//! kubelet's `grpcprobe` (SERVING passes; anything else fails).

use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::{Outcome, join_host_port};

/// One gRPC health check of `service` at `host:port`.
pub async fn probe(host: &str, port: u16, service: &str, timeout: Duration) -> Outcome {
    let addr = join_host_port(host, port);
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .and_then(|e| e.user_agent(super::http::USER_AGENT))
        .map(|e| e.connect_timeout(timeout).timeout(timeout));
    let endpoint = match endpoint {
        Ok(e) => e,
        Err(e) => return Outcome::Unknown(format!("grpc target {addr}: {e}")),
    };
    let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Outcome::Failure(format!(
                "timeout: failed to connect service {addr:?} within {}s: {}",
                timeout.as_secs(),
                super::http::error_chain(&e)
            ));
        }
        Err(_) => {
            return Outcome::Failure(format!(
                "timeout: failed to connect service {addr:?} within {}s",
                timeout.as_secs()
            ));
        }
    };
    let mut client = HealthClient::new(channel);
    let req = HealthCheckRequest {
        service: service.to_string(),
    };
    let resp = match tokio::time::timeout(timeout, client.check(req)).await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(status)) => {
            return Outcome::Failure(match status.code() {
                tonic::Code::Unimplemented => format!(
                    "this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                    status.message()
                ),
                tonic::Code::DeadlineExceeded => {
                    format!(
                        "timeout: health rpc did not complete within {}s",
                        timeout.as_secs()
                    )
                }
                _ => format!("error: health rpc probe failed: {}", status.message()),
            });
        }
        Err(_) => {
            return Outcome::Failure(format!(
                "timeout: health rpc did not complete within {}s",
                timeout.as_secs()
            ));
        }
    };
    match ServingStatus::try_from(resp.status) {
        Ok(ServingStatus::Serving) => Outcome::Success,
        Ok(other) => Outcome::Failure(format!(
            "service unhealthy (responded with {:?})",
            other.as_str_name()
        )),
        Err(_) => Outcome::Failure(format!(
            "service unhealthy (responded with {})",
            resp.status
        )),
    }
}
