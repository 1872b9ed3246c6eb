//! Certificate rotation as kubelet's certificate manager does it: a new
//! certificate is requested at a jittered 70–90 % of the current one's
//! lifetime; a failed attempt is retried with exponential back-off while
//! the current certificate keeps being used.

use std::future::Future;
use std::time::{Duration, SystemTime};

use super::CertError;
use super::csr::Issued;
use super::store::{Pair, Store};

/// The first retry's delay after a failed rotation, doubled each time.
const BACKOFF_START: Duration = Duration::from_secs(2);
/// The longest delay between retries.
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// When to rotate a certificate valid from `not_before` to `not_after`:
/// `not_before + (0.7 + 0.2 * jitter) * lifetime`, `jitter` in [0, 1)
/// (kubelet: `wait.Jitter(total, 0.2) - 0.3 * total`).
pub fn deadline(not_before: SystemTime, not_after: SystemTime, jitter: f64) -> SystemTime {
    let total = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    not_before + total.mul_f64(0.7 + 0.2 * jitter.clamp(0.0, 1.0))
}

/// The next back-off delay after `previous`.
pub fn backoff(previous: Option<Duration>) -> Duration {
    match previous {
        None => BACKOFF_START,
        Some(d) => (d * 2).min(BACKOFF_MAX),
    }
}

/// Keep the certificate in `store` fresh, starting from `current`:
/// `renew` requests a new one (with whatever credentials are current then),
/// which is written to `store` and handed to `installed`. Runs forever.
pub async fn run<R, Fut>(
    what: &'static str,
    store: Store,
    mut current: Pair,
    mut renew: R,
    installed: impl Fn(&Pair),
) where
    R: FnMut() -> Fut,
    Fut: Future<Output = Result<Issued, CertError>>,
{
    loop {
        let at = deadline(current.not_before, current.not_after, rand::random::<f64>());
        let wait = at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        tracing::info!(
            certificate = what,
            expires = %chrono::DateTime::<chrono::Utc>::from(current.not_after),
            rotation_in = ?wait,
            "certificate rotation scheduled"
        );
        tokio::time::sleep(wait).await;
        let mut delay = None;
        loop {
            match renew_once(&store, &mut renew).await {
                Ok(pair) => {
                    installed(&pair);
                    tracing::info!(certificate = what, expires = %chrono::DateTime::<chrono::Utc>::from(pair.not_after), "certificate rotated");
                    current = pair;
                    break;
                }
                Err(e) => {
                    let d = backoff(delay);
                    delay = Some(d);
                    tracing::warn!(
                        certificate = what,
                        error = %crate::cri::error::chain(&e),
                        retry_in = ?d,
                        "certificate rotation failed; the current certificate stays in use"
                    );
                    tokio::time::sleep(d).await;
                }
            }
        }
    }
}

async fn renew_once<R, Fut>(store: &Store, renew: &mut R) -> Result<Pair, CertError>
where
    R: FnMut() -> Fut,
    Fut: Future<Output = Result<Issued, CertError>>,
{
    let issued = renew().await?;
    let file = store.write(
        &issued.cert_pem,
        issued.key_pem.as_bytes(),
        SystemTime::now(),
    )?;
    let pem = std::fs::read(&file).map_err(|source| CertError::Io {
        path: file.clone(),
        source,
    })?;
    Pair::parse(&pem, &file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_is_between_70_and_90_percent_of_the_lifetime() {
        let nb = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let na = nb + Duration::from_secs(1000);
        assert_eq!(deadline(nb, na, 0.0), nb + Duration::from_secs(700));
        assert_eq!(deadline(nb, na, 0.5), nb + Duration::from_secs(800));
        assert_eq!(deadline(nb, na, 1.0), nb + Duration::from_secs(900));
        for _ in 0..1000 {
            let d = deadline(nb, na, rand::random::<f64>());
            assert!(d >= nb + Duration::from_secs(700) && d < nb + Duration::from_secs(900));
        }
        // Out-of-range jitter is clamped; a reversed validity is "now".
        assert_eq!(deadline(nb, na, 7.0), nb + Duration::from_secs(900));
        assert_eq!(deadline(na, nb, 0.5), na);
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let mut d = None;
        let mut seen = Vec::new();
        for _ in 0..10 {
            let n = backoff(d);
            seen.push(n.as_secs());
            d = Some(n);
        }
        assert_eq!(seen, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    }
}
