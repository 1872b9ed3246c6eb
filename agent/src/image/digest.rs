//! Content digests (`sha256:<64 hex>`) and a hasher that counts bytes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// Why a digest string was refused.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("digest {0:?}: unsupported algorithm (only sha256)")]
    Algorithm(String),
    #[error("digest {0:?}: expected 64 lowercase hex characters after \"sha256:\"")]
    Hex(String),
}

/// A sha256 content digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Digest(Sha256::digest(data).into())
    }

    /// The 64 hex characters, without the algorithm prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex characters, as `docker images` shows ids.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, DigestError> {
        let Some(h) = s.strip_prefix("sha256:") else {
            return Err(DigestError::Algorithm(s.to_string()));
        };
        if h.len() != 64
            || !h
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::Hex(s.to_string()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(h, &mut out).map_err(|_| DigestError::Hex(s.to_string()))?;
        Ok(Digest(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental sha256 that also counts the bytes it saw.
#[derive(Default, Clone)]
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
        self.len += data.len() as u64;
    }
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn finish(self) -> Digest {
        Digest(self.inner.finalize().into())
    }
}

/// A reader that hashes everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: std::io::Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(),
        }
    }
    /// Read the rest of the stream (tar archives may end before the reader does)
    /// and return the digest and byte count of everything.
    pub fn finish(mut self) -> std::io::Result<(Digest, u64)> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        let n = self.hasher.len();
        Ok((self.hasher.finish(), n))
    }
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The digests of the entries of `dir` named by their sha256 hex (the
/// content store's blobs, the snapshots' directories); other names are skipped.
pub fn sha256_entries(dir: &std::path::Path) -> std::io::Result<Vec<Digest>> {
    Ok(std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| {
            format!("sha256:{}", e.file_name().to_string_lossy())
                .parse()
                .ok()
        })
        .collect())
}

/// The chain id of a layer stack (OCI image spec): `chain(L0) = diff(L0)`,
/// `chain(Ln) = sha256(chain(Ln-1) + " " + diff(Ln))`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => *d,
            Some(prev) => Digest::of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let d = Digest::of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn refuses_bad_digests() {
        assert!(matches!(
            "md5:abc".parse::<Digest>(),
            Err(DigestError::Algorithm(_))
        ));
        assert!(matches!(
            "sha256:abc".parse::<Digest>(),
            Err(DigestError::Hex(_))
        ));
        let upper = format!("sha256:{}", "A".repeat(64));
        assert!(matches!(upper.parse::<Digest>(), Err(DigestError::Hex(_))));
    }

    #[test]
    fn chain_id_of_two_layers() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let c = chain_ids(&[a, b]);
        assert_eq!(c[0], a);
        assert_eq!(c[1], Digest::of(format!("{a} {b}").as_bytes()));
    }
}
