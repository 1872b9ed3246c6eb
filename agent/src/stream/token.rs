//! One-time tokens for streaming URLs: 32 random bytes (base64url), single
//! use, expiring when unused for [`TOKEN_TTL`], as kubelet's request cache.

use std::collections::HashMap;
use std::io::{self, Read};
use std::time::{Duration, Instant};

use base64::Engine;

/// How long a token stays valid unused.
pub const TOKEN_TTL: Duration = Duration::from_secs(30);
/// Tokens waiting at once; more are refused (kubelet's cache holds 1000 too).
pub const MAX_IN_FLIGHT: usize = 1000;

/// Why no token was issued.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("too many streaming requests in flight ({0}); try again later")]
    TooMany(usize),
    #[error("read /dev/urandom for a streaming token")]
    Random(#[source] io::Error),
}

/// Pending requests by token.
pub struct Tokens<T> {
    map: HashMap<String, (Instant, T)>,
    ttl: Duration,
    max: usize,
}

impl<T> Tokens<T> {
    /// An empty cache whose tokens live `ttl` unused; at most `max` at once.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Tokens {
            map: HashMap::new(),
            ttl,
            max,
        }
    }

    /// Store `value` under a fresh token and return the token.
    pub fn insert(&mut self, value: T) -> Result<String, TokenError> {
        self.sweep();
        if self.map.len() >= self.max {
            return Err(TokenError::TooMany(self.max));
        }
        let token = loop {
            let t = random_token().map_err(TokenError::Random)?;
            if !self.map.contains_key(&t) {
                break t;
            }
        };
        self.map
            .insert(token.clone(), (Instant::now() + self.ttl, value));
        Ok(token)
    }

    /// Take the value of `token` if it is known and has not expired; the
    /// token is used up either way.
    pub fn take(&mut self, token: &str) -> Option<T> {
        self.sweep();
        let (deadline, v) = self.map.remove(token)?;
        (Instant::now() < deadline).then_some(v)
    }

    /// Tokens waiting (expired ones not counted once swept).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none wait.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn sweep(&mut self) {
        let now = Instant::now();
        self.map.retain(|_, (deadline, _)| *deadline > now);
    }
}

/// 32 bytes from the kernel's CSPRNG, base64url without padding (43 chars).
fn random_token() -> io::Result<String> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_single_use_random_and_url_safe() {
        let mut t = Tokens::new(TOKEN_TTL, 10);
        let a = t.insert(1).expect("token");
        let b = t.insert(2).expect("token");
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
            "{a}"
        );
        assert_eq!(t.take(&a), Some(1));
        assert_eq!(t.take(&a), None, "a used token is gone");
        assert_eq!(t.take("nonsense"), None);
        assert_eq!(t.take(&b), Some(2));
        assert!(t.is_empty());
    }

    #[test]
    fn tokens_expire_and_the_cache_is_bounded() {
        let mut t = Tokens::new(Duration::from_millis(50), 2);
        let a = t.insert("a").expect("token");
        t.insert("b").expect("token");
        assert!(matches!(t.insert("c"), Err(TokenError::TooMany(2))));
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(t.take(&a), None, "expired");
        assert_eq!(t.len(), 0, "expired tokens are swept");
        t.insert("d").expect("room again after expiry");
    }
}
