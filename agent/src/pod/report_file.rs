//! Each pod's latest report as a JSON file (`<dir>/<uid>.json`), written
//! atomically when it changes, so `husklet pods`, `describe` and `logs`
//! read what the agent sees without talking to it, even while it restarts.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use serde::{Deserialize, Serialize};

use super::events::{Event, EventType};
use super::worker::{Report, Stage};

/// What the file holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PodFile {
    pub pod: Pod,
    pub status: PodStatus,
    pub stage: String,
    pub sandbox_id: Option<String>,
    /// Where the container logs are: `<dir>/<container>/<restart>.log`.
    #[serde(default)]
    pub log_directory: String,
    pub events: Vec<FileEvent>,
    /// Start-up steps and their time since the pod was accepted (ms).
    pub timeline: Vec<(String, Option<u64>)>,
    /// The source's error, for a pod that could not be run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An event in the file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileEvent {
    pub type_: String,
    pub reason: String,
    pub message: String,
    pub object: String,
    pub count: u32,
    /// Seconds since the epoch of the last occurrence.
    pub last: u64,
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

impl FileEvent {
    fn from_event(e: &Event) -> Self {
        FileEvent {
            type_: match e.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .into(),
            reason: e.reason.clone(),
            message: e.message.clone(),
            object: e.field_path.clone(),
            count: e.count,
            last: secs(e.last),
        }
    }
}

impl PodFile {
    pub fn from_report(r: &Report) -> Self {
        PodFile {
            pod: (*r.pod).clone(),
            status: r.status.clone(),
            stage: format!("{:?}", r.stage),
            sandbox_id: r.sandbox_id.clone(),
            log_directory: r.log_directory.clone(),
            events: r.events.all().iter().map(FileEvent::from_event).collect(),
            timeline: r
                .timeline
                .steps()
                .into_iter()
                .map(|(s, d)| (s.to_string(), d.map(|d| d.as_millis() as u64)))
                .collect(),
            error: None,
        }
    }

    /// A pod the source could not run (a bad manifest): its error only.
    pub fn rejected(pod: Pod, error: String) -> Self {
        PodFile {
            pod,
            status: PodStatus {
                phase: Some("Failed".into()),
                reason: Some("Invalid".into()),
                message: Some(error.clone()),
                ..Default::default()
            },
            stage: format!("{:?}", Stage::Failed),
            sandbox_id: None,
            log_directory: String::new(),
            events: vec![],
            timeline: vec![],
            error: Some(error),
        }
    }
}

/// Where pod files live under husklet's state dir.
pub fn dir(state: &Path) -> PathBuf {
    state.join("pods")
}

/// Write `f` as `<dir>/<key>.json` unless the file already says the same.
pub fn write(dir: &Path, key: &str, f: &PodFile) -> std::io::Result<()> {
    let data = serde_json::to_vec_pretty(f).map_err(std::io::Error::other)?;
    let path = dir.join(format!("{key}.json"));
    if std::fs::read(&path).is_ok_and(|old| old == data) {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{key}.json.tmp"));
    std::fs::write(&tmp, &data)?;
    std::fs::rename(&tmp, &path)
}

/// Remove `<dir>/<key>.json`.
pub fn remove(dir: &Path, key: &str) {
    let _ = std::fs::remove_file(dir.join(format!("{key}.json")));
}

/// Every pod file in `dir`, sorted by namespace and name; unreadable
/// files are skipped (one being replaced is read on the next call).
pub fn read_all(dir: &Path) -> Vec<PodFile> {
    let mut out: Vec<PodFile> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.ends_with(".json") && !n.starts_with('.')
        })
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|d| serde_json::from_slice(&d).ok())
        .collect();
    out.sort_by(|a: &PodFile, b: &PodFile| {
        let k = |p: &PodFile| {
            (
                p.pod.metadata.namespace.clone(),
                p.pod.metadata.name.clone(),
            )
        };
        k(a).cmp(&k(b))
    });
    out
}
