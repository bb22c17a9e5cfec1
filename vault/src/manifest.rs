//! Snapshot manifests: one JSON document per backup.
//!
//! The public part lets a host without any identity list snapshots, follow
//! the per-source hash chain, and check presence, size and retention of
//! every object. What could reveal data (chunk lengths, the stream hash,
//! source metadata) sits in `sealed`, an ASCII-armored age file.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::envelope::{self, EnvelopeError};
use crate::envelope::{armor, dearmor};
use crate::error::ErrorClass;
use crate::format::{MANIFEST_TAG, MANIFEST_VERSION};
use crate::ids::{IdKey, ObjectId};
use crate::keys::{Identities, Recipients};

/// Why a manifest could not be read: tampered or malformed bytes, a newer
/// version, or a sealed part the identities cannot open.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest's id is not the keyed hash of its bytes: altered or forged (or read with
    /// another repository's ID key).
    #[error(
        "snapshot {key}: name does not match the keyed hash of its contents (altered or forged manifest)"
    )]
    NameMismatch {
        /// The manifest's storage key.
        key: String,
    },
    /// The manifest's bytes are not a valid manifest (bad JSON, format tag, fields or sizes).
    #[error("snapshot {key}: not a valid manifest: {reason}")]
    Malformed {
        /// The manifest's storage key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The manifest declares a version newer than this build supports (not damage).
    #[error(
        "snapshot {key}: manifest version {found} is newer than this Lockbox understands ({MANIFEST_VERSION}); upgrade Lockbox"
    )]
    UnsupportedVersion {
        /// The manifest's storage key.
        key: String,
        /// The version it declares.
        found: u32,
    },
    /// The sealed part cannot be decrypted: no given identity is a recipient, or it is damaged.
    #[error("snapshot {key}: cannot open the sealed part: {source}")]
    Unseal {
        /// The manifest's storage key.
        key: String,
        /// Why decryption failed.
        #[source]
        source: EnvelopeError,
    },
}

impl ManifestError {
    /// Bad bytes (tampered, forged, truncated) are [`ErrorClass::Integrity`];
    /// a newer version asks for an upgrade ([`ErrorClass::Usage`]); an
    /// unseal failure is its envelope's (a wrong identity, or damage).
    pub fn class(&self) -> ErrorClass {
        match self {
            ManifestError::NameMismatch { .. } | ManifestError::Malformed { .. } => {
                ErrorClass::Integrity
            }
            ManifestError::UnsupportedVersion { .. } => ErrorClass::Usage,
            ManifestError::Unseal { source, .. } => source.class(),
        }
    }
}

/// One entry of the ordered chunk list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkRef {
    /// Keyed BLAKE3 of the chunk's plaintext; the object is
    /// `chunks/<id[..2]>/<id>`, or for a delta `chunks/<id[..2]>/<id>.<base>`.
    pub id: ObjectId,
    /// Manifest v2, delta entries only: the full chunk this entry's object
    /// is a zstd patch against, and that chunk object's stored size and hash
    /// (all three or none; see [`ChunkRef::delta_base`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<ObjectId>,
    /// Delta entries only: size in bytes of the base chunk object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_stored_len: Option<u64>,
    /// Delta entries only: unkeyed BLAKE3 of the base chunk object's bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_stored_hash: Option<ObjectId>,
    /// Size of the stored object in bytes.
    pub stored_len: u64,
    /// Unkeyed BLAKE3 of the stored object bytes.
    pub stored_hash: ObjectId,
}

/// The base of a delta entry: a full chunk object, referenced like any chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaBase {
    /// The base chunk's id (keyed BLAKE3 of its plaintext).
    pub id: ObjectId,
    /// Size of the base chunk object, in bytes.
    pub stored_len: u64,
    /// Unkeyed BLAKE3 of the base chunk object's bytes.
    pub stored_hash: ObjectId,
}

impl DeltaBase {
    /// The base's object key, `chunks/<hh>/<id>`.
    pub fn key(&self) -> String {
        crate::format::chunk_key(&self.id)
    }
}

impl ChunkRef {
    /// An entry stored as a full chunk object (the only kind a v1 manifest holds).
    pub fn full(id: ObjectId, stored_len: u64, stored_hash: ObjectId) -> Self {
        Self {
            id,
            base: None,
            base_stored_len: None,
            base_stored_hash: None,
            stored_len,
            stored_hash,
        }
    }

    /// An entry stored as a zstd patch against `base` (manifest v2).
    pub fn delta(id: ObjectId, base: DeltaBase, stored_len: u64, stored_hash: ObjectId) -> Self {
        Self {
            id,
            base: Some(base.id),
            base_stored_len: Some(base.stored_len),
            base_stored_hash: Some(base.stored_hash),
            stored_len,
            stored_hash,
        }
    }

    /// The base when this entry is a delta. A parsed manifest has either all
    /// three base fields or none (checked by [`Manifest::parse_unchecked`]).
    pub fn delta_base(&self) -> Option<DeltaBase> {
        Some(DeltaBase {
            id: self.base?,
            stored_len: self.base_stored_len?,
            stored_hash: self.base_stored_hash?,
        })
    }

    /// The key of the object this entry reads.
    pub fn key(&self) -> String {
        match self.base {
            None => crate::format::chunk_key(&self.id),
            Some(b) => crate::format::delta_key(&self.id, &b),
        }
    }
}

/// A snapshot manifest: the public JSON stored under `snapshots/<source>/…`
/// (field meanings in FORMAT.md, "Snapshot manifests"). Its id is the keyed
/// BLAKE3 of its bytes. JSON fields are the format; do not rename them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_TAG`].
    pub format: String,
    /// Manifest version: 2 if any entry is a delta, else 1.
    pub version: u32,
    /// The repository's id (its config object's `id`).
    pub repository: String,
    /// The source name, as in the object key.
    pub source: String,
    /// How the stream was produced: `command`, `sqlite`, `stdin`, `postgres`, `mariadb` or `mysql`.
    pub kind: String,
    /// When the backup started (UTC, microseconds); the key's time is this instant.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When the manifest was made (UTC, writer's clock; prune never trusts it).
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    /// The snapshot is locked at least until this (UTC, whole seconds):
    /// `started_at` truncated to the second, plus `lock_days`, plus one second.
    #[serde(with = "time::serde::rfc3339")]
    pub retain_until: OffsetDateTime,
    /// Manifest id of the previous snapshot of this source, if any.
    pub previous: Option<ObjectId>,
    /// Length of the dump stream, in bytes.
    pub input_bytes: u64,
    /// Stored bytes of the distinct objects this snapshot references.
    pub stored_bytes: u64,
    /// Stored bytes this backup newly wrote (what it cost).
    pub added_bytes: u64,
    /// Version of the Lockbox that wrote it; informational.
    pub lockbox_version: String,
    /// The stream's chunks in order; a repeated chunk is listed each time.
    pub chunks: Vec<ChunkRef>,
    /// ASCII-armored age file holding [`SealedPart`] as JSON.
    pub sealed: String,
}

/// The encrypted part of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealedPart {
    /// Keyed BLAKE3 of the whole dump stream.
    pub stream_hash: ObjectId,
    /// Plaintext length of each entry of `chunks`, in the same order.
    pub chunk_lengths: Vec<u64>,
    /// Kind-specific facts about the source (tool versions, tables…).
    #[serde(default)]
    pub source_info: serde_json::Value,
}

impl Manifest {
    /// Serializes the manifest; returns its bytes and its id (keyed hash).
    pub fn encode(&self, key: &IdKey) -> (Vec<u8>, ObjectId) {
        let bytes = serde_json::to_vec(self).expect("manifest serializes");
        let id = key.id_of(&bytes);
        (bytes, id)
    }

    /// Parses a manifest fetched from `key_name`, checking that `expected_id`
    /// (from the object's name) is the keyed hash of the bytes.
    pub fn decode(
        bytes: &[u8],
        key: &IdKey,
        expected_id: &ObjectId,
        key_name: &str,
    ) -> Result<Self, ManifestError> {
        if key.id_of(bytes) != *expected_id {
            return Err(ManifestError::NameMismatch {
                key: key_name.into(),
            });
        }
        Self::parse_unchecked(bytes, key_name)
    }

    /// Parses without the name check (for hosts without the ID key; the
    /// stored-hash checks of every object still hold).
    pub fn parse_unchecked(bytes: &[u8], key_name: &str) -> Result<Self, ManifestError> {
        // Read the version before the strict parse: a newer manifest may carry
        // fields this version rejects, and must be reported as "upgrade",
        // not as corruption.
        #[derive(Deserialize)]
        struct Header {
            version: u32,
        }
        if let Ok(h) = serde_json::from_slice::<Header>(bytes)
            && h.version > MANIFEST_VERSION
        {
            return Err(ManifestError::UnsupportedVersion {
                key: key_name.into(),
                found: h.version,
            });
        }
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed {
            key: key_name.into(),
            reason: e.to_string(),
        })?;
        if m.format != MANIFEST_TAG {
            return Err(ManifestError::Malformed {
                key: key_name.into(),
                reason: format!("format tag is {:?}", m.format),
            });
        }
        if m.version > MANIFEST_VERSION {
            return Err(ManifestError::UnsupportedVersion {
                key: key_name.into(),
                found: m.version,
            });
        }
        for (i, c) in m.chunks.iter().enumerate() {
            let fields = [
                c.base.is_some(),
                c.base_stored_len.is_some(),
                c.base_stored_hash.is_some(),
            ];
            let reason = if fields.iter().any(|f| *f) && !fields.iter().all(|f| *f) {
                "has some of base, base_stored_len and base_stored_hash but not all"
            } else if c.base.is_some() && m.version < 2 {
                // v1 has no deltas: such a manifest was not written by Lockbox.
                "is a delta, which a version 1 manifest cannot hold"
            } else if c.base == Some(c.id) {
                "is a delta against itself"
            } else {
                continue;
            };
            return Err(ManifestError::Malformed {
                key: key_name.into(),
                reason: format!("chunk #{i} {reason}"),
            });
        }
        Ok(m)
    }

    /// Encrypts `part` to `recipients` as an ASCII-armored age file, the value
    /// of [`Manifest::sealed`].
    pub fn seal(recipients: &Recipients, part: &SealedPart) -> Result<String, EnvelopeError> {
        let json = serde_json::to_vec(part).expect("sealed part serializes");
        let bin = envelope::encrypt(recipients, &json)?;
        armor(&bin)
    }

    /// Decrypts and checks the sealed part: every chunk length is between 1
    /// and [`CHUNK_MAX_SIZE`](crate::format::CHUNK_MAX_SIZE) bytes, there is one
    /// per chunk, and they sum to `input_bytes`.
    /// `key_name` is the manifest's key, for error messages.
    pub fn unseal(
        &self,
        identities: &Identities,
        key_name: &str,
    ) -> Result<SealedPart, ManifestError> {
        let unseal_err = |source| ManifestError::Unseal {
            key: key_name.into(),
            source,
        };
        let bin = dearmor(&self.sealed).map_err(unseal_err)?;
        let json = envelope::decrypt(identities, &bin, crate::format::MAX_MANIFEST_BYTES as usize)
            .map_err(unseal_err)?;
        let part: SealedPart =
            serde_json::from_slice(&json).map_err(|e| ManifestError::Malformed {
                key: key_name.into(),
                reason: format!("sealed part: {e}"),
            })?;
        let malformed = |reason: String| ManifestError::Malformed {
            key: key_name.into(),
            reason,
        };
        if let Some(bad) = part
            .chunk_lengths
            .iter()
            .position(|&l| l == 0 || l > crate::format::CHUNK_MAX_SIZE as u64)
        {
            return Err(malformed(format!(
                "chunk #{bad} has an impossible length {}",
                part.chunk_lengths[bad]
            )));
        }
        let total: u64 = part.chunk_lengths.iter().sum();
        if total != self.input_bytes {
            return Err(malformed(format!(
                "chunk lengths add up to {total}, input_bytes says {}",
                self.input_bytes
            )));
        }
        if part.chunk_lengths.len() != self.chunks.len() {
            return Err(ManifestError::Malformed {
                key: key_name.into(),
                reason: format!(
                    "{} chunk lengths for {} chunks",
                    part.chunk_lengths.len(),
                    self.chunks.len()
                ),
            });
        }
        Ok(part)
    }

    /// The short form of a manifest id shown to users: its first 8 hex digits.
    pub fn short_id(id: &ObjectId) -> String {
        id.short()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_manifest_versions_ask_for_an_upgrade_not_report_corruption() {
        let v3 = br#"{"format":"lockbox-snapshot","version":3,"chunks":[{"id":"x","patch":"y"}]}"#;
        let err = Manifest::parse_unchecked(v3, "snapshots/s/k").unwrap_err();
        assert!(
            matches!(err, ManifestError::UnsupportedVersion { found: 3, .. }),
            "{err}"
        );
        assert_eq!(err.class(), ErrorClass::Usage);
        let garbage = Manifest::parse_unchecked(b"{\"version\":1}", "k").unwrap_err();
        assert_eq!(garbage.class(), ErrorClass::Integrity);
    }
}
