//! Scheduled restore drills in the daemon: each source with a
//! `[source.drill] schedule` (and an identity, required with it) gets a child
//! `lockbox drill SOURCE --json` in its own process group. Drills run beside
//! backups and do not count toward `max_concurrent`; a drill never overlaps
//! itself. On shutdown a drill gets SIGINT (its scratch database is dropped
//! on the way out), then SIGKILL after the grace period.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use lockbox_restore::drill::DrillReport;
use lockbox_vault::config::Config;
use lockbox_vault::scheduler::Schedule;
use lockbox_vault::sys;
use time::OffsetDateTime;

use super::child::{self, Child};
use crate::cli::LogFormat;

#[derive(Default)]
pub(super) struct Drills {
    slots: HashMap<String, (Schedule, OffsetDateTime)>,
    running: HashMap<String, Child>,
}

/// True if any source has a drill schedule.
pub(super) fn any_scheduled(config: &Config) -> bool {
    config
        .sources
        .iter()
        .any(|s| s.drill.as_ref().is_some_and(|d| d.schedule.is_some()))
}

impl Drills {
    /// (Re)reads the drill schedules; drills in flight keep running.
    pub(super) fn configure(&mut self, config: &Config, now: OffsetDateTime) {
        self.slots = config
            .sources
            .iter()
            .filter_map(|s| {
                let schedule = s.drill.as_ref()?.schedule.clone()?;
                let next = schedule.next_run(now, Duration::ZERO);
                Some((s.name.clone(), (schedule, next)))
            })
            .collect();
        if !self.slots.is_empty() {
            tracing::info!(drills = self.slots.len(), "drill schedules loaded");
        }
    }

    /// Reaps finished drills and starts due ones.
    pub(super) fn tick(&mut self, exe: &Path, config_path: &Path, log_format: LogFormat) {
        self.reap();
        let now = OffsetDateTime::now_utc();
        let due: Vec<String> = self
            .slots
            .iter_mut()
            .filter(|(_, (_, next))| now >= *next)
            .map(|(name, (schedule, next))| {
                *next = schedule.next_run(now, Duration::ZERO);
                name.clone()
            })
            .collect();
        for name in due {
            if self.running.contains_key(&name) {
                tracing::warn!(source = %name, "previous drill still going; this drill slot is skipped");
                continue;
            }
            match child::spawn(
                exe,
                config_path,
                log_format,
                &["drill", "--json", &name],
                // A drill reads its identity from [source.drill], never
                // from the daemon's environment.
                &["LOCKBOX_IDENTITY"],
            ) {
                Ok(r) => {
                    tracing::info!(source = %name, "drill started");
                    self.running.insert(name, r);
                }
                Err(e) => tracing::error!(source = %name, error = %e, "drill could not start"),
            }
        }
    }

    fn reap(&mut self) {
        let mut done = Vec::new();
        for (name, r) in self.running.iter_mut() {
            if matches!(r.group.child.try_wait(), Ok(Some(_))) {
                done.push(name.clone());
            }
        }
        for name in done {
            let mut r = self.running.remove(&name).expect("listed above");
            let code = r.group.child.wait().ok().and_then(|s| s.code());
            r.group.release();
            log_finished(&name, r, code);
        }
    }

    /// Shutdown, first step: SIGINT to every drill's process group (the
    /// drill stops and drops its scratch database).
    pub(super) fn interrupt(&mut self) {
        for r in self.running.values() {
            sys::signal_group(r.group.pgid(), libc::SIGINT);
        }
    }

    /// Shutdown, last step: waits for drills until `deadline`, then SIGKILL.
    pub(super) fn finish(&mut self, deadline: Instant) {
        while !self.running.is_empty() && Instant::now() < deadline {
            self.reap();
            std::thread::sleep(Duration::from_millis(20));
        }
        for (name, mut r) in self.running.drain() {
            r.group.kill_group();
            let _ = r.group.child.wait();
            r.group.release();
            tracing::warn!(source = %name, "drill killed at shutdown; its scratch database may be left (lockbox_drill_*)");
        }
    }
}

fn log_finished(name: &str, r: Child, code: Option<i32>) {
    let out = r.collect();
    let report: Option<DrillReport> = out.report();
    let snapshot = report.as_ref().map_or("?", |j| j.short_id.as_str());
    if code == Some(0) {
        tracing::info!(
            source = %name,
            outcome = "passed",
            snapshot = %snapshot,
            restore_seconds = report.as_ref().and_then(|j| j.restore_seconds).unwrap_or(0.0),
            data_age_seconds = report.as_ref().map_or(0.0, |j| j.data_age_seconds),
            seconds = out.seconds,
            "drill finished"
        );
    } else {
        tracing::error!(
            source = %name,
            outcome = "failed",
            exit = ?code,
            snapshot = %snapshot,
            failure = %report.as_ref().and_then(|j| j.failure.as_deref()).unwrap_or(""),
            error = %out.stderr_tail(8),
            seconds = out.seconds,
            "drill finished"
        );
    }
}
