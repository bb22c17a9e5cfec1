//! Round trips, dedup, and sources, through the real binary and a local vault.

use crate::support::{self, Vault, mixed_data};

#[test]
fn round_trip_is_byte_identical_for_empty_tiny_and_large_inputs() {
    let v = Vault::new("");
    let large = mixed_data(100 * 1024 * 1024, 1);
    for (name, data) in [("empty", Vec::new()), ("one", vec![0x42]), ("large", large)] {
        let summary = v.backup_bytes(name, &data);
        assert_eq!(summary["input_bytes"], data.len() as u64, "{name}");
        let back = v.restore_bytes(name, "latest");
        assert!(
            back == data,
            "{name}: restored bytes differ ({} vs {})",
            back.len(),
            data.len()
        );
    }
    // Restoring to stdout gives the same bytes.
    let out = v.ok(&v.restore_args("latest", "one", "-"));
    assert_eq!(out.stdout, vec![0x42]);
}

/// `-o -` with standard output redirected to a regular file: the bytes come
/// out exactly, after whatever the file already held, with the file
/// position left at their end, also when the file is opened for appending.
#[test]
fn restore_to_stdout_redirected_into_a_file() {
    use std::io::{Seek, Write};
    let v = Vault::new("");
    let data = mixed_data(30 * 1024 * 1024, 7);
    v.backup_bytes("db", &data);
    let args = v.restore_args("latest", "db", "-");

    let path = v.path().join("stdout.bin");
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(b"before\n").unwrap();
    let status = v
        .cmd()
        .args(args)
        .stdout(file.try_clone().unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    // The shared file position moved past the restored bytes.
    assert_eq!(
        file.stream_position().unwrap(),
        (b"before\n".len() + data.len()) as u64
    );
    file.write_all(b"after\n").unwrap();
    drop(file);
    let got = std::fs::read(&path).unwrap();
    assert!(got.starts_with(b"before\n") && got.ends_with(b"after\n"));
    assert!(got[7..got.len() - 6] == data[..], "restored bytes differ");

    let appended = v.path().join("appended.bin");
    std::fs::write(&appended, b"x").unwrap();
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(&appended)
        .unwrap();
    let status = v.cmd().args(args).stdout(file).status().unwrap();
    assert!(status.success());
    let got = std::fs::read(&appended).unwrap();
    assert!(
        got[0] == b'x' && got[1..] == data[..],
        "appended restore differs"
    );
}

#[test]
fn second_backup_of_same_input_stores_nothing_new() {
    let v = Vault::new("");
    let data = mixed_data(24 * 1024 * 1024, 2);
    let first = v.backup_bytes("db", &data);
    assert!(first["new_chunks"].as_u64().unwrap() >= 3);
    let chunks_before = v.chunk_files().len();
    let second = v.backup_bytes("db", &data);
    assert_eq!(second["new_chunks"], 0);
    assert_eq!(second["added_bytes"], 0);
    assert_eq!(second["reused_chunks"], first["chunks"]);
    assert_eq!(
        v.chunk_files().len(),
        chunks_before,
        "a chunk object was written again"
    );
    // The two snapshots form a chain.
    let snaps = snapshots_json(&v);
    assert_eq!(snaps.len(), 2);
    assert_eq!(snaps[1]["previous"], snaps[0]["id"]);
    assert_eq!(v.restore_bytes("db", "latest"), data);
}

/// Bound: one insertion disturbs the chunk it lands in and at most the next
/// one (until boundaries resynchronise), so at most 2 new chunks.
#[test]
fn insertion_in_the_middle_stores_only_a_few_new_chunks() {
    let v = Vault::new("");
    let data = mixed_data(64 * 1024 * 1024, 3);
    let first = v.backup_bytes("db", &data);
    let mut edited = data.clone();
    let mid = data.len() / 2;
    edited.splice(
        mid..mid,
        b"INSERT INTO orders VALUES (42, 'a new row');\n"
            .iter()
            .copied(),
    );
    let second = v.backup_bytes("db", &edited);
    let new = second["new_chunks"].as_u64().unwrap();
    assert!(
        new <= 2,
        "{new} new chunks for one insertion (of {})",
        first["chunks"]
    );
    assert!(second["added_bytes"].as_u64().unwrap() * 8 < first["added_bytes"].as_u64().unwrap());
    assert_eq!(v.restore_bytes("db", "latest"), edited);
    // The older snapshot still restores to the original.
    let old = snapshots_json(&v)[0]["short_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(v.restore_bytes("db", &old), data);
}

#[test]
fn command_source_is_backed_up_and_a_failing_command_makes_no_snapshot() {
    let v = Vault::new(
        r#"
[[source]]
name = "good"
kind = "command"
command = ["sh", "-c", "printf 'header\n'; head -c 3000000 /dev/zero | tr '\\0' 'x'; printf 'END\n'"]

[[source]]
name = "bad"
kind = "command"
command = ["sh", "-c", "head -c 5000000 /dev/zero; echo 'pg_dump: error: connection refused' >&2; exit 3"]

[[source]]
name = "missing"
kind = "command"
command = ["/nonexistent/pg_dump"]
"#,
    );
    v.ok(&["backup", "good"]);
    let back = v.restore_bytes("good", "latest");
    assert!(back.starts_with(b"header\n") && back.ends_with(b"END\n"));
    assert_eq!(back.len(), 7 + 3_000_000 + 4);

    let (code, err) = v.fails(&["backup", "bad"]);
    assert_eq!(code, 1);
    assert!(err.contains("exit status 3"), "{err}");
    assert!(
        err.contains("connection refused"),
        "stderr tail missing: {err}"
    );
    assert!(err.contains("no snapshot was written"), "{err}");
    let (_, err) = v.fails(&["backup", "missing"]);
    assert!(err.contains("not found"), "{err}");
    let (code, err) = v.fails(&["backup", "nosuch"]);
    assert_eq!(code, 2, "an unknown source is a usage error: {err}");
    assert!(err.contains("configured: good, bad, missing"), "{err}");

    let snaps = snapshots_json(&v);
    assert_eq!(
        snaps.len(),
        1,
        "a failed source produced a snapshot: {snaps:?}"
    );
    assert_eq!(snaps[0]["source"], "good");
}

#[test]
fn sqlite_source_uses_online_backup_and_restores_a_working_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB);",
    )
    .unwrap();
    for i in 0..5000 {
        conn.execute(
            "INSERT INTO t(v, b) VALUES (?1, ?2)",
            rusqlite::params![format!("row {i} ✓"), vec![i as u8; 100]],
        )
        .unwrap();
    }
    // The connection stays open (WAL not checkpointed): the backup API must
    // still capture every committed row.
    let v = Vault::new(&format!(
        "[[source]]\nname = \"app\"\nkind = \"sqlite\"\npath = \"{}\"\n",
        db.display()
    ));
    v.ok(&["backup", "app"]);
    let restored = v.path().join("app-restored.db");
    v.ok(&v.restore_args("latest", "app", restored.to_str().unwrap()));
    let back = rusqlite::Connection::open(&restored).unwrap();
    let n: i64 = back
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 5000);
    let ok: String = back
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    // The private temporary copy is gone.
    let leftovers: Vec<_> = std::fs::read_dir(v.state().join("tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "temporary copies left: {leftovers:?}");
}

#[test]
fn restore_refuses_to_clobber_an_existing_file_without_force() {
    let v = Vault::new("");
    v.backup_bytes("db", b"new contents");
    let target = v.path().join("existing.txt");
    std::fs::write(&target, b"precious").unwrap();
    let args = v.restore_args("latest", "db", target.to_str().unwrap());
    let (_, err) = v.fails(&args);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    let mut forced = args.to_vec();
    forced.push("--force");
    v.ok(&forced);
    assert_eq!(std::fs::read(&target).unwrap(), b"new contents");
}

#[test]
fn catalog_rebuild_after_deleting_it_gives_the_same_listing() {
    let v = Vault::new("");
    v.backup_bytes("a", &mixed_data(5 * 1024 * 1024, 5));
    v.backup_bytes("b", b"small");
    v.backup_bytes("a", &mixed_data(6 * 1024 * 1024, 5));
    let before = v.ok(&["snapshots", "--json"]).stdout;
    for f in ["catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm"] {
        let _ = std::fs::remove_file(v.state().join(f));
    }
    v.ok(&["catalog", "rebuild"]);
    let after = v.ok(&["snapshots", "--json"]).stdout;
    assert_eq!(
        String::from_utf8_lossy(&before),
        String::from_utf8_lossy(&after)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&after).unwrap();
    assert_eq!(rows.len(), 3);
    // And the rebuilt catalog still lets backup dedup without re-uploading.
    let s = v.backup_bytes("a", &mixed_data(6 * 1024 * 1024, 5));
    assert_eq!(s["new_chunks"], 0);
}

#[test]
fn snapshots_written_by_another_host_appear_after_sync() {
    // Two state directories (two hosts) sharing one vault and ID key.
    let v = Vault::new("");
    v.backup_bytes("a", b"from host one");
    let (cfg2, other_state) = v.other_host("state2");
    std::fs::create_dir(&other_state).unwrap();
    std::fs::copy(v.state().join("id.key"), other_state.join("id.key")).unwrap();
    let out = support::lockbox()
        .args(["--config", cfg2.to_str().unwrap(), "snapshots", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["source"], "a");
}

fn snapshots_json(v: &Vault) -> Vec<serde_json::Value> {
    serde_json::from_slice(&v.ok(&["snapshots", "--json"]).stdout).unwrap()
}
