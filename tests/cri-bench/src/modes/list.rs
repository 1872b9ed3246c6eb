//! `list`: the sandboxes and containers cri-bench created that still exist
//! (any run, or one run), through ListPodSandbox and ListContainers, and the
//! runtime's images (ListImages).

use serde::Serialize;

use crate::client::CriClient;
use crate::spec::RUN_LABEL;

/// One object that carries cri-bench's run label.
#[derive(Debug, Serialize)]
pub struct Leftover {
    pub id: String,
    pub name: String,
    pub run: String,
    pub state: String,
}

#[derive(Debug, Serialize)]
pub struct Leftovers {
    pub sandboxes: Vec<Leftover>,
    pub containers: Vec<Leftover>,
    /// Every image's repo tags (all images, not only cri-bench's).
    pub images: Vec<String>,
}

pub async fn run(client: &CriClient, run_id: Option<&str>) -> anyhow::Result<Leftovers> {
    let mut c = client.clone();
    let wanted = |labels: &std::collections::HashMap<String, String>| match labels.get(RUN_LABEL) {
        Some(r) => run_id.is_none_or(|want| want == r),
        None => false,
    };
    let sandboxes = c
        .list_pod_sandbox(None)
        .await?
        .into_iter()
        .filter(|s| wanted(&s.labels))
        .map(|s| Leftover {
            name: s.metadata.map(|m| m.name).unwrap_or_default(),
            run: s.labels.get(RUN_LABEL).cloned().unwrap_or_default(),
            state: k8s_cri::v1::PodSandboxState::try_from(s.state)
                .map(|s| s.as_str_name().to_string())
                .unwrap_or_default(),
            id: s.id,
        })
        .collect();
    let containers = c
        .list_containers(None)
        .await?
        .into_iter()
        .filter(|c| wanted(&c.labels))
        .map(|c| Leftover {
            name: c.metadata.map(|m| m.name).unwrap_or_default(),
            run: c.labels.get(RUN_LABEL).cloned().unwrap_or_default(),
            state: k8s_cri::v1::ContainerState::try_from(c.state)
                .map(|s| s.as_str_name().to_string())
                .unwrap_or_default(),
            id: c.id,
        })
        .collect();
    let mut images: Vec<String> = c
        .list_images()
        .await?
        .into_iter()
        .flat_map(|i| i.repo_tags)
        .collect();
    images.sort();
    Ok(Leftovers {
        sandboxes,
        containers,
        images,
    })
}
