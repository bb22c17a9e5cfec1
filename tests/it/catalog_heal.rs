//! A broken catalog never stops backups: garbage, a truncated file or a
//! catalog of another schema version is moved aside (kept for inspection),
//! the next backup rebuilds the catalog from the repository, and `status`
//! and `check` warn about it. Readers (`status`, `check`) never move it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::Vault;

const SOURCE: &str = r#"
[[source]]
name = "app"
kind = "command"
command = ["sh", "-c", "seq 1 5000"]
"#;

fn catalog(v: &Vault) -> PathBuf {
    v.state().join("catalog.sqlite")
}

/// Files beside the catalog named `catalog.sqlite.<label>-…` (the kept
/// copies, without their -wal/-shm side files).
fn kept(v: &Vault, label: &str) -> Vec<PathBuf> {
    let prefix = format!("catalog.sqlite.{label}-");
    let mut out: Vec<PathBuf> = std::fs::read_dir(v.state())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(&prefix) && !name.ends_with("-wal") && !name.ends_with("-shm")
        })
        .collect();
    out.sort();
    out
}

fn snapshot_ids(v: &Vault) -> Vec<String> {
    let out = v.ok(&["snapshots", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    rows.iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

fn status_json(v: &Vault) -> serde_json::Value {
    serde_json::from_slice(&v.ok(&["status", "--json"]).stdout).unwrap()
}

fn garbage(path: &Path) {
    std::fs::write(path, b"this is not a SQLite database\n".repeat(2000)).unwrap();
}

fn truncate_to_half(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len / 2).unwrap();
}

fn schema_999(path: &Path) {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute(
        "UPDATE meta SET value = '999' WHERE key = 'schema_version'",
        [],
    )
    .unwrap();
}

/// `status` and `check` on an unreadable catalog: a clear error that says
/// the next backup rebuilds it, and nothing moved aside.
fn readers_say_what_to_do(v: &Vault, what: &str) {
    let (code, err) = v.fails(&["status"]);
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains(&format!("the catalog at {}", catalog(v).display()))
            && err.contains(what)
            && err.contains("the next backup rebuilds it from the repository")
            && err.contains("lockbox catalog rebuild"),
        "{err}"
    );
    let out = v.cmd().arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(3), "UNKNOWN");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("LOCKBOX UNKNOWN - ") && text.contains("the next backup rebuilds it"),
        "{text}"
    );
}

/// After a rebuild: the earlier snapshots are listed, the damaged copy is
/// kept beside the catalog, and status and check warn.
fn rebuilt_and_reported(v: &Vault, label: &str, earlier: &[String]) -> PathBuf {
    let ids = snapshot_ids(v);
    assert_eq!(ids.len(), earlier.len() + 1, "{ids:?}");
    for id in earlier {
        assert!(
            ids.contains(id),
            "{id} rebuilt from the repository: {ids:?}"
        );
    }
    let copies = kept(v, label);
    assert_eq!(copies.len(), 1, "one copy kept as {label}: {copies:?}");

    let s = status_json(v);
    let rebuilt = &s["repository"]["catalog_rebuilt"];
    assert_eq!(rebuilt["kept_as"], copies[0].display().to_string(), "{s}");
    assert!(rebuilt["refilled_at"].is_string(), "{s}");
    let warning = rebuilt["warning"].as_str().expect("a warning").to_string();
    assert!(
        warning.starts_with("catalog was unreadable (")
            && warning.contains("and was rebuilt from the repository at")
            && warning.ends_with(&format!(
                "the unreadable copy is kept at {}",
                copies[0].display()
            )),
        "{warning}"
    );
    assert_eq!(s["sources"][0]["health"], "WARN", "{s}");
    assert!(
        s["sources"][0]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == warning.as_str()),
        "{s}"
    );
    let text = String::from_utf8_lossy(&v.ok(&["status"]).stdout).into_owned();
    assert!(text.contains(&format!("WARN catalog: {warning}")), "{text}");
    let out = v.cmd().arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "WARNING");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("catalog was unreadable"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    copies[0].clone()
}

#[test]
fn garbage_truncated_or_other_schema_catalog_is_rebuilt_by_the_next_backup() {
    let v = Vault::new(SOURCE);
    v.ok(&["backup", "app"]);
    let mut earlier = snapshot_ids(&v);

    // (a) garbage bytes
    garbage(&catalog(&v));
    readers_say_what_to_do(&v, "is unreadable (file is not a database)");
    assert!(kept(&v, "corrupt").is_empty(), "readers move nothing");
    let out = v.ok(&["backup", "app"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("moved it aside"), "{err}");
    let copy = rebuilt_and_reported(&v, "corrupt", &earlier);
    assert!(
        std::fs::read(&copy)
            .unwrap()
            .starts_with(b"this is not a SQLite database"),
        "the damaged bytes are kept as they were"
    );
    std::fs::remove_file(copy).unwrap();
    earlier = snapshot_ids(&v);

    // (b) truncated to half
    truncate_to_half(&catalog(&v));
    v.ok(&["backup", "app"]);
    let copy = rebuilt_and_reported(&v, "corrupt", &earlier);
    std::fs::remove_file(copy).unwrap();
    earlier = snapshot_ids(&v);

    // (c) another schema version of the same repository: its run history
    // stays in the kept copy.
    schema_999(&catalog(&v));
    readers_say_what_to_do(&v, "has schema version 999, this lockbox uses");
    v.ok(&["backup", "app"]);
    let copy = rebuilt_and_reported(&v, "schema999", &earlier);
    let old = rusqlite::Connection::open(&copy).unwrap();
    let runs: i64 = old
        .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .unwrap();
    assert!(runs >= 1, "run history kept in {}", copy.display());
    let s = status_json(&v);
    assert!(
        s["repository"]["catalog_rebuilt"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("schema version 999, this lockbox uses "),
        "{s}"
    );
}

#[test]
fn catalog_rebuild_works_on_a_garbage_catalog() {
    let v = Vault::new(SOURCE);
    v.ok(&["backup", "app"]);
    let earlier = snapshot_ids(&v);
    garbage(&catalog(&v));
    let out = v.ok(&["catalog", "rebuild"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rebuilt from") && err.contains("1 snapshots"),
        "{err}"
    );
    assert_eq!(kept(&v, "corrupt").len(), 1);
    assert_eq!(snapshot_ids(&v), earlier);
}

/// The daemon opens the catalog at start: on a garbage catalog it rebuilds
/// it and goes on backing up on schedule.
#[test]
#[allow(unsafe_code)] // a raw syscall is the point here
fn a_daemon_started_on_a_garbage_catalog_rebuilds_it_and_backs_up() {
    let v = Vault::new(&format!("{SOURCE}schedule = \"* * * * * *\"\n"));
    v.ok(&["backup", "app"]);
    let earlier = snapshot_ids(&v);
    garbage(&catalog(&v));
    let log = v.path().join("daemon.log");
    let mut child = v
        .cmd()
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while v.manifest_files().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: signals our own child process, which has not been reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        v.manifest_files().len() >= 2,
        "no scheduled backup:\n{text}"
    );
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(
        text.contains("moved it aside") && text.contains("daemon started"),
        "{text}"
    );
    assert_eq!(kept(&v, "corrupt").len(), 1);
    let ids = snapshot_ids(&v);
    assert!(ids.contains(&earlier[0]), "{ids:?}");
}
