//! Attestations: the durable record that a snapshot passed (or failed) a
//! restore drill or a verification, stored in the repository under Object
//! Lock beside the snapshots, so it outlives the host that ran the drill and
//! any catalog.
//!
//! Like a manifest, an attestation is compact JSON named by its keyed hash
//! (`attestations/<source>/<time>-<id>`), with a public part that a backup
//! host without an identity can read (outcome, snapshot, times, sizes, which
//! built-in checks passed) and a sealed part, age-encrypted to the
//! repository's recipients, for whatever could reveal schema or data (table
//! names and row counts, the SQL and values of user checks, error messages).
//! Writing one needs a `WriteBackend` (put only: attestations are never
//! changed or deleted by Lockbox, and a drill host's credentials may allow
//! nothing else).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::envelope::{self, EnvelopeError};
use crate::envelope::{armor, dearmor};
use crate::error::ErrorClass;
use crate::format::{self, ATTESTATION_TAG, ATTESTATION_VERSION, MAX_ATTESTATION_BYTES};
use crate::ids::{IdKey, ObjectId};
use crate::keys::{Identities, Recipients};
use crate::storage::{ReadBackend, StorageError, WriteBackend};

/// Why an attestation could not be written, listed or read.
#[derive(Debug, thiserror::Error)]
pub enum AttestationError {
    /// The backend failed while an attestation was listed, read or put.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The attestation's id is not the keyed hash of its bytes: altered or forged.
    #[error(
        "attestation {key}: name does not match the keyed hash of its contents (altered or forged)"
    )]
    NameMismatch {
        /// The attestation's storage key.
        key: String,
    },
    /// The bytes are not a valid attestation (bad JSON, format tag or fields).
    #[error("attestation {key}: not a valid attestation: {reason}")]
    Malformed {
        /// The attestation's storage key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The attestation declares a version newer than this build supports (not damage).
    #[error(
        "attestation {key}: version {found} is newer than this Lockbox understands ({ATTESTATION_VERSION}); upgrade Lockbox"
    )]
    UnsupportedVersion {
        /// The attestation's storage key.
        key: String,
        /// The version it declares.
        found: u32,
    },
    /// Its sealed part could not be encrypted, or decrypted with the given identities.
    #[error("attestation: cannot seal or open the sealed part: {0}")]
    Seal(#[from] EnvelopeError),
}

impl AttestationError {
    /// Like a manifest's: bad bytes are damage, a newer version asks for an
    /// upgrade, storage and the envelope answer for themselves.
    pub fn class(&self) -> ErrorClass {
        match self {
            AttestationError::Storage(e) => e.class(),
            AttestationError::Seal(e) => e.class(),
            AttestationError::NameMismatch { .. } | AttestationError::Malformed { .. } => {
                ErrorClass::Integrity
            }
            AttestationError::UnsupportedVersion { .. } => ErrorClass::Usage,
        }
    }
}

/// The outcome of one check, as shown publicly. User-defined checks are
/// named `check[N]` here (their names may reveal the schema); the sealed
/// part has their real names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicCheck {
    /// Built-in check name (`load`, `tables`, `row_counts`, `integrity_check`,
    /// `page_count`) or `check[N]` for the N-th user check.
    pub name: String,
    /// Whether the check passed.
    pub passed: bool,
}

/// An attestation document. Field order is the serialized order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attestation {
    /// Always [`ATTESTATION_TAG`].
    pub format: String,
    /// Attestation version ([`ATTESTATION_VERSION`]); readers skip newer ones.
    pub version: u32,
    /// The repository's id (its config object's `id`).
    pub repository: String,
    /// Source name, as in the key.
    pub source: String,
    /// `drill` or `verify`.
    pub kind: String,
    /// Full manifest id of the snapshot attested.
    pub snapshot: ObjectId,
    /// The attested snapshot's `started_at`, copied from its manifest (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub snapshot_started_at: OffsetDateTime,
    /// The attested snapshot's `retain_until`, copied from its manifest (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub snapshot_retain_until: OffsetDateTime,
    /// True only if the load and every check passed.
    pub passed: bool,
    /// When the drill or verification started (UTC, the running host's clock).
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When it finished (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    /// Seconds from the start of the restore to a loaded, checked database:
    /// the recovery time this drill achieved (RTO). `null` for `verify`.
    pub restore_seconds: Option<f64>,
    /// Age of the snapshot's data when the drill started (`started_at` −
    /// `snapshot_started_at`): the recovery point a restore at that moment
    /// would have given (RPO).
    pub data_age_seconds: f64,
    /// Dump bytes restored (drill) or stored bytes read (verify).
    pub bytes: u64,
    /// Per check, in the order run, its public name and outcome.
    pub checks: Vec<PublicCheck>,
    /// One line for people, free of schema and data (e.g. `failed: check[1]`).
    pub summary: String,
    /// Version of the Lockbox that wrote it; informational.
    pub lockbox_version: String,
    /// Host name of the machine that ran the drill or verification.
    pub host: String,
    /// ASCII-armored age file holding the sealed part (any JSON object).
    pub sealed: String,
}

impl Attestation {
    /// Seals `secret` (compact JSON) to `recipients` into `self.sealed`.
    pub fn seal(
        &mut self,
        recipients: &Recipients,
        secret: &serde_json::Value,
    ) -> Result<(), AttestationError> {
        let json = serde_json::to_vec(secret).expect("JSON serializes");
        let bin = envelope::encrypt(recipients, &json)?;
        self.sealed = armor(&bin)?;
        Ok(())
    }

    /// Decrypts the sealed part (JSON; may name tables, counts and errors).
    pub fn unseal(&self, identities: &Identities) -> Result<serde_json::Value, AttestationError> {
        let bin = dearmor(&self.sealed)?;
        let json = envelope::decrypt(identities, &bin, MAX_ATTESTATION_BYTES as usize)?;
        serde_json::from_slice(&json).map_err(|e| AttestationError::Malformed {
            key: "(sealed part)".into(),
            reason: e.to_string(),
        })
    }

    /// Compact JSON bytes and the attestation id (their keyed hash).
    pub fn encode(&self, key: &IdKey) -> (Vec<u8>, ObjectId) {
        let bytes = serde_json::to_vec(self).expect("attestation serializes");
        let id = key.id_of(&bytes);
        (bytes, id)
    }

    /// Parses bytes read from `key_name`, checking the name first.
    pub fn decode(
        bytes: &[u8],
        key: &IdKey,
        expected_id: &ObjectId,
        key_name: &str,
    ) -> Result<Self, AttestationError> {
        if key.id_of(bytes) != *expected_id {
            return Err(AttestationError::NameMismatch {
                key: key_name.into(),
            });
        }
        Self::parse_unchecked(bytes, key_name)
    }

    /// Parses without the name check (the fuzz targets' entry; readers use
    /// [`Attestation::decode`]).
    pub fn parse_unchecked(bytes: &[u8], key_name: &str) -> Result<Self, AttestationError> {
        #[derive(Deserialize)]
        struct Header {
            version: u32,
        }
        if let Ok(h) = serde_json::from_slice::<Header>(bytes)
            && h.version > ATTESTATION_VERSION
        {
            return Err(AttestationError::UnsupportedVersion {
                key: key_name.into(),
                found: h.version,
            });
        }
        let a: Attestation =
            serde_json::from_slice(bytes).map_err(|e| AttestationError::Malformed {
                key: key_name.into(),
                reason: e.to_string(),
            })?;
        if a.format != ATTESTATION_TAG {
            return Err(AttestationError::Malformed {
                key: key_name.into(),
                reason: format!("format tag is {:?}", a.format),
            });
        }
        Ok(a)
    }
}

/// Writes an attestation, locked until `retain_until` (at least the
/// snapshot's), and flushes. Returns its key.
pub fn write(
    backend: &dyn WriteBackend,
    id_key: &IdKey,
    att: &Attestation,
    retain_until: OffsetDateTime,
) -> Result<String, AttestationError> {
    let (bytes, id) = att.encode(id_key);
    let key = format::attestation_key(&att.source, att.started_at, &id);
    // Content-addressed: "already exists" can only be these very bytes.
    backend.put(&key, Bytes::from(bytes), retain_until)?;
    backend.flush()?;
    Ok(key)
}

/// An attestation key found by [`list`].
#[derive(Debug, Clone)]
pub struct AttestationRef {
    /// The object key, `attestations/<source>/<time>-<id>`.
    pub key: String,
    /// Source name from the key.
    pub source: String,
    /// The attestation id from the key (keyed BLAKE3 of its bytes).
    pub id: ObjectId,
}

/// Lists attestations, of one source or all, in key (time) order.
pub fn list(
    backend: &dyn ReadBackend,
    source: Option<&str>,
) -> Result<Vec<AttestationRef>, AttestationError> {
    let prefix = match source {
        Some(s) => format!("{}{s}/", format::ATTESTATIONS_PREFIX),
        None => format::ATTESTATIONS_PREFIX.to_string(),
    };
    let mut out = Vec::new();
    backend.list(&prefix, &mut |info| {
        match format::parse_attestation_key(&info.key) {
            Some((source, id)) => out.push(AttestationRef {
                key: info.key,
                source,
                id,
            }),
            None => tracing::warn!(key = %info.key, "ignoring object that is not an attestation"),
        }
        Ok(())
    })?;
    Ok(out)
}

/// Reads and name-checks one attestation (version-aware: a delete marker or
/// a planted version does not hide the locked original).
pub fn read(
    backend: &dyn ReadBackend,
    id_key: &IdKey,
    r: &AttestationRef,
) -> Result<Attestation, AttestationError> {
    let named = |b: &[u8]| id_key.id_of(b) == r.id;
    let v = backend.get_verified(&r.key, MAX_ATTESTATION_BYTES, &named)?;
    for event in &v.tampering {
        tracing::warn!("tampering found in the repository: {event}");
    }
    Attestation::decode(&v.data, id_key, &r.id, &r.key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate_identity;
    use crate::storage::LocalBackend;

    fn sample(recipients: &Recipients) -> Attestation {
        let t = time::macros::datetime!(2026-11-21 10:00:00 UTC);
        let mut a = Attestation {
            format: ATTESTATION_TAG.into(),
            version: ATTESTATION_VERSION,
            repository: "r".into(),
            source: "orders".into(),
            kind: "drill".into(),
            snapshot: ObjectId::from_bytes([3; 32]),
            snapshot_started_at: t,
            snapshot_retain_until: t + time::Duration::days(30),
            passed: true,
            started_at: t + time::Duration::hours(1),
            finished_at: t + time::Duration::hours(2),
            restore_seconds: Some(4.5),
            data_age_seconds: 3600.0,
            bytes: 10,
            checks: vec![PublicCheck {
                name: "load".into(),
                passed: true,
            }],
            summary: "passed".into(),
            lockbox_version: "0.1.0".into(),
            host: "h".into(),
            sealed: String::new(),
        };
        a.seal(recipients, &serde_json::json!({"tables": ["orders"]}))
            .unwrap();
        a
    }

    #[test]
    fn round_trip_name_check_and_sealed_part() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::open(dir.path().to_str().unwrap()).unwrap();
        let (identity, rcpt) = generate_identity();
        let recipients = Recipients::parse(&[rcpt]).unwrap();
        let key = IdKey::generate();
        let a = sample(&recipients);
        let until = OffsetDateTime::now_utc() + time::Duration::days(1);
        let written = write(&backend, &key, &a, until).unwrap();
        assert!(written.starts_with("attestations/orders/20261121T110000.000000Z-"));
        let listed = list(&backend, Some("orders")).unwrap();
        assert_eq!(listed.len(), 1);
        let back = read(&backend, &key, &listed[0]).unwrap();
        assert_eq!(back, a);
        let secret = back
            .unseal(&Identities::from_x25519(vec![identity]))
            .unwrap();
        assert_eq!(secret["tables"][0], "orders");
        // Another key (or altered bytes) fails the name check.
        let err = read(&backend, &IdKey::generate(), &listed[0]).unwrap_err();
        assert!(
            matches!(err, AttestationError::NameMismatch { .. }),
            "{err}"
        );
        let info = backend.head(&written).unwrap().unwrap();
        assert!(info.retain_until.unwrap() >= until - time::Duration::seconds(1));
    }

    #[test]
    fn newer_versions_ask_for_an_upgrade() {
        let key = IdKey::generate();
        let bytes = br#"{"format":"lockbox-attestation","version":2}"#;
        let err = Attestation::decode(bytes, &key, &key.id_of(bytes), "k").unwrap_err();
        assert!(
            matches!(err, AttestationError::UnsupportedVersion { found: 2, .. }),
            "{err}"
        );
    }
}
