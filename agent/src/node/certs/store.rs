//! kubelet's certificate file store in the cert dir: each issued pair is
//! `<prefix>-<YYYY-MM-DD-HH-MM-SS>.pem` (certificate chain, then the key,
//! mode 0600), and `<prefix>-current.pem` is a symlink to the one in use,
//! swapped atomically (a `<prefix>-updated.pem` symlink renamed over it).
//! The prefixes are `kubelet-client` and `kubelet-server`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::CertError;

/// The client certificate pair's prefix.
pub const CLIENT: &str = "kubelet-client";
/// The serving certificate pair's prefix.
pub const SERVER: &str = "kubelet-server";

/// A certificate chain with its key, and the leaf's validity.
#[derive(Clone)]
pub struct Pair {
    /// The PEM file's bytes: certificates, then the key.
    pub pem: Vec<u8>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: std::sync::Arc<PrivateKeyDer<'static>>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Pair {
    /// Parse a PEM holding the certificate chain (leaf first) and a key;
    /// `what` names the source in errors.
    pub fn parse(pem: &[u8], what: &Path) -> Result<Pair, CertError> {
        let bad = |w: String| CertError::Pem {
            path: what.to_path_buf(),
            what: w,
        };
        let chain = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        let leaf = chain
            .first()
            .ok_or_else(|| bad("no CERTIFICATE block".into()))?;
        let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| bad(format!("key: {e}")))?;
        let (_, x) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map_err(|e| bad(format!("certificate: {e}")))?;
        let at =
            |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0));
        let not_before = at(x.validity().not_before.timestamp());
        let not_after = at(x.validity().not_after.timestamp());
        Ok(Pair {
            pem: pem.to_vec(),
            chain,
            key: std::sync::Arc::new(key),
            not_before,
            not_after,
        })
    }

    /// Whether the leaf is valid at `now`.
    pub fn valid_at(&self, now: SystemTime) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// One kind of pair in the cert dir.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
    prefix: &'static str,
}

impl Store {
    /// The pairs named `<prefix>-*.pem` in `dir`.
    pub fn new(dir: impl Into<PathBuf>, prefix: &'static str) -> Store {
        Store {
            dir: dir.into(),
            prefix,
        }
    }

    /// `<dir>/<prefix>-current.pem`.
    pub fn current_path(&self) -> PathBuf {
        self.dir.join(format!("{}-current.pem", self.prefix))
    }

    /// The pair in use, if there is one (a broken one is an error).
    pub fn current(&self) -> Result<Option<Pair>, CertError> {
        let path = self.current_path();
        match std::fs::read(&path) {
            Ok(pem) => Pair::parse(&pem, &path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CertError::io(path)(e)),
        }
    }

    /// Write `cert_pem` + `key_pem` as a new timestamped file (mode 0600)
    /// and point the current symlink at it; returns the new file's path.
    pub fn write(
        &self,
        cert_pem: &[u8],
        key_pem: &[u8],
        now: SystemTime,
    ) -> Result<PathBuf, CertError> {
        std::fs::create_dir_all(&self.dir).map_err(CertError::io(&self.dir))?;
        let stamp = chrono::DateTime::<chrono::Utc>::from(now).format("%Y-%m-%d-%H-%M-%S");
        let file = self.dir.join(format!("{}-{stamp}.pem", self.prefix));
        let mut pem = cert_pem.to_vec();
        if !pem.ends_with(b"\n") {
            pem.push(b'\n');
        }
        pem.extend_from_slice(key_pem);
        write_private(&file, &pem)?;
        let updated = self.dir.join(format!("{}-updated.pem", self.prefix));
        match std::fs::remove_file(&updated) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CertError::io(&updated)(e)),
        }
        std::os::unix::fs::symlink(&file, &updated).map_err(CertError::io(&updated))?;
        let current = self.current_path();
        std::fs::rename(&updated, &current).map_err(CertError::io(&current))?;
        Ok(file)
    }
}

/// Write `data` to `path` with mode 0600 (a temporary file, renamed).
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), CertError> {
    crate::image::fsutil::write_private(path, data).map_err(CertError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// A self-signed pair valid for `days`.
    fn pair_pem(cn: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec![]).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&key).expect("sign");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn pairs_are_timestamped_files_behind_a_current_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path().join("pki"), CLIENT);
        assert!(store.current().expect("none yet").is_none());
        let t1 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (c1, k1) = pair_pem("one");
        let f1 = store
            .write(c1.as_bytes(), k1.as_bytes(), t1)
            .expect("write");
        assert_eq!(
            f1.file_name().and_then(|n| n.to_str()),
            Some("kubelet-client-2023-11-14-22-13-20.pem")
        );
        let mode = std::fs::metadata(&f1).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key is private");
        let current = store.current_path();
        assert_eq!(std::fs::read_link(&current).expect("symlink"), f1);
        let p = store.current().expect("read").expect("a pair");
        assert_eq!(p.chain.len(), 1);
        assert!(p.valid_at(SystemTime::now()));
        let text = std::fs::read_to_string(&f1).expect("read");
        let (ci, ki) = (
            text.find("BEGIN CERTIFICATE").expect("cert"),
            text.find("PRIVATE KEY").expect("key"),
        );
        assert!(ci < ki, "certificate first, then the key");

        let (c2, k2) = pair_pem("two");
        let f2 = store
            .write(c2.as_bytes(), k2.as_bytes(), t1 + Duration::from_secs(61))
            .expect("write again");
        assert_ne!(f1, f2);
        assert_eq!(std::fs::read_link(&current).expect("symlink"), f2);
        assert!(f1.exists(), "the old pair is kept, as kubelet does");
        let names: Vec<String> = std::fs::read_dir(dir.path().join("pki"))
            .expect("ls")
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n.contains("updated") || n.contains(".tmp")),
            "{names:?}"
        );
        let server = Store::new(dir.path().join("pki"), SERVER);
        assert!(server.current().expect("no server pair").is_none());
    }

    #[test]
    fn a_file_without_a_key_is_refused() {
        let (c, _) = pair_pem("x");
        let err = Pair::parse(c.as_bytes(), Path::new("x.pem")).expect_err("no key");
        assert!(err.to_string().contains("key"), "{err}");
    }
}
