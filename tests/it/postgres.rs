//! `kind = "postgres"` and `restore --into postgresql://` against the real
//! PostgreSQL on 127.0.0.1:5432 (trust authentication: the server does not
//! check passwords here, so wrong-password behaviour is tested against
//! MariaDB in tests/it/mariadb.rs; the password is still handed to pg_dump
//! and psql through a passfile, and these tests prove it never leaks).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::support::Vault;
use crate::support::db::{self, Engine, TempDb};

const PG: Engine = Engine::Postgres;
/// A password value that must never show up anywhere.
const SECRET: &str = "Pg-s3cret-9f2c1e7b";

fn source(name: &str, database: &str, extra: &str) -> String {
    format!(
        "\n[[source]]\nname = \"{name}\"\nkind = \"postgres\"\nhost = \"127.0.0.1\"\nport = 5432\n\
         user = \"postgres\"\ndatabase = \"{database}\"\n{extra}\n"
    )
}

/// Tables covering the awkward cases, a view, a function, a sequence and a
/// 200k-row table.
fn populate(db: &TempDb) {
    db.sql(
        r#"
        create table blobs (id int primary key, data bytea, note text);
        insert into blobs values
          (1, '\x00ff00fe'::bytea, 'binary with NULs'),
          (2, decode(repeat('deadbeef', 5000), 'hex'), 'large'),
          (3, NULL, NULL),
          (4, ''::bytea, '');
        create table texts (id serial primary key, t text, n numeric, d date, j jsonb);
        insert into texts (t, n, d, j) values
          ('Grüße, 世界, emoji 🎉', 3.14159, '2026-11-21', '{"a": [1, null, "é"]}'),
          (E'tab\there\nnewline and \\ backslash', NULL, NULL, NULL),
          ('', 0, '1970-01-01', 'null'),
          (NULL, -1e30, NULL, '{}');
        create table big (id int primary key, n int not null, note text);
        insert into big
          select g, g % 997, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text)
          from generate_series(1, 200000) g;
        create view big_summary as select n, count(*) as c from big group by n;
        create function add_one(x int) returns int language sql immutable as 'select x + 1';
        create sequence counter start 42;
        analyze;
        "#,
    );
}

#[test]
fn backup_restore_into_new_database_is_identical_and_incremental_and_leaks_nothing() {
    if !db::reachable(PG) {
        return;
    }
    let src = TempDb::create(PG, "pgsrc");
    populate(&src);
    // Record the dump tool's and client's argv (and that a passfile was used).
    let tools = tempfile::tempdir().unwrap();
    db::recording_wrapper(tools.path(), "pg_dump", "/usr/bin/pg_dump", "PGPASSFILE");
    db::recording_wrapper(tools.path(), "psql", "/usr/bin/psql", "PGPASSFILE");
    let v = Vault::new(&source(
        "pg",
        &src.name,
        &format!(
            "password_env = \"LBT_PG_PASSWORD\"\ndump_tool = \"{}\"",
            tools.path().join("pg_dump").display()
        ),
    ));

    // First backup, with a /proc sampler looking for the password in argv.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = db::watch_cmdlines(SECRET.into(), Arc::clone(&stop));
    let out = v
        .cmd()
        .args(["-vv", "--log-format", "json", "backup", "--json", "pg"])
        .env("LBT_PG_PASSWORD", SECRET)
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
    assert!(
        argv.contains("--format=custom") && argv.contains("--compress=0"),
        "{argv}"
    );
    assert!(
        argv.lines().any(|l| l.contains("psql")),
        "metadata via psql: {argv}"
    );
    assert!(
        argv.matches("PGPASSFILE-file:yes").count() >= 2 && !argv.contains("PGPASSFILE-file:no"),
        "every tool got the password through a passfile: {argv}"
    );
    assert!(!argv.contains(SECRET));

    // Restore into a new database: created, loaded, identical.
    let dst = TempDb::named(PG, "pgdst");
    let out = v.restore_latest_into("pg", &PG.url(&dst.name), &[]);
    assert!(
        out.status.success(),
        "restore --into failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["created"], true);
    let expected = db::checksums(PG, &src.name);
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        ["big", "big_summary", "blobs", "texts"]
    );
    assert!(expected["big"].starts_with("200000:"), "{expected:?}");
    assert_eq!(db::checksums(PG, &dst.name), expected);
    assert_eq!(dst.sql("select add_one(41);").trim(), "42");
    assert_eq!(dst.sql("select nextval('counter');").trim(), "42");
    // The metadata recorded at backup time comes back with the load.
    let info = &report["source_info"];
    assert!(
        info["server_version"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{info}"
    );
    let tables = info["tables"].as_array().expect("tables");
    let big = tables
        .iter()
        .find(|t| t["name"] == "big")
        .expect("big listed");
    assert_eq!(big["rows"], 200000, "{info}");
    assert!(
        tables
            .iter()
            .any(|t| t["name"] == "blobs" && t["rows"] == 4 && t["exact"] == true)
    );

    // A non-empty target is refused without --force, and left alone.
    let out = v.restore_latest_into("pg", &PG.url(&dst.name), &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not empty") && err.contains("--force"),
        "{err}"
    );
    dst.sql("insert into blobs values (99, NULL, 'marker');");
    // With --force it loads over it (objects in the dump are replaced).
    let out = v.restore_latest_into("pg", &PG.url(&dst.name), &["--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(db::checksums(PG, &dst.name), expected);

    // ~1% of the big table's rows change; the second backup adds far less.
    src.sql("update big set n = n + 1 where id <= 2000;");
    let out = v
        .cmd()
        .args(["-vv", "--log-format", "json", "backup", "--json", "pg"])
        .env("LBT_PG_PASSWORD", SECRET)
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
        "postgres: first backup added {a1} bytes (input {}), second after updating 1% of rows \
         added {a2} bytes: ratio {ratio:.3}",
        first["input_bytes"]
    );
    assert!(ratio < 0.35, "second backup added {a2} of {a1} bytes");

    // The password is nowhere: logs, manifests, chunks, catalog, config.
    for logs in [&logs1, &logs2] {
        assert!(!logs.contains(SECRET), "password in the logs");
    }
    db::assert_not_in_files(v.path(), SECRET);
}

#[test]
fn failing_dumps_give_clear_errors_and_no_snapshot() {
    if !db::reachable(PG) {
        return;
    }
    let src = TempDb::create(PG, "pgfail");
    src.sql("create table t (id int); insert into t values (1);");
    let tools = tempfile::tempdir().unwrap();
    let hang = tools.path().join("hanging_pg_dump");
    std::fs::write(
        &hang,
        "#!/bin/sh\n/usr/bin/pg_dump \"$@\" | head -c 100\nsleep 61.25\necho never\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hang, std::fs::Permissions::from_mode(0o755)).unwrap();
    let missing = TempDb::named(PG, "pgmissing");
    let v = Vault::new(&format!(
        "{}{}{}{}",
        source("nodb", &missing.name, ""),
        source(
            "notool",
            &src.name,
            "dump_tool = \"/nonexistent/bin/pg_dump\""
        ),
        source("norole", &src.name, "")
            .replace("user = \"postgres\"", "user = \"lbt_no_such_role\""),
        source(
            "slow",
            &src.name,
            &format!("dump_tool = \"{}\"\ntimeout = \"2s\"", hang.display())
        ),
    ));
    for (name, needle) in [
        ("nodb", "database does not exist"),
        ("notool", "not found"),
        ("norole", "does not exist"),
        ("slow", "timed out after 2s"),
    ] {
        let started = std::time::Instant::now();
        let (code, err) = v.fails(&["backup", name]);
        assert_eq!(code, 1, "{name}: {err}");
        assert!(
            err.contains(needle),
            "{name}: expected {needle:?} in: {err}"
        );
        assert!(err.contains("no snapshot was written"), "{name}: {err}");
        assert!(started.elapsed().as_secs() < 30, "{name} took too long");
        v.assert_no_snapshots(name);
    }
    // The killed dump tool and what it started are gone (no orphaned sleep).
    for pattern in [hang.display().to_string(), "sleep 61.25".to_string()] {
        let leftovers = std::process::Command::new("pgrep")
            .args(["-f", &pattern])
            .output()
            .unwrap();
        assert!(
            leftovers.stdout.is_empty(),
            "{pattern} survived the timeout"
        );
    }
}

#[test]
fn restore_into_refuses_the_source_database_and_passwords_in_urls() {
    if !db::reachable(PG) {
        return;
    }
    let src = TempDb::create(PG, "pgown");
    src.sql("create table t (id int primary key, s text); insert into t values (1, 'one');");
    let v = Vault::new(&source("own", &src.name, ""));
    v.ok(&["backup", "own"]);
    src.sql("insert into t values (2, 'after the backup');");

    let url = PG.url(&src.name).replace("127.0.0.1", "localhost");
    let out = v.restore_latest_into("own", &url, &["--force"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is the database of source \"own\""), "{err}");
    assert!(
        err.contains(&format!("--overwrite-source {}", src.name)),
        "{err}"
    );
    // A near miss of the name is not a confirmation.
    let out = v.restore_latest_into("own", &url, &["--force", "--overwrite-source", "pgown"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(src.sql("select count(*) from t;").trim(), "2");
    // Repeating the exact name does it.
    let out = v.restore_latest_into("own", &url, &["--force", "--overwrite-source", &src.name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(src.sql("select count(*) from t;").trim(), "1");

    let dst = TempDb::named(PG, "pgpw");
    let out = v.restore_latest_into(
        "own",
        &format!("postgresql://postgres:{SECRET}@127.0.0.1:5432/{}", dst.name),
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must not contain a password"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
    assert!(!dst.exists());

    // A loader error is shown, exits 1, and the database created for the
    // load is dropped again (plain SQL from a stdin snapshot goes to psql).
    v.backup_bytes("junk", b"CREATE TABLE ok (id int);\nTHIS IS NOT SQL;\n");
    let failed = TempDb::named(PG, "pgjunk");
    let out = v.restore_latest_into("junk", &PG.url(&failed.name), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("loading the SQL dump") && err.contains("syntax error"),
        "{err}"
    );
    assert!(
        !failed.exists(),
        "the database created for the failed load remains"
    );

    // A snapshot of another engine is refused before anything is created.
    let out = v.restore_latest_into("own", &format!("sqlite://{}/x.db", v.path().display()), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("postgres dump"));
}

#[test]
fn doctor_checks_the_backup_role_is_read_only() {
    if !db::reachable(PG) {
        return;
    }
    // Roles first: guards drop in reverse order, and a role cannot be
    // dropped while the database still holds grants to it.
    let reader = db::TempRole::create(PG, SECRET, "GRANT pg_read_all_data TO {role};");
    let writer = db::TempRole::create(PG, SECRET, "GRANT pg_read_all_data TO {role};");
    let admin = db::TempRole::create(PG, SECRET, "ALTER ROLE {role} SUPERUSER;");
    let src = TempDb::create(PG, "pgdoc");
    src.sql("create table t (id int); create table u (id int);");
    src.sql(&format!(
        "GRANT INSERT ON t TO {w}; GRANT CREATE ON DATABASE {} TO {w};",
        src.name,
        w = writer.name
    ));
    let v = Vault::new(&format!(
        "{}{}{}{}",
        source("reader", &src.name, "password_env = \"LBT_PG_PASSWORD\"").replace(
            "user = \"postgres\"",
            &format!("user = \"{}\"", reader.name)
        ),
        source("writer", &src.name, "password_env = \"LBT_PG_PASSWORD\"").replace(
            "user = \"postgres\"",
            &format!("user = \"{}\"", writer.name)
        ),
        source("super", &src.name, ""),
        source("admin", &src.name, "password_env = \"LBT_PG_PASSWORD\"")
            .replace("user = \"postgres\"", &format!("user = \"{}\"", admin.name)),
    ));
    let out = v
        .cmd()
        .args(["doctor", "--json"])
        .env("LBT_PG_PASSWORD", SECRET)
        .output()
        .unwrap();
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
            "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA \"public\" FROM \"{}\";",
            writer.name
        )),
        "{detail}"
    );
    assert!(
        detail.contains(&format!(
            "REVOKE CREATE ON DATABASE \"{}\" FROM \"{}\";",
            src.name, writer.name
        )),
        "{detail}"
    );
    // `postgres` is the cluster's bootstrap superuser: never told to demote
    // itself, but to back up as a dedicated role.
    let s = find("super");
    assert_eq!(s["status"], "WARN");
    let detail = s["detail"].as_str().unwrap();
    assert!(
        detail.contains("role postgres is the cluster's bootstrap superuser")
            && detail.contains("examples/roles/postgres.sql")
            && detail.contains("GRANT pg_read_all_data TO lockbox_backup")
            && detail.contains("set user = \"lockbox_backup\"")
            && detail.contains("in source super"),
        "{s}"
    );
    assert!(!detail.contains("NOSUPERUSER"), "{s}");
    // Another superuser may be demoted if it exists only for backups.
    let a = find("admin");
    assert_eq!(a["status"], "WARN");
    let detail = a["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("role {} is a superuser", admin.name))
            && detail.contains("set user = \"lockbox_backup\"")
            && detail.contains(&format!("ALTER ROLE \"{}\" NOSUPERUSER", admin.name)),
        "{a}"
    );
    // A role that can only read backs up fine.
    let out = v
        .cmd()
        .args(["backup", "reader"])
        .env("LBT_PG_PASSWORD", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
