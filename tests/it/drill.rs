//! `lockbox drill` against the real PostgreSQL and MariaDB servers and an
//! SQLite file: drills pass on good snapshots, the scratch database is gone
//! afterwards (also when a check fails), a failing user check fails the drill
//! naming the check, a corrupted chunk fails it naming the object, the drill
//! server may not be the source's own unless allowed, and attestations are
//! written (details sealed) and survive a catalog rebuild.

use std::path::Path;

use serde_json::Value;

use crate::support::db::{self, Engine, TempDb};
use crate::support::{Vault, make_writable};

fn drill(v: &Vault, source: &str) -> (i32, Value, String) {
    let out = v
        .cmd()
        .args(["drill", source, "--json", "--identity"])
        .arg(&v.identity)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("drill printed no JSON ({e}): {stderr}"));
    (out.status.code().unwrap_or(-1), json, stderr)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report}"))
}

/// Scratch databases of `source` still on the server.
fn leftovers(engine: Engine, source: &str) -> String {
    let like = format!("lockbox\\_drill\\_{source}\\_%");
    let q = match engine {
        Engine::Postgres => {
            format!("select datname from pg_database where datname like '{like}';")
        }
        Engine::Mariadb => format!(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE '{like}';"
        ),
    };
    db::sql(engine, None, &q).trim().to_string()
}

fn catalog_rows(state: &Path) -> Vec<(String, bool, Option<String>)> {
    let c = rusqlite::Connection::open(state.join("catalog.sqlite")).unwrap();
    let mut s = c
        .prepare("SELECT kind, passed, attestation_key FROM verifications ORDER BY id")
        .unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn engine_drills(engine: Engine) {
    if !db::reachable(engine) {
        return;
    }
    let src = TempDb::create(engine, "drillsrc");
    src.sql(
        "CREATE TABLE orders (id INT PRIMARY KEY, total INT NOT NULL);
         CREATE TABLE notes (id INT PRIMARY KEY, body TEXT);
         INSERT INTO notes VALUES (1, 'a'), (2, 'b'), (3, 'c');",
    );
    let fill = match engine {
        Engine::Postgres => {
            "INSERT INTO orders SELECT g, g * 3 FROM generate_series(1, 700) g; ANALYZE;"
        }
        Engine::Mariadb => {
            "INSERT INTO orders SELECT seq, seq * 3 FROM seq_1_to_700; ANALYZE TABLE orders, notes;"
        }
    };
    src.sql(fill);
    let (kind, server_db) = match engine {
        Engine::Postgres => ("postgres", "postgres"),
        Engine::Mariadb => ("mariadb", "mysql"),
    };
    let tag = &src.name[4..]; // unique per run
    let good = format!("g{}", &tag[tag.len() - 8..]);
    let bad = format!("b{}", &tag[tag.len() - 8..]);
    let prod = format!("p{}", &tag[tag.len() - 8..]);
    let server = engine.url(server_db);
    let source = |name: &str, drill: &str| {
        format!(
            "\n[[source]]\nname = \"{name}\"\nkind = \"{kind}\"\nhost = \"127.0.0.1\"\nuser = \"{}\"\n\
             database = \"{}\"\n[source.drill]\n{drill}\n",
            if engine == Engine::Postgres {
                "postgres"
            } else {
                "root"
            },
            src.name
        )
    };
    let config = [
        source(
            &good,
            &format!(
                "target = \"{server}\"\nallow_source_server = true\n\
                 [[source.drill.check]]\nname = \"order_count\"\nsql = \"SELECT COUNT(*) FROM orders\"\nexpect = 700\n\
                 [[source.drill.check]]\nname = \"revenue\"\nsql = \"SELECT SUM(total) FROM orders\"\nmin = 1000\nmax = 1e9\n"
            ),
        ),
        source(
            &bad,
            &format!(
                "target = \"{server}\"\nallow_source_server = true\n\
                 [[source.drill.check]]\nname = \"secret_orders_check\"\nsql = \"SELECT MAX(id) FROM orders\"\nexpect = 701\n"
            ),
        ),
        source(&prod, &format!("target = \"{server}\"\n")),
    ]
    .concat();
    let v = Vault::new(&config);
    v.ok(&["backup", &good]);
    v.ok(&["backup", &bad]);

    let (code, r, err) = drill(&v, &good);
    assert_eq!(code, 0, "{err}\n{r}");
    assert_eq!(r["passed"], true);
    for c in ["load", "tables", "row_counts", "order_count", "revenue"] {
        assert_eq!(check(&r, c)["passed"], true, "{c}: {r}");
    }
    assert!(r["restore_seconds"].as_f64().unwrap() > 0.0);
    assert!(r["data_age_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(leftovers(engine, &good), "", "scratch database left behind");
    let key = r["attestation"].as_str().unwrap().to_string();
    assert!(key.starts_with(&format!("attestations/{good}/")), "{key}");

    // A failing user check fails the drill, named; the scratch is gone.
    let (code, r, err) = drill(&v, &bad);
    assert_eq!(code, 3, "{err}\n{r}");
    assert_eq!(r["passed"], false);
    assert!(
        r["failure"]
            .as_str()
            .unwrap()
            .contains("secret_orders_check"),
        "{r}"
    );
    assert_eq!(check(&r, "secret_orders_check")["passed"], false);
    assert_eq!(
        leftovers(engine, &bad),
        "",
        "scratch database left after a failed check"
    );
    // The attestation shows the outcome publicly, not the check's name or SQL.
    let att = std::fs::read_to_string(v.repo().join(r["attestation"].as_str().unwrap())).unwrap();
    assert!(
        att.contains("\"passed\":false") && att.contains("check[0]"),
        "{att}"
    );
    assert!(
        !att.contains("secret_orders_check") && !att.contains("orders"),
        "{att}"
    );

    // The drill server must not be the source's own unless allowed.
    let (code, err) = v.fails(&["drill", &prod, "--identity", v.identity.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("allow_source_server"), "{err}");

    let rows = catalog_rows(&v.state());
    assert_eq!(
        rows.iter()
            .map(|(k, p, _)| (k.as_str(), *p))
            .collect::<Vec<_>>(),
        [("drill", true), ("drill", false)]
    );
}

#[test]
fn postgres_drills() {
    engine_drills(Engine::Postgres);
}

#[test]
fn mariadb_drills() {
    engine_drills(Engine::Mariadb);
}

/// SQLite: temp file, integrity check, page count, user checks; then a
/// flipped byte in a chunk fails both `verify --read-data` and the drill,
/// naming the object; attestations come back after the catalog is lost.
#[test]
fn sqlite_drill_corruption_and_attestations_survive_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let dbfile = dir.path().join("shop.db");
    {
        let c = rusqlite::Connection::open(&dbfile).unwrap();
        c.execute_batch(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, blob BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
             INSERT INTO items SELECT i, 'item ' || i, randomblob(1500) FROM n;",
        )
        .unwrap();
    }
    let v = Vault::new(&format!(
        "\n[[source]]\nname = \"shop\"\nkind = \"sqlite\"\npath = \"{}\"\n[source.drill]\n\
         [[source.drill.check]]\nname = \"item_count\"\nsql = \"SELECT COUNT(*) FROM items\"\nexpect = 3000\n",
        dbfile.display()
    ));
    v.ok(&["backup", "shop"]);
    let (code, r, err) = drill(&v, "shop");
    assert_eq!(code, 0, "{err}\n{r}");
    for c in ["load", "integrity_check", "page_count", "item_count"] {
        assert_eq!(check(&r, c)["passed"], true, "{c}: {r}");
    }
    let tmp = v.state().join("tmp");
    let scratch_files = || {
        std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("lockbox_drill"))
            .collect::<Vec<_>>()
    };
    assert!(scratch_files().is_empty(), "{:?}", scratch_files());

    // --keep leaves the scratch file for inspection.
    let out = v
        .cmd()
        .args(["drill", "shop", "--keep", "--identity"])
        .arg(&v.identity)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(scratch_files().len(), 1);
    for f in scratch_files() {
        std::fs::remove_file(tmp.join(f)).unwrap();
    }

    // Attestations survive the loss of the catalog.
    let before = catalog_rows(&v.state());
    assert_eq!(before.len(), 2);
    assert!(
        before
            .iter()
            .all(|(k, p, a)| k == "drill" && *p && a.is_some())
    );
    std::fs::remove_file(v.state().join("catalog.sqlite")).unwrap();
    v.ok(&["catalog", "rebuild"]);
    let mut after = catalog_rows(&v.state());
    let mut want = before.clone();
    after.sort_by(|a, b| a.2.cmp(&b.2));
    want.sort_by(|a, b| a.2.cmp(&b.2));
    assert_eq!(after, want);

    // A flipped byte in one chunk: verify --read-data and the drill both
    // fail and name it; no scratch file remains.
    let chunks = v.chunk_files();
    let victim = &chunks[chunks.len() / 2];
    let victim_id = victim.file_name().unwrap().to_string_lossy().into_owned();
    make_writable(victim);
    let mut bytes = std::fs::read(victim).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x10;
    std::fs::write(victim, bytes).unwrap();
    let out = v.cmd().args(["verify", "--read-data"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&victim_id));
    let (code, r, err) = drill(&v, "shop");
    assert_eq!(code, 3, "{err}\n{r}");
    assert!(r["failure"].as_str().unwrap().contains(&victim_id), "{r}");
    assert!(scratch_files().is_empty(), "{:?}", scratch_files());
    let rows = catalog_rows(&v.state());
    assert!(!rows.last().unwrap().1, "the failed drill is recorded");
}

/// The daemon runs drills on their own schedule (here every 2 seconds, with
/// no backup schedule at all) and stops cleanly on SIGTERM.
#[test]
#[allow(unsafe_code)] // a raw syscall is the point here
fn daemon_runs_scheduled_drills() {
    let dir = tempfile::tempdir().unwrap();
    let dbfile = dir.path().join("d.db");
    rusqlite::Connection::open(&dbfile)
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1), (2);")
        .unwrap();
    let v = Vault::new(&format!(
        "\n[[source]]\nname = \"sched\"\nkind = \"sqlite\"\npath = \"{}\"\n",
        dbfile.display()
    ));
    v.ok(&["backup", "sched"]);
    let text = std::fs::read_to_string(&v.config).unwrap();
    std::fs::write(
        &v.config,
        format!(
            "{text}[source.drill]\nschedule = \"*/2 * * * * *\"\nidentity = \"{}\"\n",
            v.identity.display()
        ),
    )
    .unwrap();
    let mut daemon = v
        .cmd()
        .arg("daemon")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    let mut passed = 0;
    while passed < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
        if v.state().join("catalog.sqlite").exists() {
            passed = catalog_rows(&v.state())
                .iter()
                .filter(|(k, p, a)| k == "drill" && *p && a.is_some())
                .count();
        }
    }
    // SAFETY: signalling the daemon child this test started.
    unsafe {
        libc::kill(daemon.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = daemon.wait().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut daemon.stderr.take().unwrap(), &mut log).unwrap();
    assert!(
        passed >= 2,
        "fewer than 2 scheduled drills passed in 40s:\n{log}"
    );
    assert!(status.success(), "{status}\n{log}");
    assert!(log.contains("drill finished"), "{log}");
    let leftovers: Vec<_> = std::fs::read_dir(v.state().join("tmp"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("lockbox_drill"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Ctrl-C (SIGINT to the drill's process group, as a terminal sends it)
/// while a check runs: the drill stops, fails, and drops its scratch database.
#[test]
#[allow(unsafe_code)] // a raw syscall is the point here
fn interrupted_drill_drops_its_scratch_database() {
    use std::os::unix::process::CommandExt;
    let engine = Engine::Postgres;
    if !db::reachable(engine) {
        return;
    }
    let src = TempDb::create(engine, "drillint");
    src.sql("CREATE TABLE t (x int); INSERT INTO t VALUES (1);");
    let name = format!("i{}", &src.name[src.name.len() - 8..]);
    let v = Vault::new(&format!(
        "\n[[source]]\nname = \"{name}\"\nkind = \"postgres\"\nhost = \"127.0.0.1\"\nuser = \"postgres\"\n\
         database = \"{}\"\n[source.drill]\ntarget = \"{}\"\nallow_source_server = true\n\
         [[source.drill.check]]\nname = \"slow\"\nsql = \"SELECT pg_sleep(60) IS NULL\"\nexpect = false\n",
        src.name,
        engine.url("postgres")
    ));
    v.ok(&["backup", &name]);
    let mut child = v
        .cmd()
        .args(["drill", &name, "--identity"])
        .arg(&v.identity)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    // Wait until the slow check is running in the scratch database.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let like = format!("lockbox\\_drill\\_{name}\\_%");
    loop {
        let q = format!(
            "select count(*) from pg_stat_activity where datname like '{like}' \
             and query like '%pg_sleep%';"
        );
        if db::sql(engine, None, &q).trim() != "0" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slow check never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let started = std::time::Instant::now();
    // SAFETY: signalling the process group of the child this test started.
    unsafe {
        libc::kill(-(child.id() as libc::pid_t), libc::SIGINT);
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(
        started.elapsed().as_secs() < 30,
        "the drill did not stop promptly"
    );
    assert_eq!(
        leftovers(engine, &name),
        "",
        "scratch database left after Ctrl-C:\n{err}"
    );
}
