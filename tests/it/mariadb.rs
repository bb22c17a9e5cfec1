//! `kind = "mariadb"` and `restore --into mariadb://` against the real
//! MariaDB on 127.0.0.1:3306. Backups run as a read-only user WITH a
//! password (the server checks it), handed over in a temporary options file.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::support::Vault;
use crate::support::db::{self, Engine, TempDb, TempRole};

const MY: Engine = Engine::Mariadb;
/// A password value that must never show up anywhere.
const SECRET: &str = "My-s3cret-4b1d8a0e";

/// Read-only grants, as examples/roles/mariadb.sql recommends.
fn read_only_grants(db: &str) -> String {
    format!(
        "GRANT SELECT, SHOW VIEW, TRIGGER, LOCK TABLES, EVENT ON `{db}`.* TO '{{role}}'@'%'; \
         GRANT SELECT, SHOW VIEW, TRIGGER, LOCK TABLES, EVENT ON `{db}`.* TO '{{role}}'@'localhost'; \
         GRANT PROCESS ON *.* TO '{{role}}'@'%'; GRANT PROCESS ON *.* TO '{{role}}'@'localhost'; \
         GRANT SELECT ON mysql.proc TO '{{role}}'@'%'; GRANT SELECT ON mysql.proc TO '{{role}}'@'localhost';"
    )
}

fn source(name: &str, user: &str, database: &str, extra: &str) -> String {
    format!(
        "\n[[source]]\nname = \"{name}\"\nkind = \"mariadb\"\nhost = \"127.0.0.1\"\nport = 3306\n\
         user = \"{user}\"\ndatabase = \"{database}\"\n{extra}\n"
    )
}

fn populate(db: &TempDb) {
    db.sql(
        r#"
        CREATE TABLE blobs (id INT PRIMARY KEY, data LONGBLOB, note TEXT) CHARSET utf8mb4;
        INSERT INTO blobs VALUES
          (1, x'00ff00fe', 'binary with NULs'),
          (2, REPEAT(x'deadbeef', 5000), 'large'),
          (3, NULL, NULL),
          (4, '', '');
        CREATE TABLE texts (id INT AUTO_INCREMENT PRIMARY KEY, t TEXT, n DECIMAL(20,5),
          d DATE, j JSON) CHARSET utf8mb4;
        INSERT INTO texts (t, n, d, j) VALUES
          ('Grüße, 世界, emoji 🎉', 3.14159, '2026-11-21', '{"a": [1, null, "é"]}'),
          ('tab\there\nnewline and \\ backslash and \'quote\'', NULL, NULL, NULL),
          ('', 0, '1970-01-01', 'null'),
          (NULL, -12345.5, NULL, '{}');
        SET SESSION max_recursive_iterations = 1000000;
        CREATE TABLE big (id INT PRIMARY KEY, n INT NOT NULL, note VARCHAR(100)) ENGINE=InnoDB;
        INSERT INTO big
          WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 200000)
          SELECT g, g % 997, CONCAT(MD5(g), MD5(g * 7), SUBSTR(MD5(g * 13), 1, 20)) FROM s;
        CREATE VIEW big_summary AS SELECT n, COUNT(*) AS c FROM big GROUP BY n;
        CREATE FUNCTION add_one(x INT) RETURNS INT DETERMINISTIC RETURN x + 1;
        CREATE PROCEDURE count_big(OUT c INT) SELECT COUNT(*) INTO c FROM big;
        CREATE TRIGGER texts_upper BEFORE INSERT ON texts FOR EACH ROW SET NEW.t = UPPER(NEW.t);
        "#,
    );
}

#[test]
fn backup_as_read_only_user_restore_identical_incremental_and_leaks_nothing() {
    if !db::reachable(MY) {
        return;
    }
    let src = TempDb::create(MY, "mysrc");
    populate(&src);
    let role = TempRole::create(MY, SECRET, &read_only_grants(&src.name));
    let secrets = tempfile::tempdir().unwrap();
    let pw_file = secrets.path().join("password");
    std::fs::write(&pw_file, format!("{SECRET}\n")).unwrap();
    let tools = tempfile::tempdir().unwrap();
    db::recording_wrapper(
        tools.path(),
        "mariadb-dump",
        "/usr/bin/mariadb-dump",
        "MYSQL_PWD",
    );
    db::recording_wrapper(tools.path(), "mariadb", "/usr/bin/mariadb", "MYSQL_PWD");
    let v = Vault::new(&source(
        "my",
        &role.name,
        &src.name,
        &format!(
            "password_file = \"{}\"\ndump_tool = \"{}\"",
            pw_file.display(),
            tools.path().join("mariadb-dump").display()
        ),
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let watcher = db::watch_cmdlines(SECRET.into(), Arc::clone(&stop));
    let out = v
        .cmd()
        .args(["-vv", "--log-format", "json", "backup", "--json", "my"])
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let (scans, seen) = watcher.join().unwrap();
    let logs1 = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "backup failed: {logs1}");
    assert!(scans > 0);
    assert!(seen.is_empty(), "password in a command line: {seen:?}");
    let first: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let argv = std::fs::read_to_string(tools.path().join("argv.log")).unwrap();
    for flag in [
        "--single-transaction",
        "--quick",
        "--routines",
        "--triggers",
        "--events",
        "--hex-blob",
    ] {
        assert!(argv.contains(flag), "{flag} missing: {argv}");
    }
    let runs = argv.matches("/bin/sh ").count();
    assert!(runs >= 2, "{argv}");
    assert_eq!(
        argv.matches(" --defaults-extra-file=").count(),
        runs,
        "every client and dump tool run got the password from an options file: {argv}"
    );
    assert!(!argv.contains(SECRET));

    let dst = TempDb::named(MY, "mydst");
    let out = v.restore_latest_into("my", &MY.url(&dst.name), &[]);
    assert!(
        out.status.success(),
        "restore --into failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["created"], true);
    let expected = db::checksums(MY, &src.name);
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        ["big", "big_summary", "blobs", "texts"]
    );
    assert!(expected["big"].starts_with("200000:"), "{expected:?}");
    assert_eq!(db::checksums(MY, &dst.name), expected);
    assert_eq!(dst.sql("SELECT add_one(41);").trim(), "42");
    assert_eq!(dst.sql("CALL count_big(@c); SELECT @c;").trim(), "200000");
    dst.sql("INSERT INTO texts (t) VALUES ('trigger kept');");
    assert_eq!(
        dst.sql("SELECT t FROM texts ORDER BY id DESC LIMIT 1;")
            .trim(),
        "TRIGGER KEPT"
    );
    let info = &report["source_info"];
    assert!(
        info["server_version"]
            .as_str()
            .is_some_and(|s| s.contains("MariaDB")),
        "{info}"
    );
    let tables = info["tables"].as_array().expect("tables");
    assert!(
        tables
            .iter()
            .any(|t| t["name"] == "big" && t["rows"].as_u64().is_some()),
        "{info}"
    );
    assert!(
        tables
            .iter()
            .any(|t| t["name"] == "blobs" && t["rows"] == 4 && t["exact"] == true),
        "small tables are counted exactly: {info}"
    );

    // Non-empty target: refused without --force, loaded over with it.
    let out = v.restore_latest_into("my", &MY.url(&dst.name), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not empty"));
    dst.sql("INSERT INTO blobs VALUES (99, NULL, 'marker');");
    let out = v.restore_latest_into("my", &MY.url(&dst.name), &["--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(db::checksums(MY, &dst.name), expected);

    // ~1% of the big table's rows change; the second backup adds far less.
    src.sql("UPDATE big SET n = n + 1 WHERE id <= 2000;");
    let out = v
        .cmd()
        .args(["-vv", "--log-format", "json", "backup", "--json", "my"])
        .output()
        .unwrap();
    let logs2 = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "second backup failed: {logs2}");
    let second: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (a1, a2) = (
        first["added_bytes"].as_u64().unwrap(),
        second["added_bytes"].as_u64().unwrap(),
    );
    let ratio = a2 as f64 / a1 as f64;
    eprintln!(
        "mariadb: first backup added {a1} bytes (input {}), second after updating 1% of rows \
         added {a2} bytes: ratio {ratio:.3}",
        first["input_bytes"]
    );
    assert!(ratio < 0.35, "second backup added {a2} of {a1} bytes");

    for logs in [&logs1, &logs2] {
        assert!(!logs.contains(SECRET), "password in the logs");
    }
    db::assert_not_in_files(v.path(), SECRET);
}

#[test]
fn failing_dumps_give_clear_errors_and_no_snapshot() {
    if !db::reachable(MY) {
        return;
    }
    let src = TempDb::create(MY, "myfail");
    src.sql(
        "CREATE TABLE t (id INT PRIMARY KEY, s TEXT); INSERT INTO t VALUES (1, REPEAT('x', 5000));",
    );
    let role = TempRole::create(MY, SECRET, &read_only_grants(&src.name));
    let secrets = tempfile::tempdir().unwrap();
    let wrong = secrets.path().join("wrong");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    // A dump tool that exits 0 after a truncated dump (no "-- Dump completed").
    let tools = tempfile::tempdir().unwrap();
    let truncating = tools.path().join("truncating-dump");
    std::fs::write(
        &truncating,
        "#!/bin/sh\n/usr/bin/mariadb-dump \"$@\" | head -c 1500\nexit 0\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&truncating, std::fs::Permissions::from_mode(0o755)).unwrap();
    let missing = TempDb::named(MY, "mymissing");
    let v = Vault::new(&format!(
        "{}{}{}{}",
        source(
            "wrongpw",
            &role.name,
            &src.name,
            &format!("password_file = \"{}\"", wrong.display())
        ),
        source("nodb", "root", &missing.name, ""),
        source(
            "notool",
            "root",
            &src.name,
            "dump_tool = \"/nonexistent/bin/mariadb-dump\""
        ),
        source(
            "truncated",
            "root",
            &src.name,
            &format!("dump_tool = \"{}\"", truncating.display())
        ),
    ));
    for (name, needle) in [
        ("wrongpw", "authentication failed"),
        ("nodb", "database does not exist"),
        ("notool", "not found"),
        ("truncated", "Dump completed"),
    ] {
        let (code, err) = v.fails(&["backup", name]);
        assert_eq!(code, 1, "{name}: {err}");
        assert!(
            err.contains(needle),
            "{name}: expected {needle:?} in: {err}"
        );
        assert!(err.contains("no snapshot was written"), "{name}: {err}");
        assert!(!err.contains(SECRET));
        v.assert_no_snapshots(name);
    }
}

#[test]
fn doctor_checks_the_backup_account_is_read_only() {
    if !db::reachable(MY) {
        return;
    }
    let src = TempDb::create(MY, "mydoc");
    src.sql("CREATE TABLE t (id INT PRIMARY KEY);");
    let reader = TempRole::create(MY, SECRET, &read_only_grants(&src.name));
    let writer = TempRole::create(
        MY,
        SECRET,
        &format!(
            "{} GRANT INSERT, DELETE ON `{db}`.* TO '{{role}}'@'%'; \
             GRANT INSERT, DELETE ON `{db}`.* TO '{{role}}'@'localhost';",
            read_only_grants(&src.name),
            db = src.name
        ),
    );
    let secrets = tempfile::tempdir().unwrap();
    let pw_file = secrets.path().join("password");
    std::fs::write(&pw_file, SECRET).unwrap();
    let pw = format!("password_file = \"{}\"", pw_file.display());
    let v = Vault::new(&format!(
        "{}{}",
        source("reader", &reader.name, &src.name, &pw),
        source("writer", &writer.name, &src.name, &pw),
    ));
    let out = v.cmd().args(["doctor", "--json"]).output().unwrap();
    let checks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let find = |name: &str| {
        checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == format!("source {name}: least privilege"))
            .unwrap_or_else(|| panic!("no check for {name}: {checks}"))
            .clone()
    };
    let r = find("reader");
    assert_eq!(r["status"], "PASS", "{r}");
    let w = find("writer");
    assert_eq!(w["status"], "WARN", "{w}");
    let detail = w["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!(
            "REVOKE INSERT, DELETE ON `{}`.* FROM '{}'@",
            src.name, writer.name
        )),
        "{detail}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(SECRET));
}
