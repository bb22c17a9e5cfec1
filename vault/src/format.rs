//! Constants and key layout that define repository format v1.
//!
//! Changing anything in this file changes the on-storage format: chunk
//! boundaries (and with them dedup against existing repositories), object
//! names, or what older readers accept. `vault/FORMAT.md` is the prose form of
//! this file; keep the two in step.

use crate::ids::ObjectId;
use time::OffsetDateTime;

/// Version of the repository layout written in the config object.
pub const REPOSITORY_VERSION: u32 = 1;
/// Newest snapshot manifest version this Lockbox reads and writes. Readers
/// refuse versions they do not know: a newer manifest may reference objects
/// that an older reader would decode wrongly. Version 2 adds delta entries;
/// a manifest without any is still written as version 1
/// ([`MANIFEST_VERSION_FULL`]) so older readers can restore it.
pub const MANIFEST_VERSION: u32 = 2;
/// The version written for manifests whose chunks are all stored full.
pub const MANIFEST_VERSION_FULL: u32 = 1;
/// Version of the attestation document (a drill's or verification's record).
pub const ATTESTATION_VERSION: u32 = 1;

/// FastCDC (2020 variant, normalization level 1) parameters.
///
/// 2 MiB average: at S3 Standard prices a PUT costs about as much as storing
/// 1 MiB for a week, so 512 requests per GiB keeps request cost below storage cost
/// while an edit still rewrites only ~2 MiB. The minimum cuts the tail of tiny
/// chunks; the maximum bounds the memory one chunk can pin in the pipeline.
/// Smallest chunk the chunker cuts, in bytes (512 KiB); only a stream's last chunk may be shorter.
pub const CHUNK_MIN_SIZE: usize = 512 * 1024;
/// Target average chunk size, in bytes (2 MiB).
pub const CHUNK_AVG_SIZE: usize = 2 * 1024 * 1024;
/// Largest chunk the chunker cuts, in bytes (8 MiB); a cut is forced here.
pub const CHUNK_MAX_SIZE: usize = 8 * 1024 * 1024;
/// Chunker name recorded in the config object (`chunker.algorithm`).
pub const CHUNKER_ALGORITHM: &str = "fastcdc-2020";
/// FastCDC normalization level recorded in the config object (`chunker.normalization`).
pub const CHUNKER_NORMALIZATION: u32 = 1;

/// The config object's `hash`: ids are BLAKE3 in keyed mode with the ID key.
pub const HASH_ALGORITHM: &str = "blake3-keyed";
/// The config object's `compression`: an object's plaintext is one zstd frame.
pub const COMPRESSION_ALGORITHM: &str = "zstd";
/// The config object's `encryption`: objects are age v1 files to X25519 recipients.
pub const ENCRYPTION_ALGORITHM: &str = "age-v1-x25519";
/// zstd level for chunk objects; 3 is zstd's default and the peers' setting.
pub const ZSTD_LEVEL: i32 = 3;

/// Default of `repository.delta_max_percent`: a delta is kept only while it is
/// at most this share of the chunk's estimated full stored size.
pub const DELTA_MAX_PERCENT: u32 = 50;
/// zstd level for delta frames (with long-distance matching). Measured on
/// the shared generator's 256 MiB dumps: level 7 makes deltas ~12 % smaller
/// but halves day-2 backup throughput on 2 cores; level 3 keeps day 2 as
/// fast as day 1.
pub const DELTA_ZSTD_LEVEL: i32 = 3;
/// zstd window for delta frames: the base plus the chunk must fit in it so
/// every match into the base is reachable; 2^24 covers two 8 MiB chunks.
pub const DELTA_WINDOW_LOG: u32 = 24;

pub use crate::ids::ID_KEY_CHECK_INPUT;
/// First word of the ID key file in the state directory.
pub const ID_KEY_FILE_TAG: &str = "lockbox-id-key-v1";

/// Document type tags written into JSON objects so a reader can tell them apart.
///
/// `format` of the repository config object.
pub const CONFIG_TAG: &str = "lockbox-repository";
/// `format` of a snapshot manifest.
pub const MANIFEST_TAG: &str = "lockbox-snapshot";
/// `format` of an attestation (drill or verification record).
pub const ATTESTATION_TAG: &str = "lockbox-attestation";

/// Upper bounds a reader enforces on objects fetched from storage, so hostile
/// bytes cannot make it allocate without limit.
///
/// Largest config object a reader accepts, in bytes (1 MiB).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// Largest stored manifest a reader accepts, in bytes (256 MiB).
pub const MAX_MANIFEST_BYTES: u64 = 256 * 1024 * 1024;
/// Largest stored attestation a reader accepts, in bytes (1 MiB).
pub const MAX_ATTESTATION_BYTES: u64 = 1024 * 1024;
/// A stored chunk can only be larger than its plaintext by zstd's worst-case
/// expansion plus age's header and per-64 KiB tags.
pub const MAX_OBJECT_BYTES: u64 = (CHUNK_MAX_SIZE as u64) * 2 + 64 * 1024;

/// Key of the repository config object.
pub const CONFIG_KEY: &str = "config";
/// Key prefix of chunk objects (full and delta); see [`chunk_key`] and [`delta_key`].
pub const CHUNKS_PREFIX: &str = "chunks/";
/// Key prefix of snapshot manifests; see [`snapshot_key`].
pub const SNAPSHOTS_PREFIX: &str = "snapshots/";
/// Key prefix of attestations; see [`attestation_key`].
pub const ATTESTATIONS_PREFIX: &str = "attestations/";
/// Prune's audit records: `audit/prune/<UTC time>-<plan digest, 16 hex>.<phase>`.
pub const PRUNE_AUDIT_PREFIX: &str = "audit/prune/";
/// `format` of a prune plan (the reviewed JSON file `prune plan` writes, not a stored object).
pub const PRUNE_PLAN_TAG: &str = "lockbox-prune-plan";
/// Version of the prune plan document; apply refuses a plan of any other.
pub const PRUNE_PLAN_VERSION: u32 = 1;
/// `format` of a prune audit record (`.intent` and `.done` under [`PRUNE_AUDIT_PREFIX`]).
pub const PRUNE_RECORD_TAG: &str = "lockbox-prune-record";
/// Version of the prune audit record document.
pub const PRUNE_RECORD_VERSION: u32 = 1;
/// Largest prune audit record a reader accepts, in bytes (256 MiB: a `.done`
/// record lists every object version it deleted).
pub const MAX_PRUNE_RECORD_BYTES: u64 = 256 * 1024 * 1024;

/// `chunks/<first two hex digits>/<64 hex digits>`: the fan-out keeps local
/// directories small and spreads S3 request load over key prefixes.
pub fn chunk_key(id: &ObjectId) -> String {
    let hex = id.to_hex();
    format!("{CHUNKS_PREFIX}{}/{hex}", &hex[..2])
}

/// `chunks/<hh>/<id>.<base id>`: chunk `id` stored as a zstd patch against
/// the full chunk `base`. The base is part of the name so that an object at
/// this key can only ever mean one thing (a writer adopting an existing
/// object needs no identity to know what it is), and so that a writer that
/// only knows full chunks (manifest v1) never takes a delta for one.
pub fn delta_key(id: &ObjectId, base: &ObjectId) -> String {
    format!("{}.{}", chunk_key(id), base.to_hex())
}

/// `snapshots/<source>/`: the prefix that lists one source's manifests, oldest first.
pub fn snapshot_prefix(source: &str) -> String {
    format!("{SNAPSHOTS_PREFIX}{source}/")
}

/// `snapshots/<source>/<UTC start time, YYYYMMDDTHHMMSS.ffffffZ>-<manifest id>`:
/// lexicographic order (what S3 LIST returns) is time order per source.
/// Microseconds keep two backups started within one second in order.
pub fn snapshot_key(source: &str, started_at: OffsetDateTime, id: &ObjectId) -> String {
    format!(
        "{}{}-{}",
        snapshot_prefix(source),
        compact_time(started_at),
        id.to_hex()
    )
}

/// Splits a snapshot key into (source, manifest id). Returns `None` for keys
/// that are not snapshot manifests (so stray objects are ignored, not fatal).
pub fn parse_snapshot_key(key: &str) -> Option<(String, ObjectId)> {
    let rest = key.strip_prefix(SNAPSHOTS_PREFIX)?;
    let (source, name) = rest.split_once('/')?;
    let (time, hex) = name.split_once('-')?;
    // YYYYMMDDTHHMMSS.ffffffZ, exactly.
    let t = time.as_bytes();
    let time_ok = t.len() == 23
        && t.iter().enumerate().all(|(i, b)| match i {
            8 => *b == b'T',
            15 => *b == b'.',
            22 => *b == b'Z',
            _ => b.is_ascii_digit(),
        });
    if !valid_source_name(source) || !time_ok {
        return None;
    }
    Some((source.to_string(), ObjectId::from_hex(hex).ok()?))
}

/// `attestations/<source>/<UTC start time of the drill or verification>-<attestation id>`,
/// the same shape as a snapshot key, so listing order is time order per source.
pub fn attestation_key(source: &str, started_at: OffsetDateTime, id: &ObjectId) -> String {
    format!(
        "{ATTESTATIONS_PREFIX}{source}/{}-{}",
        compact_time(started_at),
        id.to_hex()
    )
}

/// Splits an attestation key into (source, attestation id); `None` for
/// anything else under the prefix.
pub fn parse_attestation_key(key: &str) -> Option<(String, ObjectId)> {
    let rest = key.strip_prefix(ATTESTATIONS_PREFIX)?;
    parse_snapshot_key(&format!("{SNAPSHOTS_PREFIX}{rest}"))
}

/// The fixed-width UTC time used in object keys, `YYYYMMDDTHHMMSS.ffffffZ`
/// (microseconds; the input is converted to UTC first).
pub fn compact_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Source names appear in object keys, so they are restricted to characters
/// that are safe in S3 keys and file names. They are not secret.
pub fn valid_source_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_keys_round_trip_and_sort_by_time() {
        let id = ObjectId::from_bytes([7; 32]);
        let early = time::macros::datetime!(2026-01-02 03:04:05.000_007 UTC);
        let late = time::macros::datetime!(2026-01-02 03:04:05.000_008 UTC);
        let k1 = snapshot_key("orders", early, &id);
        let k2 = snapshot_key("orders", late, &ObjectId::from_bytes([1; 32]));
        assert!(k1 < k2);
        assert_eq!(
            k1,
            format!("snapshots/orders/20260102T030405.000007Z-{}", id.to_hex())
        );
        assert_eq!(parse_snapshot_key(&k1), Some(("orders".into(), id)));
        assert_eq!(parse_snapshot_key("snapshots/orders/garbage"), None);
        let nested = format!(
            "snapshots/orders/sub/20260102T030405.000007Z-{}",
            id.to_hex()
        );
        assert_eq!(parse_snapshot_key(&nested), None);
        let no_time = format!("snapshots/orders/x-{}", id.to_hex());
        assert_eq!(parse_snapshot_key(&no_time), None);
    }

    #[test]
    fn source_names_are_key_safe() {
        assert!(valid_source_name("orders-db_1.main"));
        for bad in ["", ".hidden", "a/b", "with space", "ü", &"x".repeat(65)] {
            assert!(!valid_source_name(bad), "{bad:?} accepted");
        }
    }
}
