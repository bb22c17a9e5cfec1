//! `[source.drill]`: where and how a source's restore drills run, and the
//! checks a restored database must pass.

use std::path::PathBuf;

use serde::Deserialize;

use crate::scheduler::Schedule;

/// Default tolerance for row counts recorded as estimates, in percent.
pub const DEFAULT_ROW_TOLERANCE_PCT: f64 = 10.0;
/// Estimated counts also pass within this many rows, whatever the percentage
/// (planner and InnoDB estimates of small tables are coarse).
pub const ROW_TOLERANCE_FLOOR: u64 = 100;

/// `[source.drill]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrill {
    /// Server on which the scratch database is created, same URL forms as
    /// `restore --into` (`postgresql://user@host:port/db`, `mariadb://…`,
    /// `mysql://…`); its database part names the database to connect to
    /// and is otherwise unused. Not for `sqlite` sources (a temp file).
    #[serde(default)]
    pub target: Option<String>,
    /// A file holding the drill server's password (first line); otherwise
    /// `LOCKBOX_RESTORE_PASSWORD`, otherwise none.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// When `lockbox daemon` runs a drill of this source (cron, like
    /// `schedule`); needs `identity`.
    #[serde(default)]
    pub schedule: Option<String>,
    /// The age identity drills use (restore hosts only; `--identity` wins).
    #[serde(default)]
    pub identity: Option<PathBuf>,
    /// Allow the drill server to be the source's own server (a new scratch
    /// database is still created; off by default, since a drill adds load).
    #[serde(default)]
    pub allow_source_server: bool,
    /// Tolerance for row counts recorded as estimates, in percent.
    #[serde(default)]
    pub row_tolerance_pct: Option<f64>,
    /// `[[source.drill.check]]`: queries the restored database must answer.
    #[serde(default, rename = "check")]
    pub checks: Vec<DrillCheck>,
}

/// One `[[source.drill.check]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillCheck {
    /// Shown in drill reports and attestations' sealed part (publicly it is `check[N]`).
    pub name: String,
    /// One query; the first column of the first row is the value.
    /// `{snapshot_started_at}` is replaced by the snapshot's start time
    /// (RFC 3339, UTC) and `{snapshot_started_epoch}` by it in Unix seconds.
    pub sql: String,
    /// The value must equal this (numbers compare as numbers, booleans
    /// accept t/f, true/false, 1/0).
    #[serde(default)]
    pub expect: Option<toml::Value>,
    /// The value must be a number at least this…
    #[serde(default)]
    pub min: Option<f64>,
    /// …and at most this.
    #[serde(default)]
    pub max: Option<f64>,
}

/// `[source.drill]`, checked.
#[derive(Debug, Clone)]
pub struct DrillConfig {
    /// The server the scratch database is created on, as a `restore --into` URL without a
    /// password (its database part is only connected to). Never set for `sqlite` sources
    /// (a temporary file); a database source without one needs `drill --target`.
    pub target: Option<String>,
    /// A file holding the drill server's password (first line).
    pub password_file: Option<PathBuf>,
    /// When `lockbox daemon` runs a drill of this source.
    pub schedule: Option<Schedule>,
    /// The age identity drills use (restore hosts only; `--identity` wins).
    pub identity: Option<PathBuf>,
    /// Allow the drill server to be the source's own server.
    pub allow_source_server: bool,
    row_tolerance_pct: f64,
    /// `[[source.drill.check]]`: queries the restored database must answer.
    pub checks: Vec<DrillCheck>,
}

impl DrillConfig {
    /// Tolerance for row counts recorded as estimates, in percent.
    pub fn row_tolerance_pct(&self) -> f64 {
        self.row_tolerance_pct
    }

    pub(super) fn from_raw(
        raw: RawDrill,
        i: usize,
        kind: &str,
        tz: chrono_tz::Tz,
    ) -> Result<Self, (String, String)> {
        let schedule = raw.check(i, kind, tz)?;
        Ok(DrillConfig {
            target: raw.target,
            password_file: raw.password_file,
            schedule,
            identity: raw.identity,
            allow_source_server: raw.allow_source_server,
            row_tolerance_pct: raw.row_tolerance_pct.unwrap_or(DEFAULT_ROW_TOLERANCE_PCT),
            checks: raw.checks,
        })
    }
}

impl RawDrill {
    /// Checks every key; returns the parsed schedule.
    fn check(
        &self,
        i: usize,
        kind: &str,
        tz: chrono_tz::Tz,
    ) -> Result<Option<Schedule>, (String, String)> {
        let key = |k: &str| format!("source[{i}].drill.{k}");
        if let Some(t) = &self.target {
            if kind == "sqlite" {
                return Err((
                    key("target"),
                    "does not apply to kind = \"sqlite\" (drills use a temporary file)".into(),
                ));
            }
            let scheme_ok = ["postgresql://", "postgres://", "mariadb://", "mysql://"]
                .iter()
                .any(|s| t.starts_with(s));
            if !scheme_ok {
                return Err((
                    key("target"),
                    "must be a postgresql://, mariadb:// or mysql:// URL".into(),
                ));
            }
            if super::url_has_password(t) {
                return Err((
                    key("target"),
                    "must not contain a password; use password_file".into(),
                ));
            }
        }
        for (k, p) in [
            ("password_file", &self.password_file),
            ("identity", &self.identity),
        ] {
            if p.as_ref().is_some_and(|p| !p.is_absolute()) {
                return Err((key(k), "must be an absolute path".into()));
            }
        }
        let schedule = super::schedule(self.schedule.as_deref(), &key("schedule"), tz)?;
        if schedule.is_some() && self.identity.is_none() {
            return Err((
                key("identity"),
                "is required with drill.schedule (scheduled drills need an identity)".into(),
            ));
        }
        if let Some(p) = self.row_tolerance_pct
            && !(0.0..=100.0).contains(&p)
        {
            return Err((key("row_tolerance_pct"), "must be between 0 and 100".into()));
        }
        let mut names = std::collections::HashSet::new();
        for (j, c) in self.checks.iter().enumerate() {
            let ck = |k: &str| format!("source[{i}].drill.check[{j}].{k}");
            if c.name.trim().is_empty() {
                return Err((ck("name"), "must not be empty".into()));
            }
            if !names.insert(&c.name) {
                return Err((ck("name"), format!("duplicate check name {:?}", c.name)));
            }
            if c.sql.trim().is_empty() {
                return Err((ck("sql"), "must not be empty".into()));
            }
            match (&c.expect, c.min, c.max) {
                (None, None, None) => {
                    return Err((ck("expect"), "give expect, or min and/or max".into()));
                }
                (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                    return Err((ck("expect"), "give expect or min/max, not both".into()));
                }
                (Some(toml::Value::Array(_) | toml::Value::Table(_)), ..) => {
                    return Err((ck("expect"), "must be a string, number or boolean".into()));
                }
                (None, Some(lo), Some(hi)) if lo > hi => {
                    return Err((ck("min"), "is greater than max".into()));
                }
                _ => {}
            }
        }
        Ok(schedule)
    }
}

/// An expected value as text, for comparison with a query's result.
pub fn expect_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    const BASE: &str = "state_dir = \"/var/lib/lockbox\"\n[repository]\nurl = \"file:///srv/l\"\n\
        recipients = [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]\nlock_days = 30\n\
        [[source]]\nname = \"db\"\nkind = \"postgres\"\ndatabase = \"orders\"\n[source.drill]\n";

    fn key_of(extra: &str) -> String {
        match Config::parse(&format!("{BASE}{extra}"), "t.toml") {
            Err(ConfigError::Invalid { key, .. }) => key,
            Err(e) => e.to_string(),
            Ok(_) => "ok".into(),
        }
    }

    #[test]
    fn drill_sections_are_checked_key_by_key() {
        let ok = "target = \"postgresql://drill@h:5432/postgres\"\n\
                  [[source.drill.check]]\nname = \"n\"\nsql = \"select 1\"\nexpect = 1\n";
        assert_eq!(key_of(ok), "ok");
        let c = Config::parse(&format!("{BASE}{ok}"), "t").unwrap();
        let d = c.source("db").unwrap().drill.as_ref().unwrap();
        assert_eq!(d.row_tolerance_pct(), super::DEFAULT_ROW_TOLERANCE_PCT);
        assert_eq!(d.checks[0].expect, Some(toml::Value::Integer(1)));
        for (extra, key) in [
            ("target = \"ftp://x/y\"\n", "source[0].drill.target"),
            (
                "target = \"postgresql://u:pw@h/db\"\n",
                "source[0].drill.target",
            ),
            ("schedule = \"0 6 * * 0\"\n", "source[0].drill.identity"),
            (
                "schedule = \"bad\"\nidentity = \"/i\"\n",
                "source[0].drill.schedule",
            ),
            ("identity = \"rel.txt\"\n", "source[0].drill.identity"),
            (
                "row_tolerance_pct = 150\n",
                "source[0].drill.row_tolerance_pct",
            ),
            ("tagret = \"x\"\n", "unknown field"),
            (
                "[[source.drill.check]]\nname = \"n\"\nsql = \"select 1\"\n",
                "source[0].drill.check[0].expect",
            ),
            (
                "[[source.drill.check]]\nname = \"n\"\nsql = \"select 1\"\nexpect = 1\nmin = 0\n",
                "source[0].drill.check[0].expect",
            ),
            (
                "[[source.drill.check]]\nname = \"n\"\nsql = \"s\"\nmin = 2\nmax = 1\n",
                "source[0].drill.check[0].min",
            ),
            (
                "[[source.drill.check]]\nname = \"n\"\nsql = \"s\"\nmin = 1\n\
                 [[source.drill.check]]\nname = \"n\"\nsql = \"s\"\nmin = 1\n",
                "source[0].drill.check[1].name",
            ),
        ] {
            let got = key_of(extra);
            assert!(got.contains(key), "{extra:?}: got {got:?}, want {key:?}");
        }
    }
}
