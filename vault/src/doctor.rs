//! `lockbox doctor`: a checklist that proves, with real requests, that the
//! storage refuses what Lockbox promises it refuses.
//!
//! This module owns the one deliberate delete attempt outside prune: a
//! versioned delete of a freshly locked canary object, which must FAIL. It
//! is a probe, not a deletion path: the canary is written by this module
//! and is the only key it ever names.

use aws_sdk_s3::error::ProvideErrorMetadata;
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::config::Config;

mod host;
mod sources;
use crate::repository::{self, RepoError};
use crate::storage::s3::{LockMode, S3Backend};
use crate::storage::{self, RepositoryUrl, S3Url, StorageError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

/// One line of the checklist. JSON fields may be added, never changed.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: String,
    pub status: Status,
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
    let client = backend.client();

    let versioning = backend.block_on(client.get_bucket_versioning().bucket(&bucket).send());
    out.push(match versioning {
        Ok(v) if v.status().map(|s| s.as_str()) == Some("Enabled") => {
            check("bucket versioning", Status::Pass, format!("enabled on {bucket}"))
        }
        Ok(_) => check(
            "bucket versioning",
            Status::Fail,
            format!("not enabled on {bucket}; create the bucket with Object Lock (see examples/iam/README.md)"),
        ),
        Err(e) => check("bucket versioning", Status::Fail, sdk_error(&e)),
    });

    let lock = backend.block_on(
        client
            .get_object_lock_configuration()
            .bucket(&bucket)
            .send(),
    );
    let lock_on = match &lock {
        Ok(l) => l
            .object_lock_configuration()
            .and_then(|c| c.object_lock_enabled())
            .is_some_and(|e| e.as_str() == "Enabled"),
        Err(_) => false,
    };
    out.push(if lock_on {
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
    let rule = lock
        .as_ref()
        .ok()
        .and_then(|l| l.object_lock_configuration())
        .and_then(|c| c.rule())
        .and_then(|r| r.default_retention());
    out.push(match rule {
        Some(r) => check(
            "default bucket retention",
            Status::Pass,
            format!(
                "{} for {}",
                r.mode().map(|m| m.as_str()).unwrap_or("?"),
                match (r.days(), r.years()) {
                    (Some(d), _) => format!("{d} days"),
                    (_, Some(y)) => format!("{y} years"),
                    _ => "an unstated period".into(),
                }
            ),
        ),
        None => check(
            "default bucket retention",
            Status::Warn,
            "none: objects written by anything other than Lockbox are not locked \
             (Lockbox locks its own objects explicitly)",
        ),
    });
    if !lock_on {
        return;
    }

    // The canary: written and locked with this host's credentials.
    let prefix = &url.prefix;
    let now = OffsetDateTime::now_utc();
    let key = format!(
        "{prefix}doctor/canary-{}-{}",
        std::process::id(),
        now.unix_timestamp()
    );
    let until = now + Duration::days(1);
    let mode = match opts.lock_mode {
        LockMode::Compliance => aws_sdk_s3::types::ObjectLockMode::Compliance,
        LockMode::Governance => aws_sdk_s3::types::ObjectLockMode::Governance,
    };
    let put = backend.block_on(
        client
            .put_object()
            .bucket(&bucket)
            .key(&key)
            .body(aws_sdk_s3::primitives::ByteStream::from_static(
                b"lockbox doctor canary: this object proves that locked versions cannot be deleted\n",
            ))
            .object_lock_mode(mode.clone())
            .object_lock_retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(
                until.unix_timestamp() + 1,
            ))
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
            .send(),
    );
    let version = match put {
        Ok(p) => match p.version_id() {
            Some(v) => {
                out.push(check(
                    "write and lock a canary",
                    Status::Pass,
                    format!(
                        "{key} (version {v}) locked in {} mode for one day",
                        mode.as_str()
                    ),
                ));
                v.to_string()
            }
            None => {
                out.push(check(
                    "write and lock a canary",
                    Status::Fail,
                    format!("{key}: the store returned no version id (versioning off?)"),
                ));
                return;
            }
        },
        Err(e) => {
            out.push(check(
                "write and lock a canary",
                Status::Fail,
                format!("{key}: {}", sdk_error(&e)),
            ));
            return;
        }
    };
    out.push(delete_probe(
        &backend,
        client,
        &bucket,
        &key,
        &version,
        "versioned delete refused (configured credentials)",
    ));
    if let Some(profile) = as_profile {
        // Credentials strictly from the named profile: the default chain
        // would prefer this host's AWS_* environment variables, and the probe
        // would then test the wrong credential.
        let provider = aws_config::profile::ProfileFileCredentialsProvider::builder()
            .profile_name(profile)
            .build();
        let conf = client
            .config()
            .to_builder()
            .credentials_provider(provider)
            .build();
        let other = aws_sdk_s3::Client::from_conf(conf);
        let name = format!("versioned delete refused (profile {profile})");
        out.push(delete_probe(
            &backend, &other, &bucket, &key, &version, &name,
        ));
    }
}

/// Tries to delete the canary's locked version; success is a FAIL.
fn delete_probe(
    backend: &S3Backend,
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    version: &str,
    name: &str,
) -> Check {
    let r = backend.block_on(
        client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .version_id(version)
            .send(),
    );
    match r {
        Ok(_) => check(
            name,
            Status::Fail,
            format!(
                "DELETED the locked version {version} of {key}: these credentials can destroy \
                 backups. Check the bucket's Object Lock and the IAM and bucket policies \
                 (examples/iam/)"
            ),
        ),
        // Only the store's own refusal proves protection; an error reaching
        // it (bad profile, network) proves nothing either way.
        Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("AccessDenied") => {
            check(name, Status::Pass, format!("refused: {}", sdk_error(&e)))
        }
        Err(e) => check(
            name,
            Status::Warn,
            format!(
                "could not probe (the request did not reach a verdict): {}",
                sdk_error(&e)
            ),
        ),
    }
}

fn sdk_error<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e.as_service_error() {
        Some(s) => format!(
            "{} {}",
            s.code().unwrap_or("error"),
            s.message().unwrap_or_default()
        )
        .trim()
        .to_string(),
        None => StorageError::Io {
            location: String::new(),
            op: "request",
            key: String::new(),
            message: format!("{e}"),
            transient: true,
        }
        .to_string(),
    }
}
