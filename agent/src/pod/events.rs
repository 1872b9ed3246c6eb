//! A pod's events (what `describe` shows and the control plane receives)
//! and its start-up timeline.

use std::time::{Duration, SystemTime};

/// `Normal` or `Warning`, as Kubernetes events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum EventType {
    Normal,
    Warning,
}

/// One event, with repeats folded into `count` as kubelet's recorder does.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Event {
    pub type_: EventType,
    pub reason: String,
    pub message: String,
    /// The container (`spec.containers{name}`) or empty for the pod.
    pub field_path: String,
    pub first: SystemTime,
    pub last: SystemTime,
    pub count: u32,
}

/// The newest events of a pod, bounded.
#[derive(Clone, Debug, Default)]
pub struct EventLog {
    events: Vec<Event>,
}

const MAX_EVENTS: usize = 100;

impl EventLog {
    /// Record an event; the same type/reason/message/object in a row only
    /// bumps the count.
    pub fn add(&mut self, type_: EventType, reason: &str, field_path: &str, message: String) {
        let now = SystemTime::now();
        if let Some(e) = self.events.iter_mut().rev().find(|e| {
            e.type_ == type_
                && e.reason == reason
                && e.field_path == field_path
                && e.message == message
        }) {
            e.count += 1;
            e.last = now;
            return;
        }
        match type_ {
            EventType::Normal => tracing::info!(reason, field_path, "{message}"),
            EventType::Warning => tracing::warn!(reason, field_path, "{message}"),
        }
        if self.events.len() == MAX_EVENTS {
            self.events.remove(0);
        }
        self.events.push(Event {
            type_,
            reason: reason.to_string(),
            message,
            field_path: field_path.to_string(),
            first: now,
            last: now,
            count: 1,
        });
    }

    pub fn normal(&mut self, reason: &str, field_path: &str, message: String) {
        self.add(EventType::Normal, reason, field_path, message);
    }

    pub fn warning(&mut self, reason: &str, field_path: &str, message: String) {
        self.add(EventType::Warning, reason, field_path, message);
    }

    pub fn all(&self) -> &[Event] {
        &self.events
    }
}

/// When each step of a pod's start finished (first time only).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Timeline {
    /// The worker took the pod.
    pub accepted: Option<SystemTime>,
    /// Volumes and files are ready.
    pub volumes: Option<SystemTime>,
    /// The sandbox runs, its network set up.
    pub sandbox: Option<SystemTime>,
    /// Every image is present.
    pub images: Option<SystemTime>,
    /// The first app container was created.
    pub created: Option<SystemTime>,
    /// Every app container was started.
    pub started: Option<SystemTime>,
    /// Every postStart hook returned.
    pub post_start: Option<SystemTime>,
    /// The pod was Ready for the first time.
    pub ready: Option<SystemTime>,
}

impl Timeline {
    /// Set `slot` to now unless it is set.
    pub fn mark(slot: &mut Option<SystemTime>) {
        if slot.is_none() {
            *slot = Some(SystemTime::now());
        }
    }

    /// The steps in order, each with its time since `accepted`.
    pub fn steps(&self) -> Vec<(&'static str, Option<Duration>)> {
        let since = |t: Option<SystemTime>| {
            let (a, t) = (self.accepted?, t?);
            Some(t.duration_since(a).unwrap_or_default())
        };
        vec![
            ("volumes", since(self.volumes)),
            ("sandbox+network", since(self.sandbox)),
            ("images", since(self.images)),
            ("create", since(self.created)),
            ("start", since(self.started)),
            ("postStart", since(self.post_start)),
            ("first ready", since(self.ready)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_fold_into_a_count_and_the_log_is_bounded() {
        let mut log = EventLog::default();
        log.warning("BackOff", "spec.containers{a}", "back-off".into());
        log.warning("BackOff", "spec.containers{a}", "back-off".into());
        log.normal("Pulled", "spec.containers{a}", "pulled".into());
        assert_eq!(log.all().len(), 2);
        assert_eq!(log.all()[0].count, 2);
        for i in 0..150 {
            log.normal("Started", "", format!("{i}"));
        }
        assert_eq!(log.all().len(), MAX_EVENTS);
        assert_eq!(log.all().last().map(|e| e.message.as_str()), Some("149"));
    }
}
