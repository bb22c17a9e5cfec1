//! Verified restore: streams a snapshot back out of the repository and
//! proves every byte before reporting success.
//!
//! Each object is checked three times: its stored bytes against the
//! manifest's BLAKE3 (so tampering is named before decryption is tried), its
//! decryption (age's MAC), and its plaintext against its keyed-BLAKE3 id.
//! The whole stream is then checked against the manifest's stream hash.
//!
//! [`verify`] checks a repository without restoring it.
//!
//! Architecture invariant: restore only ever holds a `ReadBackend`; it
//! cannot write to or delete from the repository.

#![warn(missing_docs)]

pub mod attest;
pub mod drill;
pub mod load;
mod output;
mod pipeline;
pub mod verify;

use lockbox_vault::error::ErrorClass;
use lockbox_vault::keys::Identities;
use lockbox_vault::manifest::ManifestError;
use lockbox_vault::repository::{self, RepoError, SnapshotRef};
use lockbox_vault::storage::{ReadBackend, StorageError};

pub use output::FileTarget;
pub use pipeline::RestoreProgress;

/// Why a restore produced no verified output. See [`class`](Self::class) for what kind
/// of failure it is.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Listing the repository or reading the snapshot's manifest failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A stop signal arrived; the partial output was removed.
    #[error(transparent)]
    Interrupted(#[from] lockbox_vault::sys::Interrupted),
    /// The manifest could not be opened or decoded (unsealing with the identity included).
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A chunk the manifest names is not in storage.
    #[error("snapshot {snapshot}: chunk #{index} ({key}) is missing from the repository")]
    ChunkMissing {
        /// The snapshot's short id.
        snapshot: String,
        /// Position of the chunk in the manifest's chunk list (from 0).
        index: usize,
        /// The chunk's storage key.
        key: String,
    },
    /// A chunk's stored bytes, decryption or keyed id failed verification.
    #[error("snapshot {snapshot}: chunk #{index} ({key}) is corrupt: {reason}")]
    ChunkCorrupt {
        /// The snapshot's short id.
        snapshot: String,
        /// Position of the chunk in the manifest's chunk list (from 0).
        index: usize,
        /// The chunk's storage key.
        key: String,
        /// Which check failed.
        reason: String,
    },
    /// A chunk is sealed to recipients none of the given identities belong to.
    #[error(
        "snapshot {snapshot}: chunk #{index} ({key}): the identity matches none of its recipients"
    )]
    WrongIdentity {
        /// The snapshot's short id.
        snapshot: String,
        /// Position of the chunk in the manifest's chunk list (from 0).
        index: usize,
        /// The chunk's storage key.
        key: String,
    },
    /// The storage backend failed while a chunk was read (not a missing or corrupt chunk).
    #[error("snapshot {snapshot}: reading chunk #{index}: {source}")]
    Storage {
        /// The snapshot's short id.
        snapshot: String,
        /// Position of the chunk in the manifest's chunk list (from 0).
        index: usize,
        /// The backend's error.
        #[source]
        source: Box<StorageError>,
    },
    /// Every chunk verified, but the whole stream does not match the manifest's stream hash.
    #[error("snapshot {snapshot}: the restored stream does not match the snapshot's stream hash")]
    StreamMismatch {
        /// The snapshot's short id.
        snapshot: String,
    },
    /// The output file exists and replacing it was not asked for; nothing was read.
    #[error(
        "{path} already exists; choose another --output or pass --force to replace it after verification"
    )]
    OutputExists {
        /// The output path as given.
        path: String,
    },
    /// Creating, writing, flushing or renaming the output failed.
    #[error("writing the restored data to {path}: {reason}")]
    Output {
        /// The output path (`output` for a stream).
        path: String,
        /// The I/O failure.
        reason: String,
    },
}

impl RestoreError {
    /// Missing, corrupt or mismatching data is [`ErrorClass::Integrity`];
    /// a chunk sealed to other recipients is [`ErrorClass::Identity`]; an
    /// existing output is a usage error; wrapped errors answer for
    /// themselves.
    pub fn class(&self) -> ErrorClass {
        match self {
            RestoreError::Repo(e) => e.class(),
            RestoreError::Interrupted(e) => e.class(),
            RestoreError::Manifest(e) => e.class(),
            RestoreError::Storage { source, .. } => source.class(),
            RestoreError::ChunkMissing { .. }
            | RestoreError::ChunkCorrupt { .. }
            | RestoreError::StreamMismatch { .. } => ErrorClass::Integrity,
            RestoreError::WrongIdentity { .. } => ErrorClass::Identity,
            RestoreError::OutputExists { .. } => ErrorClass::Usage,
            RestoreError::Output { .. } => ErrorClass::Operational,
        }
    }
}

/// The class of `err` if it is a public error type of this crate or of
/// `lockbox-vault` ([`lockbox_vault::classify::class_of`]), or `None`.
pub fn class_of(err: &(dyn std::error::Error + 'static)) -> Option<ErrorClass> {
    if let Some(e) = err.downcast_ref::<RestoreError>() {
        return Some(e.class());
    }
    if let Some(e) = err.downcast_ref::<load::LoadError>() {
        return Some(e.class());
    }
    if let Some(e) = err.downcast_ref::<attest::AttestError>() {
        return Some(e.class());
    }
    lockbox_vault::classify::class_of(err)
}

/// What a verified restore did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreReport {
    /// The restored snapshot's manifest id (hex).
    pub snapshot: String,
    /// Its source.
    pub source: String,
    /// Bytes of the restored dump stream, all verified.
    pub bytes: u64,
    /// Chunk entries restored (a repeated chunk counts each time).
    pub chunks: usize,
    /// Wall time, in seconds.
    pub seconds: f64,
    /// Delete markers and bad versions passed over to find verified data
    /// (S3): the data restored fine, but someone tampered with the storage.
    pub tampering: Vec<lockbox_vault::storage::TamperEvent>,
}

/// Options that tune the restore pipeline.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Objects fetched and verified in parallel.
    pub workers: usize,
    /// Chunks that may be fetched ahead of the one being written.
    pub read_ahead: usize,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            workers: cpus.max(2),
            read_ahead: cpus.max(2) * 2,
        }
    }
}

/// Restores `snap` into `out`, verifying everything. The caller must treat
/// bytes written to `out` as unverified until this returns `Ok`.
pub fn restore_to_writer(
    backend: &dyn ReadBackend,
    identities: &Identities,
    snap: &SnapshotRef,
    out: &mut dyn std::io::Write,
    opts: &RestoreOptions,
    progress: &dyn RestoreProgress,
) -> Result<RestoreReport, RestoreError> {
    let o = open_snapshot(backend, identities, snap)?;
    pipeline::run(
        backend,
        identities,
        &o.id_key,
        snap,
        &o.manifest,
        &o.sealed,
        out,
        opts,
        progress,
    )
}

/// A snapshot's manifest, checked and unsealed, ready to restore.
pub(crate) struct OpenedSnapshot {
    pub id_key: lockbox_vault::ids::IdKey,
    pub manifest: lockbox_vault::manifest::Manifest,
    pub sealed: lockbox_vault::manifest::SealedPart,
}

pub(crate) fn open_snapshot(
    backend: &dyn ReadBackend,
    identities: &Identities,
    snap: &SnapshotRef,
) -> Result<OpenedSnapshot, RestoreError> {
    let config = repository::load_config(backend)?;
    let id_key = config.unseal_id_key(identities)?;
    let manifest = repository::read_manifest(backend, &id_key, snap)?;
    if manifest.repository != config.id {
        return Err(ManifestError::Malformed {
            key: snap.key.clone(),
            reason: format!(
                "it belongs to repository {}, not {}",
                manifest.repository, config.id
            ),
        }
        .into());
    }
    let sealed = manifest.unseal(identities, &snap.key)?;
    Ok(OpenedSnapshot {
        id_key,
        manifest,
        sealed,
    })
}

/// Restores `snap` into a file: written beside the target, verified, then
/// renamed into place. On any failure nothing is left at `target`.
pub fn restore_to_file(
    backend: &dyn ReadBackend,
    identities: &Identities,
    snap: &SnapshotRef,
    target: &std::path::Path,
    force: bool,
    opts: &RestoreOptions,
    progress: &dyn RestoreProgress,
) -> Result<RestoreReport, RestoreError> {
    let mut file = FileTarget::create(target, force)?;
    let report = restore_to_writer(backend, identities, snap, file.writer(), opts, progress)?;
    file.commit()?;
    Ok(report)
}
