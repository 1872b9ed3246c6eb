use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

const T0: u64 = 1_700_000_000;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn refresh_at_80_percent_of_the_ttl() {
    let ttl = Duration::from_secs(3600);
    let exp = at(T0 + 3600);
    let no_jitter = Duration::ZERO;
    assert!(!requires_refresh(at(T0), exp, ttl, no_jitter));
    // 80 % of 3600 s is 2880 s.
    assert!(!requires_refresh(at(T0 + 2880), exp, ttl, no_jitter));
    assert!(requires_refresh(at(T0 + 2881), exp, ttl, no_jitter));
    // The jitter brings it forward.
    assert!(requires_refresh(at(T0 + 2871), exp, ttl, MAX_JITTER));
    assert!(!requires_refresh(at(T0 + 2870), exp, ttl, MAX_JITTER));
}

#[test]
fn refresh_after_24_hours_whatever_the_ttl() {
    let ttl = Duration::from_secs(7 * 24 * 3600);
    let exp = at(T0 + ttl.as_secs());
    assert!(!requires_refresh(
        at(T0 + 24 * 3600),
        exp,
        ttl,
        Duration::ZERO
    ));
    assert!(requires_refresh(
        at(T0 + 24 * 3600 + 1),
        exp,
        ttl,
        Duration::ZERO
    ));
    assert!(requires_refresh(
        at(T0 + 24 * 3600 - 9),
        exp,
        ttl,
        MAX_JITTER
    ));
}

/// Issues `tok-<n>` tokens valid for the asked TTL from the shared clock,
/// or fails while `fail` is set.
struct Issuer {
    now: Arc<AtomicU64>,
    issued: AtomicU64,
    fail: std::sync::atomic::AtomicBool,
}

#[tonic::async_trait]
impl TokenSource for Issuer {
    async fn request(&self, key: &TokenKey) -> Result<Token, String> {
        if self.fail.load(Ordering::SeqCst) {
            return Err("apiserver unreachable".into());
        }
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let ttl = Duration::from_secs(key.expiration_seconds as u64);
        Ok(Token {
            token: format!("tok-{n}"),
            expires: at(self.now.load(Ordering::SeqCst)) + ttl,
            ttl,
        })
    }
}

fn key() -> TokenKey {
    TokenKey {
        namespace: "ns".into(),
        service_account: "default".into(),
        pod_name: "p".into(),
        pod_uid: "u1".into(),
        audience: String::new(),
        expiration_seconds: 3600,
    }
}

#[tokio::test]
async fn cached_until_due_then_refreshed_and_served_while_valid_on_failure() {
    let now = Arc::new(AtomicU64::new(T0));
    let issuer = Arc::new(Issuer {
        now: now.clone(),
        issued: AtomicU64::new(0),
        fail: false.into(),
    });
    let clock_now = now.clone();
    let clock: Clock = Arc::new(move || at(clock_now.load(Ordering::SeqCst)));
    let m = TokenManager::with_clock(Some(issuer.clone()), clock);
    assert_eq!(m.get(&key()).await.unwrap(), "tok-1");
    now.store(T0 + 2000, Ordering::SeqCst);
    assert_eq!(m.get(&key()).await.unwrap(), "tok-1", "not due yet");
    now.store(T0 + 2900, Ordering::SeqCst);
    assert_eq!(
        m.get(&key()).await.unwrap(),
        "tok-2",
        "past 80 % of the TTL"
    );
    // Another audience is another token.
    let mut other = key();
    other.audience = "vault".into();
    assert_eq!(m.get(&other).await.unwrap(), "tok-3");

    // The apiserver fails: the valid cached token is served, an expired one is not.
    issuer.fail.store(true, Ordering::SeqCst);
    now.store(T0 + 2900 + 3000, Ordering::SeqCst);
    assert_eq!(m.get(&key()).await.unwrap(), "tok-2");
    now.store(T0 + 2900 + 3601, Ordering::SeqCst);
    let err = m.get(&key()).await.unwrap_err();
    assert_eq!(err, TokenError::Fetch("apiserver unreachable".into()));

    // While failing, requests back off (500 ms, doubling): within the
    // delay the last error is returned without asking.
    issuer.fail.store(false, Ordering::SeqCst);
    let err = m.get(&key()).await.unwrap_err();
    assert_eq!(err, TokenError::Fetch("apiserver unreachable".into()));
    assert_eq!(
        issuer.issued.load(Ordering::SeqCst),
        3,
        "not asked again yet"
    );
    now.store(T0 + 2900 + 3602, Ordering::SeqCst);
    assert_eq!(
        m.get(&key()).await.unwrap(),
        "tok-4",
        "asked after the delay"
    );

    // A gone pod's tokens are forgotten.
    m.forget("u1");
    assert_eq!(m.get(&other).await.unwrap(), "tok-5");
}

fn pod_with_token(annotations: &[(&str, &str)]) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1",
                     "annotations": annotations.iter().cloned().collect::<BTreeMap<_, _>>()},
        "spec": {"serviceAccountName": "robot", "containers": [{"name": "c"}],
                 "volumes": [{"name": "v", "projected": {"sources": [
                     {"serviceAccountToken": {"path": "token"}},
                     {"serviceAccountToken": {"path": "vault", "audience": "vault", "expirationSeconds": 600}}]}}]}
    }))
    .unwrap()
}

#[tokio::test]
async fn pod_tokens_per_source_and_static_pods_refused() {
    let now = Arc::new(AtomicU64::new(T0));
    let issuer = Arc::new(Issuer {
        now: now.clone(),
        issued: AtomicU64::new(0),
        fail: false.into(),
    });
    let m = TokenManager::new(Some(issuer));
    let tokens = m.pod_tokens(&pod_with_token(&[])).await.unwrap();
    assert_eq!(tokens.len(), 2);
    assert!(tokens.contains_key(&(String::new(), 3600)));
    assert!(tokens.contains_key(&("vault".to_string(), 600)));

    let err = m
        .pod_tokens(&pod_with_token(&[("kubernetes.io/config.source", "file")]))
        .await
        .unwrap_err();
    assert!(matches!(err, TokenError::StaticPod(_)), "{err}");
    let standalone = TokenManager::new(None);
    let err = standalone
        .pod_tokens(&pod_with_token(&[]))
        .await
        .unwrap_err();
    assert_eq!(err, TokenError::NoControlPlane);
}
