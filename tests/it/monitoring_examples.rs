//! The shipped alert rules and Grafana dashboard refer only to metrics
//! Lockbox emits, and the rules fire when they should (`promtool test rules`).

use std::collections::BTreeSet;
use std::process::Command;

use crate::support::Vault;
use crate::support::monitoring::*;

/// `promtool test rules` input: series for one source, and when each alert
/// must (and must not) fire.
const ALERT_TESTS: &str = r#"
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'lockbox_last_backup_success_timestamp_seconds{source="orders",instance="h"}'
        values: '0+0x1700'
      - series: 'lockbox_max_backup_age_seconds{source="orders",instance="h"}'
        values: '93600+0x1700'
      - series: 'lockbox_snapshots{source="orders",instance="h"}'
        values: '1+0x1700'
      - series: 'lockbox_last_run_failed{source="orders",instance="h"}'
        values: '0 0 1+0x1700'
      - series: 'lockbox_tamper_events_total{source="orders",instance="h"}'
        values: '0 0 0 0 0 1+0x1700'
      - series: 'lockbox_last_drill_success{source="orders",instance="h"}'
        values: '1 1 1 0+0x1700'
      - series: 'lockbox_snapshot_retain_until_timestamp_seconds{source="orders",instance="h"}'
        values: '300000+0x1700'
    alert_rule_test:
      - eval_time: 1h
        alertname: LockboxBackupStale
      - eval_time: 1600m
        alertname: LockboxBackupStale
        exp_alerts:
          - exp_labels: {severity: critical, source: orders, instance: h}
            exp_annotations:
              summary: "Lockbox: no recent backup of orders"
              description: "The newest snapshot of orders on h is 1d 2h 40m 0s old, older than its max_backup_age. Run `lockbox status` there."
      - eval_time: 1m
        alertname: LockboxLastRunFailed
      - eval_time: 3m
        alertname: LockboxLastRunFailed
        exp_alerts:
          - exp_labels: {severity: warning, source: orders, instance: h}
            exp_annotations:
              summary: "Lockbox: the last backup run of orders failed"
              description: "See `lockbox status` or the daemon's status page on h for the error."
      - eval_time: 4m
        alertname: LockboxTamperEvent
      - eval_time: 10m
        alertname: LockboxTamperEvent
        exp_alerts:
          - exp_labels: {severity: critical, source: orders, instance: h}
            exp_annotations:
              summary: "Lockbox: the repository was tampered with (orders)"
              description: "Restores read the locked originals, but someone deleted or overwrote objects. Find out whose credentials did it."
      - eval_time: 2m
        alertname: LockboxDrillFailed
      - eval_time: 5m
        alertname: LockboxDrillFailed
        exp_alerts:
          - exp_labels: {severity: warning, source: orders, instance: h}
            exp_annotations:
              summary: "Lockbox: the last restore drill of orders failed"
              description: "A snapshot of orders could not be restored and checked. See `lockbox status`."
      - eval_time: 10m
        alertname: LockboxNeverVerified
      - eval_time: 1500m
        alertname: LockboxNeverVerified
        exp_alerts:
          - exp_labels: {severity: warning, source: orders, instance: h}
            exp_annotations:
              summary: "Lockbox: no backup of orders was ever verified"
              description: "orders has snapshots but none passed a drill or a full verify."
      - eval_time: 600m
        alertname: LockboxRetentionRunningOut
      - eval_time: 720m
        alertname: LockboxRetentionRunningOut
        exp_alerts:
          - exp_labels: {severity: warning, source: orders, instance: h}
            exp_annotations:
              summary: "Lockbox: the newest backup of orders loses its lock soon"
              description: "Its retention ends in 2d 23h 20m 0s; after that it can be deleted."
  - interval: 1m
    input_series:
      - series: 'lockbox_notifications_total{kind="webhook",outcome="failed",instance="h"}'
        values: '0+0x10 1+0x100'
      - series: 'lockbox_notifications_total{kind="webhook",outcome="ok",instance="h"}'
        values: '0+1x100'
    alert_rule_test:
      - eval_time: 10m
        alertname: LockboxNotificationsFailing
      - eval_time: 12m
        alertname: LockboxNotificationsFailing
        exp_alerts:
          - exp_labels: {severity: warning, kind: webhook, outcome: failed, instance: h}
            exp_annotations:
              summary: "Lockbox: webhook notifications are failing on h"
              description: "Deliveries to a [[notify]] target failed in the last hour. The log names the target; `lockbox notify test` tries them all."
      - eval_time: 75m
        alertname: LockboxNotificationsFailing
  - interval: 1m
    input_series:
      - series: 'lockbox_last_verified_backup_timestamp_seconds{source="orders",instance="h"}'
        values: '0+0x100'
      - series: 'lockbox_max_verified_age_seconds{source="orders",instance="h"}'
        values: '3600+0x100'
    alert_rule_test:
      - eval_time: 50m
        alertname: LockboxVerifiedBackupStale
      - eval_time: 70m
        alertname: LockboxVerifiedBackupStale
        exp_alerts:
          - exp_labels: {severity: warning, source: orders, instance: h}
            exp_annotations:
              summary: "Lockbox: last verified backup of orders is too old"
              description: "The newest snapshot of orders proven restorable is 1h 10m 0s old, older than its max_verified_age. Run a drill or `lockbox verify --read-data`."
"#;

/// Names of the metric families in Prometheus text.
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect()
}

/// `lockbox_…` names an expression refers to.
fn referenced(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("lockbox_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn shipped_alert_rules_and_dashboard_use_metrics_lockbox_emits() {
    // Every metric family appears once a source has a backup, a failed run
    // and a drill.
    let v = Vault::new(&sources(""));
    v.ok(&["backup", "orders"]);
    v.fails(&["backup", "broken"]);
    record_drill(&v, &newest(&v, "orders"), true, 1.0);
    let emitted = families(&stdout(&v, &["metrics"]));
    for required in [
        "lockbox_last_backup_success_timestamp_seconds",
        "lockbox_last_verified_backup_timestamp_seconds",
        "lockbox_backup_runs_total",
        "lockbox_backup_duration_seconds",
        "lockbox_snapshot_logical_bytes",
        "lockbox_snapshot_stored_bytes",
        "lockbox_drill_runs_total",
        "lockbox_drill_restore_seconds",
        "lockbox_tamper_events_total",
        "lockbox_repository_retain_until_min_timestamp_seconds",
        "lockbox_notifications_total",
    ] {
        assert!(
            emitted.contains(required),
            "{required} missing: {emitted:?}"
        );
    }

    let root = env!("CARGO_MANIFEST_DIR");
    let rules_path = format!("{root}/examples/prometheus/alerts.yml");
    let rules = std::fs::read_to_string(&rules_path).unwrap();
    for line in rules
        .lines()
        .filter(|l| l.trim_start().starts_with("expr:"))
    {
        let names = referenced(line);
        assert!(!names.is_empty(), "{line}");
        assert!(names.is_subset(&emitted), "{line} uses {names:?}");
    }
    for alert in [
        "LockboxBackupStale",
        "LockboxVerifiedBackupStale",
        "LockboxLastRunFailed",
        "LockboxDrillFailed",
        "LockboxTamperEvent",
        "LockboxRetentionRunningOut",
        "LockboxNotificationsFailing",
    ] {
        assert!(rules.contains(&format!("alert: {alert}\n")), "{alert}");
    }

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/examples/grafana/lockbox.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().unwrap();
    let exprs = |p: &serde_json::Value| -> Vec<String> {
        p["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["expr"].as_str().unwrap().to_string())
            .collect()
    };
    // Front and centre: the first panel, top left and full width.
    let first = &panels[0];
    assert_eq!(first["gridPos"]["y"], 0);
    assert_eq!(first["gridPos"]["x"], 0);
    assert_eq!(first["gridPos"]["w"], 24);
    assert!(exprs(first)[0].contains("lockbox_last_verified_backup_timestamp_seconds"));
    let mut used = BTreeSet::new();
    for p in panels {
        for e in exprs(p) {
            let names = referenced(&e);
            assert!(names.is_subset(&emitted), "{e} uses {names:?}");
            used.extend(names);
        }
    }
    for shown in [
        "lockbox_backup_duration_seconds",
        "lockbox_snapshot_logical_bytes",
        "lockbox_snapshot_stored_bytes",
        "lockbox_dedup_ratio",
    ] {
        assert!(used.contains(shown), "the dashboard does not show {shown}");
    }

    let Some(promtool) = tool("/usr/bin/promtool", "prometheus") else {
        return;
    };
    let out = Command::new(&promtool)
        .args(["check", "rules", &rules_path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tests = v.path().join("alert-tests.yml");
    std::fs::write(&tests, format!("rule_files: [{rules_path}]\n{ALERT_TESTS}")).unwrap();
    let out = Command::new(&promtool)
        .args(["test", "rules"])
        .arg(&tests)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
