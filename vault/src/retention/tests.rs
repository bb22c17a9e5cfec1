use super::*;
use time::format_description::well_known::Rfc3339;

const TOL: Duration = Duration::hours(1);

fn t(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn tz(name: &str) -> Tz {
    name.parse().unwrap()
}

/// A snapshot of source "db" whose id is its trusted time, claimed = trusted.
fn snap(time: &str) -> Snapshot {
    Snapshot {
        id: time.to_string(),
        source: "db".into(),
        trusted_time: t(time),
        claimed_time: t(time),
        retain_until: None,
    }
}

fn kept(ds: &[Decision]) -> Vec<&str> {
    let mut k: Vec<&str> = ds
        .iter()
        .filter(|d| d.keep)
        .map(|d| d.id.as_str())
        .collect();
    k.sort();
    k
}

fn reasons(ds: &[Decision], id: &str) -> Vec<String> {
    let d = ds.iter().find(|d| d.id == id).expect(id);
    d.reasons.iter().map(ToString::to_string).collect()
}

fn daily(n: u32) -> Policy {
    Policy {
        keep_daily: Some(n),
        ..Policy::default()
    }
}

/// Bucket boundaries, time zones and gaps: each case lists the snapshots
/// (by trusted time) and exactly which are kept.
#[test]
fn bucket_selection_table() {
    struct Case {
        name: &'static str,
        policy: Policy,
        tz: &'static str,
        times: &'static [&'static str],
        kept: &'static [&'static str],
    }
    let hourly = |n| Policy {
        keep_hourly: Some(n),
        ..Policy::default()
    };
    let weekly = |n| Policy {
        keep_weekly: Some(n),
        ..Policy::default()
    };
    let monthly = |n| Policy {
        keep_monthly: Some(n),
        ..Policy::default()
    };
    let yearly = |n| Policy {
        keep_yearly: Some(n),
        ..Policy::default()
    };
    let cases = [
        Case {
            name: "hourly: 10:59:59 and 11:00:00 are different hours",
            policy: hourly(2),
            tz: "UTC",
            times: &[
                "2026-11-20T10:59:59Z",
                "2026-11-20T11:00:00Z",
                "2026-11-20T11:30:00Z",
                "2026-11-20T12:00:00Z",
            ],
            kept: &["2026-11-20T11:30:00Z", "2026-11-20T12:00:00Z"],
        },
        Case {
            name: "hourly: three hours reach back across the boundary",
            policy: hourly(3),
            tz: "UTC",
            times: &[
                "2026-11-20T10:59:59Z",
                "2026-11-20T11:00:00Z",
                "2026-11-20T11:30:00Z",
                "2026-11-20T12:00:00Z",
            ],
            kept: &[
                "2026-11-20T10:59:59Z",
                "2026-11-20T11:30:00Z",
                "2026-11-20T12:00:00Z",
            ],
        },
        Case {
            name: "daily: midnight UTC",
            policy: daily(3),
            tz: "UTC",
            times: &[
                "2026-11-19T23:59:59Z",
                "2026-11-20T00:00:00Z",
                "2026-11-20T12:00:00Z",
                "2026-11-21T00:00:01Z",
            ],
            kept: &[
                "2026-11-19T23:59:59Z",
                "2026-11-20T12:00:00Z",
                "2026-11-21T00:00:01Z",
            ],
        },
        Case {
            name: "daily in New York: 03:00Z and 04:30Z are still the 19th locally",
            policy: daily(2),
            tz: "America/New_York",
            times: &[
                "2026-11-20T03:00:00Z",
                "2026-11-20T04:30:00Z",
                "2026-11-20T06:00:00Z",
            ],
            kept: &["2026-11-20T04:30:00Z", "2026-11-20T06:00:00Z"],
        },
        Case {
            name: "the same snapshots in UTC are one day",
            policy: daily(2),
            tz: "UTC",
            times: &[
                "2026-11-20T03:00:00Z",
                "2026-11-20T04:30:00Z",
                "2026-11-20T06:00:00Z",
            ],
            kept: &["2026-11-20T06:00:00Z"],
        },
        Case {
            name: "daily in Tokyo: 15:00Z is already the next day",
            policy: daily(2),
            tz: "Asia/Tokyo",
            times: &[
                "2026-11-19T10:00:00Z",
                "2026-11-19T14:59:59Z",
                "2026-11-19T15:00:00Z",
            ],
            kept: &["2026-11-19T14:59:59Z", "2026-11-19T15:00:00Z"],
        },
        Case {
            name: "the same snapshots in UTC are one day",
            policy: daily(2),
            tz: "UTC",
            times: &[
                "2026-11-19T10:00:00Z",
                "2026-11-19T14:59:59Z",
                "2026-11-19T15:00:00Z",
            ],
            kept: &["2026-11-19T15:00:00Z"],
        },
        Case {
            name: "weekly: ISO weeks start on Monday",
            policy: weekly(2),
            tz: "UTC",
            times: &[
                "2026-11-22T01:00:00Z",
                "2026-11-22T23:59:59Z",
                "2026-11-23T00:00:00Z",
            ],
            kept: &["2026-11-22T23:59:59Z", "2026-11-23T00:00:00Z"],
        },
        Case {
            name: "weekly: 2026-12-31 and 2027-01-03 are both 2026-W53",
            policy: weekly(2),
            tz: "UTC",
            times: &[
                "2026-12-27T12:00:00Z",
                "2026-12-31T12:00:00Z",
                "2027-01-03T12:00:00Z",
            ],
            kept: &["2026-12-27T12:00:00Z", "2027-01-03T12:00:00Z"],
        },
        Case {
            name: "monthly: month boundary",
            policy: monthly(2),
            tz: "UTC",
            times: &[
                "2026-10-15T00:00:00Z",
                "2026-10-31T23:59:59Z",
                "2026-11-01T00:00:00Z",
                "2026-11-15T00:00:00Z",
            ],
            kept: &["2026-10-31T23:59:59Z", "2026-11-15T00:00:00Z"],
        },
        Case {
            name: "monthly in New York: 2026-11-01T03:00Z is still October",
            policy: monthly(2),
            tz: "America/New_York",
            times: &[
                "2026-10-15T00:00:00Z",
                "2026-11-01T03:00:00Z",
                "2026-11-15T00:00:00Z",
            ],
            kept: &["2026-11-01T03:00:00Z", "2026-11-15T00:00:00Z"],
        },
        Case {
            name: "yearly: year boundary",
            policy: yearly(2),
            tz: "UTC",
            times: &[
                "2025-06-01T00:00:00Z",
                "2025-12-31T23:59:59Z",
                "2026-01-01T00:00:00Z",
                "2026-06-01T00:00:00Z",
            ],
            kept: &["2025-12-31T23:59:59Z", "2026-06-01T00:00:00Z"],
        },
        Case {
            name: "yearly in Tokyo: 2025-12-31T15:00Z is already 2026",
            policy: yearly(2),
            tz: "Asia/Tokyo",
            times: &[
                "2025-06-01T00:00:00Z",
                "2025-12-31T15:00:00Z",
                "2026-06-01T00:00:00Z",
            ],
            kept: &["2025-06-01T00:00:00Z", "2026-06-01T00:00:00Z"],
        },
        Case {
            name: "gaps do not consume the count",
            policy: daily(4),
            tz: "UTC",
            times: &[
                "2026-11-01T02:00:00Z",
                "2026-11-02T02:00:00Z",
                "2026-11-05T02:00:00Z",
                "2026-11-09T02:00:00Z",
                "2026-11-10T02:00:00Z",
            ],
            kept: &[
                "2026-11-02T02:00:00Z",
                "2026-11-05T02:00:00Z",
                "2026-11-09T02:00:00Z",
                "2026-11-10T02:00:00Z",
            ],
        },
        Case {
            name: "more periods asked than exist keeps one per period",
            policy: monthly(24),
            tz: "UTC",
            times: &[
                "2026-01-01T00:00:00Z",
                "2026-01-02T00:00:00Z",
                "2026-03-01T00:00:00Z",
            ],
            kept: &["2026-01-02T00:00:00Z", "2026-03-01T00:00:00Z"],
        },
    ];
    let now = t("2027-06-01T00:00:00Z");
    for c in cases {
        // Listing order must not matter: feed them oldest last.
        let snaps: Vec<Snapshot> = c.times.iter().rev().map(|s| snap(s)).collect();
        let ds = select(&snaps, &c.policy, tz(c.tz), now, TOL);
        assert_eq!(ds.len(), snaps.len(), "{}", c.name);
        assert_eq!(kept(&ds), c.kept, "{}", c.name);
        for d in &ds {
            assert_eq!(d.keep, !d.reasons.is_empty(), "{}: {}", c.name, d.id);
        }
    }
}

#[test]
fn reasons_name_the_rule_and_period() {
    let s = [
        snap("2026-11-19T23:30:00Z"),
        snap("2026-11-20T01:00:00Z"),
        snap("2026-11-20T02:00:00Z"),
    ];
    let policy = Policy {
        keep_last: Some(2),
        keep_daily: Some(5),
        keep_monthly: Some(1),
        ..Policy::default()
    };
    let ds = select(&s, &policy, Tz::UTC, t("2026-11-21T00:00:00Z"), TOL);
    assert_eq!(
        reasons(&ds, "2026-11-20T02:00:00Z"),
        [
            "newest of source",
            "last 1",
            "daily 2026-11-20",
            "monthly 2026-11"
        ]
    );
    assert_eq!(reasons(&ds, "2026-11-20T01:00:00Z"), ["last 2"]);
    assert_eq!(reasons(&ds, "2026-11-19T23:30:00Z"), ["daily 2026-11-19"]);

    // Tokyo: the 23:30Z snapshot is 08:30 on the 20th, the same day.
    let ds = select(
        &s,
        &policy,
        tz("Asia/Tokyo"),
        t("2026-11-21T00:00:00Z"),
        TOL,
    );
    assert!(
        !ds.iter()
            .find(|d| d.id == "2026-11-19T23:30:00Z")
            .unwrap()
            .keep
    );
}

#[test]
fn keep_last_combines_with_buckets() {
    let mut times = Vec::new();
    for day in 1..=3 {
        for hour in [0, 6, 12, 18] {
            times.push(format!("2026-11-0{day}T{hour:02}:00:00Z"));
        }
    }
    let s: Vec<Snapshot> = times.iter().map(|x| snap(x)).collect();
    let policy = Policy {
        keep_last: Some(2),
        keep_daily: Some(3),
        ..Policy::default()
    };
    let ds = select(&s, &policy, Tz::UTC, t("2026-11-04T00:00:00Z"), TOL);
    assert_eq!(
        kept(&ds),
        [
            "2026-11-01T18:00:00Z",
            "2026-11-02T18:00:00Z",
            "2026-11-03T12:00:00Z",
            "2026-11-03T18:00:00Z"
        ]
    );
}

#[test]
fn no_rule_keeps_everything() {
    let s = [snap("2026-01-01T00:00:00Z"), snap("2020-01-01T00:00:00Z")];
    let ds = select(
        &s,
        &Policy::default(),
        Tz::UTC,
        t("2027-01-01T00:00:00Z"),
        TOL,
    );
    assert!(ds.iter().all(|d| d.keep));
    assert_eq!(
        reasons(&ds, "2020-01-01T00:00:00Z"),
        ["no retention policy"]
    );
}

/// Even a policy that keeps nothing keeps each source's newest snapshot.
#[test]
fn newest_of_each_source_is_always_kept() {
    let mut s = vec![
        snap("2026-11-01T00:00:00Z"),
        snap("2026-11-02T00:00:00Z"),
        snap("2026-11-03T00:00:00Z"),
    ];
    let mut other = snap("2020-01-01T00:00:00Z");
    other.source = "other".into();
    s.push(other);
    let policy = Policy {
        keep_last: Some(0),
        ..Policy::default()
    };
    let ds = select(&s, &policy, Tz::UTC, t("2027-01-01T00:00:00Z"), TOL);
    assert_eq!(kept(&ds), ["2020-01-01T00:00:00Z", "2026-11-03T00:00:00Z"]);
    assert_eq!(reasons(&ds, "2026-11-03T00:00:00Z"), ["newest of source"]);
    // Rules count per source: the old "other" snapshot does not use up "db"'s.
    let ds = select(&s, &daily(2), Tz::UTC, t("2027-01-01T00:00:00Z"), TOL);
    assert_eq!(
        kept(&ds),
        [
            "2020-01-01T00:00:00Z",
            "2026-11-02T00:00:00Z",
            "2026-11-03T00:00:00Z"
        ]
    );
}

#[test]
fn locked_snapshots_are_never_removed() {
    let now = t("2026-11-20T12:00:00Z");
    let mut s = vec![
        snap("2026-11-01T00:00:00Z"),
        snap("2026-11-02T00:00:00Z"),
        snap("2026-11-03T00:00:00Z"),
        snap("2026-11-04T00:00:00Z"),
    ];
    s[0].retain_until = Some(t("2026-11-20T12:00:01Z"));
    s[1].retain_until = Some(now); // expires exactly now: removable
    s[2].retain_until = Some(t("2026-11-10T00:00:00Z"));
    let policy = Policy {
        keep_last: Some(1),
        ..Policy::default()
    };
    let ds = select(&s, &policy, Tz::UTC, now, TOL);
    assert_eq!(kept(&ds), ["2026-11-01T00:00:00Z", "2026-11-04T00:00:00Z"]);
    assert_eq!(
        reasons(&ds, "2026-11-01T00:00:00Z"),
        ["locked until 2026-11-20T12:00:01Z"]
    );
}

#[test]
fn claimed_time_far_from_trusted_time_is_suspicious() {
    let cases = [
        (Duration::ZERO, false),
        (Duration::minutes(59), false),
        (Duration::hours(1), false),
        (Duration::minutes(61), true),
        (-Duration::hours(2), true),
        (Duration::days(365), true),
    ];
    for (skew, suspicious) in cases {
        let mut s = snap("2026-11-20T12:00:00Z");
        s.claimed_time = s.trusted_time + skew;
        let ds = select(&[s], &daily(1), Tz::UTC, t("2026-11-21T00:00:00Z"), TOL);
        assert_eq!(ds[0].suspicious, suspicious, "skew {skew}");
        assert!(ds[0].keep);
    }
}

/// The writer floods the repository with snapshots claiming times spread
/// over two years. By trusted time they all landed this evening, so they
/// count as what they are — snapshots of today — and every real snapshot is
/// judged exactly as if one honest backup had run this evening.
#[test]
fn forged_claimed_times_do_not_push_out_real_snapshots() {
    let now = t("2026-11-20T23:00:00Z");
    let policy = Policy {
        keep_daily: Some(7),
        keep_weekly: Some(4),
        keep_monthly: Some(12),
        ..Policy::default()
    };
    let mut real = Vec::new();
    let mut day = t("2025-11-01T02:00:00Z");
    while day < now {
        real.push(snap(&day.format(&Rfc3339).unwrap()));
        day += Duration::days(1);
    }
    let mut flood = Vec::new();
    for i in 0..300i64 {
        let mut s = snap("2026-11-20T22:00:00Z");
        s.id = format!("forged-{i:03}");
        s.trusted_time += Duration::seconds(i);
        let offset = Duration::days(i * 2 + 2);
        s.claimed_time = if i % 2 == 0 {
            now + offset
        } else {
            now - offset
        };
        flood.push(s);
    }
    let mut honest = snap("2026-11-20T22:30:00Z");
    honest.id = "honest".into();

    let attacked: Vec<Snapshot> = real.iter().chain(&flood).cloned().collect();
    let baseline: Vec<Snapshot> = real.iter().chain([&honest]).cloned().collect();
    let verdict = |snaps: &[Snapshot]| -> Vec<(String, bool)> {
        select(snaps, &policy, Tz::UTC, now, TOL)
            .into_iter()
            .filter(|d| !d.id.starts_with("forged") && d.id != "honest")
            .map(|d| (d.id, d.keep))
            .collect()
    };
    let under_attack = verdict(&attacked);
    assert_eq!(under_attack, verdict(&baseline));
    let real_kept = under_attack.iter().filter(|(_, k)| *k).count();
    // Today's buckets go to the newer (forged or honest) snapshot: 6 more
    // days (Nov 14-19), weeks ending Nov 8 and Nov 1 (Nov 15 is a daily
    // already), the 11 months before November.
    assert_eq!(real_kept, 6 + 2 + 11);

    let ds = select(&attacked, &policy, Tz::UTC, now, TOL);
    for d in &ds {
        assert_eq!(d.suspicious, d.id.starts_with("forged"), "{}", d.id);
    }

    // The same flood judged by claimed time would remove real snapshots the
    // policy keeps: this is what trusting the storage's clock prevents.
    let naive: Vec<Snapshot> = attacked
        .iter()
        .map(|s| Snapshot {
            trusted_time: s.claimed_time,
            ..s.clone()
        })
        .collect();
    let pushed_out = verdict(&naive)
        .iter()
        .zip(&under_attack)
        .filter(|((_, naive_keep), (_, keep))| *keep && !naive_keep)
        .count();
    assert!(
        pushed_out > 10,
        "only {pushed_out} pushed out by claimed times"
    );
}

#[test]
fn keep_horizon_of_monthly_and_yearly_snapshots() {
    let s: Vec<Snapshot> = (1..=11)
        .map(|m| snap(&format!("2026-{m:02}-15T12:00:00Z")))
        .collect();
    let policy = Policy {
        keep_daily: Some(3),
        keep_monthly: Some(6),
        ..Policy::default()
    };
    let horizon = |ds: &[Decision], id: &str| ds.iter().find(|d| d.id == id).unwrap().keep_horizon;

    // `now` in November, which already holds the newest snapshot.
    let ds = select(&s, &policy, Tz::UTC, t("2026-11-20T00:00:00Z"), TOL);
    // 3rd newest monthly of 6: four more months must start before it can go.
    assert_eq!(
        horizon(&ds, "2026-09-15T12:00:00Z"),
        Some(t("2027-03-01T00:00:00Z"))
    );
    assert_eq!(
        horizon(&ds, "2026-11-15T12:00:00Z"),
        Some(t("2027-05-01T00:00:00Z"))
    );
    assert_eq!(
        horizon(&ds, "2026-06-15T12:00:00Z"),
        Some(t("2026-12-01T00:00:00Z"))
    );
    assert_eq!(horizon(&ds, "2026-05-15T12:00:00Z"), None);
    assert!(
        !ds.iter()
            .find(|d| d.id == "2026-05-15T12:00:00Z")
            .unwrap()
            .keep
    );

    // `now` in December with no December snapshot yet: December is the
    // first new month, so the horizons are the same.
    let ds = select(&s, &policy, Tz::UTC, t("2026-12-20T00:00:00Z"), TOL);
    assert_eq!(
        horizon(&ds, "2026-09-15T12:00:00Z"),
        Some(t("2027-03-01T00:00:00Z"))
    );
    // Backups stopped months ago: counted from now's month.
    let ds = select(&s, &policy, Tz::UTC, t("2027-04-10T00:00:00Z"), TOL);
    assert_eq!(
        horizon(&ds, "2026-09-15T12:00:00Z"),
        Some(t("2027-07-01T00:00:00Z"))
    );

    // Local midnight in the policy's timezone.
    let ds = select(
        &s,
        &policy,
        tz("America/New_York"),
        t("2026-11-20T00:00:00Z"),
        TOL,
    );
    assert_eq!(
        horizon(&ds, "2026-09-15T12:00:00Z"),
        Some(t("2027-03-01T05:00:00Z"))
    );

    // Yearly, and the later of two horizons wins.
    let policy = Policy {
        keep_monthly: Some(2),
        keep_yearly: Some(3),
        ..Policy::default()
    };
    let s = [
        snap("2024-06-01T00:00:00Z"),
        snap("2025-06-01T00:00:00Z"),
        snap("2026-10-01T00:00:00Z"),
        snap("2026-11-01T00:00:00Z"),
    ];
    let ds = select(&s, &policy, Tz::UTC, t("2026-11-20T00:00:00Z"), TOL);
    assert_eq!(
        horizon(&ds, "2025-06-01T00:00:00Z"),
        Some(t("2028-01-01T00:00:00Z"))
    );
    assert_eq!(
        horizon(&ds, "2024-06-01T00:00:00Z"),
        Some(t("2027-01-01T00:00:00Z"))
    );
    // Monthly 1 of 2 → 2027-01-01; yearly 1 of 3 → 2029-01-01.
    assert_eq!(
        horizon(&ds, "2026-11-01T00:00:00Z"),
        Some(t("2029-01-01T00:00:00Z"))
    );
    // Monthly 2 of 2 only (not the newest of 2026): start of the next month.
    assert_eq!(
        horizon(&ds, "2026-10-01T00:00:00Z"),
        Some(t("2026-12-01T00:00:00Z"))
    );
}

#[test]
fn daily_and_hourly_kept_snapshots_have_no_horizon() {
    let s = [snap("2026-11-19T12:00:00Z"), snap("2026-11-20T12:00:00Z")];
    let policy = Policy {
        keep_hourly: Some(5),
        keep_daily: Some(5),
        keep_last: Some(5),
        ..Policy::default()
    };
    let ds = select(&s, &policy, Tz::UTC, t("2026-11-21T00:00:00Z"), TOL);
    assert!(ds.iter().all(|d| d.keep && d.keep_horizon.is_none()));
}
