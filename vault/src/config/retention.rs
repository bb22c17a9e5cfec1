//! `[retention]` and the per-source `keep_*` keys: the policy `prune`
//! applies, selected by [`crate::retention`].
//!
//! A `[[source]]` that sets any `keep_*` key replaces the whole `[retention]`
//! rule set for that source (keys are not merged one by one), so what a
//! source's table says is all that applies to it.

use serde::Deserialize;

use crate::retention::Policy;

/// `[retention]` as written: the repository's default policy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// Keep the N newest snapshots.
    #[serde(default)]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest local hours that hold one.
    #[serde(default)]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest local days that hold one.
    #[serde(default)]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N newest ISO weeks that hold one.
    #[serde(default)]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest months that hold one.
    #[serde(default)]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest years that hold one.
    #[serde(default)]
    pub keep_yearly: Option<u32>,
    /// Timezone of the hourly…yearly periods (default `[daemon] timezone`).
    #[serde(default)]
    pub timezone: Option<String>,
}

impl RetentionSection {
    /// The `keep_*` keys as a policy, unchecked (a key that is not set keeps nothing by it).
    pub fn policy(&self) -> Policy {
        Policy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
        }
    }

    /// The checked policy, its periods in `timezone` or else `daemon_tz`.
    pub(super) fn checked(&self, daemon_tz: chrono_tz::Tz) -> Result<Retention, (String, String)> {
        let policy = self.policy();
        check_keeps("retention", &policy)?;
        let timezone = match &self.timezone {
            None => daemon_tz,
            Some(name) => crate::scheduler::parse_tz(name)
                .map_err(|e| ("retention.timezone".to_string(), e))?,
        };
        Ok(Retention { policy, timezone })
    }
}

/// `[retention]`, checked: the default policy of every source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The `keep_*` rules; each one set is at least 1.
    pub policy: Policy,
    /// Timezone of the hourly…yearly periods.
    pub timezone: chrono_tz::Tz,
}

/// Every `keep_*` key that is set must be at least 1: zero periods is a typo
/// or a wish to delete everything, and neither should be obeyed silently.
pub(super) fn check_keeps(prefix: &str, p: &Policy) -> Result<(), (String, String)> {
    let keys = [
        ("keep_last", p.keep_last),
        ("keep_hourly", p.keep_hourly),
        ("keep_daily", p.keep_daily),
        ("keep_weekly", p.keep_weekly),
        ("keep_monthly", p.keep_monthly),
        ("keep_yearly", p.keep_yearly),
    ];
    for (key, v) in keys {
        if v == Some(0) {
            return Err((
                format!("{prefix}.{key}"),
                "must be at least 1 (leave it out to not use this rule)".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::retention::Policy;

    const RCPT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    fn config(extra: &str) -> Result<Config, String> {
        let text = format!(
            "state_dir = \"/var/lib/lockbox\"\n[repository]\nurl = \"file:///srv/lockbox\"\nrecipients = [\"{RCPT}\"]\nlock_days = 30\n{extra}"
        );
        Config::parse(&text, "t.toml").map_err(|e| e.to_string())
    }

    const SOURCES: &str = "[[source]]\nname = \"plain\"\nkind = \"sqlite\"\npath = \"/a.db\"\n\
        [[source]]\nname = \"own\"\nkind = \"sqlite\"\npath = \"/b.db\"\nkeep_last = 3\nkeep_yearly = 2\n";

    #[test]
    fn source_keys_replace_the_default_policy() {
        let c = config(&format!(
            "[retention]\nkeep_daily = 7\nkeep_monthly = 12\ntimezone = \"Asia/Tokyo\"\n{SOURCES}"
        ))
        .unwrap();
        assert_eq!(
            c.retention_policy(c.source("plain").unwrap()),
            Policy {
                keep_daily: Some(7),
                keep_monthly: Some(12),
                ..Policy::default()
            }
        );
        assert_eq!(
            c.retention_policy(c.source("own").unwrap()),
            Policy {
                keep_last: Some(3),
                keep_yearly: Some(2),
                ..Policy::default()
            }
        );
        assert_eq!(c.retention_timezone(), chrono_tz::Asia::Tokyo);
    }

    /// The shipped example documents both levels and they mean what it says.
    #[test]
    fn shipped_example_policies() {
        let c = Config::parse(&super::super::shipped_example(), "examples/lockbox.toml").unwrap();
        let app = c.retention_policy(c.source("app").unwrap());
        assert_eq!(
            app,
            Policy {
                keep_last: Some(48),
                keep_daily: Some(14),
                ..Policy::default()
            }
        );
        let orders = c.retention_policy(c.source("orders").unwrap());
        assert_eq!(orders, c.retention.policy);
        assert_eq!(orders.keep_monthly, Some(12));
    }

    #[test]
    fn no_retention_keeps_everything_in_the_daemon_timezone() {
        let c = config(&format!("[daemon]\ntimezone = \"Europe/Paris\"\n{SOURCES}")).unwrap();
        assert!(c.retention_policy(c.source("plain").unwrap()).is_empty());
        assert_eq!(c.retention_timezone(), chrono_tz::Europe::Paris);
        let c = config("").unwrap();
        assert_eq!(c.retention_timezone(), chrono_tz::UTC);
    }

    #[test]
    fn bad_retention_keys_are_named() {
        let source = "[[source]]\nname = \"a\"\nkind = \"sqlite\"\npath = \"/x.db\"\n";
        let mut cases: Vec<(String, String)> = [
            (
                "[retention]\ntimezone = \"Mars/Olympus\"\n".to_string(),
                "retention.timezone",
            ),
            ("[retention]\nkeep_dayly = 3\n".into(), "keep_dayly"),
            ("[retention]\nkeep_daily = -1\n".into(), "keep_daily"),
            ("[retention]\nkeep_daily = \"7\"\n".into(), "keep_daily"),
            (format!("{source}keep_hourly = -2\n"), "keep_hourly"),
            (format!("{source}keep_forever = 1\n"), "keep_forever"),
            (format!("{source}timezone = \"UTC\"\n"), "timezone"),
        ]
        .into_iter()
        .map(|(text, needle)| (text, needle.to_string()))
        .collect();
        for key in [
            "keep_last",
            "keep_hourly",
            "keep_daily",
            "keep_weekly",
            "keep_monthly",
            "keep_yearly",
        ] {
            cases.push((
                format!("[retention]\n{key} = 0\n"),
                format!("retention.{key}: must be at least 1"),
            ));
            cases.push((
                format!("{source}{key} = 0\n"),
                format!("source[0].{key}: must be at least 1"),
            ));
        }
        for (extra, needle) in &cases {
            let err = config(extra).expect_err(extra);
            assert!(err.contains(needle.as_str()), "{extra:?}: {err}");
        }
        // Valid values of every key are accepted.
        config(&format!(
            "[retention]\nkeep_last = 1\nkeep_hourly = 24\nkeep_daily = 7\nkeep_weekly = 4\n\
             keep_monthly = 12\nkeep_yearly = 10\ntimezone = \"America/New_York\"\n{source}keep_daily = 1\n"
        ))
        .unwrap();
    }
}
