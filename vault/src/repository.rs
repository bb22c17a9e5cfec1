//! The repository: its config object (written once at init) and reading
//! snapshot manifests back out of storage.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::envelope::{self, EnvelopeError};
use crate::envelope::{armor, dearmor};
use crate::error::ErrorClass;
use crate::format::{self, *};
use crate::ids::{IdKey, ObjectId};
use crate::keys::{Identities, Recipients};
use crate::manifest::{Manifest, ManifestError};
use crate::storage::{PutOutcome, ReadBackend, StorageError, WriteBackend};

/// Why a repository could not be opened, listed or read.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The backend failed while the `config` object, a listing or a manifest was read or written.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The location has no `config` object (often an unmounted volume or a wrong bucket).
    #[error(
        "{location} holds no Lockbox repository (no `config` object); run `lockbox init` first"
    )]
    NotInitialized {
        /// The backend's location (path or bucket and prefix).
        location: String,
    },
    /// `init` found a repository already there; nothing was written.
    #[error("{location} already holds a Lockbox repository (id {id})")]
    AlreadyInitialized {
        /// The backend's location (path or bucket and prefix).
        location: String,
        /// The existing repository's id.
        id: String,
    },
    /// The `config` object is not valid JSON, has another format tag or parameters, or its
    /// sealed ID key is malformed (damage, not a wrong identity).
    #[error("repository config object `config` is unreadable: {0}")]
    BadConfig(String),
    /// The `config` object declares a repository version newer than this build supports.
    #[error(
        "repository format version {found} is newer than this Lockbox understands ({REPOSITORY_VERSION}); upgrade Lockbox"
    )]
    UnsupportedVersion {
        /// The version the `config` object declares.
        found: u32,
    },
    /// None of the given identities can unseal the ID key in the `config` object.
    #[error("repository config `config`: the identity cannot unseal the ID key: {0}")]
    Unseal(#[source] EnvelopeError),
    /// The host's ID key file does not match the repository's `id_key_check`.
    #[error(
        "this host's ID key does not match repository {id}; the key file belongs to another repository"
    )]
    WrongIdKey {
        /// The repository's id.
        id: String,
    },
    /// A manifest could not be read, unsealed or decoded.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// No snapshot (of the source, when one was named) is `latest` or has
    /// an id starting with the given prefix.
    #[error("{}", no_such_snapshot(source_name.as_deref(), wanted, sources))]
    NoSuchSnapshot {
        /// The source searched, or `None` for every source.
        source_name: Option<String>,
        /// What was asked for: `latest`, a full id or an id prefix.
        wanted: String,
        /// When the source has no snapshots at all: the sources that have
        /// some (empty for an empty repository, or when the source has
        /// snapshots but none matched).
        sources: Vec<String>,
    },
    /// `latest` without a source, in a repository holding several.
    #[error(
        "{wanted:?} needs --source: the repository holds snapshots of {}",
        sources.join(", ")
    )]
    SourceNeeded {
        /// What was asked for.
        wanted: String,
        /// The sources that have snapshots.
        sources: Vec<String>,
    },
    /// An id prefix matches more than one snapshot of the source.
    #[error("{wanted:?} is ambiguous: it matches snapshots {first} and {second}")]
    AmbiguousSnapshot {
        /// The id prefix asked for.
        wanted: String,
        /// Short id of one matching snapshot.
        first: String,
        /// Short id of another.
        second: String,
    },
}

fn no_such_snapshot(source: Option<&str>, wanted: &str, sources: &[String]) -> String {
    let what = match source {
        Some(name) => format!("no snapshot of source {name:?} matches {wanted:?}"),
        None => format!("no snapshot matches {wanted:?}"),
    };
    match (source, sources) {
        (_, []) => what,
        (Some(_), names) => format!(
            "{what}: the source has no snapshots; sources with snapshots: {}",
            names.join(", ")
        ),
        (None, _) => what,
    }
}

impl RepoError {
    /// See [`ErrorClass`]. A missing repository is operational (often an
    /// unmounted volume or a wrong bucket, not damage); a `config` object
    /// that does not parse is damage; a snapshot that does not exist or is
    /// ambiguous is a wrong request.
    pub fn class(&self) -> ErrorClass {
        match self {
            RepoError::Storage(e) => e.class(),
            RepoError::Manifest(e) => e.class(),
            RepoError::Unseal(e) => e.class(),
            RepoError::BadConfig(_) => ErrorClass::Integrity,
            RepoError::UnsupportedVersion { .. }
            | RepoError::AlreadyInitialized { .. }
            | RepoError::WrongIdKey { .. }
            | RepoError::NoSuchSnapshot { .. }
            | RepoError::SourceNeeded { .. }
            | RepoError::AmbiguousSnapshot { .. } => ErrorClass::Usage,
            RepoError::NotInitialized { .. } => ErrorClass::Operational,
        }
    }
}

/// The config object's `chunker`: the parameters chunk boundaries depend on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChunkerParams {
    /// Always [`CHUNKER_ALGORITHM`] (`fastcdc-2020`).
    pub algorithm: String,
    /// Minimum chunk size, in bytes.
    pub min_size: u64,
    /// Target average chunk size, in bytes.
    pub avg_size: u64,
    /// Maximum chunk size, in bytes.
    pub max_size: u64,
    /// FastCDC normalization level.
    pub normalization: u32,
}

/// The `config` object: everything a reader needs to interpret the rest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoConfig {
    /// Always [`CONFIG_TAG`](crate::format::CONFIG_TAG) (`lockbox-repository`).
    pub format: String,
    /// Repository layout version; readers refuse one greater than theirs.
    pub version: u32,
    /// Repository id: 16 random bytes as 32 lowercase hex digits.
    pub id: String,
    /// When `init` ran (UTC); informational.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Chunking parameters; a v1 reader refuses any but the current ones.
    pub chunker: ChunkerParams,
    /// Always `blake3-keyed`.
    pub hash: String,
    /// Always `zstd`.
    pub compression: String,
    /// Always `age-v1-x25519`.
    pub encryption: String,
    /// The age X25519 recipients (`age1…`) every object is encrypted to; public.
    pub recipients: Vec<String>,
    /// The 32-byte ID key, age-encrypted (ASCII armor) to `recipients`.
    pub id_key_sealed: String,
    /// Keyed BLAKE3 of a fixed string: lets a host check its ID key file.
    pub id_key_check: ObjectId,
}

impl RepoConfig {
    pub(crate) fn new(recipients: &Recipients, key: &IdKey) -> Result<Self, RepoError> {
        let sealed = envelope::encrypt(recipients, key.as_bytes())
            .map_err(|e| RepoError::BadConfig(e.to_string()))?;
        Ok(Self {
            format: CONFIG_TAG.into(),
            version: REPOSITORY_VERSION,
            id: hex::encode(rand::random::<[u8; 16]>()),
            created_at: OffsetDateTime::now_utc(),
            chunker: current_chunker(),
            hash: HASH_ALGORITHM.into(),
            compression: COMPRESSION_ALGORITHM.into(),
            encryption: ENCRYPTION_ALGORITHM.into(),
            recipients: recipients.to_strings(),
            id_key_sealed: armor(&sealed).map_err(|e| RepoError::BadConfig(e.to_string()))?,
            id_key_check: key.check_value(),
        })
    }

    fn validate(&self) -> Result<(), RepoError> {
        if self.format != CONFIG_TAG {
            return Err(RepoError::BadConfig(format!(
                "format tag is {:?}, expected {CONFIG_TAG:?}",
                self.format
            )));
        }
        if self.version > REPOSITORY_VERSION {
            return Err(RepoError::UnsupportedVersion {
                found: self.version,
            });
        }
        if self.chunker != current_chunker()
            || self.hash != HASH_ALGORITHM
            || self.compression != COMPRESSION_ALGORITHM
            || self.encryption != ENCRYPTION_ALGORITHM
        {
            return Err(RepoError::BadConfig(
                "algorithms or chunker parameters differ from format v1".into(),
            ));
        }
        Ok(())
    }

    /// Parses and validates the bytes of a `config` object.
    pub fn decode(bytes: &[u8]) -> Result<Self, RepoError> {
        // The version first: a newer config may not parse as this version's.
        #[derive(Deserialize)]
        struct Header {
            version: u32,
        }
        if let Ok(h) = serde_json::from_slice::<Header>(bytes)
            && h.version > REPOSITORY_VERSION
        {
            return Err(RepoError::UnsupportedVersion { found: h.version });
        }
        let config: RepoConfig =
            serde_json::from_slice(bytes).map_err(|e| RepoError::BadConfig(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that `key` is this repository's ID key.
    pub fn check_id_key(&self, key: &IdKey) -> Result<(), RepoError> {
        if key.check_value() == self.id_key_check {
            Ok(())
        } else {
            Err(RepoError::WrongIdKey {
                id: self.id.clone(),
            })
        }
    }

    /// Recovers the ID key with an identity (restore hosts, `init --join`).
    pub fn unseal_id_key(&self, identities: &Identities) -> Result<IdKey, RepoError> {
        let sealed =
            dearmor(&self.id_key_sealed).map_err(|e| RepoError::BadConfig(e.to_string()))?;
        let bytes = envelope::decrypt(identities, &sealed, 32).map_err(RepoError::Unseal)?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| RepoError::BadConfig("sealed ID key is not 32 bytes".into()))?;
        let key = IdKey::from_bytes(arr);
        self.check_id_key(&key)?;
        Ok(key)
    }

    /// The config's `recipients` strings, parsed.
    pub fn recipients(&self) -> Result<Recipients, RepoError> {
        Recipients::parse(&self.recipients).map_err(|e| RepoError::BadConfig(e.to_string()))
    }
}

fn current_chunker() -> ChunkerParams {
    ChunkerParams {
        algorithm: CHUNKER_ALGORITHM.into(),
        min_size: CHUNK_MIN_SIZE as u64,
        avg_size: CHUNK_AVG_SIZE as u64,
        max_size: CHUNK_MAX_SIZE as u64,
        normalization: CHUNKER_NORMALIZATION,
    }
}

/// Creates a repository: writes the `config` object, locked until `retain_until`.
pub fn init(
    backend: &dyn WriteBackend,
    recipients: &Recipients,
    retain_until: OffsetDateTime,
) -> Result<(RepoConfig, IdKey), RepoError> {
    if let Ok(existing) = load_config(backend) {
        return Err(RepoError::AlreadyInitialized {
            location: backend.location(),
            id: existing.id,
        });
    }
    let key = IdKey::generate();
    let config = RepoConfig::new(recipients, &key)?;
    let bytes = serde_json::to_vec_pretty(&config).expect("config serializes");
    match backend.put(CONFIG_KEY, Bytes::from(bytes), retain_until)? {
        PutOutcome::Created => {}
        // Another host initialised it between our check and our put.
        PutOutcome::AlreadyExists => {
            let existing = load_config(backend)?;
            return Err(RepoError::AlreadyInitialized {
                location: backend.location(),
                id: existing.id,
            });
        }
    }
    backend.flush()?;
    Ok((config, key))
}

/// Reads and validates the `config` object. Version-aware: a delete marker or
/// junk version over it (S3) does not hide the locked original; tampering found
/// is logged. A missing config is [`RepoError::NotInitialized`].
pub fn load_config(backend: &dyn ReadBackend) -> Result<RepoConfig, RepoError> {
    // Version-aware: a delete marker or a junk version over `config` (S3)
    // does not hide the locked original.
    let parses =
        |b: &[u8]| serde_json::from_slice::<RepoConfig>(b).is_ok_and(|c| c.validate().is_ok());
    let bytes = match backend.get_verified(CONFIG_KEY, MAX_CONFIG_BYTES, &parses) {
        Ok(v) => {
            for event in &v.tampering {
                tracing::warn!("tampering found in the repository: {event}");
            }
            v.data
        }
        Err(e) if e.is_not_found() => {
            return Err(RepoError::NotInitialized {
                location: backend.location(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    RepoConfig::decode(&bytes)
}

/// A snapshot as found in a listing: its key and the id in its name.
#[derive(Debug, Clone)]
pub struct SnapshotRef {
    /// The manifest's object key.
    pub key: String,
    /// Source name from the key.
    pub source: String,
    /// Manifest id from the key; not yet checked against the bytes.
    pub id: ObjectId,
    /// Size of the manifest object, in bytes, as listed.
    pub size: u64,
    /// The storage's LastModified, when the backend reports one.
    pub last_modified: Option<OffsetDateTime>,
}

/// Lists snapshot manifests, of one source or of all, in key (time) order.
pub fn list_snapshots(
    backend: &dyn ReadBackend,
    source: Option<&str>,
) -> Result<Vec<SnapshotRef>, RepoError> {
    let prefix = match source {
        Some(s) => format::snapshot_prefix(s),
        None => SNAPSHOTS_PREFIX.to_string(),
    };
    let mut out = Vec::new();
    backend.list(&prefix, &mut |info| {
        match format::parse_snapshot_key(&info.key) {
            Some((source, id)) => out.push(SnapshotRef {
                key: info.key,
                source,
                id,
                size: info.size,
                last_modified: info.last_modified,
            }),
            None => {
                tracing::warn!(key = %info.key, "ignoring object that is not a snapshot manifest")
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// Fetches a manifest and checks that its name is the keyed hash of its bytes.
pub fn read_manifest(
    backend: &dyn ReadBackend,
    key: &IdKey,
    snap: &SnapshotRef,
) -> Result<Manifest, RepoError> {
    let named = |b: &[u8]| key.id_of(b) == snap.id;
    let v = backend.get_verified(&snap.key, MAX_MANIFEST_BYTES, &named)?;
    for event in &v.tampering {
        tracing::warn!("tampering found in the repository: {event}");
    }
    Ok(Manifest::decode(&v.data, key, &snap.id, &snap.key)?)
}

/// Resolves `latest`, a full id, or an id prefix, among one source's
/// snapshots or, without a source, among all of them: an id (prefix) needs
/// no source when only one snapshot matches, and `latest` none when the
/// repository holds one source. A source with no snapshots is answered
/// with the sources that have some, so a misspelt name shows the right one.
pub fn find_snapshot(
    backend: &dyn ReadBackend,
    source: Option<&str>,
    wanted: &str,
) -> Result<SnapshotRef, RepoError> {
    let snaps = list_snapshots(backend, source)?;
    let sources_with_snapshots = || -> Result<Vec<String>, RepoError> {
        let mut names: Vec<String> = list_snapshots(backend, None)?
            .into_iter()
            .map(|s| s.source)
            .collect();
        names.dedup();
        names.sort_unstable();
        names.dedup();
        Ok(names)
    };
    if snaps.is_empty() {
        return Err(RepoError::NoSuchSnapshot {
            source_name: source.map(str::to_string),
            wanted: wanted.into(),
            sources: sources_with_snapshots()?,
        });
    }
    if wanted == "latest" {
        let mut names: Vec<String> = snaps.iter().map(|s| s.source.clone()).collect();
        names.sort_unstable();
        names.dedup();
        if names.len() > 1 {
            return Err(RepoError::SourceNeeded {
                wanted: wanted.into(),
                sources: names,
            });
        }
        return Ok(snaps.into_iter().last().expect("not empty"));
    }
    let wanted_lc = wanted.to_ascii_lowercase();
    let mut matches = snaps
        .into_iter()
        .filter(|s| !wanted_lc.is_empty() && s.id.to_hex().starts_with(&wanted_lc));
    let Some(first) = matches.next() else {
        return Err(RepoError::NoSuchSnapshot {
            source_name: source.map(str::to_string),
            wanted: wanted.into(),
            sources: Vec::new(),
        });
    };
    if let Some(second) = matches.next() {
        return Err(RepoError::AmbiguousSnapshot {
            wanted: wanted.into(),
            first: format!("{} ({})", first.id.short(), first.source),
            second: format!("{} ({})", second.id.short(), second.source),
        });
    }
    Ok(first)
}

/// A repository opened for writing: backend, config and the ID key.
#[derive(Clone)]
pub struct WriteRepo {
    /// Where objects are written.
    pub backend: Arc<dyn WriteBackend>,
    /// The repository's config object, as read at open.
    pub config: RepoConfig,
    /// The ID key, checked against the config's `id_key_check`.
    pub id_key: IdKey,
    /// The config's recipients, parsed.
    pub recipients: Recipients,
}

impl WriteRepo {
    /// Reads the config and checks that `id_key` belongs to it.
    pub fn open(backend: Arc<dyn WriteBackend>, id_key: IdKey) -> Result<Self, RepoError> {
        let config = load_config(backend.as_ref())?;
        config.check_id_key(&id_key)?;
        let recipients = config.recipients()?;
        Ok(Self {
            backend,
            config,
            id_key,
            recipients,
        })
    }
}
