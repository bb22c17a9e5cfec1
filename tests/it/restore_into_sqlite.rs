//! `restore --into sqlite:///…`: the verified file appears atomically, a
//! non-empty target needs --force, the source's own file needs
//! --overwrite-source, and a snapshot of another kind is refused.

use crate::support::Vault;

fn make_db(path: &std::path::Path, rows: i64) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT, b BLOB); CREATE VIEW v AS SELECT id FROM t;",
    )
    .unwrap();
    for i in 0..rows {
        c.execute(
            "INSERT INTO t (s, b) VALUES (?1, ?2)",
            (format!("row {i} ü"), vec![i as u8; 16]),
        )
        .unwrap();
    }
}

fn count(path: &std::path::Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn sqlite_restore_into_guards_and_loads() {
    let data = tempfile::tempdir().unwrap();
    let src = data.path().join("app.db");
    make_db(&src, 500);
    let v = Vault::new(&format!(
        "\n[[source]]\nname = \"app\"\nkind = \"sqlite\"\npath = \"{}\"\n",
        src.display()
    ));
    v.ok(&["backup", "app"]);
    v.backup_bytes("blob", b"just some bytes, not a database");

    let target = data.path().join("restored.db");
    let url = format!("sqlite://{}", target.display());
    let out = v.restore_latest_into("app", &url, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["created"], true);
    assert_eq!(report["kind"], "sqlite");
    assert_eq!(count(&target), 500);
    let view: i64 = rusqlite::Connection::open(&target)
        .unwrap()
        .query_row("SELECT count(*) FROM v", [], |r| r.get(0))
        .unwrap();
    assert_eq!(view, 500);

    // Non-empty: refused (exit 2) and untouched; --force replaces it.
    make_db(&data.path().join("other.db"), 3);
    let other = data.path().join("other.db");
    let out = v.restore_latest_into("app", &format!("sqlite://{}", other.display()), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not empty"));
    assert_eq!(count(&other), 3);
    let out = v.restore_latest_into(
        "app",
        &format!("sqlite://{}", other.display()),
        &["--force"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count(&other), 500);

    // The source's own file: only with --overwrite-source naming it.
    let own = format!("sqlite://{}", src.display());
    let out = v.restore_latest_into("app", &own, &["--force"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--overwrite-source app.db"));
    let out = v.restore_latest_into("app", &own, &["--force", "--overwrite-source", "app.db"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A stdin snapshot that is not a database: verified, then refused, and
    // nothing appears at the target.
    let junk = data.path().join("junk.db");
    let out = v.restore_latest_into("blob", &format!("sqlite://{}", junk.display()), &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an SQLite database"));
    assert!(!junk.exists());
    let leftovers: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".lockbox-restore-")
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // A wrong identity is exit 4, and nothing is written.
    let stranger = data.path().join("stranger.txt");
    v.ok(&["keygen", "--output", stranger.to_str().unwrap()]);
    let fresh = data.path().join("fresh.db");
    let out = v
        .cmd()
        .args(["restore", "latest", "--source", "app", "--identity"])
        .arg(&stranger)
        .args(["--into", &format!("sqlite://{}", fresh.display())])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!fresh.exists());

    // Relative paths and other engines' snapshots are usage errors.
    let out = v.restore_latest_into("app", "sqlite://relative.db", &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = v.restore_latest_into("app", "postgresql://postgres@127.0.0.1:1/x", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sqlite dump"));
}
