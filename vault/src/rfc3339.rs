//! RFC 3339 text of points in time: what the catalog stores, JSON reports
//! print and records carry. One spelling everywhere (UTC, `Z`), so text
//! written by one part of Lockbox is read back by any other.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// `t` in UTC as RFC 3339 (`2026-12-07T17:54:07Z`, with fractional
/// seconds when it has them). A time RFC 3339 cannot express (a year
/// before year 0, e.g. from a damaged record) falls back to `time`'s own
/// rendering instead of panicking.
pub fn format(t: OffsetDateTime) -> String {
    let utc = t.to_offset(UtcOffset::UTC);
    utc.format(&Rfc3339).unwrap_or_else(|_| utc.to_string())
}

/// Parses RFC 3339 text; `None` if it is not.
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_utc_and_round_trips() {
        let t = parse("2026-12-07T18:54:07+01:00").unwrap();
        assert_eq!(format(t), "2026-12-07T17:54:07Z");
        assert_eq!(parse(&format(t)), Some(t));
        let far = OffsetDateTime::from_unix_timestamp(-100_000_000_000).unwrap();
        assert!(!format(far).is_empty());
    }
}
