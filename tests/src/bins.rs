//! Paths to the workspace's built binaries and to the repository.

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The directory holding the built binaries (`target/debug`), or `$HUSK_BIN_DIR`.
///
/// `scripts/test` builds every binary (`cargo build --workspace --bins`) before
/// the tests run.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HUSK_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // Test executables live in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test exe has a parent dir");
    deps.parent().expect("deps has a parent dir").to_path_buf()
}

/// The path of a built workspace binary such as `husk` or `husk-bridge`.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// Where scripts put their build output (`$HUSK_BUILD`, default `<repo>/build`).
pub fn build_dir() -> PathBuf {
    std::env::var_os("HUSK_BUILD")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("build"))
}

/// The OCI layout of a test image built by `scripts/build-test-images`
/// (`busybox`, `busybox-layers`), building the images if they are missing.
///
/// Tests run as parallel processes: an exclusive flock on
/// `<build>/images.lock` makes one of them build while the others wait.
pub fn test_image(name: &str) -> PathBuf {
    let dir = build_dir().join("images").join(name);
    if dir.join("index.json").exists() {
        return dir;
    }
    std::fs::create_dir_all(build_dir()).expect("create the build dir");
    let lock = std::fs::File::create(build_dir().join("images.lock")).expect("open images.lock");
    nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map(|held| {
            if !dir.join("index.json").exists() {
                let status =
                    std::process::Command::new(repo_root().join("scripts/build-test-images"))
                        .status()
                        .expect("run scripts/build-test-images");
                assert!(status.success(), "scripts/build-test-images failed");
            }
            drop(held);
        })
        .map_err(|(_, e)| e)
        .expect("lock images.lock");
    dir
}
