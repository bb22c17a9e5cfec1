//! `lockbox doctor`: a checklist that proves, with real requests, that the
//! storage refuses what Lockbox promises it refuses.
//!
//! This module owns the one deliberate delete attempt outside prune: a
//! versioned delete of a freshly locked canary object, which must FAIL. It
//! is a probe, not a deletion path: the canary is written by this module
//! and is the only key it ever names.

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::config::Config;

mod host;
mod sources;
use crate::repository::{self, RepoError};
use crate::storage::s3::S3Backend;
use crate::storage::s3::probe::{ConditionalPut, DeleteVerdict};
use crate::storage::{self, RepositoryUrl, S3Url};

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// As it should be.
    Pass,
    /// Works, but weaker than it could be (e.g. a `file://` repository is not deletion-proof).
    Warn,
    /// Broken or unsafe; `lockbox doctor` exits non-zero.
    Fail,
}

/// One line of the checklist. JSON fields may be added, never changed.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The check's name (e.g. `repository`, `deletion-proof storage`).
    pub check: String,
    /// Its verdict.
    pub status: Status,
    /// What was found, and what to do about it if it is not a pass.
    pub detail: String,
}

fn check(name: &str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        check: name.into(),
        status,
        detail: detail.into(),
    }
}

/// Runs every check that applies to `config`. `as_profile` repeats the
/// delete probe with another AWS profile (e.g. production's credentials).
pub fn run(config: &Config, as_profile: Option<&str>) -> Vec<Check> {
    let mut out = Vec::new();
    host::file_checks(config, &mut out);
    let opts = config.repository.backend_options();
    match storage::open_write_with(&config.repository.url, &opts) {
        Ok(backend) => match repository::load_config(backend.as_ref()) {
            Ok(repo) => out.push(check(
                "repository",
                Status::Pass,
                format!("repository {} at {}", repo.id, backend.location()),
            )),
            Err(RepoError::NotInitialized { location }) => out.push(check(
                "repository",
                Status::Fail,
                format!("{location} holds no repository: run `lockbox init`"),
            )),
            Err(e) => out.push(check("repository", Status::Fail, e.to_string())),
        },
        Err(e) => out.push(check("repository", Status::Fail, e.to_string())),
    }
    if let RepositoryUrl::S3(url) = &config.repository.url {
        s3_checks(config, url, as_profile, &mut out);
    } else {
        out.push(check(
            "deletion-proof storage",
            Status::Warn,
            "a file:// repository: Lockbox never deletes or overwrites, but root or the \
             directory's owner can; use S3 Object Lock (compliance) for deletion-proof storage",
        ));
        if let Some(p) = as_profile {
            out.push(check(
                "delete refused for another credential",
                Status::Warn,
                format!("--as-profile {p} applies only to s3:// repositories"),
            ));
        }
    }
    sources::checks(config, &mut out);
    host::identity_checks(config, &mut out);
    out
}

fn s3_checks(config: &Config, url: &S3Url, as_profile: Option<&str>, out: &mut Vec<Check>) {
    let opts = config.repository.backend_options();
    let backend = match S3Backend::open(url, &opts.s3, opts.lock_mode) {
        Ok(b) => b,
        Err(e) => {
            out.push(check("S3 connection", Status::Fail, e.to_string()));
            return;
        }
    };
    let bucket = backend.bucket().to_string();

    out.push(match backend.versioning_enabled() {
        Ok(true) => check("bucket versioning", Status::Pass, format!("enabled on {bucket}")),
        Ok(false) => check(
            "bucket versioning",
            Status::Fail,
            format!("not enabled on {bucket}; create the bucket with Object Lock (see examples/iam/README.md)"),
        ),
        Err(e) => check("bucket versioning", Status::Fail, e),
    });

    let lock = backend.object_lock();
    out.push(if lock.enabled {
        check("object lock", Status::Pass, format!("enabled on {bucket}"))
    } else {
        check(
            "object lock",
            Status::Fail,
            format!(
                "Object Lock is not enabled on {bucket}: objects could be deleted. It can only be \
                 set when a bucket is created: `aws s3api create-bucket --bucket NAME \
                 --object-lock-enabled-for-bucket`"
            ),
        )
    });
    out.push(match &lock.default_retention {
        Some((mode, period)) => check(
            "default bucket retention",
            Status::Pass,
            format!("{mode} for {period}"),
        ),
        None => check(
            "default bucket retention",
            Status::Warn,
            "none: objects written by anything other than Lockbox are not locked \
             (Lockbox locks its own objects explicitly)",
        ),
    });
    if !lock.enabled {
        return;
    }

    // The canary: written and locked with this host's credentials.
    let now = OffsetDateTime::now_utc();
    let key = format!(
        "doctor/canary-{}-{}",
        std::process::id(),
        now.unix_timestamp()
    );
    let shown = format!("{}{key}", url.prefix);
    let mode = opts.lock_mode.as_str();
    let put = backend.put_canary(
        &key,
        b"lockbox doctor canary: this object proves that locked versions cannot be deleted\n",
        now + Duration::days(1),
    );
    let version = match put {
        Ok(Some(v)) => {
            out.push(check(
                "write and lock a canary",
                Status::Pass,
                format!("{shown} (version {v}) locked in {mode} mode for one day"),
            ));
            v
        }
        Ok(None) => {
            out.push(check(
                "write and lock a canary",
                Status::Fail,
                format!("{shown}: the store returned no version id (versioning off?)"),
            ));
            return;
        }
        Err(e) => {
            out.push(check(
                "write and lock a canary",
                Status::Fail,
                format!("{shown}: {e}"),
            ));
            return;
        }
    };
    let after = OffsetDateTime::now_utc();
    out.push(match backend.stored_time(&key, &version) {
        Ok(stored) => clock_skew(now, after, stored),
        Err(e) => check(
            "clock",
            Status::Warn,
            format!("could not read the canary's time from the store: {e}"),
        ),
    });
    out.push(conditional_put(backend.put_canary_if_absent(
        &key,
        b"lockbox doctor canary, second put: the store must refuse it (If-None-Match)\n",
        now + Duration::days(1),
    )));
    out.push(delete_verdict(
        backend.try_delete_canary(&key, &version, None),
        &shown,
        &version,
        "versioned delete refused (configured credentials)",
    ));
    if let Some(profile) = as_profile {
        out.push(delete_verdict(
            backend.try_delete_canary(&key, &version, Some(profile)),
            &shown,
            &version,
            &format!("versioned delete refused (profile {profile})"),
        ));
    }
}

/// Clock skew the store's retention dates tolerate unremarked. Lockbox
/// computes every retain-until on this host's clock and the store enforces
/// it on its own: a host a minute fast shortens nothing that matters, an
/// hour is worth fixing (NTP).
pub const CLOCK_SKEW_WARN_SECONDS: i64 = 60;

/// How far the store's clock is from this host's: the canary's
/// LastModified against the host's clock around the put (`before`, `after`;
/// LastModified has whole seconds).
pub fn clock_skew(before: OffsetDateTime, after: OffsetDateTime, stored: OffsetDateTime) -> Check {
    let lo = before.unix_timestamp() - 1;
    let hi = after.unix_timestamp() + 1;
    let t = stored.unix_timestamp();
    let skew = if t < lo {
        t - lo
    } else if t > hi {
        t - hi
    } else {
        0
    };
    let detail = if skew == 0 {
        "the store's clock agrees with this host's (within a second)".to_string()
    } else {
        format!(
            "the store's clock is {}s {} this host's",
            skew.abs(),
            if skew > 0 { "ahead of" } else { "behind" }
        )
    };
    if skew.abs() > CLOCK_SKEW_WARN_SECONDS {
        check(
            "clock",
            Status::Warn,
            format!(
                "{detail}: retain-until dates are computed here and enforced there, and ages \
                 in status come from the store's timestamps; synchronise this host's clock (NTP)"
            ),
        )
    } else {
        check("clock", Status::Pass, detail)
    }
}

/// The conditional-put probe's line: a store that lets a second
/// put-if-absent land is a WARN, not a FAIL, because content addressing
/// keeps the data right whatever lands: two writers of one chunk then store
/// two locked versions of the same plaintext.
pub fn conditional_put(outcome: ConditionalPut) -> Check {
    let name = "conditional put (If-None-Match)";
    match outcome {
        ConditionalPut::Refused => check(
            name,
            Status::Pass,
            "a second put-if-absent of the canary was refused (412)",
        ),
        ConditionalPut::Landed(version) => check(
            name,
            Status::Warn,
            format!(
                "the store ignored If-None-Match on this versioned bucket and wrote version {}: \
                 concurrent writers may store duplicate versions of a chunk, which costs space, \
                 never data (each is a locked encryption of the same content)",
                version.as_deref().unwrap_or("(none)")
            ),
        ),
        ConditionalPut::Unknown(e) => check(
            name,
            Status::Warn,
            format!("could not probe (the request did not reach a verdict): {e}"),
        ),
    }
}

/// A delete probe's line: the store deleting the locked version is a FAIL.
fn delete_verdict(verdict: DeleteVerdict, key: &str, version: &str, name: &str) -> Check {
    match verdict {
        DeleteVerdict::Deleted => check(
            name,
            Status::Fail,
            format!(
                "DELETED the locked version {version} of {key}: these credentials can destroy \
                 backups. Check the bucket's Object Lock and the IAM and bucket policies \
                 (examples/iam/)"
            ),
        ),
        DeleteVerdict::Refused(e) => check(name, Status::Pass, format!("refused: {e}")),
        // An error that never reached the store (bad profile, network)
        // proves nothing either way.
        DeleteVerdict::Unknown(e) => check(
            name,
            Status::Warn,
            format!("could not probe (the request did not reach a verdict): {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn clock_skew_is_measured_outside_the_put_window() {
        // LastModified inside [before - 1 s, after + 1 s]: no skew.
        let c = clock_skew(at(0), at(2), at(3));
        assert_eq!(c.status, Status::Pass, "{}", c.detail);
        let c = clock_skew(at(0), at(2), at(40));
        assert_eq!(c.status, Status::Pass);
        assert!(c.detail.contains("37s ahead of"), "{}", c.detail);
        let c = clock_skew(at(0), at(2), at(-3600));
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.detail.contains("3599s behind") && c.detail.contains("NTP"),
            "{}",
            c.detail
        );
    }

    #[test]
    fn a_store_that_ignores_if_none_match_is_a_warning() {
        assert_eq!(
            conditional_put(ConditionalPut::Refused).status,
            Status::Pass
        );
        let c = conditional_put(ConditionalPut::Landed(Some("v2".into())));
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.detail.contains("never data") && c.detail.contains("v2"),
            "{}",
            c.detail
        );
        let c = conditional_put(ConditionalPut::Unknown("timeout".into()));
        assert_eq!(c.status, Status::Warn);
    }
}
