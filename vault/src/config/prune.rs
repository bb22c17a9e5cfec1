//! `[prune]`: the pruner's own credentials and the limits of one
//! `lockbox prune --apply` run (see [`crate::prune`]).

use serde::Deserialize;

/// Default of `max_extend_days`: how far one run may push a promoted
/// snapshot's lock beyond now. A yearly keep horizon is at most a year
/// and a month away, so 400 days covers it in one run.
pub const DEFAULT_MAX_EXTEND_DAYS: u32 = 400;
/// Default of `grace_hours`: objects newer than the plan minus this are never
/// deleted (longer than any backup should run).
pub const DEFAULT_GRACE_HOURS: u32 = 24;
/// Default of `time_tolerance_minutes`: a claimed time further than this
/// from the storage's timestamp is reported as suspicious.
pub const DEFAULT_TIME_TOLERANCE_MINUTES: u32 = 15;

/// `[prune]` as written: the pruner's own credentials and the limits of one apply.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneSection {
    /// AWS profile (shared config/credentials files) used only by
    /// `prune --apply` on s3:// repositories; must differ from
    /// `repository.s3.profile`, whose writer credentials cannot delete.
    #[serde(default)]
    pub profile: Option<String>,
    /// How far one run may push a promoted snapshot's lock beyond now, in days (default 400).
    #[serde(default)]
    pub max_extend_days: Option<u32>,
    /// Objects newer than the plan's time minus this many hours are never deleted (default 24).
    #[serde(default)]
    pub grace_hours: Option<u32>,
    /// A time a snapshot claims further than this many minutes from the storage's timestamp
    /// is reported as suspicious (default 15).
    #[serde(default)]
    pub time_tolerance_minutes: Option<u32>,
}

impl PruneSection {
    /// `max_extend_days`, or its default.
    pub fn max_extend_days(&self) -> u32 {
        self.max_extend_days.unwrap_or(DEFAULT_MAX_EXTEND_DAYS)
    }
    /// `grace_hours`, or its default.
    pub fn grace_hours(&self) -> u32 {
        self.grace_hours.unwrap_or(DEFAULT_GRACE_HOURS)
    }
    /// `time_tolerance_minutes` as a duration, or its default.
    pub fn time_tolerance(&self) -> time::Duration {
        time::Duration::minutes(i64::from(
            self.time_tolerance_minutes
                .unwrap_or(DEFAULT_TIME_TOLERANCE_MINUTES),
        ))
    }

    pub(super) fn check(&self) -> Result<(), (String, String)> {
        if self.profile.as_deref().is_some_and(|p| p.trim().is_empty()) {
            return Err(("prune.profile".into(), "must not be empty".into()));
        }
        if self.max_extend_days().max(1) > super::MAX_LOCK_DAYS {
            return Err((
                "prune.max_extend_days".into(),
                format!("must be at most {}", super::MAX_LOCK_DAYS),
            ));
        }
        if self.max_extend_days == Some(0) {
            return Err((
                "prune.max_extend_days".into(),
                "must be at least 1 (it caps how far one run may extend locks)".into(),
            ));
        }
        Ok(())
    }
}

impl super::Config {
    /// The storage options `prune --apply` deletes with: on S3, the
    /// pruner's own profile, which must be set and must differ from the
    /// writer's (whose credentials cannot delete). A local directory has no
    /// separate credentials: whoever may write it may delete.
    pub fn pruner_backend_options(
        &self,
    ) -> Result<crate::storage::BackendOptions, super::ConfigError> {
        let mut opts = self.repository.backend_options();
        if !self.repository.is_s3() {
            return Ok(opts);
        }
        let invalid = |message: String| super::ConfigError::Invalid {
            path: self.path.display().to_string(),
            key: "prune.profile".into(),
            message,
        };
        match &self.prune.profile {
            None => {
                return Err(invalid(
                    "is not set: `prune --apply` deletes only with the pruner's own credentials \
                     (an AWS profile allowed s3:DeleteObjectVersion, see \
                     examples/iam/pruner-policy.json); the writer's cannot delete"
                        .into(),
                ));
            }
            Some(p) if Some(p) == opts.s3.profile.as_ref() => {
                return Err(invalid(format!(
                    "is {p:?}, the same as repository.s3.profile: the writer's credentials must \
                     not be able to delete; give the pruner its own profile"
                )));
            }
            Some(p) => opts.s3.profile = Some(p.clone()),
        }
        Ok(opts)
    }
}
