//! Damage to the repository and wrong keys: each gives its own clear error
//! naming the object, a distinct non-zero exit, and nothing at the target.

use std::path::PathBuf;

use crate::support::{Vault, make_writable, mixed_data};

struct Damaged {
    v: Vault,
    data: Vec<u8>,
    victim: PathBuf,
    victim_id: String,
}

fn setup() -> Damaged {
    let v = Vault::new("");
    let data = mixed_data(12 * 1024 * 1024, 9);
    v.backup_bytes("db", &data);
    let chunks = v.chunk_files();
    assert!(chunks.len() >= 2);
    let victim = chunks[chunks.len() / 2].clone();
    let victim_id = victim.file_name().unwrap().to_string_lossy().into_owned();
    Damaged {
        v,
        data,
        victim,
        victim_id,
    }
}

/// Attempts a restore to a file; returns (exit code, stderr) and checks no
/// output (and no temporary file) was left behind.
fn failed_restore(d: &Damaged) -> (i32, String) {
    let target = d.v.path().join("out.bin");
    let (code, err) = d.v.fails(&[
        "restore",
        "latest",
        "--source",
        "db",
        "--identity",
        d.v.identity.to_str().unwrap(),
        "--output",
        target.to_str().unwrap(),
    ]);
    assert!(
        !target.exists(),
        "a failed restore left output at the target"
    );
    let leftovers: Vec<_> = std::fs::read_dir(d.v.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".lockbox-restore-")
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary restore files left: {leftovers:?}"
    );
    (code, err)
}

#[test]
fn intact_repository_restores() {
    let d = setup();
    assert_eq!(d.v.restore_bytes("db", "latest"), d.data);
}

#[test]
fn flipped_byte_is_named() {
    let d = setup();
    make_writable(&d.victim);
    let mut bytes = std::fs::read(&d.victim).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x01;
    std::fs::write(&d.victim, bytes).unwrap();
    let (code, err) = failed_restore(&d);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains(&d.victim_id), "{err}");
    assert!(err.contains("corrupt") && err.contains("BLAKE3"), "{err}");
}

#[test]
fn truncated_object_is_named() {
    let d = setup();
    make_writable(&d.victim);
    let bytes = std::fs::read(&d.victim).unwrap();
    std::fs::write(&d.victim, &bytes[..bytes.len() / 3]).unwrap();
    let (code, err) = failed_restore(&d);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains(&d.victim_id), "{err}");
    assert!(err.contains("stored size"), "{err}");
}

#[test]
fn missing_object_is_named() {
    let d = setup();
    std::fs::remove_file(&d.victim).unwrap();
    let (code, err) = failed_restore(&d);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&d.victim_id) && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn wrong_identity_is_named() {
    let d = setup();
    let other = d.v.path().join("other-identity.txt");
    d.v.ok(&["keygen", "--output", other.to_str().unwrap()]);
    let target = d.v.path().join("out.bin");
    let (code, err) = d.v.fails(&[
        "restore",
        "latest",
        "--source",
        "db",
        "--identity",
        other.to_str().unwrap(),
        "--output",
        target.to_str().unwrap(),
    ]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("config") && err.contains("identity"), "{err}");
    assert!(!target.exists());
}

#[test]
fn altered_manifest_is_refused() {
    let d = setup();
    let manifest = d.v.manifest_files().pop().unwrap();
    make_writable(&manifest);
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("\"input_bytes\":", "\"input_bytes\": "),
    )
    .unwrap();
    let (code, err) = failed_restore(&d);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("does not match the keyed hash"), "{err}");
}

#[test]
fn stdout_restore_of_damaged_snapshot_exits_non_zero() {
    let d = setup();
    std::fs::remove_file(&d.victim).unwrap();
    let out =
        d.v.cmd()
            .args([
                "restore",
                "latest",
                "--source",
                "db",
                "--identity",
                d.v.identity.to_str().unwrap(),
                "--output",
                "-",
            ])
            .output()
            .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.len() < d.data.len());
}
