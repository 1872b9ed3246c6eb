//! The state kubelet's probe worker keeps per container and probe
//! (`prober/worker.go`), without the loop: the pod worker calls
//! [`Tracker::due`] each `periodSeconds` and feeds each [`Outcome`] to
//! [`Tracker::record`].
//!
//! - Initial results: liveness passes, readiness fails, startup is unknown
//!   (not started).
//! - Nothing is probed before `initialDelaySeconds` from the container's
//!   start; liveness and readiness wait for the startup probe to pass.
//! - A result is published after `successThreshold` passes or
//!   `failureThreshold` failures in a row; Unknown outcomes are discarded.
//! - A published liveness or startup failure means "restart": the tracker
//!   holds until [`Tracker::reset`] for the new container.
//! - Once the startup probe passes it is not run again for that container.

use std::time::Duration;

use k8s_openapi::api::core::v1::Probe;

use super::Outcome;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `livenessProbe`: failure restarts the container.
    Liveness,
    /// `readinessProbe`: failure clears Ready.
    Readiness,
    /// `startupProbe`: gates the other two; failure restarts.
    Startup,
}

/// What a published result asks of the pod worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing changes.
    None,
    /// The published result changed to this value (readiness: Ready;
    /// startup: Started; liveness: healthy).
    Changed(bool),
    /// Liveness or startup failed: kill and restart per restartPolicy
    /// (message for the event).
    Restart(String),
}

/// Per-container probe state.
#[derive(Debug, Clone)]
pub struct Tracker {
    kind: Kind,
    initial_delay: Duration,
    period: Duration,
    success_threshold: u32,
    failure_threshold: u32,
    published: Option<bool>,
    last: Option<bool>,
    run: u32,
    on_hold: bool,
}

impl Tracker {
    /// A tracker for `probe` (defaulted) of this kind.
    pub fn new(kind: Kind, probe: &Probe) -> Tracker {
        let pos = |v: Option<i32>, d: i32| v.filter(|v| *v > 0).unwrap_or(d) as u32;
        Tracker {
            kind,
            initial_delay: Duration::from_secs(
                probe.initial_delay_seconds.unwrap_or(0).max(0) as u64
            ),
            period: Duration::from_secs(u64::from(pos(probe.period_seconds, 10))),
            success_threshold: pos(probe.success_threshold, 1),
            failure_threshold: pos(probe.failure_threshold, 3),
            published: Self::initial(kind),
            last: None,
            run: 0,
            on_hold: false,
        }
    }

    fn initial(kind: Kind) -> Option<bool> {
        match kind {
            Kind::Liveness => Some(true),
            Kind::Readiness => Some(false),
            Kind::Startup => None,
        }
    }

    /// How often to call [`Tracker::due`].
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The published result: `Some(true)` healthy/ready/started.
    pub fn result(&self) -> Option<bool> {
        self.published
    }

    /// Whether to run the probe now. `since_start`: time since the
    /// container started; `started`: the startup probe passed (or there is
    /// none), which liveness and readiness wait for.
    pub fn due(&self, since_start: Duration, started: bool) -> bool {
        if self.on_hold {
            return false;
        }
        match self.kind {
            Kind::Startup if self.published == Some(true) => return false,
            Kind::Liveness | Kind::Readiness if !started => return false,
            _ => {}
        }
        since_start >= self.initial_delay
    }

    /// Take one outcome; returns what the pod worker must do.
    pub fn record(&mut self, outcome: &Outcome) -> Action {
        if self.on_hold {
            return Action::None;
        }
        let passed = match outcome {
            Outcome::Unknown(_) => return Action::None,
            o => o.passed(),
        };
        if self.last == Some(passed) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(passed);
            self.run = 1;
        }
        let threshold = if passed {
            self.success_threshold
        } else {
            self.failure_threshold
        };
        if self.run < threshold {
            return Action::None;
        }
        let changed = self.published != Some(passed);
        self.published = Some(passed);
        if !passed && matches!(self.kind, Kind::Liveness | Kind::Startup) {
            // The container is going away; stop until the next one.
            self.on_hold = true;
            self.run = 0;
            let what = if self.kind == Kind::Liveness {
                "Liveness"
            } else {
                "Startup"
            };
            let msg = match outcome {
                Outcome::Failure(m) => format!(
                    "Container failed {} probe, will be restarted: {m}",
                    what.to_lowercase()
                ),
                _ => format!(
                    "Container failed {} probe, will be restarted",
                    what.to_lowercase()
                ),
            };
            return Action::Restart(msg);
        }
        if changed {
            Action::Changed(passed)
        } else {
            Action::None
        }
    }

    /// A new container replaced the old one: start over.
    pub fn reset(&mut self) {
        self.published = Self::initial(self.kind);
        self.last = None;
        self.run = 0;
        self.on_hold = false;
    }

    /// The container is not running: readiness drops to false at once.
    pub fn container_stopped(&mut self) -> Action {
        if self.kind == Kind::Readiness && self.published != Some(false) {
            self.published = Some(false);
            self.last = None;
            self.run = 0;
            return Action::Changed(false);
        }
        Action::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(delay: i32, success: i32, failure: i32) -> Probe {
        Probe {
            initial_delay_seconds: Some(delay),
            period_seconds: Some(5),
            success_threshold: Some(success),
            failure_threshold: Some(failure),
            ..Default::default()
        }
    }

    const OK: Outcome = Outcome::Success;
    fn fail() -> Outcome {
        Outcome::Failure("boom".into())
    }

    #[test]
    fn readiness_thresholds() {
        let mut t = Tracker::new(Kind::Readiness, &probe(0, 2, 3));
        assert_eq!(t.result(), Some(false), "not ready until proven");
        assert_eq!(t.record(&OK), Action::None, "one success of two");
        assert_eq!(t.record(&OK), Action::Changed(true));
        assert_eq!(t.record(&OK), Action::None);
        assert_eq!(t.record(&fail()), Action::None);
        assert_eq!(t.record(&fail()), Action::None);
        assert_eq!(
            t.record(&OK),
            Action::None,
            "a success breaks the failure run"
        );
        assert_eq!(t.record(&fail()), Action::None);
        assert_eq!(
            t.record(&Outcome::Unknown("x".into())),
            Action::None,
            "unknown is discarded"
        );
        assert_eq!(t.record(&fail()), Action::None);
        assert_eq!(
            t.record(&fail()),
            Action::Changed(false),
            "three failures in a row"
        );
        assert_eq!(t.record(&fail()), Action::None, "readiness keeps probing");
        assert_eq!(t.result(), Some(false));
        assert_eq!(t.record(&Outcome::Warning("redirect".into())), Action::None);
        assert_eq!(
            t.record(&OK),
            Action::Changed(true),
            "a warning counts as success"
        );
        assert_eq!(t.container_stopped(), Action::Changed(false));
    }

    #[test]
    fn liveness_restarts_and_holds() {
        let mut t = Tracker::new(Kind::Liveness, &probe(10, 1, 2));
        assert_eq!(t.result(), Some(true));
        assert!(!t.due(Duration::from_secs(9), true), "initial delay");
        assert!(t.due(Duration::from_secs(10), true));
        assert!(
            !t.due(Duration::from_secs(60), false),
            "gated by the startup probe"
        );
        assert_eq!(t.record(&fail()), Action::None);
        let Action::Restart(msg) = t.record(&fail()) else {
            panic!("want restart")
        };
        assert!(
            msg.contains("failed liveness probe, will be restarted: boom"),
            "{msg}"
        );
        assert!(
            !t.due(Duration::from_secs(60), true),
            "on hold until the new container"
        );
        assert_eq!(t.record(&fail()), Action::None);
        t.reset();
        assert!(t.due(Duration::from_secs(60), true));
        assert_eq!(t.result(), Some(true));
    }

    #[test]
    fn startup_gates_then_stops() {
        let mut t = Tracker::new(Kind::Startup, &probe(0, 1, 3));
        assert_eq!(t.result(), None);
        assert!(
            t.due(Duration::ZERO, false),
            "startup runs before the container is started"
        );
        assert_eq!(t.record(&fail()), Action::None);
        assert_eq!(t.record(&OK), Action::Changed(true));
        assert!(
            !t.due(Duration::from_secs(100), true),
            "not run again once passed"
        );
        let mut t = Tracker::new(Kind::Startup, &probe(0, 1, 2));
        t.record(&fail());
        assert!(matches!(t.record(&fail()), Action::Restart(_)));
    }
}
