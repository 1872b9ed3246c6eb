//! Loop devices for the device cgroup tests: a host block device a
//! container must not reach unless its rules allow it.

use std::io::Write as _;
use std::os::unix::fs::FileTypeExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::process::Command;

/// A read-only loop device over a temp file that starts with a marker;
/// detached on drop.
pub struct LoopDev {
    /// The device node, e.g. /dev/loop3.
    pub dev: String,
    /// Its device numbers.
    pub major: u64,
    pub minor: u64,
    /// What the device's first bytes say (unique per device).
    pub marker: String,
    _file: tempfile::NamedTempFile,
}

impl LoopDev {
    /// Attach a new one (losetup --read-only); panics when that fails.
    pub fn attach() -> LoopDev {
        let marker = format!("husk-test-disk-{}", crate::unique_suffix());
        let mut file = tempfile::NamedTempFile::new().expect("backing file");
        let mut data = marker.clone().into_bytes();
        data.resize(64 * 1024, 0);
        file.write_all(&data).expect("write backing file");
        file.flush().expect("flush backing file");
        let out = Command::new("losetup")
            .args(["--find", "--show", "--read-only"])
            .arg(file.path())
            .output()
            .expect("run losetup");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let meta = std::fs::metadata(&dev).unwrap_or_else(|e| panic!("stat {dev}: {e}"));
        assert!(
            meta.file_type().is_block_device(),
            "{dev} is not a block device"
        );
        let rdev = meta.rdev();
        LoopDev {
            major: libc::major(rdev) as u64,
            minor: libc::minor(rdev) as u64,
            dev,
            marker,
            _file: file,
        }
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}
