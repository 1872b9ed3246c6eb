//! What a husklet killed in the middle of a call left behind, put right when
//! the next one starts.
//!
//! RunPodSandbox and CreateContainer write their record with `pending` set
//! before they change anything on the host, and clear it once they
//! succeeded. A record still pending at start belongs to a call whose caller
//! never got an id, so it is rolled back as a failed call would have been:
//! CNI DEL with the same container id and netns (IP, veth, iptables chains),
//! unpin the namespaces, `husk delete --force`, unmount the rootfs, remove
//! the dirs and the record. A StartContainer cut short after the shim started
//! the container is completed instead: the record learns it runs; one cut
//! short before the shim got going is undone (the container is created
//! again).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use husk_shim::{CtlRequest, CtlResponse, layout};

use super::config::CriConfig;
use super::container::{ContainerRecord, Live};
use super::record;
use crate::image::ImageStore;
use crate::image::fsutil::remove_tree;
use crate::sandbox::SandboxRecord;
use crate::sandbox::net::Cni;

/// How long a recovery waits for a killed helper to be gone, or for a shim
/// to answer.
const WAIT: Duration = Duration::from_secs(5);

/// Undo a CreateContainer that never returned: stop whatever it launched
/// (the shim and `husk create`, which may still be running), delete the
/// container, its rootfs, dirs and record.
pub(crate) fn roll_back_container(cfg: &CriConfig, store: &ImageStore, rec: &ContainerRecord) {
    tracing::warn!(container = %rec.id, "rolling back a CreateContainer cut short");
    undo_launch(cfg, store, rec);
    if let Err(e) = record::remove(&cfg.containers_dir(), &rec.id) {
        tracing::warn!(container = %rec.id, error = %super::error::chain(&e), "remove the record");
    }
}

/// A StartContainer cut short before its shim got going (no shim, no exit
/// record): undo the launch, so the container is created again and a new
/// StartContainer starts it. Returns whether the record changed.
pub(crate) fn roll_back_launch(
    cfg: &CriConfig,
    store: &ImageStore,
    rec: &mut ContainerRecord,
) -> bool {
    if !rec.launched || rec.started_at != 0 || !matches!(rec.live(), Live::Unknown) {
        return false;
    }
    tracing::warn!(container = %rec.id, "rolling back a StartContainer cut short");
    undo_launch(cfg, store, rec);
    rec.launched = false;
    if let Err(e) = record::save(&cfg.containers_dir(), &rec.id, &*rec) {
        tracing::warn!(container = %rec.id, error = %super::error::chain(&e), "save the record");
    }
    true
}

/// Stop whatever a launch started (the shim and its `husk create`, which
/// may still be running), delete the container, unmount and remove its
/// rootfs, remove its bundle and shim dir.
fn undo_launch(cfg: &CriConfig, store: &ImageStore, rec: &ContainerRecord) {
    // The shim and its `husk create` carry the id in their arguments; the
    // container's own program does not (and `husk delete` kills it).
    kill_processes_with("cmdline", rec.id.as_bytes());
    match std::process::Command::new(&cfg.runtime)
        .arg("--root")
        .arg(cfg.runtime_root())
        .args(["delete", "--force", &rec.id])
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => {}
        // Never created: nothing to delete.
        Ok(o) => {
            tracing::debug!(container = %rec.id, stderr = %String::from_utf8_lossy(&o.stderr).trim(), "husk delete --force")
        }
        Err(e) => tracing::warn!(container = %rec.id, error = %e, "run husk delete"),
    }
    match store.remove_rootfs(&rec.id) {
        Ok(()) | Err(crate::image::ImageError::NoRootfs(_)) => {}
        Err(e) => {
            tracing::warn!(container = %rec.id, error = %super::error::chain(&e), "remove the rootfs")
        }
    }
    for dir in [cfg.containers_dir().join(&rec.id), rec.shim_dir.clone()] {
        remove_dir(&dir);
    }
}

/// Undo a RunPodSandbox that never returned: stop its CNI plugins if they
/// still run, CNI DEL, unpin, remove the files, the log directory if it is
/// empty, and the record.
pub(crate) fn roll_back_sandbox(cfg: &CriConfig, cni: &Cni, rec: &SandboxRecord) {
    tracing::warn!(sandbox = %rec.id, "rolling back a RunPodSandbox cut short");
    // An ADD still running would allocate after our DEL: stop it first (the
    // DEL below cleans up whatever it did half-way).
    kill_processes_with(
        "environ",
        format!("CNI_CONTAINERID={}\0", rec.id).as_bytes(),
    );
    super::pods::teardown(cni, rec);
    remove_dir(&rec.files_dir);
    if !rec.config.log_directory.is_empty() {
        // Only when empty: it may be the kubelet's, with other files.
        let _ = std::fs::remove_dir(&rec.config.log_directory);
    }
    if let Err(e) = record::remove(&cfg.sandboxes_dir(), &rec.id) {
        tracing::warn!(sandbox = %rec.id, error = %super::error::chain(&e), "remove the record");
    }
}

/// A container whose StartContainer was cut short after the shim started
/// it: record the start (the time is the recovery's, the real one is lost).
/// Returns whether the record changed.
pub(crate) fn complete_start(cfg: &CriConfig, rec: &mut ContainerRecord) -> bool {
    if !rec.launched || rec.started_at != 0 || !matches!(rec.live(), Live::Created) {
        return false;
    }
    match shim_state(&rec.shim_dir) {
        Ok(state) if state == "running" => {}
        Ok(_) => return false,
        Err(e) => {
            tracing::warn!(container = %rec.id, error = %e, "ask husk-shim for its state");
            return false;
        }
    }
    rec.started_at = record::now_ns();
    tracing::info!(container = %rec.id, "a StartContainer cut short had started it");
    if let Err(e) = record::save(&cfg.containers_dir(), &rec.id, &*rec) {
        tracing::warn!(container = %rec.id, error = %super::error::chain(&e), "save the record");
    }
    true
}

/// The shim's `status` state (`created` or `running`), with timeouts: a
/// wedged shim must not hold up husklet's start.
fn shim_state(dir: &Path) -> std::io::Result<String> {
    let mut s = UnixStream::connect(dir.join(layout::CTL_SOCK))?;
    s.set_read_timeout(Some(WAIT))?;
    s.set_write_timeout(Some(WAIT))?;
    let mut line = serde_json::to_vec(&CtlRequest::Status).map_err(std::io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut resp = String::new();
    BufReader::new(s).read_line(&mut resp)?;
    let r: CtlResponse = serde_json::from_str(&resp).map_err(std::io::Error::other)?;
    match (r.error, r.status) {
        (None, Some(st)) => Ok(st.state),
        (Some(e), _) => Err(std::io::Error::other(e)),
        (None, None) => Err(std::io::Error::other("status response without a status")),
    }
}

fn remove_dir(dir: &Path) {
    match remove_tree(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %dir.display(), error = %e, "remove a dir"),
    }
}

/// SIGKILL every process whose `/proc/<pid>/<file>` contains `needle`, and
/// wait (up to [`WAIT`]) until none is left. Zombies have empty files, so a
/// killed process counts as gone even before its parent reaps it.
fn kill_processes_with(file: &str, needle: &[u8]) {
    let me = std::process::id();
    let deadline = Instant::now() + WAIT;
    loop {
        let found = processes_with(file, needle, me);
        if found.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(pids = ?found, "processes of a call cut short did not go away");
            return;
        }
        for pid in found {
            tracing::info!(pid, "killing a helper of a call cut short");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn processes_with(file: &str, needle: &[u8], me: u32) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid as u32 != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/{file}"))
                .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_processes_by_their_arguments_and_environment() {
        let tag = format!("husk-recover-test-{}", record::new_id());
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env("HUSK_RECOVER_TAG", &tag)
            .spawn()
            .expect("spawn sleep");
        let me = std::process::id();
        let env = format!("HUSK_RECOVER_TAG={tag}\0");
        // Until the child has exec'd, its environ is a copy of ours.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut found = processes_with("environ", env.as_bytes(), me);
        while found.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            found = processes_with("environ", env.as_bytes(), me);
        }
        assert_eq!(found, vec![child.id() as i32]);
        assert!(processes_with("cmdline", tag.as_bytes(), me).is_empty());
        kill_processes_with("environ", env.as_bytes());
        let status = child.wait().expect("wait");
        assert!(!status.success(), "killed");
        assert!(processes_with("environ", env.as_bytes(), me).is_empty());
    }
}
