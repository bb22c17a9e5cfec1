//! `stale` events: a source that newly passed one of its age thresholds.

use std::collections::BTreeSet;

use super::{Event, EventKind};
use crate::health::{StatusReport, human_duration};

/// Which sources newly passed a threshold: a `stale` event for each source
/// whose newest snapshot is now older than its `max_backup_age`, or whose
/// newest verified snapshot is now older than its `max_verified_age`, and
/// was not already in `already`. `already` remembers what was reported
/// (`source/backup`, `source/verified`) and forgets a source once it is
/// fresh again, so each transition is told once. A source never backed up
/// or never verified has no age to pass (`lockbox status` shows those).
pub fn stale_events(report: &StatusReport, already: &mut BTreeSet<String>) -> Vec<Event> {
    let mut out = Vec::new();
    for s in &report.sources {
        let checks = [
            (
                "backup",
                s.last_backup.as_ref().map(|b| b.age_seconds),
                s.thresholds.max_backup_age_seconds,
                "newest snapshot",
                "max_backup_age",
            ),
            (
                "verified",
                s.last_verified.as_ref().map(|v| v.age_seconds),
                s.thresholds.max_verified_age_seconds,
                "newest verified snapshot",
                "max_verified_age",
            ),
        ];
        for (what, age, limit, noun, key) in checks {
            let id = format!("{}/{what}", s.source);
            let Some(age) = age.map(|a| a.max(0) as u64) else {
                already.remove(&id);
                continue;
            };
            if age <= limit {
                already.remove(&id);
                continue;
            }
            if !already.insert(id) {
                continue;
            }
            let mut e = Event::new(EventKind::Stale, &s.source);
            e.outcome = Some(format!("{what}_stale"));
            e.error = Some(format!(
                "{noun} is {} old, older than {key} {}",
                human_duration(age),
                human_duration(limit)
            ));
            e.health = Some(s.health.as_str().to_string());
            if what == "backup" {
                e.snapshot = s.last_backup.as_ref().map(|b| b.snapshot.clone());
            } else {
                e.snapshot = s.last_verified.as_ref().map(|v| v.snapshot.clone());
            }
            out.push(e);
        }
    }
    out
}
