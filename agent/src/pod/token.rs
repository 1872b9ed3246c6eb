//! Service account tokens for projected `serviceAccountToken` sources, as
//! kubelet's token manager (`pkg/kubelet/token`) gets them: a TokenRequest
//! bound to the pod (name and UID) per (service account, audience,
//! expirationSeconds), cached and asked for again once the token is older
//! than 80 % of its TTL or than 24 h (less up to 10 s of jitter, so pods do
//! not refresh in lockstep). A failed refresh keeps serving the cached token
//! until it expires. The tokens of a pod are forgotten when it goes.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Pod, ServiceAccountTokenProjection};

/// Tokens older than this are refreshed whatever their TTL (`maxTTL`).
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// The most a refresh is brought forward (`maxJitter`).
pub const MAX_JITTER: Duration = Duration::from_secs(10);
/// The first wait after a failed TokenRequest, doubled on each failure up
/// to [`MAX_RETRY_DELAY`] (kubelet's volume operation backoff), so a pod
/// whose token cannot be had does not ask on every sync.
pub const INITIAL_RETRY_DELAY: Duration = Duration::from_millis(500);
/// The longest wait between failed TokenRequests (`2m2s`).
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(122);
/// `expirationSeconds` when a projection does not say (the API default).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// What a token is asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenKey {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's service account.
    pub service_account: String,
    /// The pod the token is bound to.
    pub pod_name: String,
    /// Its UID.
    pub pod_uid: String,
    /// The audience; empty for the apiserver's own.
    pub audience: String,
    /// The requested lifetime.
    pub expiration_seconds: i64,
}

/// A token the apiserver issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The JWT.
    pub token: String,
    /// `status.expirationTimestamp`.
    pub expires: SystemTime,
    /// The lifetime the apiserver granted (`spec.expirationSeconds` of the
    /// answer; it may differ from the one asked for).
    pub ttl: Duration,
}

/// Where tokens come from: the TokenRequest API of the control plane.
#[tonic::async_trait]
pub trait TokenSource: Send + Sync {
    /// Request a new token for `key`; the error names the cause.
    async fn request(&self, key: &TokenKey) -> Result<Token, String>;
}

/// Why a pod's tokens cannot be had (reported as `FailedMount`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// A static pod has no API object a token could be bound to.
    #[error(
        "static pod {0}: serviceAccountToken volumes need a pod object in the API server to bind the token to; static pods cannot use them"
    )]
    StaticPod(String),
    /// husklet runs without a control plane.
    #[error("serviceAccountToken volumes need a control plane (husklet --kubeconfig)")]
    NoControlPlane,
    /// The TokenRequest failed (and there is no unexpired cached token).
    #[error("failed to fetch token: {0}")]
    Fetch(String),
}

/// The tokens of one pod, by (audience, expirationSeconds), ready for its
/// projected volumes.
pub type PodTokens = BTreeMap<(String, i64), String>;

/// The clock the manager reads (injected by tests).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Whether a token issued `ttl` before `expires` wants refreshing at `now`:
/// older than [`MAX_TTL`] or within 20 % of its TTL of expiring, each
/// brought forward by `jitter` (kubelet's `requiresRefresh`).
pub fn requires_refresh(
    now: SystemTime,
    expires: SystemTime,
    ttl: Duration,
    jitter: Duration,
) -> bool {
    let issued = expires.checked_sub(ttl).unwrap_or(SystemTime::UNIX_EPOCH);
    if now > issued + MAX_TTL.saturating_sub(jitter) {
        return true;
    }
    let margin = Duration::from_secs(ttl.as_secs() * 20 / 100) + jitter;
    let due = expires
        .checked_sub(margin)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    now > due
}

fn jitter() -> Duration {
    // A fresh RandomState is randomly seeded: random enough for a jitter.
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_secs(r % (MAX_JITTER.as_secs() + 1))
}

/// The token cache of the node.
pub struct TokenManager {
    source: Option<Arc<dyn TokenSource>>,
    clock: Clock,
    cache: Mutex<HashMap<TokenKey, Token>>,
    failures: Mutex<HashMap<TokenKey, Failure>>,
}

/// The last failed request for a key: no new one before `retry_at`.
struct Failure {
    retry_at: SystemTime,
    delay: Duration,
    error: String,
}

impl TokenManager {
    /// Tokens from `source` (none: standalone, every request fails).
    pub fn new(source: Option<Arc<dyn TokenSource>>) -> Self {
        Self::with_clock(source, Arc::new(SystemTime::now))
    }

    /// As [`TokenManager::new`], reading the time from `clock`.
    pub fn with_clock(source: Option<Arc<dyn TokenSource>>, clock: Clock) -> Self {
        TokenManager {
            source,
            clock,
            cache: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, Token>> {
        // A poisoned lock means a panic elsewhere mid-insert; the map is whole.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, Failure>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The token for `key`: the cached one unless it needs refreshing;
    /// if the refresh fails, the cached one while it has not expired.
    /// After a failure the next request waits out a doubling delay.
    pub async fn get(&self, key: &TokenKey) -> Result<String, TokenError> {
        let now = (self.clock)();
        let cached = self.cache().get(key).cloned();
        if let Some(t) = &cached {
            if !requires_refresh(now, t.expires, t.ttl, jitter()) {
                return Ok(t.token.clone());
            }
        }
        let source = self.source.as_ref().ok_or(TokenError::NoControlPlane)?;
        let backing_off = self
            .failures()
            .get(key)
            .filter(|f| now < f.retry_at)
            .map(|f| f.error.clone());
        let answer = match backing_off {
            Some(e) => Err(e),
            None => source.request(key).await.inspect_err(|e| {
                let mut failures = self.failures();
                let delay = failures
                    .get(key)
                    .map_or(INITIAL_RETRY_DELAY, |f| (f.delay * 2).min(MAX_RETRY_DELAY));
                failures.insert(
                    key.clone(),
                    Failure {
                        retry_at: now + delay,
                        delay,
                        error: e.clone(),
                    },
                );
            }),
        };
        match answer {
            Ok(t) => {
                self.failures().remove(key);
                let token = t.token.clone();
                self.cache().insert(key.clone(), t);
                Ok(token)
            }
            Err(e) => match cached {
                Some(t) if now <= t.expires => {
                    tracing::warn!(
                        pod = %key.pod_name,
                        "refresh service account token: {e}; the cached token is still valid"
                    );
                    Ok(t.token)
                }
                _ => Err(TokenError::Fetch(e)),
            },
        }
    }

    /// Every token `pod`'s projected volumes need, fetched or refreshed.
    pub async fn pod_tokens(&self, pod: &Pod) -> Result<PodTokens, TokenError> {
        let mut out = PodTokens::new();
        let wanted = projections(pod);
        if wanted.is_empty() {
            return Ok(out);
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        if super::is_static(pod) {
            return Err(TokenError::StaticPod(name));
        }
        let spec = pod.spec.as_ref();
        let service_account = spec
            .and_then(|s| s.service_account_name.clone().or(s.service_account.clone()))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        for p in wanted {
            let key = TokenKey {
                namespace: pod
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                service_account: service_account.clone(),
                pod_name: name.clone(),
                pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
                audience: p.audience.clone().unwrap_or_default(),
                expiration_seconds: p.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS),
            };
            let token = self.get(&key).await?;
            out.insert((key.audience, key.expiration_seconds), token);
        }
        Ok(out)
    }

    /// Forget the tokens of the pod with UID `uid` (it is gone).
    pub fn forget(&self, uid: &str) {
        self.cache().retain(|k, _| k.pod_uid != uid);
        self.failures().retain(|k, _| k.pod_uid != uid);
    }
}

/// The `serviceAccountToken` sources of `pod`'s projected volumes.
pub fn projections(pod: &Pod) -> Vec<&ServiceAccountTokenProjection> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.projected.as_ref())
        .flat_map(|p| p.sources.iter().flatten())
        .filter_map(|s| s.service_account_token.as_ref())
        .collect()
}

#[cfg(test)]
mod tests;
