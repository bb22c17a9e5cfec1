//! Delta chunks: a changed chunk stored as a zstd patch against a similar
//! full chunk of the previous backup. Round trips are byte-identical, the
//! base is locked as long as every snapshot whose deltas need it, damage to
//! a base is named as such, and `verify` finds a missing base.

use std::path::{Path, PathBuf};

use lockbox_vault::storage::s3::test_server::ServerKind;
use serde_json::Value;

use crate::support::{self, Vault, local, make_writable, mixed_data};

lockbox_vault::on_each_s3_server!(
    on_s3_every_base_is_locked_as_long_as_each_snapshot_whose_deltas_use_it
);

const MIB: usize = 1024 * 1024;

/// `data` with one byte changed every `every` bytes: every chunk changes, as
/// with scattered row updates, but each only a little.
fn scattered_edits(data: &[u8], every: usize, salt: u8) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut i = every / 2;
    while i < out.len() {
        out[i] = out[i].wrapping_add(1 + salt);
        i += every;
    }
    out
}

fn manifest(v: &Vault, snapshot: &str) -> Value {
    let path = manifest_path(v, snapshot);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn manifest_path(v: &Vault, snapshot: &str) -> PathBuf {
    v.manifest_files()
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(snapshot))
        .expect("manifest file")
}

/// (delta id, base id) of every delta entry.
fn deltas(m: &Value) -> Vec<(String, String)> {
    m["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.get("base").is_some())
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["base"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn chunk_path(v: &Vault, id: &str) -> PathBuf {
    v.repo().join("chunks").join(&id[..2]).join(id)
}

fn delta_path(v: &Vault, id: &str, base: &str) -> PathBuf {
    v.repo()
        .join("chunks")
        .join(&id[..2])
        .join(format!("{id}.{base}"))
}

/// The local backend's retain-until of the object at `path`, Unix seconds.
fn retain(path: &Path) -> i64 {
    local::retain_until(path)
}

fn snapshot_retain(m: &Value) -> i64 {
    time::OffsetDateTime::parse(
        m["retain_until"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp()
}

fn snap_id(summary: &Value) -> String {
    summary["snapshot"].as_str().unwrap().to_string()
}

#[test]
fn deltas_round_trip_and_compose_with_reuse_and_extension() {
    // No slack: every backup must extend the locks of what it reuses, so the
    // extension path for deltas and their bases is exercised each time.
    let v = Vault::new("lock_slack_days = 0\n");
    let day1 = mixed_data(12 * MIB, 81);
    let s1 = v.backup_bytes("db", &day1);
    assert_eq!(s1["delta_chunks"], 0);
    let day2 = scattered_edits(&day1, 64 * 1024, 0);
    let s2 = v.backup_bytes("db", &day2);
    let full = s1["added_bytes"].as_u64().unwrap();
    let added = s2["added_bytes"].as_u64().unwrap();
    let n = s2["chunks"].as_u64().unwrap();
    assert!(n >= 4, "{s2}");
    assert_eq!(
        s2["delta_chunks"].as_u64().unwrap(),
        n,
        "every chunk changed a little: {s2}"
    );
    assert!(
        added * 10 < full,
        "day 2 added {added} bytes, a full copy is {full}: deltas should cost far less"
    );
    let m2 = manifest(&v, &snap_id(&s2));
    assert_eq!(m2["version"], 2);
    assert_eq!(manifest(&v, &snap_id(&s1))["version"], 1);
    for (id, base) in deltas(&m2) {
        assert!(delta_path(&v, &id, &base).exists());
        assert!(!chunk_path(&v, &id).exists(), "a delta has its own key");
        assert!(chunk_path(&v, &base).exists());
    }

    assert_eq!(v.restore_bytes("db", &snap_id(&s2)), day2);
    assert_eq!(v.restore_bytes("db", &snap_id(&s1)), day1);

    // Day 3 is day 2 again: the deltas are reused by id, and they and their
    // bases are extended to the new snapshot's lock.
    let s3 = v.backup_bytes("db", &day2);
    assert_eq!(s3["added_bytes"], 0, "{s3}");
    assert_eq!(s3["delta_chunks"], s2["delta_chunks"]);
    // Day 4 is day 1 again: the bases are reused as full chunks.
    let s4 = v.backup_bytes("db", &day1);
    assert_eq!(s4["added_bytes"], 0, "{s4}");
    assert_eq!(s4["delta_chunks"], 0);
    // Day 5 changes day 2 again: new deltas against the same bases (depth 1:
    // never against a delta).
    let day5 = scattered_edits(&day2, 96 * 1024, 3);
    let s5 = v.backup_bytes("db", &day5);
    assert!(s5["delta_chunks"].as_u64().unwrap() > 0, "{s5}");
    let m5 = manifest(&v, &snap_id(&s5));
    let full_ids: Vec<String> = manifest(&v, &snap_id(&s1))["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    for (_, base) in deltas(&m5) {
        assert!(
            full_ids.contains(&base),
            "base {base} is not a day-1 full chunk"
        );
    }

    for (s, data) in [(&s3, &day2), (&s4, &day1), (&s5, &day5), (&s2, &day2)] {
        assert_eq!(&v.restore_bytes("db", &snap_id(s)), data);
    }
    // The catalog is a cache: rebuilt from the repository, it still knows
    // the deltas and their bases, so day 2 again stores nothing.
    std::fs::remove_file(v.state().join("catalog.sqlite")).unwrap();
    v.ok(&["catalog", "rebuild"]);
    let s6 = v.backup_bytes("db", &day2);
    assert_eq!(s6["added_bytes"], 0, "{s6}");
    assert_eq!(s6["delta_chunks"], s2["delta_chunks"]);

    let m3 = manifest(&v, &snap_id(&s3));
    let need = snapshot_retain(&m3);
    for (id, base) in deltas(&m3) {
        assert!(retain(&delta_path(&v, &id, &base)) >= need);
        assert!(retain(&chunk_path(&v, &base)) >= need);
    }
}

#[test]
fn every_base_is_locked_as_long_as_each_snapshot_whose_deltas_use_it() {
    let v = Vault::new("lock_slack_days = 0\n");
    let day1 = mixed_data(8 * MIB, 5);
    let mut snaps = vec![snap_id(&v.backup_bytes("db", &day1))];
    let mut data = day1;
    for day in 0..3u8 {
        data = scattered_edits(&data, 48 * 1024 + usize::from(day) * 4096, day);
        snaps.push(snap_id(&v.backup_bytes("db", &data)));
    }
    let mut checked = 0;
    for s in &snaps {
        let m = manifest(&v, s);
        let need = snapshot_retain(&m);
        assert!(retain(&manifest_path(&v, s)) >= need);
        for (id, base) in deltas(&m) {
            let base_until = retain(&chunk_path(&v, &base));
            assert!(
                base_until >= need,
                "base {base} of a delta in snapshot {s} is locked until {base_until}, the snapshot until {need}"
            );
            assert!(retain(&delta_path(&v, &id, &base)) >= need);
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} delta entries");
}

#[test]
fn a_damaged_base_fails_restore_naming_the_base_and_verify_finds_a_missing_one() {
    let v = Vault::new("");
    let day1 = mixed_data(8 * MIB, 17);
    v.backup_bytes("db", &day1);
    let day2 = scattered_edits(&day1, 64 * 1024, 1);
    let s2 = v.backup_bytes("db", &day2);
    let m2 = manifest(&v, &snap_id(&s2));
    let (_, base) = deltas(&m2).into_iter().next().expect("a delta entry");
    let base_file = chunk_path(&v, &base);
    make_writable(&base_file);
    let mut bytes = std::fs::read(&base_file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&base_file, &bytes).unwrap();

    let target = v.path().join("out.bin");
    let (code, err) = v.fails(&[
        "restore",
        &snap_id(&s2),
        "--source",
        "db",
        "--identity",
        v.identity.to_str().unwrap(),
        "--output",
        target.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "integrity failure exit code: {err}");
    let base_key = format!("chunks/{}/{base}", &base[..2]);
    assert!(
        err.contains(&format!("{base_key}, the base of ")),
        "error does not name the base: {err}"
    );
    assert!(!target.exists());

    // Gone entirely: verify (no identity needed) names the missing base.
    std::fs::remove_file(&base_file).unwrap();
    let report = verify(&v);
    let missing: Vec<&Value> = report
        .iter()
        .filter(|p| p["kind"] == "missing_object")
        .collect();
    assert!(
        missing.iter().any(|p| p["object"] == base_key.as_str()),
        "verify did not report the missing base {base_key}: {report:?}"
    );
}

#[test]
fn deltas_off_keeps_version_1_manifests_and_full_chunks() {
    let v = Vault::new("delta_max_percent = 0\n");
    let day1 = mixed_data(6 * MIB, 3);
    v.backup_bytes("db", &day1);
    let day2 = scattered_edits(&day1, 64 * 1024, 0);
    let s2 = v.backup_bytes("db", &day2);
    assert_eq!(s2["delta_chunks"], 0);
    assert_eq!(manifest(&v, &snap_id(&s2))["version"], 1);
    assert!(!v.state().join("base-cache").exists());
    assert_eq!(v.restore_bytes("db", &snap_id(&s2)), day2);
}

/// Runs `lockbox verify --json` (no identity, as on the backup host) and
/// returns its problems.
fn verify(v: &Vault) -> Vec<Value> {
    let out = v.cmd().args(["verify", "--json"]).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    report["problems"].as_array().unwrap().clone()
}

fn on_s3_every_base_is_locked_as_long_as_each_snapshot_whose_deltas_use_it(kind: ServerKind) {
    let Some(s) = support::s3_server_kind(kind) else {
        return;
    };
    let bucket = s.bucket(true);
    let v = Vault::s3(&s, &bucket, "lock_slack_days = 0\n");
    v.ok(&["init"]);
    let c = s.admin.client();
    let get = |key: &str| -> Vec<u8> {
        let out = s
            .admin
            .block_on(
                c.get_object()
                    .bucket(&bucket)
                    .key(format!("vault/{key}"))
                    .send(),
            )
            .unwrap();
        s.admin
            .block_on(out.body.collect())
            .unwrap()
            .into_bytes()
            .to_vec()
    };
    let locked_until = |key: &str| -> i64 {
        let h = s
            .admin
            .block_on(
                c.head_object()
                    .bucket(&bucket)
                    .key(format!("vault/{key}"))
                    .send(),
            )
            .unwrap_or_else(|e| panic!("{key}: {e:?}"));
        h.object_lock_retain_until_date()
            .unwrap_or_else(|| panic!("{key} is not locked"))
            .secs()
    };

    let mut data = mixed_data(6 * MIB, 44);
    let mut summaries = vec![v.backup_bytes("db", &data)];
    for day in 0..2u8 {
        data = scattered_edits(&data, 56 * 1024, day);
        summaries.push(v.backup_bytes("db", &data));
    }
    assert_eq!(v.restore_bytes("db", &snap_id(&summaries[2])), data);
    let mut checked = 0;
    for summary in &summaries {
        let m: Value = serde_json::from_slice(&get(summary["key"].as_str().unwrap())).unwrap();
        let need = snapshot_retain(&m);
        for (id, base) in deltas(&m) {
            let base_key = format!("chunks/{}/{base}", &base[..2]);
            let delta_key = format!("chunks/{}/{id}.{base}", &id[..2]);
            assert!(
                locked_until(&base_key) >= need,
                "base {base_key} is locked for less than snapshot {}",
                summary["short_id"]
            );
            assert!(locked_until(&delta_key) >= need);
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} delta entries");
}
