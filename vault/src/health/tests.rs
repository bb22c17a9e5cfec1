//! Health verdicts with an injected clock, and the report gathered from a
//! real catalog.

use std::time::Duration;

use time::macros::datetime;

use super::*;
use crate::catalog::{RunOutcome, VerificationKind};
use crate::ids::ObjectId;
use crate::manifest::Manifest;
use crate::storage::TamperEvent;

const NOW: OffsetDateTime = datetime!(2026-11-21 12:00 UTC);
const HOUR: i64 = 3600;
const DAY: i64 = 86400;

fn at(seconds_before_now: i64) -> String {
    rfc3339::format(NOW - time::Duration::seconds(seconds_before_now))
}

fn ago(seconds_before_now: i64) -> OffsetDateTime {
    NOW - time::Duration::seconds(seconds_before_now)
}

fn snapshot(n: u8, age: i64) -> SnapshotRow {
    let id = hex::encode([n; 32]);
    SnapshotRow {
        short_id: id[..8].to_string(),
        id: id.clone(),
        source: "orders".into(),
        kind: "command".into(),
        started_at: ago(age),
        finished_at: ago(age - 90),
        retain_until: ago(age - 30 * DAY),
        previous: None,
        input_bytes: 1000 * u64::from(n),
        stored_bytes: 400,
        added_bytes: 100,
        chunks: 1,
        key: format!("snapshots/orders/{:020}-{id}", 1_000_000_000 - age),
    }
}

fn run(outcome: &str, age: i64, error: Option<&str>) -> RunRow {
    RunRow {
        id: 0,
        kind: "backup".into(),
        source: "orders".into(),
        started_at: at(age + 60),
        finished_at: (outcome != "running").then(|| at(age)),
        outcome: outcome.into(),
        snapshot: None,
        error: error.map(Into::into),
    }
}

fn verification(kind: VerificationKind, snapshot_age: i64, passed: bool) -> VerificationRow {
    VerificationRow {
        source: "orders".into(),
        snapshot: hex::encode([9; 32]),
        snapshot_started_at: at(snapshot_age),
        kind,
        passed,
        started_at: at(snapshot_age - 3600),
        finished_at: at(snapshot_age - 3700),
        restore_seconds: Some(12.5),
        detail: (!passed).then(|| "row count of orders differs".to_string()),
        attestation_key: None,
    }
}

/// A source backed up an hour ago, drilled a day ago: healthy.
fn healthy() -> SourceFacts {
    let drill = verification(VerificationKind::Drill, DAY, true);
    SourceFacts {
        source: "orders".into(),
        configured: true,
        snapshots: vec![snapshot(1, 2 * DAY), snapshot(2, HOUR)],
        runs: vec![run("success", 2 * DAY, None), run("success", HOUR, None)],
        last_verified: Some(drill.clone()),
        verifications: vec![drill],
        tamper_seen: vec![],
        waiting: None,
        catalog_rebuilt: None,
    }
}

fn run_of(kind: &str, outcome: &str, age: i64, error: Option<&str>) -> RunRow {
    RunRow {
        kind: kind.into(),
        ..run(outcome, age, error)
    }
}

fn rebuilt(age: i64, refilled: bool) -> Option<crate::catalog::Rebuilt> {
    Some(crate::catalog::Rebuilt {
        rebuilt_at: at(age),
        reason: "file is not a database".into(),
        kept_as: "/var/lib/lockbox/catalog.sqlite.corrupt-20261120T120000Z".into(),
        refilled_at: refilled.then(|| at(age - 5)),
    })
}

const DEFAULTS: Thresholds = Thresholds {
    max_backup_age: Duration::from_secs(26 * 3600),
    max_verified_age: Duration::from_secs(8 * 86400),
};

#[test]
fn verdicts_by_case() {
    type Tweak = fn(&mut SourceFacts, &mut Thresholds);
    let cases: Vec<(&str, Tweak, Health, &str)> = vec![
        ("fresh and verified", |_, _| {}, Health::Ok, ""),
        (
            "never backed up",
            |f, _| {
                f.snapshots.clear();
                f.runs.clear();
                f.verifications.clear();
                f.last_verified = None;
            },
            Health::Crit,
            "never backed up",
        ),
        (
            "stale: newest snapshot 27h old",
            |f, _| {
                f.snapshots.pop();
                f.snapshots.push(snapshot(2, 27 * HOUR));
            },
            Health::Crit,
            "last backup 1d 3h ago, older than max_backup_age 1d 2h",
        ),
        (
            "25h old is still fresh under the 26h default",
            |f, _| {
                f.snapshots.pop();
                f.snapshots.push(snapshot(2, 25 * HOUR));
            },
            Health::Ok,
            "",
        ),
        (
            "per-source threshold: 3h old with max_backup_age 2h",
            |f, t| {
                f.snapshots.pop();
                f.snapshots.push(snapshot(2, 3 * HOUR));
                t.max_backup_age = Duration::from_secs(2 * 3600);
            },
            Health::Crit,
            "older than max_backup_age 2h 0m",
        ),
        (
            "never verified",
            |f, _| {
                f.verifications.clear();
                f.last_verified = None;
            },
            Health::Warn,
            "never verified",
        ),
        (
            "verified backup 9 days old",
            |f, _| {
                let v = verification(VerificationKind::Verify, 9 * DAY, true);
                f.verifications = vec![v.clone()];
                f.last_verified = Some(v);
            },
            Health::Warn,
            "last verified backup 9d 0h old, older than max_verified_age 8d 0h",
        ),
        (
            "failed last run, previous backup still fresh",
            |f, _| {
                f.runs
                    .push(run("failed", 60, Some("pg_dump: connection refused\nmore")))
            },
            Health::Crit,
            "last backup failed at 2026-11-21T11:59:00Z: pg_dump: connection refused more",
        ),
        (
            "a failure followed by a success is over",
            |f, _| {
                f.runs.insert(1, run("failed", 3 * HOUR, Some("boom")));
            },
            Health::Ok,
            "",
        ),
        (
            "a run in progress does not hide the failed one before it",
            |f, _| {
                f.runs.push(run("interrupted", 120, None));
                f.runs.push(run("running", 0, None));
            },
            Health::Crit,
            "last backup interrupted",
        ),
        (
            "the newest drill failed",
            |f, _| {
                f.verifications
                    .push(verification(VerificationKind::Drill, HOUR, false))
            },
            Health::Crit,
            "last drill failed at 2026-11-21T12:01:40Z: row count of orders differs",
        ),
        (
            "a backup that timed out",
            |f, _| {
                f.runs.push(run(
                    "timed_out",
                    60,
                    Some("source orders: timed out after 12h"),
                ))
            },
            Health::Crit,
            "last backup timed out at",
        ),
        (
            "a drill that failed before restoring (no verification row)",
            |f, _| {
                f.runs.push(run_of(
                    "drill",
                    "failed",
                    60,
                    Some("drill target unreachable"),
                ))
            },
            Health::Crit,
            "last drill failed at 2026-11-21T11:59:00Z: drill target unreachable",
        ),
        (
            "a later drill run that passed clears a failed one",
            |f, _| {
                f.runs
                    .push(run_of("drill", "failed", 2 * HOUR, Some("unreachable")));
                f.runs.push(run_of("drill", "success", HOUR, None));
            },
            Health::Ok,
            "",
        ),
        (
            "a verify run that failed",
            |f, _| {
                f.runs.push(run_of(
                    "verify",
                    "failed",
                    60,
                    Some("storage: access denied"),
                ))
            },
            Health::Crit,
            "last verify failed",
        ),
        (
            "a drill or verify failure does not count as the last backup run",
            |f, _| f.runs.push(run_of("verify", "success", 60, None)),
            Health::Ok,
            "",
        ),
        (
            "waiting for a slot longer than the schedule's period",
            |f, _| {
                f.waiting = Some(Waiting {
                    since: NOW - time::Duration::hours(2),
                    period: Duration::from_secs(3600),
                })
            },
            Health::Warn,
            "waiting for a slot since 2026-11-21T10:00:00Z",
        ),
        (
            "waiting for a slot within the period is fine",
            |f, _| {
                f.waiting = Some(Waiting {
                    since: NOW - time::Duration::minutes(10),
                    period: Duration::from_secs(3600),
                })
            },
            Health::Ok,
            "",
        ),
        (
            "the newest full verify failed: damaged data",
            |f, _| {
                f.verifications
                    .push(verification(VerificationKind::Verify, HOUR, false))
            },
            Health::Crit,
            "verify --read-data of snapshot 09090909 failed",
        ),
        (
            "tamper event seen yesterday",
            |f, _| f.tamper_seen.push(NOW - time::Duration::days(1)),
            Health::Crit,
            "1 tamper event(s) in the last 7d 0h",
        ),
        (
            "tamper event a month ago is counted but no longer red",
            |f, _| f.tamper_seen.push(NOW - time::Duration::days(30)),
            Health::Ok,
            "",
        ),
        (
            "catalog rebuilt yesterday",
            |f, _| f.catalog_rebuilt = rebuilt(DAY, true),
            Health::Warn,
            "catalog was unreadable (file is not a database) and was rebuilt from the \
             repository at 2026-11-20T12:00:00Z; the unreadable copy is kept at \
             /var/lib/lockbox/catalog.sqlite.corrupt-20261120T120000Z",
        ),
        (
            "catalog rebuilt but not refilled yet",
            |f, _| f.catalog_rebuilt = rebuilt(HOUR, false),
            Health::Warn,
            "(not refilled yet: the next backup",
        ),
        (
            "catalog rebuilt 8 days ago is no longer a warning",
            |f, _| f.catalog_rebuilt = rebuilt(8 * DAY, true),
            Health::Ok,
            "",
        ),
        (
            "stale and never verified: CRIT first",
            |f, _| {
                f.snapshots = vec![snapshot(1, 3 * DAY)];
                f.verifications.clear();
                f.last_verified = None;
            },
            Health::Crit,
            "last backup 3d 0h ago",
        ),
    ];
    for (name, tweak, want, reason) in cases {
        let mut f = healthy();
        let mut t = DEFAULTS;
        tweak(&mut f, &mut t);
        let s = assess(&f, t, NOW);
        assert_eq!(s.health, want, "{name}: {:?}", s.reasons);
        if reason.is_empty() {
            assert!(s.reasons.is_empty(), "{name}: {:?}", s.reasons);
        } else {
            assert!(
                s.reasons[0].contains(reason),
                "{name}: first reason {:?} lacks {reason:?}",
                s.reasons
            );
        }
    }
}

#[test]
fn ages_sizes_and_counts() {
    let mut f = healthy();
    f.runs.push(run("failed", 30, Some("boom")));
    f.verifications
        .push(verification(VerificationKind::Drill, 2 * HOUR, false));
    f.tamper_seen.push(NOW - time::Duration::days(40));
    let s = assess(&f, DEFAULTS, NOW);
    let b = s.last_backup.as_ref().unwrap();
    assert_eq!(b.age_seconds, HOUR);
    assert_eq!(b.started_unix, NOW.unix_timestamp() - HOUR);
    assert_eq!(b.duration_seconds, 90.0);
    assert_eq!(b.snapshot, hex::encode([2; 32]));
    let v = s.last_verified.as_ref().unwrap();
    assert_eq!(v.age_seconds, DAY);
    assert_eq!(v.kind, VerificationKind::Drill);
    assert_eq!(s.snapshots, 2);
    assert_eq!(s.logical_bytes, Some(2000));
    assert_eq!(s.stored_bytes, Some(400));
    assert_eq!(s.total_logical_bytes, 3000);
    assert_eq!(s.total_added_bytes, 200);
    assert_eq!(s.dedup_ratio, Some(15.0));
    assert_eq!(
        s.retain_until_min.as_deref(),
        Some(at(2 * DAY - 30 * DAY).as_str())
    );
    assert_eq!(
        s.retain_until_latest.as_deref(),
        Some(at(HOUR - 30 * DAY).as_str())
    );
    assert_eq!(s.tamper_events, 1);
    assert_eq!(s.backup_runs["success"], 2);
    assert_eq!(s.backup_runs["failed"], 1);
    assert_eq!((s.drill_runs.passed, s.drill_runs.failed), (1, 1));
    assert_eq!(
        s.last_error.as_ref().unwrap().error.as_deref(),
        Some("boom")
    );
    assert!(!s.last_drill.as_ref().unwrap().passed);
    assert_eq!(s.last_run.as_ref().unwrap().outcome, "failed");
}

#[test]
fn human_durations() {
    for (s, want) in [
        (0, "0s"),
        (59, "59s"),
        (61, "1m 1s"),
        (3 * 3600 + 120, "3h 2m"),
        (93 * 86400 + 5 * 3600, "93d 5h"),
    ] {
        assert_eq!(human_duration(s), want);
    }
}

fn manifest(source: &str, started: OffsetDateTime, input: u64, added: u64) -> Manifest {
    Manifest {
        format: "lockbox-snapshot".into(),
        version: 1,
        repository: "repo".into(),
        source: source.into(),
        kind: "command".into(),
        started_at: started,
        finished_at: started + time::Duration::seconds(5),
        retain_until: started + time::Duration::days(30),
        previous: None,
        input_bytes: input,
        stored_bytes: added,
        added_bytes: added,
        lockbox_version: "test".into(),
        chunks: vec![],
        sealed: String::new(),
    }
}

/// The report of a real catalog: configured sources first in config
/// order, catalog-only sources after; tampering attributed by key.
#[test]
fn report_from_a_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.sqlite");
    assert!(open_catalog(&path).unwrap().is_none());
    let mut cat = Catalog::open(&path, "repo-1").unwrap();
    let now = OffsetDateTime::now_utc();
    let t1 = now - time::Duration::hours(30);
    let t2 = now - time::Duration::hours(2);
    for (n, t, input) in [(1u8, t1, 5000), (2, t2, 6000)] {
        let id = ObjectId::from_bytes([n; 32]);
        let key = crate::format::snapshot_key("orders", t, &id);
        cat.record_snapshot(&id, &key, &manifest("orders", t, input, 1000))
            .unwrap();
    }
    let piped = ObjectId::from_bytes([3; 32]);
    cat.record_snapshot(
        &piped,
        &crate::format::snapshot_key("piped", t2, &piped),
        &manifest("piped", t2, 10, 10),
    )
    .unwrap();
    let r = cat
        .begin_run(crate::catalog::RunKind::Backup, "orders")
        .unwrap();
    cat.finish_run(r, RunOutcome::Success, None, 6000, 1000, None)
        .unwrap();
    cat.record_verification(&VerificationRow {
        source: "orders".into(),
        snapshot: ObjectId::from_bytes([1; 32]).to_hex(),
        snapshot_started_at: rfc3339::format(t1),
        kind: VerificationKind::Drill,
        passed: true,
        started_at: rfc3339::format(now),
        finished_at: rfc3339::format(now),
        restore_seconds: Some(3.0),
        detail: None,
        attestation_key: Some("attestations/x".into()),
    })
    .unwrap();
    cat.record_tampering(&[
        TamperEvent {
            key: crate::format::snapshot_key("orders", t1, &ObjectId::from_bytes([1; 32])),
            version: Some("v1".into()),
            what: "delete marker".into(),
        },
        TamperEvent {
            key: "chunks/ab/abab".into(),
            version: Some("v2".into()),
            what: "bad version".into(),
        },
    ])
    .unwrap();
    drop(cat);

    let config = Config::parse(
        "state_dir = \"/var/lib/lockbox\"\n[repository]\nurl = \"file:///srv/lockbox\"\n\
         recipients = [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]\n\
         lock_days = 30\n[health]\nmax_verified_age = \"1d\"\n\
         [[source]]\nname = \"app\"\nkind = \"sqlite\"\npath = \"/x.db\"\n\
         [[source]]\nname = \"orders\"\nkind = \"command\"\ncommand = [\"x\"]\nmax_verified_age = \"2d\"\n",
        "t.toml",
    )
    .unwrap();
    let cat = open_catalog(&path).unwrap().expect("catalog exists");
    let report = report(&config, Some(&cat), now).unwrap();
    let names: Vec<(&str, bool)> = report
        .sources
        .iter()
        .map(|s| (s.source.as_str(), s.configured))
        .collect();
    assert_eq!(names, [("app", true), ("orders", true), ("piped", false)]);
    let [app, orders, piped] = &report.sources[..] else {
        unreachable!()
    };
    assert_eq!(app.health, Health::Crit);
    assert_eq!(app.reasons[0], "never backed up");
    // The orders drill verified the 30h-old snapshot: within its own 2d.
    assert_eq!(
        orders.last_verified.as_ref().unwrap().snapshot_started_unix,
        t1.unix_timestamp()
    );
    assert_eq!(orders.thresholds.max_verified_age_seconds, 2 * 86400);
    assert_eq!(piped.thresholds.max_verified_age_seconds, 86400);
    assert_eq!(orders.last_backup.as_ref().unwrap().age_seconds, 2 * 3600);
    assert_eq!(orders.snapshots, 2);
    assert_eq!(orders.logical_bytes, Some(6000));
    assert_eq!(
        orders.tamper_events, 2,
        "its manifest's and the shared chunk's"
    );
    assert_eq!(app.tamper_events, 1);
    assert_eq!(piped.tamper_events, 1);
    assert_eq!(report.repository.tamper_events, 2);
    assert_eq!(orders.health, Health::Crit, "tamper seen just now");
    assert_eq!(
        report.repository.retain_until_min_unix,
        Some((t1 + time::Duration::days(30)).unix_timestamp())
    );
    assert_eq!(report.health, Health::Crit);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["sources"][1]["health"], "CRIT");
    assert!(json["repository"]["catalog_rebuilt"].is_null(), "{json}");
    assert!(
        json["sources"][1]["last_backup"]
            .get("started_unix")
            .is_none()
    );
}

/// The shipped example documents the health keys and the listen address
/// at their defaults.
#[test]
fn shipped_example_sets_health_keys_at_their_defaults() {
    let c = Config::parse(&crate::config::shipped_example(), "examples/lockbox.toml").unwrap();
    assert_eq!(c.default_thresholds(), DEFAULTS);
    let orders = c.source("orders").unwrap();
    assert_eq!(orders.thresholds(c.default_thresholds()), DEFAULTS);
    assert_eq!(
        c.daemon_settings().listen,
        Some(crate::config::DEFAULT_LISTEN.parse().unwrap())
    );
    let weekly = Thresholds {
        max_backup_age: Duration::from_secs(8 * 86400),
        ..DEFAULTS
    };
    let text = crate::config::shipped_example().replace(
        "timeout = \"2h\"\nmax_backup_age = \"26h\"",
        "timeout = \"2h\"\nmax_backup_age = \"8d\"",
    );
    let c = Config::parse(&text, "t.toml").unwrap();
    assert_eq!(
        c.source("orders")
            .unwrap()
            .thresholds(c.default_thresholds()),
        weekly
    );
    assert_eq!(
        c.source("app").unwrap().thresholds(c.default_thresholds()),
        DEFAULTS
    );
}
