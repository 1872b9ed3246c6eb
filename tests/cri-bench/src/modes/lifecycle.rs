//! `lifecycle`: N pods one after the other, every CRI call of a pod's life timed.

use k8s_cri::v1 as cri;

use super::{Outcome, PodRun, ensure_image};
use crate::client::ClientError;
use crate::stats::Timings;
use crate::timed;

/// The pause before the settled ContainerStatus.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(50);

pub async fn run(pods: &PodRun, count: usize) -> anyhow::Result<Outcome> {
    let mut c = pods.client.clone();
    ensure_image(&mut c, &pods.tracker, &pods.template.image).await?;
    let mut t = Timings::default();
    for i in 0..count {
        let pod = pods.start_pod(i, &mut t).await?;
        let status = timed!(
            t,
            "ContainerStatus",
            c.container_status(&pod.container_id, false)
        )?;
        let state = status.status.as_ref().map(|s| s.state);
        if state != Some(cri::ContainerState::ContainerRunning as i32) {
            return Err(ClientError::BadResponse {
                rpc: "ContainerStatus",
                object: format!("container {}", pod.container_id),
                reason: format!(
                    "state {} right after StartContainer, expected CONTAINER_RUNNING",
                    state_name(state)
                ),
            }
            .into());
        }
        // What ContainerStatus costs once the start's aftermath is over,
        // and the bare round trip: where a status call's time goes.
        tokio::time::sleep(SETTLE).await;
        timed!(
            t,
            "ContainerStatus, settled",
            c.container_status(&pod.container_id, false)
        )?;
        timed!(t, "Version", c.version())?;
        pods.remove_pod(&pod, &mut t).await?;
    }
    Ok(Outcome {
        ops: t.summaries(),
        ..Default::default()
    })
}

fn state_name(state: Option<i32>) -> &'static str {
    state
        .and_then(|s| cri::ContainerState::try_from(s).ok())
        .map(|s| s.as_str_name())
        .unwrap_or("(none)")
}
