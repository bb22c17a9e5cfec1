//! Schedules: when each source's backup is next due, how long one period
//! is, and whether a source is overdue when the daemon starts (catch-up).
//!
//! Pure functions of a clock value passed in, so the rules are tested
//! without waiting. The daemon that acts on them lives in the binary.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use time::OffsetDateTime;

/// A parsed cron expression in a time zone: 5 fields, or 6 with seconds
/// first (`"*/10 * * * * *"`).
#[derive(Clone)]
pub struct Schedule {
    cron: croner::Cron,
    tz: Tz,
    text: String,
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Schedule({:?} in {})", self.text, self.tz)
    }
}

/// Slots are whole seconds: sub-second parts are dropped on the way in.
fn to_chrono(t: OffsetDateTime, tz: Tz) -> DateTime<Tz> {
    Utc.timestamp_opt(t.unix_timestamp(), 0)
        .single()
        .expect("in range")
        .with_timezone(&tz)
}

fn from_chrono(t: DateTime<Tz>) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t.timestamp()).expect("in range")
        + time::Duration::nanoseconds(i64::from(t.timestamp_subsec_nanos()))
}

impl Schedule {
    /// Parses a cron expression (5 fields, or 6 with seconds first) whose times are
    /// local to `tz`. The error is a message naming the expression.
    pub fn parse(expr: &str, tz: Tz) -> Result<Self, String> {
        let fields = expr.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(format!(
                "{expr:?} has {fields} fields; use 5 (minute hour day month weekday) or 6 with seconds first"
            ));
        }
        let cron = croner::parser::CronParser::new()
            .parse(expr)
            .map_err(|e| format!("{expr:?} is not a valid cron expression: {e}"))?;
        Ok(Self {
            cron,
            tz,
            text: expr.to_string(),
        })
    }

    /// The expression as configured.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: OffsetDateTime) -> Option<OffsetDateTime> {
        self.cron
            .find_next_occurrence(&to_chrono(t, self.tz), false)
            .ok()
            .map(from_chrono)
    }

    /// When to run next after `now`: the next slot plus a random delay of
    /// up to `jitter`. A schedule with no future slot waits a year.
    pub fn next_run(&self, now: OffsetDateTime, jitter: std::time::Duration) -> OffsetDateTime {
        let base = self
            .next_after(now)
            .unwrap_or(now + time::Duration::days(366));
        let extra = match jitter.as_millis() {
            0 => 0,
            ms => rand::random_range(0..=ms.min(u64::MAX as u128) as u64),
        };
        base + time::Duration::milliseconds(extra as i64)
    }

    /// The latest slot at or before `t`.
    pub fn previous_at(&self, t: OffsetDateTime) -> Option<OffsetDateTime> {
        self.cron
            .find_previous_occurrence(&to_chrono(t, self.tz), true)
            .ok()
            .map(from_chrono)
    }

    /// The length of the period that ended at the latest slot before `t`:
    /// the gap between that slot and the one before it.
    pub fn period_at(&self, t: OffsetDateTime) -> Option<time::Duration> {
        let last = self.previous_at(t)?;
        let before = self
            .cron
            .find_previous_occurrence(&to_chrono(last, self.tz), false)
            .ok()
            .map(from_chrono)?;
        Some(last - before)
    }

    /// Catch-up rule: on start, a source whose last success is older than
    /// one period (or that never succeeded) runs once, now.
    pub fn catch_up_due(&self, now: OffsetDateTime, last_success: Option<OffsetDateTime>) -> bool {
        match (last_success, self.period_at(now)) {
            (None, _) => true,
            (Some(last), Some(period)) => now - last > period,
            (Some(_), None) => false,
        }
    }
}

/// Parses a time zone name such as `UTC` or `Europe/Berlin`.
pub fn parse_tz(name: &str) -> Result<Tz, String> {
    Tz::from_str(name)
        .map_err(|_| format!("{name:?} is not a time zone name (e.g. UTC, Europe/Berlin)"))
}

/// Parses a duration such as `30s`, `5m`, `2h 30m` or `1d`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration (e.g. 30s, 5m, 2h): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn five_and_six_field_expressions() {
        let s = Schedule::parse("30 2 * * *", Tz::UTC).unwrap();
        assert_eq!(
            s.next_after(datetime!(2026-11-21 14:00 UTC)),
            Some(datetime!(2026-11-22 02:30 UTC))
        );
        let every_second = Schedule::parse("* * * * * *", Tz::UTC).unwrap();
        assert_eq!(
            every_second.next_after(datetime!(2026-11-21 14:00:00.5 UTC)),
            Some(datetime!(2026-11-21 14:00:01 UTC))
        );
        for bad in ["* * * *", "61 * * * *", "* * * * * * * *", "nonsense"] {
            assert!(Schedule::parse(bad, Tz::UTC).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn time_zones_shift_the_slot() {
        let berlin = parse_tz("Europe/Berlin").unwrap();
        let s = Schedule::parse("30 2 * * *", berlin).unwrap();
        // 02:30 in Berlin (UTC+1 in November) is 01:30 UTC.
        assert_eq!(
            s.next_after(datetime!(2026-11-21 14:00 UTC)),
            Some(datetime!(2026-11-22 01:30 UTC))
        );
        assert!(parse_tz("Mars/Olympus").is_err());
    }

    #[test]
    fn catch_up_when_last_success_is_older_than_a_period() {
        let daily = Schedule::parse("30 2 * * *", Tz::UTC).unwrap();
        let now = datetime!(2026-11-21 14:00 UTC);
        assert_eq!(daily.period_at(now), Some(time::Duration::days(1)));
        assert!(daily.catch_up_due(now, None));
        assert!(daily.catch_up_due(now, Some(datetime!(2026-11-20 02:29 UTC))));
        assert!(!daily.catch_up_due(now, Some(datetime!(2026-11-21 02:31 UTC))));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap().as_secs(), 10);
        assert_eq!(parse_duration("2h 30m").unwrap().as_secs(), 9000);
        assert!(parse_duration("ten").is_err());
    }
}
