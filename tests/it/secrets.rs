//! Database passwords never leak: a full backup, `restore --into` and
//! `drill` of a real PostgreSQL and MariaDB source, with random passwords
//! known to the test, handed over every way Lockbox accepts them
//! (`password_env`, `password_file`, `[source.drill] password_file`,
//! `LOCKBOX_RESTORE_PASSWORD`, `restore --password-file`). While Lockbox
//! runs, a sampler reads every process's argv and every child's
//! environment; afterwards the test searches all output (human and JSON, at
//! debug level), every file in the vault, the state directory and the
//! catalog, and the decrypted sealed parts of every manifest and
//! attestation. Deliberately wrong passwords (MariaDB checks them) must not
//! appear in the error messages that reject them.
//!
//! (PostgreSQL here trusts 127.0.0.1, so its password is never checked, but
//! it is still passed to pg_dump, psql and pg_restore and must not leak.)

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use lockbox_vault::attestation::Attestation;
use lockbox_vault::keys::Identities;
use lockbox_vault::manifest::Manifest;

use crate::support::db::{self, Engine, TempDb, TempRole};
use crate::support::{Vault, local};

/// A password no other run uses, so a hit can only be this test's.
fn random_secret(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut x = (nanos as u64) ^ (u64::from(std::process::id()) << 32) ^ tag.len() as u64;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    format!("{tag}-Pw{x:016x}")
}

/// One process in which a secret was seen.
struct Hit {
    pid: u32,
    what: &'static str,
    text: String,
}

/// Samples `/proc/*/cmdline` of every process and `/proc/*/environ` of
/// every process that is not Lockbox itself (Lockbox may hold a
/// `password_env` variable; its children must not) until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(usize, Vec<Hit>)>,
}

fn exe_is_lockbox(pid: &str) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("lockbox"))
        })
        .unwrap_or(true)
}

impl Sampler {
    fn start(secrets: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let me = std::process::id().to_string();
        let handle = std::thread::spawn(move || {
            let mut hits = Vec::new();
            let mut scans = 0usize;
            while !flag.load(Ordering::Relaxed) {
                scans += 1;
                for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    let pid = e.file_name().to_string_lossy().into_owned();
                    if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
                        continue;
                    }
                    if let Ok(b) = std::fs::read(e.path().join("cmdline")) {
                        let text = String::from_utf8_lossy(&b).replace('\0', " ");
                        if secrets.iter().any(|s| text.contains(s.as_str())) {
                            hits.push(Hit {
                                pid: pid.parse().unwrap(),
                                what: "argv",
                                text,
                            });
                        }
                    }
                    // Between fork and exec a child still has Lockbox's
                    // environment: only a process that is some other
                    // program before and after the read counts.
                    if exe_is_lockbox(&pid) {
                        continue;
                    }
                    if let Ok(b) = std::fs::read(e.path().join("environ")) {
                        let text = String::from_utf8_lossy(&b).replace('\0', " ");
                        if secrets.iter().any(|s| text.contains(s.as_str()))
                            && !exe_is_lockbox(&pid)
                        {
                            let exe = std::fs::read_link(e.path().join("exe"))
                                .map(|p| p.display().to_string())
                                .unwrap_or_default();
                            hits.push(Hit {
                                pid: pid.parse().unwrap(),
                                what: "environment",
                                text: format!("{exe}: {text}"),
                            });
                        }
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            (scans, hits)
        });
        Self { stop, handle }
    }

    fn finish(self) -> Vec<Hit> {
        self.stop.store(true, Ordering::Relaxed);
        let (scans, hits) = self.handle.join().unwrap();
        assert!(scans > 0, "the sampler never ran");
        hits
    }
}

/// Everything one run of Lockbox showed, for the leak checks at the end.
#[derive(Default)]
struct Transcript {
    text: String,
    hits: Vec<Hit>,
}

impl Transcript {
    /// Runs lockbox (config of `v`) with `args` and `env` under the
    /// sampler; records stdout and stderr; returns the output.
    fn run(
        &mut self,
        v: &Vault,
        args: &[&str],
        env: &[(&str, &str)],
        secrets: &[String],
    ) -> Output {
        let sampler = Sampler::start(secrets.to_vec());
        let mut cmd: Command = v.cmd();
        cmd.env_remove("LOCKBOX_RESTORE_PASSWORD")
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        let lockbox = child.id();
        let out = child.wait_with_output().unwrap();
        // Lockbox's own argv never holds a secret; its environment may.
        self.hits.extend(
            sampler
                .finish()
                .into_iter()
                .filter(|h| h.what == "argv" || h.pid != lockbox),
        );
        self.text.push_str(&format!(
            "\n=== lockbox {args:?} ({})\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
        out
    }

    fn ok(&mut self, v: &Vault, args: &[&str], env: &[(&str, &str)], secrets: &[String]) -> Output {
        let out = self.run(v, args, env, secrets);
        assert!(
            out.status.success(),
            "lockbox {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn assert_clean(&self, secrets: &[String]) {
        let seen: Vec<String> = self
            .hits
            .iter()
            .map(|h| format!("pid {} {}: {}", h.pid, h.what, h.text))
            .collect();
        assert!(seen.is_empty(), "secret seen in a process: {seen:#?}");
        for s in secrets {
            assert!(
                !self.text.contains(s.as_str()),
                "secret {s} in Lockbox's output:\n{}",
                self.text
            );
        }
    }
}

/// Every file under `dir` (vault, state, catalog, config) is free of the
/// secrets, and so are the decrypted sealed parts of manifests and
/// attestations. Returns how many sealed parts were opened.
fn assert_repository_clean(v: &Vault, secrets: &[String]) -> usize {
    for s in secrets {
        db::assert_not_in_files(v.path(), s);
    }
    let ids = Identities::from_file(&v.identity).unwrap();
    let mut opened = 0;
    for f in db::all_files(&v.repo()) {
        if !local::is_object(&f) {
            continue;
        }
        let rel = f.strip_prefix(v.repo()).unwrap().display().to_string();
        let bytes = std::fs::read(&f).unwrap();
        let sealed = if rel.starts_with("snapshots/") {
            let m = Manifest::parse_unchecked(&bytes, &rel).unwrap();
            serde_json::to_string(&m.unseal(&ids, &rel).unwrap()).unwrap()
        } else if rel.starts_with("attestations/") {
            let a = Attestation::parse_unchecked(&bytes, &rel).unwrap();
            a.unseal(&ids).unwrap().to_string()
        } else {
            continue;
        };
        opened += 1;
        for s in secrets {
            assert!(
                !sealed.contains(s.as_str()),
                "secret in the sealed part of {rel}"
            );
        }
    }
    opened
}

fn write_secret_file(dir: &Path, name: &str, secret: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("{secret}\n")).unwrap();
    p.display().to_string()
}

const JSON_DEBUG: &[&str] = &["-vv", "--log-format", "json"];
const TEXT_DEBUG: &[&str] = &["-vv"];

fn args<'a>(log: &[&'a str], rest: &[&'a str]) -> Vec<&'a str> {
    log.iter().chain(rest).copied().collect()
}

#[test]
fn postgres_passwords_leak_nowhere() {
    let pg = Engine::Postgres;
    if !db::reachable(pg) {
        return;
    }
    let source_pw = random_secret("pgsrc");
    let restore_pw = random_secret("pgrestore");
    let drill_pw = random_secret("pgdrill");
    let secrets = vec![source_pw.clone(), restore_pw.clone(), drill_pw.clone()];
    let src = TempDb::create(pg, "secsrc");
    src.sql(
        "CREATE TABLE orders (id int primary key, note text); \
         INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 2000) g;",
    );
    let role = TempRole::create(pg, &source_pw, "GRANT pg_read_all_data TO {role};");
    let files = tempfile::tempdir().unwrap();
    let drill_file = write_secret_file(files.path(), "drill-pw", &drill_pw);
    let name = format!("p{}", &src.name[src.name.len() - 8..]);
    let v = Vault::new(&format!(
        "\n[[source]]\nname = \"{name}\"\nkind = \"postgres\"\nhost = \"127.0.0.1\"\nport = 5432\n\
         user = \"{}\"\ndatabase = \"{}\"\npassword_env = \"LBT_SECRET_PG\"\n\
         [source.drill]\ntarget = \"{}\"\nallow_source_server = true\npassword_file = \"{drill_file}\"\n\
         [[source.drill.check]]\nname = \"orders\"\nsql = \"SELECT count(*) FROM orders\"\nexpect = 2000\n",
        role.name,
        src.name,
        pg.url("postgres"),
    ));
    let env = [("LBT_SECRET_PG", source_pw.as_str())];
    // Drills run with the source's password variable set too: restore-side
    // tools (psql, pg_restore) must not inherit it.
    let mut t = Transcript::default();
    t.ok(
        &v,
        &args(JSON_DEBUG, &["backup", "--json", &name]),
        &env,
        &secrets,
    );
    src.sql("UPDATE orders SET note = 'changed' WHERE id <= 20;");
    t.ok(&v, &args(TEXT_DEBUG, &["backup", &name]), &env, &secrets);

    let id = v.identity.to_str().unwrap();
    let dst = TempDb::named(pg, "secdst");
    let into = pg.url(&dst.name);
    t.ok(
        &v,
        &args(
            JSON_DEBUG,
            &[
                "restore",
                "latest",
                "--source",
                &name,
                "--identity",
                id,
                "--into",
                &into,
                "--json",
            ],
        ),
        &[("LOCKBOX_RESTORE_PASSWORD", restore_pw.as_str())],
        &secrets,
    );
    assert_eq!(dst.sql("SELECT count(*) FROM orders;").trim(), "2000");
    let restore_file = write_secret_file(files.path(), "restore-pw", &restore_pw);
    t.ok(
        &v,
        &args(
            TEXT_DEBUG,
            &[
                "restore",
                "latest",
                "--source",
                &name,
                "--identity",
                id,
                "--into",
                &into,
                "--force",
                "--password-file",
                &restore_file,
            ],
        ),
        &[],
        &secrets,
    );
    t.ok(
        &v,
        &args(JSON_DEBUG, &["drill", &name, "--identity", id, "--json"]),
        &env,
        &secrets,
    );
    t.ok(
        &v,
        &args(TEXT_DEBUG, &["drill", &name, "--identity", id]),
        &env,
        &secrets,
    );
    for cmd in [
        &["snapshots", "--json"][..],
        &["status", "--json"],
        &["verify", "--read-data", "--identity", id, "--json"],
        &["catalog", "rebuild"],
    ] {
        t.run(&v, &args(JSON_DEBUG, cmd), &env, &secrets);
    }
    // The variable is missing: the error names it, not a value.
    let out = t.run(&v, &args(JSON_DEBUG, &["backup", &name]), &[], &secrets);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("LBT_SECRET_PG"));

    t.assert_clean(&secrets);
    let opened = assert_repository_clean(&v, &secrets);
    assert!(
        opened >= 4,
        "2 manifests and 2 attestations, opened {opened}"
    );
}

#[test]
fn mariadb_passwords_leak_nowhere_even_when_wrong() {
    let my = Engine::Mariadb;
    if !db::reachable(my) {
        return;
    }
    let source_pw = random_secret("mysrc");
    let admin_pw = random_secret("myadmin");
    let wrong_pw = random_secret("mywrong");
    let secrets = vec![source_pw.clone(), admin_pw.clone(), wrong_pw.clone()];
    let src = TempDb::create(my, "secsrc");
    src.sql(
        "CREATE TABLE orders (id int primary key, note text); \
         INSERT INTO orders VALUES (1, 'a'), (2, 'b'), (3, 'c');",
    );
    let reader = TempRole::create(
        my,
        &source_pw,
        &format!(
            "GRANT SELECT, SHOW VIEW, TRIGGER, LOCK TABLES, EVENT ON `{db}`.* TO '{{role}}'@'%'; \
             GRANT SELECT, SHOW VIEW, TRIGGER, LOCK TABLES, EVENT ON `{db}`.* TO '{{role}}'@'localhost';",
            db = src.name
        ),
    );
    // Restores and drills log in as an account with a password too.
    let admin = TempRole::create(
        my,
        &admin_pw,
        "GRANT ALL PRIVILEGES ON *.* TO '{role}'@'%'; GRANT ALL PRIVILEGES ON *.* TO '{role}'@'localhost';",
    );
    let files = tempfile::tempdir().unwrap();
    let source_file = write_secret_file(files.path(), "source-pw", &source_pw);
    let admin_file = write_secret_file(files.path(), "admin-pw", &admin_pw);
    let wrong_file = write_secret_file(files.path(), "wrong-pw", &wrong_pw);
    let name = format!("m{}", &src.name[src.name.len() - 8..]);
    let server = format!("mariadb://{}@127.0.0.1:3306/mysql", admin.name);
    let config = |source_file: &str, drill_file: &str| {
        format!(
            "\n[[source]]\nname = \"{name}\"\nkind = \"mariadb\"\nhost = \"127.0.0.1\"\nport = 3306\n\
             user = \"{}\"\ndatabase = \"{}\"\npassword_file = \"{source_file}\"\n\
             [source.drill]\ntarget = \"{server}\"\nallow_source_server = true\npassword_file = \"{drill_file}\"\n\
             [[source.drill.check]]\nname = \"orders\"\nsql = \"SELECT count(*) FROM orders\"\nexpect = 3\n",
            reader.name, src.name
        )
    };
    let v = Vault::new(&config(&source_file, &admin_file));
    let mut t = Transcript::default();
    t.ok(
        &v,
        &args(JSON_DEBUG, &["backup", "--json", &name]),
        &[],
        &secrets,
    );
    t.ok(&v, &args(TEXT_DEBUG, &["backup", &name]), &[], &secrets);
    let id = v.identity.to_str().unwrap();
    let dst = TempDb::named(my, "secdst");
    let into = format!("mariadb://{}@127.0.0.1:3306/{}", admin.name, dst.name);
    t.ok(
        &v,
        &args(
            JSON_DEBUG,
            &[
                "restore",
                "latest",
                "--source",
                &name,
                "--identity",
                id,
                "--into",
                &into,
                "--json",
            ],
        ),
        &[("LOCKBOX_RESTORE_PASSWORD", admin_pw.as_str())],
        &secrets,
    );
    assert_eq!(dst.sql("SELECT count(*) FROM orders;").trim(), "3");
    t.ok(
        &v,
        &args(
            TEXT_DEBUG,
            &[
                "restore",
                "latest",
                "--source",
                &name,
                "--identity",
                id,
                "--into",
                &into,
                "--force",
                "--password-file",
                &admin_file,
            ],
        ),
        &[],
        &secrets,
    );
    t.ok(
        &v,
        &args(JSON_DEBUG, &["drill", &name, "--identity", id, "--json"]),
        &[],
        &secrets,
    );
    t.ok(
        &v,
        &args(TEXT_DEBUG, &["drill", &name, "--identity", id]),
        &[],
        &secrets,
    );

    // Wrong passwords: refused by the server, with an error that helps and
    // does not repeat the password.
    let out = t.run(
        &v,
        &args(
            JSON_DEBUG,
            &[
                "restore",
                "latest",
                "--source",
                &name,
                "--identity",
                id,
                "--into",
                &into,
                "--force",
                "--password-file",
                &wrong_file,
            ],
        ),
        &[],
        &secrets,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Access denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&v.config).unwrap();
    std::fs::write(
        &v.config,
        text.replace(&source_file, &wrong_file)
            .replace(&admin_file, &wrong_file),
    )
    .unwrap();
    for log in [JSON_DEBUG, TEXT_DEBUG] {
        let out = t.run(&v, &args(log, &["backup", &name]), &[], &secrets);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("authentication failed") || err.contains("Access denied"),
            "{err}"
        );
        let out = t.run(
            &v,
            &args(log, &["drill", &name, "--identity", id]),
            &[],
            &secrets,
        );
        assert!(!out.status.success());
    }
    // The daemon's logs of a failing scheduled run are the same events; the
    // status server and `status` show the last error.
    t.run(&v, &args(JSON_DEBUG, &["status", "--json"]), &[], &secrets);

    t.assert_clean(&secrets);
    let opened = assert_repository_clean(&v, &secrets);
    assert!(
        opened >= 4,
        "2 manifests and 2 attestations, opened {opened}"
    );
}
