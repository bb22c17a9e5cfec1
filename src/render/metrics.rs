//! Prometheus metrics of the status report (the `prometheus` crate's text
//! format 0.0.4, which both a Prometheus scrape and node_exporter's textfile
//! collector read): used by `lockbox metrics` and the daemon's `/metrics`.
//!
//! The metrics are derived from the catalog at each scrape, not kept in
//! memory: counters are the catalog's run counts, so they survive restarts
//! and agree between the daemon, `lockbox metrics` and `lockbox status`.

use anyhow::Result;
use lockbox_vault::health::StatusReport;
use prometheus::{Encoder, Gauge, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};

/// Content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric name this module can emit (a test checks that the README
/// documents each).
pub const METRIC_NAMES: &[&str] = &[
    "lockbox_health",
    "lockbox_last_backup_success_timestamp_seconds",
    "lockbox_last_verified_backup_timestamp_seconds",
    "lockbox_backup_runs_total",
    "lockbox_last_run_failed",
    "lockbox_backup_duration_seconds",
    "lockbox_snapshots",
    "lockbox_snapshot_logical_bytes",
    "lockbox_snapshot_stored_bytes",
    "lockbox_dedup_ratio",
    "lockbox_snapshot_retain_until_timestamp_seconds",
    "lockbox_drill_runs_total",
    "lockbox_drill_restore_seconds",
    "lockbox_last_drill_success",
    "lockbox_tamper_events_total",
    "lockbox_max_backup_age_seconds",
    "lockbox_max_verified_age_seconds",
    "lockbox_repository_retain_until_min_timestamp_seconds",
    "lockbox_notifications_total",
];

struct Families {
    registry: Registry,
}

impl Families {
    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> Result<GaugeVec> {
        debug_assert!(METRIC_NAMES.contains(&name), "{name} is not listed");
        let g = GaugeVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(g.clone()))?;
        Ok(g)
    }
    fn counter(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec> {
        debug_assert!(METRIC_NAMES.contains(&name), "{name} is not listed");
        let c = IntCounterVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(c.clone()))?;
        Ok(c)
    }
}

/// The report and the notification counts in Prometheus text format.
pub fn encode(report: &StatusReport, notifications: &[(String, String, u64)]) -> Result<String> {
    let f = Families {
        registry: Registry::new(),
    };
    let src = &["source"];
    let health = f.gauge(
        "lockbox_health",
        "Health of the source: 0 OK, 1 WARN, 2 CRIT (see lockbox status).",
        src,
    )?;
    let last_success = f.gauge(
        "lockbox_last_backup_success_timestamp_seconds",
        "Start time of the newest snapshot (the point in time of its data).",
        src,
    )?;
    let last_verified = f.gauge(
        "lockbox_last_verified_backup_timestamp_seconds",
        "Start time of the newest snapshot that passed a drill or a full verify --read-data.",
        src,
    )?;
    let runs = f.counter(
        "lockbox_backup_runs_total",
        "Finished backup runs recorded in this host's catalog, by outcome.",
        &["source", "outcome"],
    )?;
    let last_run_failed = f.gauge(
        "lockbox_last_run_failed",
        "1 if the source's last finished backup run failed or was interrupted, else 0.",
        src,
    )?;
    let duration = f.gauge(
        "lockbox_backup_duration_seconds",
        "Duration of the backup that wrote the newest snapshot.",
        src,
    )?;
    let snapshots = f.gauge("lockbox_snapshots", "Snapshots in the catalog.", src)?;
    let logical = f.gauge(
        "lockbox_snapshot_logical_bytes",
        "Size of the newest snapshot's dump.",
        src,
    )?;
    let stored = f.gauge(
        "lockbox_snapshot_stored_bytes",
        "Stored (compressed, encrypted) bytes of the distinct objects the newest snapshot references.",
        src,
    )?;
    let dedup = f.gauge(
        "lockbox_dedup_ratio",
        "Bytes of all the source's dumps divided by the bytes their backups wrote.",
        src,
    )?;
    let retain = f.gauge(
        "lockbox_snapshot_retain_until_timestamp_seconds",
        "Lock expiry of the newest snapshot: until then it cannot be deleted.",
        src,
    )?;
    let drills = f.counter(
        "lockbox_drill_runs_total",
        "Restore drills recorded in the catalog, by outcome (passed, failed).",
        &["source", "outcome"],
    )?;
    let drill_seconds = f.gauge(
        "lockbox_drill_restore_seconds",
        "Restore time of the newest drill (the RTO it achieved).",
        src,
    )?;
    let drill_ok = f.gauge(
        "lockbox_last_drill_success",
        "1 if the newest drill passed, 0 if it failed (absent: never drilled).",
        src,
    )?;
    let tamper = f.counter(
        "lockbox_tamper_events_total",
        "Tamper events (delete markers, overwritten versions) on the source's manifests or on shared objects.",
        src,
    )?;
    let max_backup_age = f.gauge(
        "lockbox_max_backup_age_seconds",
        "The source's max_backup_age threshold.",
        src,
    )?;
    let max_verified_age = f.gauge(
        "lockbox_max_verified_age_seconds",
        "The source's max_verified_age threshold.",
        src,
    )?;

    for s in &report.sources {
        let l = &[s.source.as_str()];
        health.with_label_values(l).set(f64::from(s.health.code()));
        if let Some(b) = &s.last_backup {
            last_success.with_label_values(l).set(b.started_unix as f64);
            duration.with_label_values(l).set(b.duration_seconds);
        }
        if let Some(v) = &s.last_verified {
            last_verified
                .with_label_values(l)
                .set(v.snapshot_started_unix as f64);
        }
        // Both outcomes always, so rate() and increase() see the first failure.
        for outcome in ["success", "failed"] {
            runs.with_label_values(&[s.source.as_str(), outcome]);
        }
        for (outcome, n) in &s.backup_runs {
            runs.with_label_values(&[s.source.as_str(), outcome.as_str()])
                .inc_by(*n);
        }
        last_run_failed
            .with_label_values(l)
            .set(if s.last_run_failed { 1.0 } else { 0.0 });
        snapshots.with_label_values(l).set(s.snapshots as f64);
        if let Some(b) = s.logical_bytes {
            logical.with_label_values(l).set(b as f64);
        }
        if let Some(b) = s.stored_bytes {
            stored.with_label_values(l).set(b as f64);
        }
        if let Some(r) = s.dedup_ratio {
            dedup.with_label_values(l).set(r);
        }
        if let Some(t) = s.retain_until_latest_unix {
            retain.with_label_values(l).set(t as f64);
        }
        drills
            .with_label_values(&[s.source.as_str(), "passed"])
            .inc_by(s.drill_runs.passed);
        drills
            .with_label_values(&[s.source.as_str(), "failed"])
            .inc_by(s.drill_runs.failed);
        if let Some(d) = &s.last_drill {
            if let Some(secs) = d.restore_seconds {
                drill_seconds.with_label_values(l).set(secs);
            }
            drill_ok
                .with_label_values(l)
                .set(if d.passed { 1.0 } else { 0.0 });
        }
        tamper.with_label_values(l).inc_by(s.tamper_events);
        max_backup_age
            .with_label_values(l)
            .set(s.thresholds.max_backup_age_seconds as f64);
        max_verified_age
            .with_label_values(l)
            .set(s.thresholds.max_verified_age_seconds as f64);
    }
    let notified = f.counter(
        "lockbox_notifications_total",
        "Deliveries to [[notify]] targets recorded in this host's catalog, by kind and outcome (ok, failed).",
        &["kind", "outcome"],
    )?;
    // Every kind and outcome always, so an alert on `failed` has a series
    // to compare with before the first failure.
    for kind in ["webhook", "ping", "command"] {
        for outcome in ["ok", "failed"] {
            notified.with_label_values(&[kind, outcome]);
        }
    }
    for (kind, outcome, n) in notifications {
        notified
            .with_label_values(&[kind.as_str(), outcome.as_str()])
            .inc_by(*n);
    }
    if let Some(t) = report.repository.retain_until_min_unix {
        let g = Gauge::with_opts(Opts::new(
            "lockbox_repository_retain_until_min_timestamp_seconds",
            "Earliest lock expiry of any snapshot in the catalog.",
        ))?;
        g.set(t as f64);
        f.registry.register(Box::new(g))?;
    }
    let mut out = Vec::new();
    TextEncoder::new().encode(&f.registry.gather(), &mut out)?;
    Ok(String::from_utf8(out)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_documented_in_the_readme() {
        let readme = include_str!("../../README.md");
        for name in METRIC_NAMES {
            assert!(readme.contains(&format!("`{name}")), "README lacks {name}");
        }
    }
}
