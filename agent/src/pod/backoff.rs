//! CrashLoopBackOff as kubelet computes it (`flowcontrol.Backoff` with
//! 10 s initial and 300 s max, keyed per pod and container): the first
//! restart is immediate, then each one waits 10 s, 20 s, 40 s … 300 s from
//! the container's last exit; an entry untouched for twice the maximum
//! (10 min) starts over.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// First back-off delay.
pub const INITIAL: Duration = Duration::from_secs(10);
/// Largest back-off delay.
pub const MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
struct Entry {
    backoff: Duration,
    last_update: Instant,
}

/// Back-off state of every container (key: pod UID + container name).
#[derive(Debug, Default)]
pub struct Backoff {
    entries: HashMap<String, Entry>,
}

/// `<pod uid>_<container name>`: the key kubelet uses.
pub fn key(pod_uid: &str, container: &str) -> String {
    format!("{pod_uid}_{container}")
}

fn expired(now: Instant, last: Instant) -> bool {
    now.saturating_duration_since(last) > 2 * MAX
}

impl Backoff {
    /// An empty tracker.
    pub fn new() -> Backoff {
        Backoff::default()
    }

    /// How long the container exited at `finished_at` must still wait
    /// before a restart at `now`; `None` when it may restart now
    /// (`IsInBackOffSince`).
    pub fn remaining(&self, key: &str, finished_at: Instant, now: Instant) -> Option<Duration> {
        let e = self.entries.get(key)?;
        if expired(now, e.last_update) {
            return None;
        }
        let since = now.saturating_duration_since(finished_at);
        (since < e.backoff).then(|| e.backoff - since)
    }

    /// Record a restart of the container that exited at `finished_at`
    /// (`Next`): the next back-off doubles, up to [`MAX`].
    pub fn restarted(&mut self, key: &str, finished_at: Instant) {
        let entry = match self.entries.get(key) {
            Some(e) if !expired(finished_at, e.last_update) => Entry {
                backoff: (e.backoff * 2).min(MAX),
                last_update: finished_at,
            },
            _ => Entry {
                backoff: INITIAL,
                last_update: finished_at,
            },
        };
        self.entries.insert(key.to_string(), entry);
    }

    /// The current back-off period of the key, if any.
    pub fn period(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|e| e.backoff)
    }

    /// Forget a container (its pod is gone).
    pub fn forget(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Drop entries untouched for 10 min (`GC`).
    pub fn gc(&mut self, now: Instant) {
        self.entries.retain(|_, e| !expired(now, e.last_update));
    }
}

/// The waiting reason's message, as kubelet words it.
pub fn message(period: Duration, container: &str, pod: &str, uid: &str) -> String {
    format!(
        "back-off {}s restarting failed container={container} pod={pod}_({uid})",
        period.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_cap_and_reset() {
        let mut b = Backoff::new();
        let k = key("uid", "c");
        let t0 = Instant::now();
        // First crash: restart at once.
        assert_eq!(b.remaining(&k, t0, t0), None);
        b.restarted(&k, t0);
        // Each later crash waits the current period, which doubles to 300 s.
        let mut t = t0;
        for want in [10, 20, 40, 80, 160, 300, 300] {
            t += Duration::from_secs(1); // the container ran for a second
            assert_eq!(b.remaining(&k, t, t), Some(Duration::from_secs(want)));
            assert_eq!(
                b.remaining(&k, t, t + Duration::from_secs(want - 1)),
                Some(Duration::from_secs(1))
            );
            assert_eq!(b.remaining(&k, t, t + Duration::from_secs(want)), None);
            t += Duration::from_secs(want);
            b.restarted(&k, t);
        }
        assert_eq!(b.period(&k), Some(MAX));
        // Ten minutes (twice the cap) without a restart: back to the start.
        let later = t + Duration::from_secs(601);
        assert_eq!(b.remaining(&k, later, later), None);
        b.restarted(&k, later);
        assert_eq!(b.period(&k), Some(INITIAL));
        b.gc(later + Duration::from_secs(601));
        assert_eq!(b.period(&k), None);
        assert_eq!(
            message(INITIAL, "c", "web_default", "uid"),
            "back-off 10s restarting failed container=c pod=web_default_(uid)"
        );
    }
}
