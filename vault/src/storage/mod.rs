//! Storage backends: the traits every backend implements, and opening one
//! from a repository URL.
//!
//! The traits are split by what an operation may do, so that the type system
//! carries invariant 1 (backup never deletes):
//!
//! * [`ReadBackend`] — get, head, list. Restore and verify need only this.
//! * [`WriteBackend`] — adds put-with-retention and extend-retention. Backup
//!   takes a `&dyn WriteBackend`, which has no delete.
//! * [`DeleteBackend`] — adds delete (of a key, or of one version of it).
//!   Only prune may obtain one.
//!
//! Listing versions ([`ReadBackend::list_versions`]) is a read: a prune plan
//! is computed with read rights only, and names the exact versions to delete.
//!
//! Semantics every backend must provide (the conformance tests check them):
//! a put never replaces an existing key; a retention is never shortened; a
//! retained object cannot be deleted; `flush` returns only when every
//! earlier successful put is durable.
//!
//! Decorators add cross-cutting behaviour around any backend, one file each:
//! [`retry`] (every opened backend is wrapped in it) and, for tests only,
//! `faulty` (fault injection, behind the `fault-injection` feature).

#[cfg(any(test, feature = "fault-injection"))]
pub mod faulty;
pub mod local;
pub mod retry;
pub mod s3;
pub mod url;

use std::sync::Arc;

use bytes::Bytes;
use time::OffsetDateTime;

use crate::error::ErrorClass;

pub use local::LocalBackend;
pub use retry::{RetryPolicy, Retrying};
pub use s3::{LockMode, S3Backend, S3Settings};
pub use url::{RepositoryUrl, S3Url, UrlError};

/// What a head or list reports about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's key, relative to the repository root.
    pub key: String,
    /// Size of the stored object, in bytes.
    pub size: u64,
    /// `None` when the backend did not report it (e.g. S3 LIST); ask `head`.
    pub retain_until: Option<OffsetDateTime>,
    /// When the store received the object (its LastModified); `None` if not reported.
    pub last_modified: Option<OffsetDateTime>,
}

/// One version of an object, or a delete marker, as a version listing
/// reports it. Unversioned stores report one version per key, `version: None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// The object's key.
    pub key: String,
    /// The store's version id (`None` on unversioned stores).
    pub version: Option<String>,
    /// This entry is an S3 delete marker, not a version with data.
    pub delete_marker: bool,
    /// Size of the version, in bytes.
    pub size: u64,
    /// When the store received this version; `None` if not reported.
    pub last_modified: Option<OffsetDateTime>,
}

/// Result of a put: either the object was written, or the key already held
/// an object (content addressing makes that a duplicate, never a conflict).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was written, with the requested retention.
    Created,
    /// The key already held an object; nothing was written.
    AlreadyExists,
}

/// A backend failure. [`StorageError::is_transient`] says whether it is worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The key (or the version asked for) does not exist.
    #[error("object {key} not found in {location}")]
    NotFound {
        /// The backend's location (path, or bucket and prefix).
        location: String,
        /// The object's key.
        key: String,
    },
    /// The object is still locked (S3 Object Lock, or its local `.retain` time), so storage
    /// refuses to delete it: for a canary probe or prune, the lock doing its job.
    #[error("object {key} in {location} is retained until {until}; refusing to {action}")]
    Retained {
        /// The backend's location (path, or bucket and prefix).
        location: String,
        /// The object's key.
        key: String,
        /// When its lock ends, as the backend reports it (a description where it cannot tell).
        until: String,
        /// What was refused (`delete it`).
        action: &'static str,
    },
    /// The object is larger than the caller's limit (the most the format allows for it); it
    /// was not read.
    #[error("object {key} in {location} is larger than {limit} bytes; refusing to read it")]
    TooLarge {
        /// The backend's location (path, or bucket and prefix).
        location: String,
        /// The object's key.
        key: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// Any other failure of the file system or the S3 service (permissions, network,
    /// throttling, a missing bucket, …).
    #[error("{op} {key} in {location}: {message}")]
    Io {
        /// The backend's location (path, or bucket and prefix).
        location: String,
        /// The operation that failed (e.g. `put`, `list`).
        op: &'static str,
        /// The key, or prefix, it was applied to.
        key: String,
        /// The underlying error's message.
        message: String,
        /// Worth retrying (timeouts, throttling, 5xx); permanent otherwise.
        transient: bool,
    },
    /// The repository URL cannot be used (wrong scheme, malformed, missing bucket).
    #[error("unsupported repository URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl StorageError {
    /// Worth retrying: a timeout, throttling or 5xx-like I/O failure.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StorageError::Io {
                transient: true,
                ..
            }
        )
    }
    /// The key (or version) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }
    /// An object larger than the format allows is damage (or an attack);
    /// a bad URL is the configuration's; the rest is operational (a lock
    /// refusing a delete is the storage doing its job, not damage).
    pub fn class(&self) -> ErrorClass {
        match self {
            StorageError::TooLarge { .. } => ErrorClass::Integrity,
            StorageError::BadUrl { .. } => ErrorClass::Usage,
            StorageError::NotFound { .. }
            | StorageError::Retained { .. }
            | StorageError::Io { .. } => ErrorClass::Operational,
        }
    }
}

/// Result of a storage operation.
pub type StorageResult<T> = Result<T, StorageError>;

/// The keys every backend accepts: relative, `/`-separated, with no empty,
/// `.` or `..` segment (so no key can escape a root or prefix). Backends may
/// refuse more (the local one reserves its sidecar and temporary names).
pub(crate) fn check_key(
    location: impl FnOnce() -> String,
    key: &str,
    extra_ok: bool,
) -> StorageResult<()> {
    let portable = !key.is_empty()
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if portable && extra_ok {
        Ok(())
    } else {
        Err(StorageError::Io {
            location: location(),
            op: "resolve",
            key: key.to_string(),
            message: "invalid object key".into(),
            transient: false,
        })
    }
}

/// Evidence of tampering found by a version-aware read: a delete marker, or a
/// version of the key whose bytes failed the caller's check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TamperEvent {
    /// The key the evidence was found at.
    pub key: String,
    /// The store's version id, where it has versions.
    pub version: Option<String>,
    /// What was found, for people, e.g. "delete marker created at …".
    pub what: String,
}

impl std::fmt::Display for TamperEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{} (version {v}): {}", self.key, self.what),
            None => write!(f, "{}: {}", self.key, self.what),
        }
    }
}

/// What [`ReadBackend::get_verified`] found.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The bytes of the newest version the check accepted; if none did, the
    /// newest bytes there are, for the caller to report how they fail.
    pub data: Bytes,
    /// Delete markers and rejected versions passed over on the way.
    pub tampering: Vec<TamperEvent>,
}

/// Read access to a repository's objects: all that restore and verify hold.
pub trait ReadBackend: Send + Sync {
    /// Human-readable location for messages, e.g. `file:///srv/lockbox`.
    fn location(&self) -> String;
    /// Reads a whole object, refusing objects larger than `limit` bytes.
    fn get(&self, key: &str, limit: u64) -> StorageResult<Bytes>;
    /// Size and retention of an object, or `None` if absent.
    fn head(&self, key: &str) -> StorageResult<Option<ObjectInfo>>;
    /// Calls `f` for each object under `prefix`, in lexicographic key order.
    fn list(
        &self,
        prefix: &str,
        f: &mut dyn FnMut(ObjectInfo) -> StorageResult<()>,
    ) -> StorageResult<()>;

    /// Reads an object, preferring bytes that pass `accept`. Versioned
    /// stores look past a delete marker or a failing current version to
    /// older versions, newest first, and report what they skipped. The
    /// default (unversioned stores) is a plain get.
    fn get_verified(
        &self,
        key: &str,
        limit: u64,
        accept: &dyn Fn(&[u8]) -> bool,
    ) -> StorageResult<Verified> {
        let _ = accept;
        Ok(Verified {
            data: self.get(key, limit)?,
            tampering: Vec::new(),
        })
    }

    /// Calls `f` for every version and delete marker of every key under
    /// `prefix` (in no particular order within a key). The default, for
    /// unversioned stores, reports each listed object as one version `None`.
    fn list_versions(
        &self,
        prefix: &str,
        f: &mut dyn FnMut(VersionInfo) -> StorageResult<()>,
    ) -> StorageResult<()> {
        self.list(prefix, &mut |i| {
            f(VersionInfo {
                key: i.key,
                version: None,
                delete_marker: false,
                size: i.size,
                last_modified: i.last_modified,
            })
        })
    }

    /// Head of one version (`None`: the current one, the only one on
    /// unversioned stores); `Ok(None)` if there is no such version.
    fn head_version(&self, key: &str, version: Option<&str>) -> StorageResult<Option<ObjectInfo>> {
        match version {
            None => self.head(key),
            Some(_) => Ok(None),
        }
    }

    /// Checks that the store can hold a repository safely (for S3: the
    /// bucket has versioning and Object Lock). `lockbox init` refuses to
    /// create a repository otherwise.
    fn check_ready(&self) -> StorageResult<()> {
        Ok(())
    }
}

/// Writes that can never lose data: put-if-absent with a retention, and
/// raising a retention. Backup holds only this (no delete).
pub trait WriteBackend: ReadBackend {
    /// Writes a new object locked until `retain_until`. Never replaces an
    /// existing object: returns [`PutOutcome::AlreadyExists`] instead.
    fn put(
        &self,
        key: &str,
        data: Bytes,
        retain_until: OffsetDateTime,
    ) -> StorageResult<PutOutcome>;
    /// Raises an object's retain-until to at least `until`. Never shortens:
    /// a later existing retention is left as it is. Versioned stores raise
    /// every version of the key (not delete markers). Not found only if the
    /// key holds no object (no version) at all.
    fn extend_retention(&self, key: &str, until: OffsetDateTime) -> StorageResult<()>;
    /// Returns once every earlier successful put is durable.
    fn flush(&self) -> StorageResult<()>;
}

/// Deletion, for prune only. Refused while an object is retained.
pub trait DeleteBackend: WriteBackend {
    /// Deletes every version of `key`.
    fn delete(&self, key: &str) -> StorageResult<()>;
    /// Deletes exactly one version (`None` on unversioned stores; versioned
    /// stores refuse `None`, which would only add a delete marker). Refused
    /// ([`StorageError::Retained`]) while that version is retained; not
    /// found if the version is gone.
    fn delete_version(&self, key: &str, version: Option<&str>) -> StorageResult<()>;
}

/// Backend settings beyond the URL (from the `[repository]` section).
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    /// S3 Object Lock mode of new objects (compliance unless testing).
    pub lock_mode: LockMode,
    /// S3 endpoint, region, profile and addressing (credentials come from the AWS
    /// chain); ignored for `file://`.
    pub s3: S3Settings,
    /// Retries of transient failures ([`retry`]); not configurable in the
    /// TOML, tests shorten it.
    pub retry: RetryPolicy,
}

/// Opens the backend named by a repository URL with write rights and
/// default settings (credentials for S3 from the standard AWS chain).
pub fn open_write(url: &RepositoryUrl) -> StorageResult<Arc<dyn WriteBackend>> {
    open_write_with(url, &BackendOptions::default())
}

/// Opens the backend named by a repository URL with write rights, its
/// transient failures retried by [`Retrying`].
pub fn open_write_with(
    url: &RepositoryUrl,
    opts: &BackendOptions,
) -> StorageResult<Arc<dyn WriteBackend>> {
    Ok(Arc::new(Retrying::new(
        open_unretried(url, opts)?,
        opts.retry,
    )))
}

/// Opens the backend named by a repository URL without the retry decorator
/// (for tests that put other decorators beneath it).
pub fn open_unretried(
    url: &RepositoryUrl,
    opts: &BackendOptions,
) -> StorageResult<Arc<dyn WriteBackend>> {
    Ok(match url {
        RepositoryUrl::S3(s3) => Arc::new(S3Backend::open(s3, &opts.s3, opts.lock_mode)?),
        RepositoryUrl::Local(path) => Arc::new(LocalBackend::open(path)?),
    })
}

/// Opens the backend with delete rights: for `prune --apply` only, which
/// passes the pruner's own credentials in `opts` (never the writer's).
/// Transient failures are retried like every other backend's.
pub fn open_delete_with(
    url: &RepositoryUrl,
    opts: &BackendOptions,
) -> StorageResult<Arc<dyn DeleteBackend>> {
    Ok(match url {
        RepositoryUrl::S3(s3) => Arc::new(Retrying::new(
            Arc::new(S3Backend::open(s3, &opts.s3, opts.lock_mode)?),
            opts.retry,
        )),
        RepositoryUrl::Local(path) => Arc::new(Retrying::new(
            Arc::new(LocalBackend::open(path)?),
            opts.retry,
        )),
    })
}

/// Opens the backend for reading only (restore, verify, snapshots).
pub fn open_read(url: &RepositoryUrl) -> StorageResult<Arc<dyn ReadBackend>> {
    open_read_with(url, &BackendOptions::default())
}

/// Opens the backend for reading only, with settings.
pub fn open_read_with(
    url: &RepositoryUrl,
    opts: &BackendOptions,
) -> StorageResult<Arc<dyn ReadBackend>> {
    let w = open_write_with(url, opts)?;
    Ok(w as Arc<dyn ReadBackend>)
}

#[cfg(test)]
pub(crate) mod conformance;
