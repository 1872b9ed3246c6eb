//! husklet's image store against layers that unpack to far more than they
//! weigh: gzip bombs and GNU sparse entries, stopped by the free-space
//! reserve (`--min-free`) and the per-image unpacked-size limit
//! (`--max-image-size`), with nothing left behind. The store root is a small
//! tmpfs in the test's own mount namespace, so limits are reached within
//! megabytes and nothing large is written to the host disk.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

use husk_tests::bins::test_image;
use husk_tests::husklet::{
    SmallFs, entry_count as count, husklet_command, husklet_fails as fails, husklet_json as json,
};
use husk_tests::registry::{LayoutLayer, TestRegistry, sha256, write_layout};
use husk_tests::require_root;
use sha2::Digest as _;

const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: sha2::Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A gzip layer whose tar `write_tar` streams out (through `gzip -9`, so
/// the uncompressed tar never exists whole, in memory or on disk).
fn gzip_layer(write_tar: impl FnOnce(&mut dyn Write)) -> LayoutLayer {
    let mut gz = Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run gzip");
    let mut out = gz.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).unwrap();
        v
    });
    let mut w = Hashing {
        inner: gz.stdin.take().unwrap(),
        hash: sha2::Sha256::new(),
    };
    write_tar(&mut w);
    let diff_id = format!("sha256:{}", hex::encode(w.hash.finalize()));
    drop(w.inner);
    let blob = reader.join().unwrap();
    assert!(gz.wait().unwrap().success(), "gzip failed");
    LayoutLayer {
        blob,
        diff_id,
        media_type: GZIP_LAYER,
    }
}

fn gnu_header(kind: tar::EntryType, name: &str, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_path(name).unwrap();
    h
}

/// A tar with one regular file `name` of `size` zero bytes.
fn zeros_tar(w: &mut dyn Write, name: &str, size: u64) {
    let mut h = gnu_header(tar::EntryType::Regular, name, size);
    h.set_cksum();
    w.write_all(h.as_bytes()).unwrap();
    let zeros = vec![0u8; 1 << 20];
    let mut left = size.next_multiple_of(512);
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        w.write_all(&zeros[..n]).unwrap();
        left -= n as u64;
    }
    w.write_all(&[0u8; 1024]).unwrap();
}

/// A tar with one GNU sparse file `name` of `size` bytes holding `regions`
/// (offset, data); every region but the last fills whole 512-byte blocks.
fn sparse_tar(w: &mut dyn Write, name: &str, size: u64, regions: &[(u64, &[u8])]) {
    let data: Vec<u8> = regions.iter().flat_map(|(_, d)| d.to_vec()).collect();
    let mut h = gnu_header(tar::EntryType::GNUSparse, name, data.len() as u64);
    let g = h.as_gnu_mut().unwrap();
    for (slot, (off, d)) in g.sparse.iter_mut().zip(regions) {
        slot.set_offset(*off);
        slot.set_length(d.len() as u64);
    }
    g.set_real_size(size);
    h.set_cksum();
    let mut b = tar::Builder::new(w);
    b.append(&h, &data[..]).unwrap();
    b.finish().unwrap();
}

/// The store holds no image, no snapshot and no temp file.
fn assert_clean(root: &Path, what: &str) {
    assert_eq!(
        json(root, &["images", "list"]).as_array().unwrap().len(),
        0,
        "{what}: image recorded"
    );
    assert_eq!(count(&root.join("snapshots")), 0, "{what}: snapshot kept");
    assert_eq!(count(&root.join("tmp")), 0, "{what}: temp files kept");
}

fn import_fails_with_env(root: &Path, env: (&str, &str), layout: &Path) -> String {
    let out = husklet_command(root)
        .env(env.0, env.1)
        .args(["images", "import"])
        .arg(layout)
        .output()
        .unwrap();
    assert!(!out.status.success(), "import with {env:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn gzip_bomb_import_stops_at_the_free_space_reserve() {
    require_root!();
    let fs = SmallFs::mount(64);
    let root = fs.path().join("store");
    let t = tempfile::tempdir().unwrap();
    // 256 MiB of zeros in a quarter-megabyte layer, onto a 64 MiB filesystem.
    let bomb = t.path().join("bomb");
    let layer = gzip_layer(|w| zeros_tar(w, "bomb", 256 << 20));
    assert!(layer.blob.len() < 1 << 20, "{} bytes", layer.blob.len());
    let digest = sha256(&layer.blob);
    write_layout(&bomb, &[layer]);
    let err = fails(
        &root,
        &[
            "images",
            "import",
            "--name",
            "example.com/bomb:1",
            bomb.to_str().unwrap(),
        ],
    );
    // The default reserve: 5% of 64 MiB.
    for want in [
        "image example.com/bomb:1",
        &format!("layer {digest}"),
        "entry \"bomb\"",
        "less than the reserve of 3.2 MiB free",
        "--min-free",
    ] {
        assert!(err.contains(want), "missing {want:?} in: {err}");
    }
    assert_clean(&root, "reserve");
    assert!(fs.free() > 60 << 20, "the refused layer took space");

    // With the reserve off the filesystem fills: still a clean failure.
    let err = fails(
        &root,
        &[
            "--min-free",
            "0",
            "images",
            "import",
            bomb.to_str().unwrap(),
        ],
    );
    assert!(err.contains("No space left on device"), "{err}");
    assert_clean(&root, "ENOSPC");

    // A layer that fits, against a reserve of half the filesystem (set
    // through the environment), then against the default one.
    let fits = t.path().join("fits");
    write_layout(&fits, &[gzip_layer(|w| zeros_tar(w, "fits", 40 << 20))]);
    let err = import_fails_with_env(&root, ("HUSK_IMAGE_MIN_FREE", "50%"), &fits);
    assert!(
        err.contains("less than the reserve of 32 MiB free"),
        "{err}"
    );
    assert_clean(&root, "50% reserve");
    let img = json(&root, &["images", "import", fits.to_str().unwrap()]);
    let diff = img[0]["layers"][0]["diff_id"].as_str().unwrap();
    let file = root
        .join("snapshots")
        .join(diff.trim_start_matches("sha256:"))
        .join("fs/fits");
    assert_eq!(std::fs::metadata(file).unwrap().len(), 40 << 20);
}

#[test]
fn gzip_bomb_pull_stops_at_the_image_size_limit() {
    require_root!();
    let fs = SmallFs::mount(64);
    let root = fs.path().join("store");
    let reg = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    let bomb = t.path().join("bomb");
    let layer = gzip_layer(|w| zeros_tar(w, "bomb", 256 << 20));
    let digest = sha256(&layer.blob);
    write_layout(&bomb, &[layer]);
    reg.push_oci(&bomb, "latest", "bomb:1");
    let r = reg.reference("bomb:1");
    let err = fails(&root, &["--max-image-size", "16M", "images", "pull", &r]);
    for want in [
        &format!("image {r}"),
        &format!("layer {digest}"),
        "entry \"bomb\"",
        "per-image limit of 16 MiB",
        "--max-image-size",
    ] {
        assert!(err.contains(want), "missing {want:?} in: {err}");
    }
    assert_clean(&root, "image size limit");
    // A real image under the same limit pulls.
    reg.push_oci(&test_image("busybox"), "latest", "busybox:1");
    let img = json(
        &root,
        &[
            "--max-image-size",
            "16M",
            "images",
            "pull",
            &reg.reference("busybox:1"),
        ],
    );
    assert_eq!(img["names"][0], reg.reference("busybox:1"));
}

#[test]
fn sparse_files_unpack_sparse_and_a_sparse_bomb_stops_at_the_image_size_limit() {
    require_root!();
    let fs = SmallFs::mount(64);
    let root = fs.path().join("store");
    let t = tempfile::tempdir().unwrap();

    // A legitimate 1 GiB sparse file (a disk image, say): three data regions.
    const SIZE: u64 = 1 << 30;
    let head = vec![b'h'; 8192];
    let mut mid = vec![0u8; 512];
    mid[..6].copy_from_slice(b"middle");
    let tail = b"tail\n".to_vec();
    let regions: [(u64, &[u8]); 3] = [
        (0, &head),
        (300 << 20, &mid),
        (SIZE - tail.len() as u64, &tail),
    ];
    let legit = t.path().join("legit");
    write_layout(
        &legit,
        &[gzip_layer(|w| sparse_tar(w, "disk.img", SIZE, &regions))],
    );
    let img = json(&root, &["images", "import", legit.to_str().unwrap()]);
    let diff = img[0]["layers"][0]["diff_id"].as_str().unwrap();
    let file = root
        .join("snapshots")
        .join(diff.trim_start_matches("sha256:"))
        .join("fs/disk.img");
    let m = std::fs::metadata(&file).unwrap();
    assert_eq!(m.len(), SIZE);
    assert!(
        m.blocks() * 512 <= 1 << 20,
        "{} bytes allocated for 9 KiB of data",
        m.blocks() * 512
    );
    // Every byte as the tar says: the regions, zeros elsewhere.
    let mut f = std::fs::File::open(&file).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut want = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < SIZE {
        f.read_exact(&mut buf).unwrap();
        want.fill(0);
        for (at, data) in regions {
            let (start, end) = (at, at + data.len() as u64);
            if start < off + buf.len() as u64 && end > off {
                let s = start.max(off);
                let e = end.min(off + buf.len() as u64);
                want[(s - off) as usize..(e - off) as usize]
                    .copy_from_slice(&data[(s - start) as usize..(e - start) as usize]);
            }
        }
        assert!(buf == want, "content differs in the MiB at {off}");
        off += buf.len() as u64;
    }

    // The bomb: a layer of a few hundred bytes whose sparse entry claims
    // 100 GiB, over the default per-image limit of 64 GiB.
    let bomb = t.path().join("bomb");
    let layer = gzip_layer(|w| sparse_tar(w, "bomb", 100 << 30, &[(0, b"x"), (100 << 30, b"")]));
    assert!(layer.blob.len() < 1024, "{} bytes", layer.blob.len());
    let digest = sha256(&layer.blob);
    write_layout(&bomb, &[layer]);
    let err = fails(
        &root,
        &[
            "images",
            "import",
            "--name",
            "example.com/sparse-bomb:1",
            bomb.to_str().unwrap(),
        ],
    );
    for want in [
        "image example.com/sparse-bomb:1",
        &format!("layer {digest}"),
        "entry \"bomb\"",
        "per-image limit of 64 GiB",
        "--max-image-size",
    ] {
        assert!(err.contains(want), "missing {want:?} in: {err}");
    }
    assert_eq!(
        json(&root, &["images", "list"]).as_array().unwrap().len(),
        1
    );
    assert_eq!(
        count(&root.join("snapshots")),
        1,
        "the bomb's snapshot kept"
    );
    assert_eq!(count(&root.join("tmp")), 0);
}
