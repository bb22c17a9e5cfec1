//! Fuzz target bodies: one function per decoder of bytes Lockbox reads from
//! storage (or from a file it did not write itself), and the seed corpus of
//! valid encodings each one starts from.
//!
//! The cargo-fuzz crate in `vault/fuzz/` calls these, and so does the
//! mutation smoke test `vault/tests/it/fuzz_smoke.rs` that runs in CI without a
//! nightly toolchain. A target returns the decoder's own typed error for
//! input it rejects; a panic (or an out-of-bounds allocation) is a bug.
//!
//! Not a public API: hidden from the docs, changed whenever a decoder is.
//! TODO(prune): a target for the prune plan decoder (`Plan::from_bytes`)
//! once it lands; see `vault/fuzz/README.md`.

use std::str::FromStr;

use time::OffsetDateTime;

use crate::attestation::{Attestation, AttestationError, PublicCheck};
use crate::config::{Config, ConfigError};
use crate::envelope::{self, EnvelopeError, Opener, Sealer};
use crate::format::{self, CHUNK_MAX_SIZE};
use crate::ids::{IdKey, ObjectId};
use crate::keys::{self, Identities, KeyError, Recipients};
use crate::manifest::{ChunkRef, DeltaBase, Manifest, ManifestError, SealedPart};
use crate::prune::plan::{Deletion, ObjectKind, SourcePlan, StateEntry, Verdict};
use crate::prune::{Plan, PlanError};
use crate::repository::{RepoConfig, RepoError};

/// The identity every seed is sealed to, so that mutated inputs reach the
/// decoders behind decryption. A throwaway test key: it protects nothing.
const FUZZ_IDENTITY: &str =
    "AGE-SECRET-KEY-1M2SHUU878S8KGY8HLSQT5M6F70YRN48UCP6ZHT2CAYQJ752U396QESA2UE";
/// The ID key of the seeds (manifests and attestations name themselves by it).
const FUZZ_ID_KEY: [u8; 32] = [0x42; 32];
/// Object key shown in the errors of the key-aware decoders.
pub const FUZZ_KEY_NAME: &str = "snapshots/fuzz/20260101T000000.000000Z-fuzz";

/// The decoders under test, by target name (also the cargo-fuzz names).
pub const TARGETS: &[&str] = &[
    "envelope",
    "delta_frame",
    "manifest",
    "repo_config",
    "attestation",
    "config_toml",
    "id_key_file",
    "prune_plan",
];

fn identities() -> Identities {
    Identities::from_x25519(vec![
        age::x25519::Identity::from_str(FUZZ_IDENTITY).expect("fuzz identity parses"),
    ])
}

fn recipients() -> Recipients {
    let id = age::x25519::Identity::from_str(FUZZ_IDENTITY).expect("fuzz identity parses");
    Recipients::parse(&[id.to_public().to_string()]).expect("fuzz recipient parses")
}

/// The base every `delta_frame` seed is a patch against.
fn delta_base() -> Vec<u8> {
    (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// The error of any target, typed per decoder.
#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Attestation(#[from] AttestationError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The bytes decoded but broke a promise the decoder makes (a bug).
    #[error("decoder broke its contract: {0}")]
    Contract(String),
}

impl FuzzError {
    /// The decoders' own classes; a broken contract is a bug (operational).
    pub fn class(&self) -> crate::error::ErrorClass {
        match self {
            FuzzError::Envelope(e) => e.class(),
            FuzzError::Manifest(e) => e.class(),
            FuzzError::Repo(e) => e.class(),
            FuzzError::Attestation(e) => e.class(),
            FuzzError::Config(e) => e.class(),
            FuzzError::Key(e) => e.class(),
            FuzzError::Plan(e) => e.class(),
            FuzzError::Contract(_) => crate::error::ErrorClass::Operational,
        }
    }
}

/// Runs target `name` on `data`. Panics on an unknown name.
pub fn run(name: &str, data: &[u8]) -> Result<(), FuzzError> {
    match name {
        "envelope" => envelope_object(data),
        "delta_frame" => delta_frame(data),
        "manifest" => manifest(data),
        "repo_config" => repo_config(data),
        "attestation" => attestation(data),
        "config_toml" => config_toml(data),
        "id_key_file" => id_key_file(data),
        "prune_plan" => prune_plan(data),
        other => panic!("no fuzz target {other:?}"),
    }
}

/// What a cargo-fuzz target runs: a rejected input is fine, a broken
/// contract is a crash like a panic.
pub fn fuzz_one(name: &str, data: &[u8]) {
    if let Err(FuzzError::Contract(c)) = run(name, data) {
        panic!("{name}: {c}");
    }
}

/// Writes the seeds of every target to `dir/<target>/seed-<n>` (the corpus
/// layout cargo-fuzz reads).
pub fn write_corpus(dir: &std::path::Path) -> std::io::Result<()> {
    for t in TARGETS {
        let d = dir.join(t);
        std::fs::create_dir_all(&d)?;
        for (i, seed) in seeds(t).iter().enumerate() {
            std::fs::write(d.join(format!("seed-{i}")), seed)?;
        }
    }
    Ok(())
}

/// A stored chunk object: age, then one zstd frame of at most a chunk.
pub fn envelope_object(data: &[u8]) -> Result<(), FuzzError> {
    let plain = Opener::new().open(&identities(), data, CHUNK_MAX_SIZE)?;
    if plain.len() > CHUNK_MAX_SIZE {
        return Err(FuzzError::Contract(format!(
            "{} plaintext bytes past the {CHUNK_MAX_SIZE} limit",
            plain.len()
        )));
    }
    Ok(())
}

/// A delta object's zstd frame (after decryption) against its base.
pub fn delta_frame(data: &[u8]) -> Result<(), FuzzError> {
    let limit = 256 * 1024;
    let plain = envelope::decompress_delta(&delta_base(), data, limit)?;
    if plain.len() > limit {
        return Err(FuzzError::Contract(format!(
            "{} bytes past the {limit} limit",
            plain.len()
        )));
    }
    Ok(())
}

/// A snapshot manifest: the public JSON, then its sealed part.
pub fn manifest(data: &[u8]) -> Result<(), FuzzError> {
    let m = Manifest::parse_unchecked(data, FUZZ_KEY_NAME)?;
    for c in &m.chunks {
        let key = c.key();
        if !key.starts_with(format::CHUNKS_PREFIX) {
            return Err(FuzzError::Contract(format!("chunk key {key:?}")));
        }
        let _ = c.delta_base().map(|b| b.key());
    }
    let sealed = m.unseal(&identities(), FUZZ_KEY_NAME)?;
    if sealed.chunk_lengths.len() != m.chunks.len() {
        return Err(FuzzError::Contract(
            "unseal let a length mismatch by".into(),
        ));
    }
    Ok(())
}

/// The repository's `config` object.
pub fn repo_config(data: &[u8]) -> Result<(), FuzzError> {
    let c = RepoConfig::decode(data)?;
    c.recipients()?;
    c.unseal_id_key(&identities())?;
    Ok(())
}

/// An attestation: the public JSON, then its sealed part.
pub fn attestation(data: &[u8]) -> Result<(), FuzzError> {
    let a = Attestation::parse_unchecked(data, FUZZ_KEY_NAME)?;
    a.unseal(&identities())?;
    Ok(())
}

/// The TOML configuration, then the accessors that combine its values.
pub fn config_toml(data: &[u8]) -> Result<(), FuzzError> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(()); // Config::load reads a String: non-UTF-8 never gets here
    };
    let c = Config::parse(text, "fuzz.toml")?;
    let defaults = c.default_thresholds();
    for s in &c.sources {
        s.thresholds(defaults);
        c.retention_policy(s);
    }
    Ok(())
}

/// The ID key file in the state directory.
pub fn id_key_file(data: &[u8]) -> Result<(), FuzzError> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(()); // read with read_to_string: non-UTF-8 is an I/O error there
    };
    keys::parse_id_key(text, "0123456789abcdef0123456789abcdef", "fuzz/id.key")?;
    Ok(())
}

/// A prune plan file (what `prune --apply` reads back): a plan that decodes
/// must encode again to the same digest, or apply would confirm one plan and
/// run another.
pub fn prune_plan(data: &[u8]) -> Result<(), FuzzError> {
    let plan = Plan::from_bytes(data)?;
    let again = Plan::from_bytes(&plan.to_bytes())
        .map_err(|e| FuzzError::Contract(format!("a decoded plan does not decode again: {e}")))?;
    if again.digest() != plan.digest() {
        return Err(FuzzError::Contract(
            "a decoded plan changed its digest on re-encoding".into(),
        ));
    }
    Ok(())
}

/// A small valid plan: one source, one kept and one removed snapshot, the
/// removed one's manifest and an unreferenced chunk to delete.
fn seed_plan() -> Plan {
    let t = |s: i64| OffsetDateTime::from_unix_timestamp(1_767_225_600 + s).expect("a time");
    let kept_id = ObjectId::from_bytes([1; 32]);
    let gone_id = ObjectId::from_bytes([2; 32]);
    let kept_key = format::snapshot_key("orders", t(3600), &kept_id);
    let gone_key = format::snapshot_key("orders", t(0), &gone_id);
    let verdict = |id: &ObjectId, key: &str, at: i64, keep: bool| Verdict {
        id: id.to_hex(),
        key: key.to_string(),
        trusted_time: t(at),
        claimed_time: t(at),
        suspicious: false,
        retain_until: Some(t(at)),
        keep,
        reasons: if keep {
            vec!["last 1".into()]
        } else {
            Vec::new()
        },
        keep_horizon: None,
    };
    Plan {
        format: format::PRUNE_PLAN_TAG.into(),
        version: format::PRUNE_PLAN_VERSION,
        repository: "0123456789abcdef0123456789abcdef".into(),
        location: "file:///srv/lockbox".into(),
        created_at: t(7200),
        timezone: "UTC".into(),
        grace_hours: 24,
        tolerance_seconds: 900,
        sources: vec![SourcePlan {
            source: "orders".into(),
            policy: crate::retention::Policy {
                keep_last: Some(1),
                ..Default::default()
            },
            snapshots: vec![
                verdict(&kept_id, &kept_key, 3600, true),
                verdict(&gone_id, &gone_key, 0, false),
            ],
        }],
        state: vec![
            StateEntry {
                key: gone_key.clone(),
                versions: vec![Some("v1".into())],
            },
            StateEntry {
                key: kept_key,
                versions: vec![Some("v2".into())],
            },
        ],
        delete: vec![
            Deletion {
                kind: ObjectKind::Manifest,
                key: gone_key,
                version: Some("v1".into()),
                delete_marker: false,
                size: 512,
                last_modified: Some(t(0)),
            },
            Deletion {
                kind: ObjectKind::Chunk,
                key: format!("{}ab/{}", format::CHUNKS_PREFIX, "ab".repeat(32)),
                version: Some("v3".into()),
                delete_marker: false,
                size: 2 << 20,
                last_modified: Some(t(0)),
            },
        ],
        held: Vec::new(),
        extend: Vec::new(),
        invalid: Vec::new(),
    }
}

/// Valid encodings for target `name`: the corpus a fuzzer starts from.
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    match name {
        "envelope" => {
            let mut sealer = Sealer::new(recipients());
            vec![
                sealer.seal(b"").unwrap(),
                sealer
                    .seal(b"COPY orders (id, total) FROM stdin;\n1\t10\n")
                    .unwrap(),
                sealer.seal(&delta_base()).unwrap(),
            ]
        }
        "delta_frame" => {
            let base = delta_base();
            let mut changed = base.clone();
            changed[100..110].copy_from_slice(b"0123456789");
            changed.extend_from_slice(b"appended tail");
            vec![
                envelope::compress_delta(&base, &changed).unwrap(),
                envelope::compress_delta(&base, b"unrelated").unwrap(),
            ]
        }
        "manifest" => vec![sample_manifest(false), sample_manifest(true)],
        "repo_config" => {
            let c = RepoConfig::new(&recipients(), &IdKey::from_bytes(FUZZ_ID_KEY)).unwrap();
            vec![serde_json::to_vec_pretty(&c).unwrap()]
        }
        "attestation" => vec![sample_attestation()],
        "config_toml" => {
            // Edited as a user must: the placeholder recipient is refused.
            let example = include_str!("../../examples/lockbox.toml").replace(
                crate::keys::EXAMPLE_RECIPIENT,
                &recipients().to_strings()[0],
            );
            vec![
                example.as_bytes().to_vec(),
                SMALL_CONFIG.as_bytes().to_vec(),
            ]
        }
        "id_key_file" => vec![
            format!(
                "{} 0123456789abcdef0123456789abcdef {}\n",
                format::ID_KEY_FILE_TAG,
                hex::encode(FUZZ_ID_KEY)
            )
            .into_bytes(),
        ],
        "prune_plan" => vec![seed_plan().to_bytes()],
        other => panic!("no fuzz target {other:?}"),
    }
}

/// A compact config using most sections, so mutations reach each validator.
const SMALL_CONFIG: &str = r#"state_dir = "/var/lib/lockbox"
[repository]
url = "s3://vault/prefix"
recipients = ["age1qdy8fzv7t6d0h5vj4wmgant0f02e8gfzeeefu6nxxq5nh0kv24ts5ewzcy"]
lock_days = 30
lock_slack_days = 7
delta_max_percent = 50
lock_mode = "governance"
[repository.s3]
endpoint = "http://127.0.0.1:9000"
path_style = true
max_in_flight = 8
[daemon]
max_concurrent = 2
timezone = "Europe/Berlin"
listen = "127.0.0.1:9187"
[health]
max_backup_age = "26h"
[retention]
keep_daily = 7
keep_monthly = 12
[[source]]
name = "orders"
kind = "postgres"
url = "postgresql://backup@db:5432/orders"
password_env = "ORDERS_PW"
schedule = "30 2 * * *"
jitter = "5m"
timeout = "2h"
keep_last = 3
[source.drill]
target = "postgresql://drill@drill-db:5432/postgres"
schedule = "0 4 * * 0"
identity = "/etc/lockbox/restore-identity.txt"
[[source.drill.check]]
name = "orders exist"
sql = "SELECT count(*) FROM orders"
min = 1
[[source]]
name = "shop"
kind = "mariadb"
host = "127.0.0.1"
port = 3306
user = "backup"
database = "shop"
password_file = "/etc/lockbox/shop.pw"
[[source]]
name = "app"
kind = "sqlite"
path = "/srv/app.db"
"#;

fn t0() -> OffsetDateTime {
    time::macros::datetime!(2026-01-01 00:00:00 UTC)
}

fn sample_manifest(delta: bool) -> Vec<u8> {
    let lengths = [700_000u64, 1_200_000, 3];
    let mut chunks: Vec<ChunkRef> = (1..=3u8)
        .map(|i| {
            ChunkRef::full(
                ObjectId::from_bytes([i; 32]),
                1000 + i as u64,
                ObjectId::from_bytes([i + 10; 32]),
            )
        })
        .collect();
    if delta {
        chunks[2] = ChunkRef::delta(
            ObjectId::from_bytes([3; 32]),
            DeltaBase {
                id: ObjectId::from_bytes([1; 32]),
                stored_len: 1001,
                stored_hash: ObjectId::from_bytes([11; 32]),
            },
            40,
            ObjectId::from_bytes([23; 32]),
        );
    }
    let part = SealedPart {
        stream_hash: ObjectId::from_bytes([9; 32]),
        chunk_lengths: lengths.to_vec(),
        source_info: serde_json::json!({"tool": "pg_dump 17", "tables": [["orders", 12]]}),
    };
    let m = Manifest {
        format: format::MANIFEST_TAG.into(),
        version: if delta { 2 } else { 1 },
        repository: "0123456789abcdef0123456789abcdef".into(),
        source: "orders".into(),
        kind: "postgres".into(),
        started_at: t0(),
        finished_at: t0() + time::Duration::minutes(3),
        retain_until: t0() + time::Duration::days(30),
        previous: delta.then(|| ObjectId::from_bytes([7; 32])),
        input_bytes: lengths.iter().sum(),
        stored_bytes: 3006,
        added_bytes: 1003,
        lockbox_version: "0.1.0".into(),
        chunks,
        sealed: Manifest::seal(&recipients(), &part).unwrap(),
    };
    m.encode(&IdKey::from_bytes(FUZZ_ID_KEY)).0
}

fn sample_attestation() -> Vec<u8> {
    let mut a = Attestation {
        format: format::ATTESTATION_TAG.into(),
        version: format::ATTESTATION_VERSION,
        repository: "0123456789abcdef0123456789abcdef".into(),
        source: "orders".into(),
        kind: "drill".into(),
        snapshot: ObjectId::from_bytes([3; 32]),
        snapshot_started_at: t0(),
        snapshot_retain_until: t0() + time::Duration::days(30),
        passed: true,
        started_at: t0() + time::Duration::hours(1),
        finished_at: t0() + time::Duration::hours(2),
        restore_seconds: Some(4.5),
        data_age_seconds: 3600.0,
        bytes: 10,
        checks: vec![PublicCheck {
            name: "load".into(),
            passed: true,
        }],
        summary: "passed".into(),
        lockbox_version: "0.1.0".into(),
        host: "drill-host".into(),
        sealed: String::new(),
    };
    a.seal(
        &recipients(),
        &serde_json::json!({"tables": {"orders": 12}, "checks": []}),
    )
    .unwrap();
    a.encode(&IdKey::from_bytes(FUZZ_ID_KEY)).0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every seed is a valid encoding: the fuzzers start past the parsers'
    /// first rejection.
    #[test]
    fn seeds_decode() {
        for t in TARGETS {
            for (i, seed) in seeds(t).iter().enumerate() {
                run(t, seed).unwrap_or_else(|e| panic!("{t} seed #{i}: {e}"));
            }
        }
    }
}
