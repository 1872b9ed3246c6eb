// A throwaway PKI made with the openssl CLI: a CA and client certificates
// signed by it. Included by the node_api tests.

use std::path::{Path, PathBuf};
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA in `dir` (`<name>.crt`, `<name>.key`).
pub struct Ca {
    dir: PathBuf,
    name: String,
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Ca {
        let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
        openssl(
            dir,
            &[
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", &key, "-out", &crt, "-days", "2", "-subj",
                &format!("/CN={name}"),
            ],
        );
        Ca {
            dir: dir.to_path_buf(),
            name: name.to_string(),
        }
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join(format!("{}.crt", self.name))
    }

    /// A client certificate for `subject` (e.g. `/O=team/CN=alice`):
    /// returns (cert, key) paths named `<file>.crt`/`<file>.key`.
    pub fn client(&self, file: &str, subject: &str) -> (PathBuf, PathBuf) {
        let (crt, key, csr, ext) = (
            format!("{file}.crt"),
            format!("{file}.key"),
            format!("{file}.csr"),
            format!("{file}.ext"),
        );
        std::fs::write(self.dir.join(&ext), "extendedKeyUsage=clientAuth\n").expect("ext file");
        openssl(
            &self.dir,
            &[
                "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", &key, "-out", &csr, "-subj", subject,
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509", "-req", "-in", &csr, "-CA", &format!("{}.crt", self.name), "-CAkey",
                &format!("{}.key", self.name), "-CAcreateserial", "-out", &crt, "-days", "2",
                "-extfile", &ext,
            ],
        );
        (self.dir.join(crt), self.dir.join(key))
    }
}
