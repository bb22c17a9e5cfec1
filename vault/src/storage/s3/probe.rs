//! Administrative probes of an S3 bucket, for `lockbox doctor`: is
//! versioning on, is Object Lock on and with which default, does the store
//! refuse to delete a locked version, does it honour `If-None-Match: *` on
//! the versioned bucket, and how far is its clock from this host's?
//!
//! The delete probe is the one deliberate delete outside prune. It is not a
//! deletion path: it names only the canary this module wrote moments before,
//! a version that is locked, so success means the store failed to protect it.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectLockMode};
use time::OffsetDateTime;

use super::{LockMode, S3Backend};

/// The bucket's Object Lock configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLock {
    /// Object Lock is enabled (it can only be enabled at bucket creation).
    pub enabled: bool,
    /// The default retention, as (mode, period), if the bucket has one.
    pub default_retention: Option<(String, String)>,
}

/// What a delete of a locked version came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteVerdict {
    /// The store deleted the locked version: the credential can destroy
    /// backups.
    Deleted,
    /// The store refused (`AccessDenied`), with its message.
    Refused(String),
    /// The request reached no verdict (network, bad profile…).
    Unknown(String),
}

/// What a second put-if-absent of an existing key came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionalPut {
    /// 412 Precondition Failed: the store honours `If-None-Match: *`.
    Refused,
    /// The store wrote a new version over the existing key: it ignores the
    /// condition on this bucket (Ceph RGW before v20 on versioned buckets).
    Landed(Option<String>),
    /// The request reached no verdict.
    Unknown(String),
}

impl S3Backend {
    /// Whether versioning is enabled on the bucket.
    pub fn versioning_enabled(&self) -> Result<bool, String> {
        let v = self
            .block_on(
                self.client()
                    .get_bucket_versioning()
                    .bucket(self.bucket())
                    .send(),
            )
            .map_err(|e| sdk_error(&e))?;
        Ok(v.status().map(|s| s.as_str()) == Some("Enabled"))
    }

    /// The bucket's Object Lock configuration; a bucket without one reads
    /// as disabled.
    pub fn object_lock(&self) -> ObjectLock {
        let lock = self.block_on(
            self.client()
                .get_object_lock_configuration()
                .bucket(self.bucket())
                .send(),
        );
        let config = lock
            .as_ref()
            .ok()
            .and_then(|l| l.object_lock_configuration());
        ObjectLock {
            enabled: config
                .and_then(|c| c.object_lock_enabled())
                .is_some_and(|e| e.as_str() == "Enabled"),
            default_retention: config
                .and_then(|c| c.rule())
                .and_then(|r| r.default_retention())
                .map(|r| {
                    (
                        r.mode().map_or("?", |m| m.as_str()).to_string(),
                        match (r.days(), r.years()) {
                            (Some(d), _) => format!("{d} days"),
                            (_, Some(y)) => format!("{y} years"),
                            _ => "an unstated period".into(),
                        },
                    )
                }),
        }
    }

    /// Writes `body` at `key` (under the repository's prefix) locked until
    /// `until` in the backend's lock mode; returns the version id (`None`:
    /// the store gave none, so versioning is off).
    pub fn put_canary(
        &self,
        key: &str,
        body: &'static [u8],
        until: OffsetDateTime,
    ) -> Result<Option<String>, String> {
        let full = self.full_key(key).map_err(|e| e.to_string())?;
        let mode = match self.mode {
            LockMode::Compliance => ObjectLockMode::Compliance,
            LockMode::Governance => ObjectLockMode::Governance,
        };
        let put = self
            .block_on(
                self.client()
                    .put_object()
                    .bucket(self.bucket())
                    .key(&full)
                    .body(ByteStream::from_static(body))
                    .object_lock_mode(mode)
                    .object_lock_retain_until_date(DateTime::from_secs(until.unix_timestamp() + 1))
                    .checksum_algorithm(ChecksumAlgorithm::Sha256)
                    .send(),
            )
            .map_err(|e| sdk_error(&e))?;
        Ok(put.version_id().map(str::to_string))
    }

    /// Puts the canary at `key` again, with `If-None-Match: *` as every
    /// Lockbox put: a store that honours the condition answers 412. A
    /// version that lands anyway is locked like the first (it expires with
    /// the same one-day lock).
    pub fn put_canary_if_absent(
        &self,
        key: &str,
        body: &'static [u8],
        until: OffsetDateTime,
    ) -> ConditionalPut {
        let full = match self.full_key(key) {
            Ok(k) => k,
            Err(e) => return ConditionalPut::Unknown(e.to_string()),
        };
        let mode = match self.mode {
            LockMode::Compliance => ObjectLockMode::Compliance,
            LockMode::Governance => ObjectLockMode::Governance,
        };
        let put = self.block_on(
            self.client()
                .put_object()
                .bucket(self.bucket())
                .key(&full)
                .if_none_match("*")
                .body(ByteStream::from_static(body))
                .object_lock_mode(mode)
                .object_lock_retain_until_date(DateTime::from_secs(until.unix_timestamp() + 1))
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .send(),
        );
        match put {
            Ok(out) => ConditionalPut::Landed(out.version_id().map(str::to_string)),
            Err(SdkError::ServiceError(se))
                if se.raw().status().as_u16() == 412
                    || se.err().code() == Some("PreconditionFailed") =>
            {
                ConditionalPut::Refused
            }
            Err(e) => ConditionalPut::Unknown(sdk_error(&e)),
        }
    }

    /// The store's LastModified of one version of `key`: its clock's time
    /// of the write, to whole seconds.
    pub fn stored_time(&self, key: &str, version: &str) -> Result<OffsetDateTime, String> {
        let full = self.full_key(key).map_err(|e| e.to_string())?;
        let head = self
            .block_on(
                self.client()
                    .head_object()
                    .bucket(self.bucket())
                    .key(&full)
                    .version_id(version)
                    .send(),
            )
            .map_err(|e| sdk_error(&e))?;
        let t = head
            .last_modified()
            .ok_or("the store sent no Last-Modified")?;
        OffsetDateTime::from_unix_timestamp(t.secs()).map_err(|e| e.to_string())
    }

    /// Tries to delete one version of the canary at `key`, with this
    /// backend's credentials or, given `profile`, strictly that AWS
    /// profile's (the default chain would prefer this host's `AWS_*`
    /// environment and test the wrong credential).
    pub fn try_delete_canary(
        &self,
        key: &str,
        version: &str,
        profile: Option<&str>,
    ) -> DeleteVerdict {
        let full = match self.full_key(key) {
            Ok(k) => k,
            Err(e) => return DeleteVerdict::Unknown(e.to_string()),
        };
        let other;
        let client = match profile {
            None => self.client(),
            Some(profile) => {
                let provider = aws_config::profile::ProfileFileCredentialsProvider::builder()
                    .profile_name(profile)
                    .build();
                let conf = self
                    .client()
                    .config()
                    .to_builder()
                    .credentials_provider(provider)
                    .build();
                other = aws_sdk_s3::Client::from_conf(conf);
                &other
            }
        };
        let r = self.block_on(
            client
                .delete_object()
                .bucket(self.bucket())
                .key(&full)
                .version_id(version)
                .send(),
        );
        match r {
            Ok(_) => DeleteVerdict::Deleted,
            // Only the store's own refusal proves protection.
            Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("AccessDenied") => {
                DeleteVerdict::Refused(sdk_error(&e))
            }
            Err(e) => DeleteVerdict::Unknown(sdk_error(&e)),
        }
    }
}

/// The store's code and message, or the transport error.
fn sdk_error<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
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
        None => super::super::StorageError::Io {
            location: String::new(),
            op: "request",
            key: String::new(),
            message: format!("{e}"),
            transient: true,
        }
        .to_string(),
    }
}
