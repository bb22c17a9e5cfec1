//! Retention policy selection: which snapshots a policy keeps, and why.
//!
//! This module is pure (no storage, no clock of its own): the caller gives the
//! snapshots, the policy, the timezone periods are counted in, and `now`.
//! Nothing here deletes; [`crate::prune`] turns a [`Decision`] list into a
//! reviewed plan.
//!
//! Rules, applied to each source's snapshots separately (like restic `forget`):
//! * Snapshots are ordered newest first by their **trusted** time — the
//!   storage's own timestamp (e.g. the manifest object's LastModified) — never
//!   by the time the manifest claims. Whoever holds the writer credentials can
//!   forge a claimed time, not when the storage received the object, so a flood
//!   of snapshots with forged times cannot push real ones out of a bucket rule.
//! * `keep_last = N` keeps the N newest snapshots.
//! * `keep_hourly/daily/weekly/monthly/yearly = N`: walking newest first, the
//!   newest snapshot of each distinct period (local hour, day, ISO week, month,
//!   year in the given timezone) is kept until N periods are kept. Periods with
//!   no snapshot (gaps) do not consume the count. The repeated hour at a DST
//!   fall-back is one hourly period.
//! * The newest snapshot of each source is always kept, whatever the policy.
//! * A snapshot whose lock (`retain_until`) is later than `now` is never
//!   removed: storage would refuse the delete anyway, and a plan must not list it.
//! * A policy with no rule set keeps everything.
//! * A snapshot is kept if any rule keeps it; all reasons are listed.
//!
//! Suspicious times: a snapshot whose claimed time differs from its trusted
//! time by more than the tolerance is flagged (selection ignores the claimed
//! time either way), so `verify` and the plan can report it.
//!
//! Keep horizon (for extending locks of promoted snapshots): a snapshot kept as
//! the k-th newest of `keep_monthly = N` (or `keep_yearly`) periods drops out of
//! that rule only once N newer periods hold snapshots, i.e. after N − k + 1 new
//! periods. New periods are counted from the period of `now` (itself a new one
//! unless it already holds the source's newest period). The horizon is the
//! start, in the policy's timezone, of the earliest period in which it could be
//! dropped: the (N − k + 1)-th new period. It is a lower bound — gaps in future
//! backups only keep it longer — and so safe as a lock. With both rules the
//! later horizon wins. Hourly/daily/weekly/last get no horizon: they are short
//! and `lock_days` covers them.

use crate::rfc3339;
use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use time::{Duration, OffsetDateTime};

/// A retention policy: every rule is optional; none set keeps everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Keep the N newest snapshots.
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest local hours that hold one.
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest local days that hold one.
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N newest ISO weeks that hold one.
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest months that hold one; gives a keep horizon.
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest years that hold one; gives a keep horizon.
    pub keep_yearly: Option<u32>,
}

impl Policy {
    /// No rule set: the policy keeps everything.
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none() && self.buckets().iter().all(|(_, n)| n.is_none())
    }

    fn buckets(&self) -> [(Period, Option<u32>); 5] {
        [
            (Period::Hourly, self.keep_hourly),
            (Period::Daily, self.keep_daily),
            (Period::Weekly, self.keep_weekly),
            (Period::Monthly, self.keep_monthly),
            (Period::Yearly, self.keep_yearly),
        ]
    }
}

/// The periods of bucket rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// A local clock hour (the repeated hour at a DST fall-back is one period).
    Hourly,
    /// A local calendar day.
    Daily,
    /// An ISO 8601 week (Monday to Sunday).
    Weekly,
    /// A local calendar month.
    Monthly,
    /// A local calendar year.
    Yearly,
}

impl Period {
    fn name(self) -> &'static str {
        match self {
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        }
    }

    /// The period's label (distinct per period) of a local time.
    fn label(self, t: &DateTime<Tz>) -> String {
        match self {
            Period::Hourly => format!(
                "{:04}-{:02}-{:02} {:02}h",
                t.year(),
                t.month(),
                t.day(),
                t.hour()
            ),
            Period::Daily => format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day()),
            Period::Weekly => {
                let w = t.iso_week();
                format!("{:04}-W{:02}", w.year(), w.week())
            }
            Period::Monthly => format!("{:04}-{:02}", t.year(), t.month()),
            Period::Yearly => format!("{:04}", t.year()),
        }
    }

    /// Months or years since year 0, for the horizon arithmetic.
    fn ordinal(self, t: &DateTime<Tz>) -> Option<i64> {
        match self {
            Period::Monthly => Some(i64::from(t.year()) * 12 + i64::from(t.month0())),
            Period::Yearly => Some(i64::from(t.year())),
            _ => None,
        }
    }

    /// Start in `tz` of the period with this ordinal (monthly/yearly only).
    fn start(self, ordinal: i64, tz: Tz) -> Option<OffsetDateTime> {
        let (year, month) = match self {
            Period::Monthly => (ordinal.div_euclid(12), ordinal.rem_euclid(12) + 1),
            Period::Yearly => (ordinal, 1),
            _ => return None,
        };
        let year = i32::try_from(year).ok()?;
        // Midnight does not exist on some DST-change days (e.g. America/Santiago):
        // the period then starts at the first local hour that does.
        (0..4).find_map(|h| {
            tz.with_ymd_and_hms(year, month as u32, 1, h, 0, 0)
                .earliest()
                .map(|t| from_chrono(&t))
        })
    }
}

/// One snapshot as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The snapshot's manifest id (hex).
    pub id: String,
    /// The source it belongs to; policies apply per source.
    pub source: String,
    /// The storage's own timestamp of the snapshot (its manifest's LastModified).
    pub trusted_time: OffsetDateTime,
    /// The time the manifest claims (writer's clock): reported, never trusted.
    pub claimed_time: OffsetDateTime,
    /// The snapshot's lock: it cannot be removed before this.
    pub retain_until: Option<OffsetDateTime>,
}

/// Why a snapshot is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The `rank`-th newest, within `keep_last`.
    Last {
        /// 1 for the newest snapshot.
        rank: u32,
    },
    /// The newest snapshot of `label`, the `rank`-th newest such period.
    Bucket {
        /// The bucket rule's period.
        period: Period,
        /// The period, e.g. `2026-11`, `2026-W47`, `2026-11-21 13h` (local time).
        label: String,
        /// 1 for the newest period kept by this rule.
        rank: u32,
    },
    /// The newest snapshot of its source (always kept).
    NewestOfSource,
    /// The newest verified snapshot of its source (kept by prune whatever
    /// the policy; [`select`] itself never gives this reason).
    NewestVerified,
    /// Its lock has not expired.
    Locked {
        /// The snapshot's retain-until (UTC), later than `now`.
        until: OffsetDateTime,
    },
    /// The policy sets no rule.
    NoPolicy,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Last { rank } => write!(f, "last {rank}"),
            Reason::Bucket { period, label, .. } => write!(f, "{} {label}", period.name()),
            Reason::NewestOfSource => f.write_str("newest of source"),
            Reason::NewestVerified => f.write_str("newest verified of source"),
            Reason::Locked { until } => write!(f, "locked until {}", rfc3339::format(*until)),
            Reason::NoPolicy => f.write_str("no retention policy"),
        }
    }
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The snapshot's manifest id (hex), as given in [`Snapshot::id`].
    pub id: String,
    /// The source it belongs to.
    pub source: String,
    /// The storage's timestamp the decision was made on.
    pub trusted_time: OffsetDateTime,
    /// The time the manifest claims; reported, never used.
    pub claimed_time: OffsetDateTime,
    /// True: keep. False: the policy would remove it.
    pub keep: bool,
    /// Every reason it is kept (empty when removed).
    pub reasons: Vec<Reason>,
    /// Claimed and trusted time differ by more than the tolerance.
    pub suspicious: bool,
    /// Until when the monthly/yearly rules keep it at least (see module doc).
    pub keep_horizon: Option<OffsetDateTime>,
}

/// Applies `policy` to each source's snapshots (see the module doc). The
/// result has one decision per input snapshot, in input order.
pub fn select(
    snapshots: &[Snapshot],
    policy: &Policy,
    tz: Tz,
    now: OffsetDateTime,
    tolerance: Duration,
) -> Vec<Decision> {
    let mut decisions: Vec<Decision> = snapshots
        .iter()
        .map(|s| Decision {
            id: s.id.clone(),
            source: s.source.clone(),
            trusted_time: s.trusted_time,
            claimed_time: s.claimed_time,
            keep: false,
            reasons: Vec::new(),
            suspicious: (s.claimed_time - s.trusted_time).abs() > tolerance,
            keep_horizon: None,
        })
        .collect();

    let mut by_source: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in snapshots.iter().enumerate() {
        by_source.entry(&s.source).or_default().push(i);
    }
    let now_local = to_chrono(now, tz);
    for indices in by_source.values_mut() {
        // Newest first by trusted time; the id breaks ties so the verdict does
        // not depend on listing order.
        indices.sort_by(|&a, &b| {
            let (a, b) = (&snapshots[a], &snapshots[b]);
            b.trusted_time
                .cmp(&a.trusted_time)
                .then_with(|| b.id.cmp(&a.id))
        });
        decisions[indices[0]].reasons.push(Reason::NewestOfSource);
        if policy.is_empty() {
            for &i in indices.iter() {
                decisions[i].reasons.push(Reason::NoPolicy);
            }
        }
        if let Some(n) = policy.keep_last {
            for (rank, &i) in (1..=n).zip(indices.iter()) {
                decisions[i].reasons.push(Reason::Last { rank });
            }
        }
        for (period, n) in policy.buckets() {
            let Some(n) = n else { continue };
            let mut last_label: Option<String> = None;
            let mut newest_ordinal = None;
            let mut rank = 0;
            for &i in indices.iter() {
                if rank == n {
                    break;
                }
                let local = to_chrono(snapshots[i].trusted_time, tz);
                let label = period.label(&local);
                if last_label.as_ref() == Some(&label) {
                    continue;
                }
                rank += 1;
                let ordinal = period.ordinal(&local);
                if rank == 1 {
                    newest_ordinal = ordinal;
                }
                if let (Some(p1), Some(_)) = (newest_ordinal, ordinal) {
                    let horizon = horizon(period, n, rank, p1, &now_local, tz);
                    let d = &mut decisions[i];
                    d.keep_horizon = d.keep_horizon.max(horizon);
                }
                decisions[i].reasons.push(Reason::Bucket {
                    period,
                    label: label.clone(),
                    rank,
                });
                last_label = Some(label);
            }
        }
    }
    for (d, s) in decisions.iter_mut().zip(snapshots) {
        if let Some(until) = s.retain_until.filter(|&u| u > now) {
            d.reasons.push(Reason::Locked { until });
        }
        d.keep = !d.reasons.is_empty();
    }
    decisions
}

/// The start of the (n − rank + 1)-th period newer than the newest kept one
/// (`p1`), counting the period of `now` as new unless it is `p1` (module doc).
fn horizon(
    period: Period,
    n: u32,
    rank: u32,
    p1: i64,
    now: &DateTime<Tz>,
    tz: Tz,
) -> Option<OffsetDateTime> {
    let needed = i64::from(n - rank + 1);
    let current = period.ordinal(now)?;
    let target = if current <= p1 {
        p1 + needed
    } else {
        current + needed - 1
    };
    period.start(target, tz)
}

fn to_chrono(t: OffsetDateTime, tz: Tz) -> DateTime<Tz> {
    Utc.timestamp_opt(t.unix_timestamp(), t.nanosecond())
        .single()
        .expect("in range")
        .with_timezone(&tz)
}

fn from_chrono(t: &DateTime<Tz>) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t.timestamp()).expect("in range")
}

#[cfg(test)]
mod tests;
