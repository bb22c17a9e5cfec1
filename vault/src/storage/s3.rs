//! S3 backend with Object Lock (`s3://bucket/prefix`), through aws-sdk-s3.
//!
//! The storage traits are synchronous (the pipelines call them from plain OS
//! threads); each call runs the SDK future to completion on a small tokio
//! runtime owned by the backend (`block_on` from the caller's thread).
//!
//! How the trait semantics map onto S3 (see `vault/FORMAT.md`, "Assumptions
//! about S3 and Object Lock"):
//!
//! * put: PutObject with `If-None-Match: *`, so an existing key is never
//!   given a new version (412 → [`PutOutcome::AlreadyExists`]; a 409 from a
//!   concurrent put of the same key is retried, never adopted); Object Lock
//!   mode and retain-until (whole seconds, rounded up) and a CRC32 checksum on
//!   every put.
//! * extend_retention: for every version of the key that is not a delete
//!   marker (the genuine one may be hidden under a newer one), HeadObject, then
//!   PutObjectRetention on that version only if its retain-until is earlier.
//!   Never asks for a shorter one.
//! * head: HeadObject. list: ListObjectVersions (paginated, key order),
//!   listing every key with at least one real version, so a delete marker
//!   does not hide a locked snapshot.
//! * get: refuses objects whose Content-Length exceeds the limit before
//!   reading the body.
//! * get_verified: if the current version is missing (delete marker) or
//!   fails the caller's check, walks ListObjectVersions newest first and
//!   returns the first version that passes, reporting each delete marker and
//!   rejected version as tampering.
//! * delete (prune only): deletes every version of the key; refused while
//!   the current version is retained (and S3 refuses locked versions anyway).

use std::time::Duration as StdDuration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    BucketVersioningStatus, ChecksumAlgorithm, ObjectLockEnabled, ObjectLockMode,
    ObjectLockRetention, ObjectLockRetentionMode,
};
use bytes::Bytes;
use time::OffsetDateTime;

use super::{
    DeleteBackend, ObjectInfo, PutOutcome, ReadBackend, S3Url, StorageError, StorageResult,
    TamperEvent, Verified, VersionInfo, WriteBackend,
};

/// Object Lock mode written on every object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Nobody, the account root included, can shorten or remove the lock.
    #[default]
    Compliance,
    /// Can be bypassed with `s3:BypassGovernanceRetention`: for testing only.
    Governance,
}

impl LockMode {
    /// The S3 API's name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Compliance => "COMPLIANCE",
            LockMode::Governance => "GOVERNANCE",
        }
    }
}

/// The `[repository.s3]` settings. Credentials are never configured here:
/// they come from the standard AWS chain (environment, shared config and
/// credentials files with `profile`, web identity, ECS, IMDS).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// Endpoint URL for S3-compatible stores (MinIO, Ceph, test servers).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region; default from the AWS chain, else `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most
    /// S3-compatible stores need.
    #[serde(default)]
    pub path_style: bool,
    /// Named profile of the shared AWS config/credentials files.
    #[serde(default)]
    pub profile: Option<String>,
    /// Uploads in flight at once (default [`DEFAULT_MAX_IN_FLIGHT`]).
    #[serde(default)]
    pub max_in_flight: Option<usize>,
}

/// Enough parallel PUTs to hide the latency of a remote endpoint, few enough
/// that 2 cores keep up with sealing and memory stays ~ 16 × 16 MiB at worst.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16;

/// Attempts per request (first try included) for throttling, 5xx, timeouts
/// and connection errors; the SDK backs off exponentially with jitter.
const MAX_ATTEMPTS: u32 = 6;

/// The `s3://bucket/prefix` backend: objects under the prefix, each version
/// locked with S3 Object Lock in the configured [`LockMode`]. The bucket must
/// have versioning and Object Lock enabled. Blocking API over the async SDK
/// (it owns a small tokio runtime).
pub struct S3Backend {
    rt: tokio::runtime::Runtime,
    client: Client,
    bucket: String,
    /// Empty, or ends with `/`.
    prefix: String,
    mode: LockMode,
}

fn to_offset(dt: &DateTime) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(dt.secs())
        .ok()
        .map(|t| t + time::Duration::nanoseconds(i64::from(dt.subsec_nanos())))
}

/// Whole seconds, rounded up: a lock never ends before the time asked for.
fn lock_secs(until: OffsetDateTime) -> i64 {
    until.unix_timestamp() + i64::from(until.nanosecond() > 0)
}

impl S3Backend {
    /// Connects to `s3://bucket/prefix` with credentials from the AWS chain
    /// (resolved at the first request). Makes no S3 request; without a
    /// configured region the chain may ask instance metadata for one.
    pub fn open(url: &S3Url, settings: &S3Settings, mode: LockMode) -> StorageResult<Self> {
        let rt = runtime(url)?;
        let sdk = rt.block_on(async {
            let mut loader = aws_config::defaults(BehaviorVersion::latest());
            if let Some(p) = &settings.profile {
                // A named profile is what the operator asked for: take its
                // credentials only. The default chain would prefer AWS_*
                // environment variables over it, silently using another
                // identity (e.g. the writer's where the pruner was named).
                loader = loader.profile_name(p).credentials_provider(
                    aws_config::profile::ProfileFileCredentialsProvider::builder()
                        .profile_name(p)
                        .build(),
                );
            }
            if let Some(r) = &settings.region {
                loader = loader.region(Region::new(r.clone()));
            }
            loader.load().await
        });
        let mut b = aws_sdk_s3::config::Builder::from(&sdk);
        if sdk.region().is_none() {
            b = b.region(Region::new("us-east-1"));
        }
        Self::finish(rt, b, url, settings, mode)
    }

    /// Like [`open`](Self::open) with fixed credentials (tests).
    #[doc(hidden)]
    pub fn open_with_static_credentials(
        url: &str,
        settings: &S3Settings,
        mode: LockMode,
        access_key: &str,
        secret_key: &str,
    ) -> StorageResult<Self> {
        let url = S3Url::parse(url).map_err(|e| StorageError::BadUrl {
            url: url.into(),
            reason: e.to_string(),
        })?;
        let rt = runtime(&url)?;
        let creds =
            aws_sdk_s3::config::Credentials::new(access_key, secret_key, None, None, "static");
        let b = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(creds)
            .region(Region::new(
                settings
                    .region
                    .clone()
                    .unwrap_or_else(|| "us-east-1".into()),
            ));
        Self::finish(rt, b, &url, settings, mode)
    }

    fn finish(
        rt: tokio::runtime::Runtime,
        mut b: aws_sdk_s3::config::Builder,
        url: &S3Url,
        settings: &S3Settings,
        mode: LockMode,
    ) -> StorageResult<Self> {
        if let Some(e) = &settings.endpoint {
            b = b.endpoint_url(e);
        }
        b = b
            .force_path_style(settings.path_style)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(StdDuration::from_millis(200))
                    .with_max_backoff(StdDuration::from_secs(20)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(StdDuration::from_secs(10))
                    // A 16 MiB object over a slow link still fits.
                    .operation_attempt_timeout(StdDuration::from_secs(300))
                    .build(),
            );
        Ok(Self {
            rt,
            client: Client::from_conf(b.build()),
            bucket: url.bucket.clone(),
            prefix: url.prefix.clone(),
            mode,
        })
    }

    /// The SDK client, for tests and tools that need raw S3 calls.
    #[doc(hidden)]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs a future on the backend's runtime from a plain thread.
    #[doc(hidden)]
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The bucket name from the URL.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn full_key(&self, key: &str) -> StorageResult<String> {
        super::check_key(|| self.location(), key, true)?;
        Ok(format!("{}{key}", self.prefix))
    }

    fn err<E>(
        &self,
        op: &'static str,
        key: &str,
        e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let (transient, status, code) = match &e {
            SdkError::ServiceError(se) => {
                let status = se.raw().status().as_u16();
                let code = se.err().code().unwrap_or("").to_string();
                let transient = status >= 500
                    || status == 429
                    || matches!(
                        code.as_str(),
                        "SlowDown"
                            | "Throttling"
                            | "ThrottlingException"
                            | "RequestTimeout"
                            | "InternalError"
                            | "ServiceUnavailable"
                            | "ConditionalRequestConflict"
                            | "OperationAborted"
                    );
                (transient, Some(status), code)
            }
            // Connection and timeout failures are worth retrying; a dispatch
            // failure of another kind (e.g. no credentials) is not.
            SdkError::DispatchFailure(d) => (d.is_io() || d.is_timeout(), None, String::new()),
            SdkError::TimeoutError(_) | SdkError::ResponseError(_) => (true, None, String::new()),
            _ => (false, None, String::new()),
        };
        if status == Some(404) || code == "NoSuchKey" || code == "NotFound" {
            return StorageError::NotFound {
                location: self.location(),
                key: key.to_string(),
            };
        }
        let message = match &e {
            SdkError::ServiceError(se) => format!(
                "{} (HTTP {}): {}",
                if code.is_empty() { "error" } else { &code },
                status.unwrap_or(0),
                se.err().message().unwrap_or("no message")
            ),
            other => {
                // The source chain without the Debug dump DisplayErrorContext adds.
                let mut parts: Vec<String> = Vec::new();
                let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(other);
                while let Some(e) = cur {
                    let text = e.to_string();
                    if !parts.iter().any(|p| p.contains(&text)) {
                        parts.push(text);
                    }
                    cur = e.source();
                }
                let mut text = parts.join(": ");
                if text.contains("credentials") {
                    text.push_str(
                        "; credentials come only from the standard AWS chain: environment \
                         (AWS_ACCESS_KEY_ID, ...), [repository.s3] profile in the shared \
                         config files, web identity, container or instance metadata",
                    );
                }
                if transient {
                    text.push_str(&format!(
                        " (each attempt retried by the S3 client up to {MAX_ATTEMPTS} times)"
                    ));
                }
                text
            }
        };
        StorageError::Io {
            location: self.location(),
            op,
            key: key.to_string(),
            message,
            transient,
        }
    }

    fn io(&self, op: &'static str, key: &str, message: String, transient: bool) -> StorageError {
        StorageError::Io {
            location: self.location(),
            op,
            key: key.to_string(),
            message,
            transient,
        }
    }

    /// Reads one version (or the current one), refusing more than `limit`
    /// bytes before reading the body.
    async fn get_async(
        &self,
        key: &str,
        version: Option<&str>,
        limit: u64,
    ) -> StorageResult<Bytes> {
        let full = self.full_key(key)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .set_version_id(version.map(str::to_string))
            .send()
            .await
            .map_err(|e| self.err("read", key, e))?;
        let too_large = || StorageError::TooLarge {
            location: self.location(),
            key: key.to_string(),
            limit,
        };
        if out
            .content_length()
            .is_some_and(|n| n < 0 || n as u64 > limit)
        {
            return Err(too_large());
        }
        let mut body: ByteStream = out.body;
        let mut buf = Vec::with_capacity(out.content_length.unwrap_or(0).max(0) as usize);
        while let Some(piece) = body
            .try_next()
            .await
            .map_err(|e| self.io("read", key, e.to_string(), true))?
        {
            if (buf.len() + piece.len()) as u64 > limit {
                return Err(too_large());
            }
            buf.extend_from_slice(&piece);
        }
        // A body that ends early without a transport error must not pass as
        // the object: report it as a transient failure, to be read again.
        if let Some(n) = out.content_length
            && buf.len() as i64 != n
        {
            return Err(self.io(
                "read",
                key,
                format!("short read: {} of {n} bytes", buf.len()),
                true,
            ));
        }
        Ok(Bytes::from(buf))
    }

    async fn head_async(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> StorageResult<Option<(ObjectInfo, Option<String>, Option<ObjectLockMode>)>> {
        let full = self.full_key(key)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&full)
            .set_version_id(version.map(str::to_string))
            .send()
            .await
        {
            Ok(out) => Ok(Some((
                ObjectInfo {
                    key: key.to_string(),
                    size: out.content_length().unwrap_or(0).max(0) as u64,
                    retain_until: out.object_lock_retain_until_date().and_then(to_offset),
                    last_modified: out.last_modified().and_then(to_offset),
                },
                out.version_id().map(str::to_string),
                out.object_lock_mode().cloned(),
            ))),
            Err(e) => match self.err("head", key, e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    /// Every version and delete marker of exactly `key`, newest first.
    async fn versions_async(&self, key: &str) -> StorageResult<Vec<VersionEntry>> {
        let full = self.full_key(key)?;
        let mut out = Vec::new();
        let (mut key_marker, mut vid_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(&full)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(vid_marker.take())
                .send()
                .await
                .map_err(|e| self.err("list versions of", key, e))?;
            for v in page.versions() {
                if v.key() == Some(full.as_str()) {
                    out.push(VersionEntry {
                        version_id: v.version_id().map(str::to_string),
                        delete_marker: false,
                        size: v.size().unwrap_or(0).max(0) as u64,
                        last_modified: v.last_modified().and_then(to_offset),
                        latest: v.is_latest().unwrap_or(false),
                    });
                }
            }
            for m in page.delete_markers() {
                if m.key() == Some(full.as_str()) {
                    out.push(VersionEntry {
                        version_id: m.version_id().map(str::to_string),
                        delete_marker: true,
                        size: 0,
                        last_modified: m.last_modified().and_then(to_offset),
                        latest: m.is_latest().unwrap_or(false),
                    });
                }
            }
            if page.is_truncated() == Some(true) {
                key_marker = page.next_key_marker().map(str::to_string);
                vid_marker = page.next_version_id_marker().map(str::to_string);
                if key_marker.is_none() && vid_marker.is_none() {
                    break;
                }
            } else {
                break;
            }
        }
        // Newest first; the current one (IsLatest) leads among equal times.
        out.sort_by(|a, b| {
            b.last_modified
                .cmp(&a.last_modified)
                .then(b.latest.cmp(&a.latest))
        });
        Ok(out)
    }

    /// Raises one version's retain-until to `secs` if it is earlier. Returns
    /// false if the version is gone.
    async fn extend_version(
        &self,
        key: &str,
        version: Option<&str>,
        secs: i64,
    ) -> StorageResult<bool> {
        let late_enough =
            |i: &ObjectInfo| i.retain_until.is_some_and(|t| t.unix_timestamp() >= secs);
        let Some((info, vid, mode)) = self.head_async(key, version).await? else {
            return Ok(false);
        };
        if late_enough(&info) {
            return Ok(true);
        }
        // Keep the object's own mode: S3 refuses to turn COMPLIANCE into
        // GOVERNANCE, and we never weaken a lock.
        let mode = match (mode, self.mode) {
            (Some(ObjectLockMode::Compliance), _) | (None, LockMode::Compliance) => {
                ObjectLockRetentionMode::Compliance
            }
            _ => ObjectLockRetentionMode::Governance,
        };
        let full = self.full_key(key)?;
        let result = self
            .client
            .put_object_retention()
            .bucket(&self.bucket)
            .key(&full)
            .set_version_id(vid.clone())
            .retention(
                ObjectLockRetention::builder()
                    .mode(mode)
                    .retain_until_date(DateTime::from_secs(secs))
                    .build(),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => {
                // A concurrent writer may have extended it further, and S3
                // refuses to shorten: success if it is now late enough.
                let err = self.err("extend retention of", key, e);
                match self.head_async(key, vid.as_deref()).await? {
                    Some((i, _, _)) if late_enough(&i) => Ok(true),
                    _ => Err(err),
                }
            }
        }
    }

    /// Refuses a bucket without versioning and Object Lock: `lockbox init`
    /// calls this before writing anything.
    async fn check_ready_async(&self) -> StorageResult<()> {
        let how = format!(
            "create a bucket with Object Lock (which also enables versioning): \
             `aws s3api create-bucket --bucket {b} --object-lock-enabled-for-bucket` \
             (plus --create-bucket-configuration LocationConstraint=REGION outside us-east-1); \
             for an existing bucket: `aws s3api put-bucket-versioning --bucket {b} \
             --versioning-configuration Status=Enabled` then `aws s3api \
             put-object-lock-configuration --bucket {b} --object-lock-configuration \
             ObjectLockEnabled=Enabled`",
            b = self.bucket
        );
        let v = self
            .client
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| self.err("check versioning of", "the bucket", e))?;
        if v.status() != Some(&BucketVersioningStatus::Enabled) {
            return Err(self.io(
                "check",
                "the bucket",
                format!("versioning is not enabled on bucket {}; {how}", self.bucket),
                false,
            ));
        }
        let lock = self
            .client
            .get_object_lock_configuration()
            .bucket(&self.bucket)
            .send()
            .await;
        let enabled = match lock {
            Ok(out) => {
                out.object_lock_configuration()
                    .and_then(|c| c.object_lock_enabled())
                    == Some(&ObjectLockEnabled::Enabled)
            }
            Err(SdkError::ServiceError(se))
                if se.err().code() == Some("ObjectLockConfigurationNotFoundError") =>
            {
                false
            }
            Err(e) => return Err(self.err("check Object Lock of", "the bucket", e)),
        };
        if !enabled {
            return Err(self.io(
                "check",
                "the bucket",
                format!(
                    "Object Lock is not enabled on bucket {}; {how}",
                    self.bucket
                ),
                false,
            ));
        }
        Ok(())
    }
}

struct VersionEntry {
    version_id: Option<String>,
    delete_marker: bool,
    size: u64,
    last_modified: Option<OffsetDateTime>,
    latest: bool,
}

fn runtime(url: &S3Url) -> StorageResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("lockbox-s3")
        .enable_all()
        .build()
        .map_err(|e| StorageError::BadUrl {
            url: url.to_string(),
            reason: format!("cannot start the S3 client runtime: {e}"),
        })
}

impl S3Backend {
    /// Pages through ListObjectVersions under `prefix` (relative to the
    /// repository prefix), handing each page to `on_page`; `op` names the
    /// operation in errors. The one paging loop `list` and `list_versions`
    /// share.
    fn each_versions_page(
        &self,
        prefix: &str,
        op: &'static str,
        on_page: &mut dyn FnMut(
            &aws_sdk_s3::operation::list_object_versions::ListObjectVersionsOutput,
        ) -> StorageResult<()>,
    ) -> StorageResult<()> {
        let full = format!("{}{prefix}", self.prefix);
        let (mut key_marker, mut vid_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .rt
                .block_on(
                    self.client
                        .list_object_versions()
                        .bucket(&self.bucket)
                        .prefix(&full)
                        .set_key_marker(key_marker.take())
                        .set_version_id_marker(vid_marker.take())
                        .send(),
                )
                .map_err(|e| self.err(op, prefix, e))?;
            on_page(&page)?;
            if page.is_truncated() == Some(true)
                && (page.next_key_marker().is_some() || page.next_version_id_marker().is_some())
            {
                key_marker = page.next_key_marker().map(str::to_string);
                vid_marker = page.next_version_id_marker().map(str::to_string);
            } else {
                return Ok(());
            }
        }
    }
}

impl ReadBackend for S3Backend {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix.trim_end_matches('/'))
    }

    fn get(&self, key: &str, limit: u64) -> StorageResult<Bytes> {
        self.rt.block_on(self.get_async(key, None, limit))
    }

    fn head(&self, key: &str) -> StorageResult<Option<ObjectInfo>> {
        Ok(self
            .rt
            .block_on(self.head_async(key, None))?
            .map(|(i, _, _)| i))
    }

    /// Lists every key under `prefix` that has at least one object version:
    /// a delete marker over a locked version does not hide it (the data is
    /// still there; reads find it with [`get_verified`](Self::get_verified)).
    /// Uses ListObjectVersions, which costs the same as ListObjectsV2 while
    /// each key has one version.
    fn list(
        &self,
        prefix: &str,
        f: &mut dyn FnMut(ObjectInfo) -> StorageResult<()>,
    ) -> StorageResult<()> {
        // The newest real version of the key being collected; versions of one
        // key are contiguous and newest first, possibly across pages.
        let mut pending: Option<ObjectInfo> = None;
        self.each_versions_page(prefix, "list", &mut |page| {
            let mut versions: Vec<_> = page.versions().iter().collect();
            // Key order, newest first within a key (S3 returns this order;
            // the sort is stable and only guards against stores that don't).
            versions.sort_by(|a, b| {
                a.key().cmp(&b.key()).then(
                    b.last_modified()
                        .map(|t| t.secs())
                        .cmp(&a.last_modified().map(|t| t.secs())),
                )
            });
            for v in versions {
                let Some(key) = v.key().and_then(|k| k.strip_prefix(&self.prefix)) else {
                    continue;
                };
                if pending.as_ref().is_some_and(|p| p.key == key) {
                    continue;
                }
                if let Some(p) = pending.take() {
                    f(p)?;
                }
                pending = Some(ObjectInfo {
                    key: key.to_string(),
                    size: v.size().unwrap_or(0).max(0) as u64,
                    retain_until: None,
                    last_modified: v.last_modified().and_then(to_offset),
                });
            }
            Ok(())
        })?;
        if let Some(p) = pending.take() {
            f(p)?;
        }
        Ok(())
    }

    fn get_verified(
        &self,
        key: &str,
        limit: u64,
        accept: &dyn Fn(&[u8]) -> bool,
    ) -> StorageResult<Verified> {
        // The common case costs one GET.
        match self.get(key, limit) {
            Ok(data) if accept(&data) => {
                return Ok(Verified {
                    data,
                    tampering: Vec::new(),
                });
            }
            Ok(_) => {}
            Err(e) if e.is_not_found() || matches!(e, StorageError::TooLarge { .. }) => {}
            Err(e) => return Err(e),
        }
        self.rt.block_on(async {
            let versions = self.versions_async(key).await?;
            let mut tampering = Vec::new();
            let mut fallback: Option<Bytes> = None;
            for v in &versions {
                let id = v.version_id.clone().unwrap_or_else(|| "null".into());
                let when = v
                    .last_modified
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "unknown time".into());
                if v.delete_marker {
                    tampering.push(TamperEvent {
                        key: key.to_string(),
                        version: Some(id),
                        what: format!("delete marker created at {when}"),
                    });
                    continue;
                }
                if v.size > limit {
                    tampering.push(TamperEvent {
                        key: key.to_string(),
                        version: Some(id),
                        what: format!("version of {} bytes written at {when} is too large", v.size),
                    });
                    continue;
                }
                let data = self.get_async(key, v.version_id.as_deref(), limit).await?;
                if accept(&data) {
                    return Ok(Verified { data, tampering });
                }
                tampering.push(TamperEvent {
                    key: key.to_string(),
                    version: Some(id),
                    what: format!("version written at {when} fails verification"),
                });
                fallback.get_or_insert(data);
            }
            match fallback {
                // Nothing verifies: hand back the newest bytes so the caller
                // reports exactly how they fail.
                Some(data) => Ok(Verified { data, tampering }),
                None => Err(StorageError::NotFound {
                    location: self.location(),
                    key: key.to_string(),
                }),
            }
        })
    }

    fn check_ready(&self) -> StorageResult<()> {
        self.rt.block_on(self.check_ready_async())
    }

    fn list_versions(
        &self,
        prefix: &str,
        f: &mut dyn FnMut(VersionInfo) -> StorageResult<()>,
    ) -> StorageResult<()> {
        self.each_versions_page(prefix, "list versions of", &mut |page| {
            let strip = |k: Option<&str>| {
                k.and_then(|k| k.strip_prefix(&self.prefix))
                    .map(str::to_string)
            };
            for v in page.versions() {
                if let Some(key) = strip(v.key()) {
                    f(VersionInfo {
                        key,
                        version: v.version_id().map(str::to_string),
                        delete_marker: false,
                        size: v.size().unwrap_or(0).max(0) as u64,
                        last_modified: v.last_modified().and_then(to_offset),
                    })?;
                }
            }
            for m in page.delete_markers() {
                if let Some(key) = strip(m.key()) {
                    f(VersionInfo {
                        key,
                        version: m.version_id().map(str::to_string),
                        delete_marker: true,
                        size: 0,
                        last_modified: m.last_modified().and_then(to_offset),
                    })?;
                }
            }
            Ok(())
        })
    }

    fn head_version(&self, key: &str, version: Option<&str>) -> StorageResult<Option<ObjectInfo>> {
        Ok(self
            .rt
            .block_on(self.head_async(key, version))?
            .map(|(i, _, _)| i))
    }
}

impl WriteBackend for S3Backend {
    fn put(
        &self,
        key: &str,
        data: Bytes,
        retain_until: OffsetDateTime,
    ) -> StorageResult<PutOutcome> {
        let full = self.full_key(key)?;
        let secs = lock_secs(retain_until);
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .if_none_match("*")
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(data));
        // A retain-until in the past means "no lock" (S3 refuses past dates).
        if secs > OffsetDateTime::now_utc().unix_timestamp() {
            req = req
                .object_lock_mode(match self.mode {
                    LockMode::Compliance => ObjectLockMode::Compliance,
                    LockMode::Governance => ObjectLockMode::Governance,
                })
                .object_lock_retain_until_date(DateTime::from_secs(secs));
        }
        match self.rt.block_on(req.send()) {
            Ok(_) => Ok(PutOutcome::Created),
            Err(SdkError::ServiceError(se))
                if se.raw().status().as_u16() == 412
                    || se.err().code() == Some("PreconditionFailed") =>
            {
                Ok(PutOutcome::AlreadyExists)
            }
            // A 409 (ConditionalRequestConflict) means another writer's put
            // of this key is still in flight and may yet fail: adopting it
            // now could reference an object that never lands. It is
            // transient (see `err`), so the retry decorator puts again and
            // gets a 412 or lands the object itself.
            Err(e) => Err(self.err("write", key, e)),
        }
    }

    /// Extends every version of the key that is not a delete marker, not
    /// only the current one: if someone put a new version over a chunk, the
    /// genuine older version (which restores read) must stay locked as long as
    /// the snapshots that reference it. One ListObjectVersions, then a HEAD
    /// per version and a PutObjectRetention where its retain-until is earlier.
    fn extend_retention(&self, key: &str, until: OffsetDateTime) -> StorageResult<()> {
        let secs = lock_secs(until);
        self.rt.block_on(async {
            let versions = self.versions_async(key).await?;
            let mut extended = false;
            for v in versions.iter().filter(|v| !v.delete_marker) {
                extended |= self
                    .extend_version(key, v.version_id.as_deref(), secs)
                    .await?;
            }
            if !extended {
                return Err(StorageError::NotFound {
                    location: self.location(),
                    key: key.to_string(),
                });
            }
            Ok(())
        })
    }

    /// A successful PutObject is durable when it returns.
    fn flush(&self) -> StorageResult<()> {
        Ok(())
    }
}

impl DeleteBackend for S3Backend {
    fn delete(&self, key: &str) -> StorageResult<()> {
        self.rt.block_on(async {
            if let Some((info, _, _)) = self.head_async(key, None).await?
                && let Some(until) = info.retain_until
                && until > OffsetDateTime::now_utc()
            {
                return Err(StorageError::Retained {
                    location: self.location(),
                    key: key.to_string(),
                    until: until.to_string(),
                    action: "delete it",
                });
            }
            let full = self.full_key(key)?;
            for v in self.versions_async(key).await? {
                let r = self
                    .client
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(&full)
                    .set_version_id(v.version_id.clone())
                    .send()
                    .await;
                if let Err(e) = r {
                    if let SdkError::ServiceError(se) = &e
                        && se.raw().status().as_u16() == 403
                    {
                        return Err(StorageError::Retained {
                            location: self.location(),
                            key: key.to_string(),
                            until: "a locked version's retain-until".into(),
                            action: "delete it",
                        });
                    }
                    return Err(self.err("delete", key, e));
                }
            }
            Ok(())
        })
    }

    /// One DeleteObject with the version id: S3 itself refuses a version
    /// under Object Lock (reported as retained, never retried). The HEAD
    /// first only makes the refusal name the retain-until.
    fn delete_version(&self, key: &str, version: Option<&str>) -> StorageResult<()> {
        let Some(version) = version else {
            return Err(self.io(
                "delete",
                key,
                "a versioned bucket needs a version id to delete (without one S3 only adds a \
                 delete marker)"
                    .into(),
                false,
            ));
        };
        let full = self.full_key(key)?;
        self.rt.block_on(async {
            // A delete marker cannot be HEADed (405, an error here): only
            // real versions are checked, S3 enforces the rest.
            match self.head_async(key, Some(version)).await {
                // Some stores answer 404 for a delete marker's HEAD.
                Ok(None)
                    if !self
                        .versions_async(key)
                        .await?
                        .iter()
                        .any(|v| v.version_id.as_deref() == Some(version)) =>
                {
                    return Err(StorageError::NotFound {
                        location: self.location(),
                        key: format!("{key} (version {version})"),
                    });
                }
                Ok(Some((info, _, _)))
                    if info
                        .retain_until
                        .is_some_and(|u| u > OffsetDateTime::now_utc()) =>
                {
                    return Err(StorageError::Retained {
                        location: self.location(),
                        key: format!("{key} (version {version})"),
                        until: info.retain_until.map(|u| u.to_string()).unwrap_or_default(),
                        action: "delete it",
                    });
                }
                _ => {}
            }
            let r = self
                .client
                .delete_object()
                .bucket(&self.bucket)
                .key(&full)
                .version_id(version)
                .send()
                .await;
            match r {
                Ok(_) => Ok(()),
                Err(e) => {
                    if let SdkError::ServiceError(se) = &e
                        && se.raw().status().as_u16() == 403
                    {
                        return Err(StorageError::Retained {
                            location: self.location(),
                            key: format!("{key} (version {version})"),
                            until: "its retain-until (storage refused the delete)".into(),
                            action: "delete it",
                        });
                    }
                    Err(self.err("delete", key, e))
                }
            }
        })
    }
}

pub mod probe;

/// Starts the moto test server; for Lockbox's own tests.
#[cfg(any(test, feature = "test-server"))]
#[doc(hidden)]
pub mod test_server;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::conformance;

    #[test]
    fn retention_rounds_up_to_whole_seconds() {
        let t = OffsetDateTime::from_unix_timestamp(4_000_000_000).unwrap();
        assert_eq!(lock_secs(t), 4_000_000_000);
        assert_eq!(lock_secs(t + time::Duration::nanoseconds(1)), 4_000_000_001);
    }

    /// Answers every request with HTTP `status` and an S3 error body with
    /// `code`, after reading the whole request; returns the endpoint.
    fn canned_error_server(status: u16, code: &'static str) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut request = Vec::new();
                let mut buf = [0u8; 8192];
                while !request_complete(&request) {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
                     <Error><Code>{code}</Code><Message>canned</Message></Error>"
                );
                let response = format!(
                    "HTTP/1.1 {status} Canned\r\nContent-Type: application/xml\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes());
            }
        });
        format!("http://{addr}")
    }

    fn request_complete(request: &[u8]) -> bool {
        let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
            return false;
        };
        let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        request.len() >= end + 4 + length
    }

    /// A 412 means the key exists; a 409 (another put of the key still in
    /// flight, which may yet fail) must not be taken for that: it is a
    /// transient error, so the retry decorator puts again.
    #[test]
    fn a_409_conflict_is_retried_and_a_412_is_already_there() {
        let open = |endpoint: String| {
            let settings = S3Settings {
                endpoint: Some(endpoint),
                path_style: true,
                ..Default::default()
            };
            S3Backend::open_with_static_credentials(
                "s3://bucket/p",
                &settings,
                LockMode::Compliance,
                "k",
                "s",
            )
            .unwrap()
        };
        let until = OffsetDateTime::now_utc() + time::Duration::days(1);
        let data = Bytes::from_static(b"chunk bytes");

        let b = open(canned_error_server(412, "PreconditionFailed"));
        let outcome = b.put("chunks/ab/ab01", data.clone(), until).unwrap();
        assert_eq!(outcome, PutOutcome::AlreadyExists);

        let b = open(canned_error_server(409, "ConditionalRequestConflict"));
        let err = b.put("chunks/ab/ab01", data, until).unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("ConditionalRequestConflict") && text.contains("chunks/ab/ab01"),
            "{text}"
        );
    }

    #[test]
    fn connection_errors_are_transient_and_name_the_location() {
        // A port nobody listens on: bind, note it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let settings = S3Settings {
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            path_style: true,
            ..Default::default()
        };
        let b = S3Backend::open_with_static_credentials(
            "s3://nowhere/p",
            &settings,
            LockMode::Compliance,
            "k",
            "s",
        )
        .unwrap();
        let err = b.get("config", 1024).unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("s3://nowhere/p") && text.contains("config"),
            "{text}"
        );
        assert!(text.contains("onnection refused"), "{text}");
        assert!(
            !text.contains("DispatchFailure {"),
            "debug dump in message: {text}"
        );
    }

    use test_server::{ServerKind, TestServer};

    crate::on_each_s3_server!(
        s3_backend_passes_conformance,
        reads_survive_delete_markers_and_new_versions,
        check_ready_refuses_bucket_without_object_lock,
        governance_mode_is_written_when_configured,
        concurrent_puts_of_one_key_land_once,
        compliance_retention_cannot_be_shortened,
    );

    fn server(test: &str, kind: ServerKind) -> Option<TestServer> {
        TestServer::start_or_skip_kind(&format!("{test} on {kind}"), kind)
    }

    fn s3_backend_passes_conformance(kind: ServerKind) {
        let Some(server) = server("s3_backend_passes_conformance", kind) else {
            return;
        };
        let bucket = server.bucket(true);
        // A prefix, so key mapping is exercised too.
        let b = server.backend(&format!("s3://{bucket}/some/prefix"), LockMode::Compliance);
        b.check_ready().unwrap();
        conformance::run_all(&b);
        // Nothing landed outside the prefix.
        let raw = server.backend(&format!("s3://{bucket}"), LockMode::Compliance);
        raw.list("", &mut |i| {
            assert!(i.key.starts_with("some/prefix/"), "{}", i.key);
            Ok(())
        })
        .unwrap();
    }

    fn reads_survive_delete_markers_and_new_versions(kind: ServerKind) {
        let Some(server) = server("reads_survive_delete_markers_and_new_versions", kind) else {
            return;
        };
        let bucket = server.bucket(true);
        let b = server.backend(&format!("s3://{bucket}/p"), LockMode::Compliance);
        let until = OffsetDateTime::now_utc() + time::Duration::days(1);
        b.put("chunks/aa/x", Bytes::from_static(b"genuine"), until)
            .unwrap();
        b.put("chunks/aa/y", Bytes::from_static(b"genuine-y"), until)
            .unwrap();
        let accept_x = |d: &[u8]| d == b"genuine";
        let v = b.get_verified("chunks/aa/x", 1024, &accept_x).unwrap();
        assert_eq!(&v.data[..], b"genuine");
        assert!(v.tampering.is_empty());

        // Someone with plain PutObject/DeleteObject rights: a delete marker on
        // x, garbage as a new version of y.
        let c = b.client();
        b.block_on(
            c.delete_object()
                .bucket(&bucket)
                .key("p/chunks/aa/x")
                .send(),
        )
        .unwrap();
        b.block_on(
            c.put_object()
                .bucket(&bucket)
                .key("p/chunks/aa/y")
                .body(ByteStream::from_static(b"garbage"))
                .send(),
        )
        .unwrap();
        assert!(b.get("chunks/aa/x", 1024).unwrap_err().is_not_found());
        assert_eq!(&b.get("chunks/aa/y", 1024).unwrap()[..], b"garbage");

        let v = b.get_verified("chunks/aa/x", 1024, &accept_x).unwrap();
        assert_eq!(&v.data[..], b"genuine");
        assert_eq!(v.tampering.len(), 1, "{:?}", v.tampering);
        assert!(v.tampering[0].what.contains("delete marker"));
        let v = b
            .get_verified("chunks/aa/y", 1024, &|d: &[u8]| d == b"genuine-y")
            .unwrap();
        assert_eq!(&v.data[..], b"genuine-y");
        assert_eq!(v.tampering.len(), 1, "{:?}", v.tampering);
        assert!(v.tampering[0].what.contains("fails verification"));

        // Extension reaches the hidden genuine version too (restores read it),
        // and works through a delete marker.
        let versions = b.block_on(b.versions_async("chunks/aa/y")).unwrap();
        let genuine = versions.last().unwrap().version_id.clone().unwrap();
        let later = until + time::Duration::days(20);
        b.extend_retention("chunks/aa/y", later).unwrap();
        b.extend_retention("chunks/aa/x", later).unwrap();
        for (key, version) in [
            ("chunks/aa/y", Some(genuine.as_str())),
            ("chunks/aa/y", None),
        ] {
            let (info, _, _) = b.block_on(b.head_async(key, version)).unwrap().unwrap();
            assert!(
                info.retain_until.unwrap().unix_timestamp() >= lock_secs(later),
                "{key} {version:?} not extended"
            );
        }
        let xv = b.block_on(b.versions_async("chunks/aa/x")).unwrap();
        let xg = xv.iter().find(|v| !v.delete_marker).unwrap();
        let (info, _, _) = b
            .block_on(b.head_async("chunks/aa/x", xg.version_id.as_deref()))
            .unwrap()
            .unwrap();
        assert!(info.retain_until.unwrap().unix_timestamp() >= lock_secs(later));

        // The locked genuine version cannot be deleted by version id.
        let r = b.block_on(
            c.delete_object()
                .bucket(&bucket)
                .key("p/chunks/aa/y")
                .version_id(genuine)
                .send(),
        );
        assert!(r.is_err(), "versioned delete of a locked version succeeded");

        // A put over a delete marker lands (If-None-Match sees no object)
        // and never hides anything: the key reads back the same bytes.
        assert_eq!(
            b.put("chunks/aa/x", Bytes::from_static(b"genuine"), until)
                .unwrap(),
            PutOutcome::Created
        );
        assert_eq!(&b.get("chunks/aa/x", 1024).unwrap()[..], b"genuine");
        // Nothing verifies: the newest bytes come back for the caller to judge.
        let v = b.get_verified("chunks/aa/y", 1024, &|_| false).unwrap();
        assert_eq!(&v.data[..], b"garbage");
    }

    fn check_ready_refuses_bucket_without_object_lock(kind: ServerKind) {
        let Some(server) = server("check_ready_refuses_bucket_without_object_lock", kind) else {
            return;
        };
        let bucket = server.bucket(false);
        let b = server.backend(&format!("s3://{bucket}"), LockMode::Compliance);
        let err = b.check_ready().unwrap_err().to_string();
        assert!(
            err.contains("versioning") || err.contains("Object Lock"),
            "{err}"
        );
        assert!(err.contains("--object-lock-enabled-for-bucket"), "{err}");
    }

    fn governance_mode_is_written_when_configured(kind: ServerKind) {
        let Some(server) = server("governance_mode_is_written_when_configured", kind) else {
            return;
        };
        let bucket = server.bucket(true);
        let b = server.backend(&format!("s3://{bucket}"), LockMode::Governance);
        let until = OffsetDateTime::now_utc() + time::Duration::days(1);
        b.put("k/x", Bytes::from_static(b"1"), until).unwrap();
        let (info, _, mode) = b.block_on(b.head_async("k/x", None)).unwrap().unwrap();
        assert_eq!(mode, Some(ObjectLockMode::Governance));
        assert!(info.retain_until.unwrap().unix_timestamp() >= lock_secs(until));
    }

    /// Eight puts of one key at once: `If-None-Match: *` lets exactly one
    /// land. moto checks and writes in two steps, so there more than one
    /// may land (each a version of the key); SeaweedFS, like S3, is atomic.
    fn concurrent_puts_of_one_key_land_once(kind: ServerKind) {
        let Some(server) = server("concurrent_puts_of_one_key_land_once", kind) else {
            return;
        };
        let bucket = server.bucket(true);
        let b = server.backend(&format!("s3://{bucket}/p"), LockMode::Compliance);
        let until = OffsetDateTime::now_utc() + time::Duration::days(1);
        // SeaweedFS serialises conditional puts of one key: each waiting put
        // is answered about a second after the one before it (about 7 s for
        // the eight here), so one round only.
        let key = "chunks/cc/race";
        let barrier = std::sync::Barrier::new(8);
        let outcomes: Vec<StorageResult<PutOutcome>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8u8)
                .map(|i| {
                    let (b, barrier) = (&b, &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        b.put(key, Bytes::from(vec![i; 1000]), until)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let created = outcomes
            .iter()
            .filter(|o| matches!(o, Ok(PutOutcome::Created)))
            .count();
        let versions = b.block_on(b.versions_async(key)).unwrap();
        assert!(created >= 1, "{kind}: no put of {key} landed: {outcomes:?}");
        assert_eq!(
            versions.len(),
            created,
            "{kind}: {created} puts of {key} reported created, {} versions stored",
            versions.len()
        );
        if kind.enforces_like_s3() {
            assert_eq!(
                created, 1,
                "{kind}: If-None-Match is not atomic: {outcomes:?}"
            );
            assert!(
                outcomes
                    .iter()
                    .all(|o| matches!(o, Ok(PutOutcome::Created | PutOutcome::AlreadyExists))),
                "{kind}: {outcomes:?}"
            );
        } else if created > 1 {
            eprintln!("{kind}: {created} concurrent puts of {key} landed (not atomic)");
        }
    }

    /// Nobody, the admin included, can shorten a COMPLIANCE retention or turn
    /// it into GOVERNANCE, with or without the bypass header. SeaweedFS
    /// refuses like S3; moto 5.1.22 allows it, so there this only shows what
    /// moto does.
    fn compliance_retention_cannot_be_shortened(kind: ServerKind) {
        let Some(server) = server("compliance_retention_cannot_be_shortened", kind) else {
            return;
        };
        let bucket = server.bucket(true);
        let b = server.backend(&format!("s3://{bucket}/p"), LockMode::Compliance);
        let until = OffsetDateTime::now_utc() + time::Duration::days(2);
        b.put("chunks/dd/locked", Bytes::from_static(b"locked"), until)
            .unwrap();
        let c = b.client();
        let attempt = |mode: ObjectLockRetentionMode, secs: i64, bypass: bool| {
            b.block_on(
                c.put_object_retention()
                    .bucket(&bucket)
                    .key("p/chunks/dd/locked")
                    .set_bypass_governance_retention(bypass.then_some(true))
                    .retention(
                        ObjectLockRetention::builder()
                            .mode(mode)
                            .retain_until_date(DateTime::from_secs(secs))
                            .build(),
                    )
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| {
                let status = e.raw_response().map(|r| r.status().as_u16());
                (
                    status,
                    aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
                )
            })
        };
        let shorter = lock_secs(until) - 86_400;
        let tries = [
            (
                "shorten",
                ObjectLockRetentionMode::Compliance,
                shorter,
                false,
            ),
            (
                "shorten with bypass",
                ObjectLockRetentionMode::Compliance,
                shorter,
                true,
            ),
            (
                "make GOVERNANCE",
                ObjectLockRetentionMode::Governance,
                lock_secs(until),
                false,
            ),
            (
                "make GOVERNANCE with bypass",
                ObjectLockRetentionMode::Governance,
                lock_secs(until),
                true,
            ),
        ];
        for (what, mode, secs, bypass) in tries {
            let r = attempt(mode, secs, bypass);
            let (info, _, lock) = b
                .block_on(b.head_async("chunks/dd/locked", None))
                .unwrap()
                .unwrap();
            if kind.enforces_like_s3() {
                let (status, e) =
                    r.expect_err(&format!("{kind}: {what} a COMPLIANCE lock succeeded"));
                assert_eq!(status, Some(403), "{kind}: {what}: {e}");
                assert_eq!(lock, Some(ObjectLockMode::Compliance), "{kind}: {what}");
                assert!(
                    info.retain_until.unwrap().unix_timestamp() >= lock_secs(until),
                    "{kind}: {what}: the lock was shortened"
                );
            } else {
                eprintln!("{kind}: {what} a COMPLIANCE lock: {r:?}");
            }
        }
        // Extending stays possible, and Lockbox never asks for less.
        let later = until + time::Duration::days(3);
        b.extend_retention("chunks/dd/locked", later).unwrap();
        let info = b.head("chunks/dd/locked").unwrap().unwrap();
        assert!(
            info.retain_until.unwrap().unix_timestamp() >= lock_secs(later),
            "{kind}"
        );
    }
}
