//! `lockbox prune` end to end: plan, review, apply, against a local vault
//! and the S3 test server (moto).
//!
//! Locks are days long, so a test makes them expire the way an attacker with
//! disk access could not on real Object Lock storage: on the local vault by
//! rewriting the `.retain` files, on moto by shortening the COMPLIANCE
//! retention (moto allows it; S3 does not) and waiting a few seconds. The
//! policy itself, with an injected clock, is tested in `vault/src/prune/tests.rs`.
//!
//! moto does not enforce IAM: "the writer profile cannot delete" is shown by
//! prune refusing to apply without its own profile (here) and by the IAM
//! examples granting the writer no delete action (`tests/it/examples.rs`).

use std::path::{Path, PathBuf};
use std::process::Output;

use lockbox_vault::storage::s3::test_server::TestServer;

use crate::support::{self, Vault, local, mixed_data};

const MIB: usize = 1 << 20;
const POLICY: &str = "[prune]\ngrace_hours = 0\n[retention]\nkeep_last = 1\n";

/// Sets every lock on snapshots and chunks of a local vault to `secs`
/// (Unix time): the past to simulate expiry (see module doc).
fn set_locks(repo: &Path, secs: i64) {
    for prefix in ["snapshots", "chunks"] {
        for object in local::objects(repo, prefix) {
            if local::retain_path(&object).exists() {
                local::set_retain_until(&object, secs);
            }
        }
    }
}

fn expire_locks(repo: &Path) {
    set_locks(repo, 1_000_000_000);
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn plan(v: &Vault, file: &Path) -> serde_json::Value {
    json(&v.ok(&["prune", "--plan", file.to_str().unwrap(), "--json"]))
}

/// Three backups sharing some chunks: (data of each, snapshot ids oldest first).
fn three_backups(v: &Vault) -> Vec<Vec<u8>> {
    let d1 = mixed_data(4 * MIB, 1);
    let mut d2 = d1[..2 * MIB].to_vec();
    d2.extend(mixed_data(2 * MIB, 2));
    let mut d3 = d2[..3 * MIB].to_vec();
    d3.extend(mixed_data(MIB, 3));
    for d in [&d1, &d2, &d3] {
        v.backup_bytes("db", d);
    }
    vec![d1, d2, d3]
}

#[test]
fn plan_then_apply_on_a_local_vault() {
    let v = Vault::new(POLICY);
    let data = three_backups(&v);
    let chunks_before = v.chunk_files().len();
    let file = v.path().join("plan.json");

    // Still locked: the plan keeps everything and deletes nothing.
    let p = plan(&v, &file);
    assert_eq!(p["snapshots_removed"], 0, "{p:#}");
    assert_eq!(p["versions_to_delete"], 0);

    expire_locks(&v.repo());
    let p = plan(&v, &file);
    assert_eq!(p["snapshots_kept"], 1, "{p:#}");
    assert_eq!(p["snapshots_removed"], 2);
    let digest = p["digest"].as_str().unwrap().to_string();
    let verdicts = p["sources"][0]["snapshots"].as_array().unwrap();
    assert_eq!(verdicts[0]["reasons"][0], "newest of source");
    for v in verdicts {
        assert!(v["trusted_time"].is_string() && v["claimed_time"].is_string());
        assert_eq!(v["suspicious"], false);
    }
    // The human summary names the digest and how to apply.
    let human =
        String::from_utf8(v.ok(&["prune", "--plan", file.to_str().unwrap()]).stdout).unwrap();
    assert!(
        human.contains("REMOVE") && human.contains("--confirm"),
        "{human}"
    );
    let digest_now = human
        .lines()
        .find_map(|l| l.strip_prefix("digest: "))
        .unwrap()
        .to_string();
    let f = file.to_str().unwrap();

    // A wrong digest, or an altered plan, is a usage error; nothing goes.
    // The JSON run's digest belongs to the plan the human run replaced.
    assert_ne!(digest, digest_now);
    let (code, err) = v.fails(&["prune", "--apply", f, "--confirm", &digest]);
    assert_eq!(code, 2, "{err}");
    let (code, err) = v.fails(&["prune", "--apply", f, "--confirm", &"0".repeat(64)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("digest"), "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    let altered = file.with_extension("altered.json");
    std::fs::write(
        &altered,
        text.replacen("\"keep\": false", "\"keep\": true", 1),
    )
    .unwrap();
    let (code, err) = v.fails(&[
        "prune",
        "--apply",
        altered.to_str().unwrap(),
        "--confirm",
        &digest_now,
    ]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(v.manifest_files().len(), 3);

    let out = v.ok(&["prune", "--apply", f, "--confirm", &digest_now, "--json"]);
    let report = json(&out);
    assert_eq!(
        report["snapshots_deleted"].as_array().unwrap().len(),
        2,
        "{report:#}"
    );
    assert!(report["refused"].as_array().unwrap().is_empty());
    assert_eq!(v.manifest_files().len(), 1);
    let chunks_after = v.chunk_files().len();
    assert!(
        chunks_after < chunks_before,
        "{chunks_after} of {chunks_before}"
    );
    // What is left restores byte for byte, and verify finds no chain gap
    // (with the kept objects' locks as they were before the simulation).
    set_locks(
        &v.repo(),
        time::OffsetDateTime::now_utc().unix_timestamp() + 30 * 86400,
    );
    assert!(
        v.restore_bytes("db", "latest") == data[2],
        "restore after prune differs"
    );
    let out = v.ok(&["verify", "--read-data", "--json"]);
    let verify = json(&out);
    assert_eq!(
        verify["problems"].as_array().unwrap().len(),
        0,
        "{verify:#}"
    );
    assert_eq!(
        verify["warnings"].as_array().unwrap().len(),
        0,
        "{verify:#}"
    );
    // Status shows the prune (from the catalog, synced from the audit record).
    let status = json(&v.ok(&["status", "--json"]));
    assert_eq!(status["last_prune"]["snapshots_deleted"], 2, "{status:#}");
    let table = String::from_utf8(v.ok(&["status"]).stdout).unwrap();
    assert!(table.contains("last prune:"), "{table}");
    // The audit records are locked objects in the repository.
    let audit: Vec<PathBuf> = local::objects(&v.repo(), "audit/prune");
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(
        audit
            .iter()
            .all(|p| lockbox_vault::storage::local::is_read_only(p))
    );
}

#[test]
fn the_newest_verified_snapshot_survives_keep_last_1() {
    let v = Vault::new(POLICY);
    three_backups(&v);
    let snaps = json(&v.ok(&["snapshots", "--json", "--source", "db"]));
    let oldest = snaps[0]["id"].as_str().unwrap().to_string();
    v.ok(&["verify", "--read-data", "--snapshot", &oldest]);
    expire_locks(&v.repo());
    let p = plan(&v, &v.path().join("plan.json"));
    let verdicts = p["sources"][0]["snapshots"].as_array().unwrap();
    let oldest_v = verdicts
        .iter()
        .find(|s| s["id"] == oldest.as_str())
        .unwrap();
    assert_eq!(oldest_v["keep"], true, "{p:#}");
    assert_eq!(oldest_v["reasons"][0], "newest verified of source");
    assert_eq!(p["snapshots_removed"], 1);
}

fn run_with(v: &Vault, config: &Path, args: &[&str]) -> Output {
    crate::support::lockbox()
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(v.env.iter().map(|(k, val)| (k, val)))
        .output()
        .unwrap()
}

/// Shortens every lock under `vault/snapshots` and `vault/chunks` to a
/// couple of seconds from now (moto permits it; see the module doc).
fn expire_s3_locks(s: &TestServer, bucket: &str) {
    use aws_sdk_s3::primitives::DateTime;
    use aws_sdk_s3::types::{ObjectLockRetention, ObjectLockRetentionMode};
    let c = s.admin.client();
    let list = s
        .admin
        .block_on(
            c.list_object_versions()
                .bucket(bucket)
                .prefix("vault/")
                .send(),
        )
        .unwrap();
    let until = time::OffsetDateTime::now_utc().unix_timestamp() + 2;
    for v in list.versions() {
        let key = v.key().unwrap();
        if !(key.starts_with("vault/chunks/") || key.starts_with("vault/snapshots/")) {
            continue;
        }
        s.admin
            .block_on(
                c.put_object_retention()
                    .bucket(bucket)
                    .key(key)
                    .version_id(v.version_id().unwrap())
                    .retention(
                        ObjectLockRetention::builder()
                            .mode(ObjectLockRetentionMode::Compliance)
                            .retain_until_date(DateTime::from_secs(until))
                            .build(),
                    )
                    .send(),
            )
            .unwrap();
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
}

#[test]
fn s3_prune_needs_its_own_profile_and_deletes_exact_versions() {
    let Some(s) = support::s3_server() else {
        return;
    };
    let bucket = s.bucket(true);
    let mut v = Vault::s3_with(&s, &bucket, |c| c.s3_profile("writer").raw(POLICY));
    // Both profiles exist for the SDK; moto accepts any credentials.
    let creds = v.path().join("aws-credentials");
    std::fs::write(
        &creds,
        "[writer]\naws_access_key_id = test\naws_secret_access_key = test\n\
         [pruner]\naws_access_key_id = test\naws_secret_access_key = test\n",
    )
    .unwrap();
    for (k, val) in v.env.iter_mut() {
        if k == "AWS_SHARED_CREDENTIALS_FILE" {
            *val = creds.display().to_string();
        }
    }
    v.ok(&["init"]);
    let d1 = mixed_data(3 * MIB, 11);
    let d2 = mixed_data(3 * MIB, 12);
    v.backup_bytes("db", &d1);
    // moto's LastModified has one-second resolution: two manifests stored in
    // the same second tie, and the policy then orders them by id.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    v.backup_bytes("db", &d2);
    expire_s3_locks(&s, &bucket);

    let file = v.path().join("plan.json");
    let p = plan(&v, &file);
    assert_eq!(p["snapshots_removed"], 1, "{p:#}");
    let digest = p["digest"].as_str().unwrap().to_string();
    assert!(
        p["delete"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["version"].is_string()),
        "S3 plans name version ids: {p:#}"
    );
    let f = file.to_str().unwrap();

    // No [prune] profile, or the writer's: refused before any request.
    let (code, err) = v.fails(&["prune", "--apply", f, "--confirm", &digest]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("prune.profile"), "{err}");
    let same = v.path().join("same.toml");
    std::fs::write(
        &same,
        std::fs::read_to_string(&v.config)
            .unwrap()
            .replace("[prune]\n", "[prune]\nprofile = \"writer\"\n"),
    )
    .unwrap();
    let out = run_with(&v, &same, &["prune", "--apply", f, "--confirm", &digest]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let own = v.path().join("pruner.toml");
    std::fs::write(
        &own,
        std::fs::read_to_string(&v.config)
            .unwrap()
            .replace("[prune]\n", "[prune]\nprofile = \"pruner\"\n"),
    )
    .unwrap();
    let out = run_with(
        &v,
        &own,
        &["prune", "--apply", f, "--confirm", &digest, "--json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    assert_eq!(
        report["snapshots_deleted"].as_array().unwrap().len(),
        1,
        "{report:#}"
    );
    // Exactly the planned versions are gone, and no delete marker was left.
    let c = s.admin.client();
    let list = s
        .admin
        .block_on(
            c.list_object_versions()
                .bucket(&bucket)
                .prefix("vault/")
                .send(),
        )
        .unwrap();
    let present: Vec<(String, String)> = list
        .versions()
        .iter()
        .map(|v| {
            (
                v.key().unwrap().to_string(),
                v.version_id().unwrap().to_string(),
            )
        })
        .collect();
    for d in p["delete"].as_array().unwrap() {
        let gone = (
            format!("vault/{}", d["key"].as_str().unwrap()),
            d["version"].as_str().unwrap().to_string(),
        );
        assert!(!present.contains(&gone), "{gone:?} survived");
    }
    assert!(
        list.delete_markers().is_empty(),
        "prune must not leave delete markers"
    );
    assert!(
        present
            .iter()
            .any(|(k, _)| k.starts_with("vault/audit/prune/"))
    );
    assert!(
        v.restore_bytes("db", "latest") == d2,
        "restore after prune differs"
    );
}

/// A manifest whose claimed time is far from when storage received it is a
/// `suspicious_time` warning in verify (exit 0) and flagged in the plan.
#[test]
fn forged_claimed_times_are_flagged_by_verify_and_the_plan() {
    let v = Vault::new(POLICY);
    v.backup_bytes("db", &mixed_data(MIB, 7));
    // Storage "received" it two hours after it claims it finished: as if the
    // writer's clock ran two hours slow.
    let manifest = &v.manifest_files()[0];
    let f = std::fs::File::open(manifest).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(7200))
        .unwrap();
    let out = v.ok(&["verify", "--json"]);
    let report = json(&out);
    let warnings = report["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{report:#}");
    assert_eq!(warnings[0]["kind"], "suspicious_time");
    assert!(report["problems"].as_array().unwrap().is_empty());
    let p = plan(&v, &v.path().join("plan.json"));
    assert_eq!(p["sources"][0]["snapshots"][0]["suspicious"], true, "{p:#}");
}

/// Another host backs up between plan and apply, reusing every chunk of the
/// snapshot the plan removes: apply deletes the old manifest but keeps every
/// chunk the new snapshot needs, and it restores byte for byte.
#[test]
fn a_backup_between_plan_and_apply_keeps_every_chunk_it_needs() {
    let v = Vault::new(POLICY);
    let d1 = mixed_data(4 * MIB, 21);
    let d2 = mixed_data(4 * MIB, 22);
    v.backup_bytes("db", &d1);
    v.backup_bytes("db", &d2);
    expire_locks(&v.repo());
    let file = v.path().join("plan.json");
    let p = plan(&v, &file);
    assert_eq!(p["snapshots_removed"], 1, "{p:#}");
    assert!(
        p["delete"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["kind"] == "chunk"),
        "the plan deletes d1's chunks: {p:#}"
    );
    let digest = p["digest"].as_str().unwrap().to_string();

    // A second host (its own, empty catalog) backs up d1 again.
    let (cfg2, state2) = v.other_host("state2");
    std::fs::create_dir(&state2).unwrap();
    std::fs::copy(v.state().join("id.key"), state2.join("id.key")).unwrap();
    let input = v.path().join("d1.bin");
    std::fs::write(&input, &d1).unwrap();
    let out = crate::support::lockbox()
        .arg("--config")
        .arg(&cfg2)
        .args(["backup", "--stdin", "db", "--json"])
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let report = json(&v.ok(&[
        "prune",
        "--apply",
        file.to_str().unwrap(),
        "--confirm",
        &digest,
        "--json",
    ]));
    assert_eq!(
        report["snapshots_deleted"].as_array().unwrap().len(),
        1,
        "{report:#}"
    );
    assert!(
        report["objects_deleted"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| !o["key"].as_str().unwrap().starts_with("chunks/")),
        "a chunk the new snapshot needs was deleted: {report:#}"
    );
    assert!(
        v.restore_bytes("db", "latest") == d1,
        "the racing snapshot does not restore"
    );
    set_locks(
        &v.repo(),
        time::OffsetDateTime::now_utc().unix_timestamp() + 30 * 86400,
    );
    let verify = json(&v.ok(&["verify", "--read-data", "--json"]));
    assert!(
        verify["problems"].as_array().unwrap().is_empty(),
        "{verify:#}"
    );
}
