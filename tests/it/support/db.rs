//! Helpers for tests against the real PostgreSQL (127.0.0.1:5432, user
//! postgres) and MariaDB (127.0.0.1:3306, root) servers: admin SQL through
//! the command-line clients, databases and roles that clean up after
//! themselves (even when a test panics), and per-table ordered checksums.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Mariadb,
}

pub const PG_ADMIN: &str = "postgres";
pub const MY_ADMIN: &str = "root";

impl Engine {
    fn client(self, db: Option<&str>) -> Command {
        match self {
            Engine::Postgres => {
                let mut c = Command::new("psql");
                c.args([
                    "-X",
                    "-A",
                    "-t",
                    "-q",
                    "-F",
                    "\t",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    "5432",
                    "-U",
                    PG_ADMIN,
                    "-d",
                ])
                .arg(db.unwrap_or("postgres"))
                .env_remove("PGPASSWORD");
                c
            }
            Engine::Mariadb => {
                let mut c = Command::new("mariadb");
                c.args([
                    "--batch",
                    "--skip-column-names",
                    "--host=127.0.0.1",
                    "--port=3306",
                    "--user=root",
                    "--default-character-set=utf8mb4",
                ])
                .env_remove("MYSQL_PWD");
                if let Some(db) = db {
                    c.arg(format!("--database={db}"));
                }
                c
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Engine::Postgres => "PostgreSQL",
            Engine::Mariadb => "MariaDB",
        }
    }

    /// The URL scheme for `restore --into`.
    pub fn url(self, db: &str) -> String {
        match self {
            Engine::Postgres => format!("postgresql://{PG_ADMIN}@127.0.0.1:5432/{db}"),
            Engine::Mariadb => format!("mariadb://{MY_ADMIN}@127.0.0.1:3306/{db}"),
        }
    }
}

/// Runs admin SQL (several statements allowed); stdout, or stderr on failure.
pub fn try_sql(engine: Engine, db: Option<&str>, sql: &str) -> Result<String, String> {
    let mut c = engine.client(db);
    let out = match engine {
        // psql -c runs one multi-statement string as one transaction unless
        // it holds CREATE DATABASE; stdin runs them one by one.
        Engine::Postgres | Engine::Mariadb => {
            c.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = c.spawn().map_err(|e| e.to_string())?;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(sql.as_bytes())
                .map_err(|e| e.to_string())?;
            child.wait_with_output().map_err(|e| e.to_string())?
        }
    };
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Runs admin SQL; panics with the client's error.
pub fn sql(engine: Engine, db: Option<&str>, sql: &str) -> String {
    try_sql(engine, db, sql)
        .unwrap_or_else(|e| panic!("{} SQL failed: {e}\nSQL: {sql}", engine.name()))
}

/// True if the server answers; if not, [`skip`](super::skip::skip)s the
/// running test (a failure under `CI`) and returns false.
pub fn reachable(engine: Engine) -> bool {
    match try_sql(engine, None, "select 1;") {
        Ok(_) => true,
        Err(e) => {
            super::skip::skip(format_args!(
                "{} on 127.0.0.1 is not reachable as the admin user ({}); this test needs it: {e}",
                engine.name(),
                match engine {
                    Engine::Postgres => PG_ADMIN,
                    Engine::Mariadb => MY_ADMIN,
                }
            ));
            false
        }
    }
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "lbt_{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000
    )
}

/// A database dropped when this guard goes out of scope (also on panic).
pub struct TempDb {
    pub engine: Engine,
    pub name: String,
}

impl TempDb {
    /// A name only: the database is not created (e.g. for restore --into).
    pub fn named(engine: Engine, prefix: &str) -> Self {
        Self {
            engine,
            name: unique(prefix),
        }
    }

    pub fn create(engine: Engine, prefix: &str) -> Self {
        let db = Self::named(engine, prefix);
        sql(engine, None, &format!("CREATE DATABASE {};", db.name));
        db
    }

    pub fn sql(&self, text: &str) -> String {
        sql(self.engine, Some(&self.name), text)
    }

    pub fn exists(&self) -> bool {
        let q = match self.engine {
            Engine::Postgres => format!(
                "select count(*) from pg_database where datname = '{}';",
                self.name
            ),
            Engine::Mariadb => format!(
                "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = '{}';",
                self.name
            ),
        };
        sql(self.engine, None, &q).trim() == "1"
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let q = match self.engine {
            Engine::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE);", self.name),
            Engine::Mariadb => format!("DROP DATABASE IF EXISTS {};", self.name),
        };
        if let Err(e) = try_sql(self.engine, None, &q) {
            eprintln!("cleanup: could not drop database {}: {e}", self.name);
        }
    }
}

/// A role/user dropped when this guard goes out of scope.
pub struct TempRole {
    pub engine: Engine,
    pub name: String,
}

impl TempRole {
    /// Creates a login role with `password`; `grants` is run right after
    /// (with `{role}` replaced by the role's name).
    pub fn create(engine: Engine, password: &str, grants: &str) -> Self {
        let name = unique("role");
        let create = match engine {
            Engine::Postgres => format!("CREATE ROLE {name} LOGIN PASSWORD '{password}';"),
            Engine::Mariadb => format!(
                "CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'; \
                 CREATE USER '{name}'@'localhost' IDENTIFIED BY '{password}';"
            ),
        };
        sql(engine, None, &create);
        let role = Self { engine, name };
        if !grants.is_empty() {
            sql(engine, None, &grants.replace("{role}", &role.name));
        }
        role
    }
}

impl Drop for TempRole {
    fn drop(&mut self) {
        let q = match self.engine {
            Engine::Postgres => format!("DROP ROLE IF EXISTS {};", self.name),
            Engine::Mariadb => format!(
                "DROP USER IF EXISTS '{n}'@'%'; DROP USER IF EXISTS '{n}'@'localhost';",
                n = self.name
            ),
        };
        if let Err(e) = try_sql(self.engine, None, &q) {
            eprintln!("cleanup: could not drop role {}: {e}", self.name);
        }
    }
}

/// Every table's and view's content as an ordered checksum (rows sorted by
/// their text form, NULLs distinct from empty values), by relation name.
pub fn checksums(engine: Engine, db: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match engine {
        Engine::Postgres => {
            let rels = sql(
                engine,
                Some(db),
                "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace \
                 where n.nspname = 'public' and c.relkind in ('r', 'v', 'm') order by 1;",
            );
            for rel in rels.lines().filter(|l| !l.is_empty()) {
                // Row text distinguishes NULL (empty field) from '' ("").
                let sum = sql(
                    engine,
                    Some(db),
                    &format!(
                        "select count(*) || ':' || md5(coalesce(string_agg(t::text, E'\\n' \
                         order by t::text), '')) from public.\"{rel}\" t;"
                    ),
                );
                out.insert(rel.to_string(), sum.trim().to_string());
            }
        }
        Engine::Mariadb => {
            let cols = sql(
                engine,
                None,
                &format!(
                    "SET SESSION group_concat_max_len = 1000000; \
                     SELECT table_name, GROUP_CONCAT(CONCAT('QUOTE(`', column_name, '`)') \
                     ORDER BY ordinal_position SEPARATOR ',') FROM information_schema.columns \
                     WHERE table_schema = '{db}' GROUP BY table_name ORDER BY table_name;"
                ),
            );
            for line in cols.lines().filter(|l| !l.is_empty()) {
                let (table, exprs) = line.split_once('\t').unwrap();
                let sum = sql(
                    engine,
                    Some(db),
                    &format!(
                        "SET SESSION group_concat_max_len = 1073741824; \
                         SELECT CONCAT(COUNT(*), ':', MD5(COALESCE(GROUP_CONCAT(h ORDER BY h \
                         SEPARATOR ''), ''))) FROM (SELECT MD5(CONCAT_WS(',', {exprs})) AS h \
                         FROM `{table}`) x;"
                    ),
                );
                out.insert(table.to_string(), sum.trim().to_string());
            }
        }
    }
    out
}

/// Scans every process's command line for `needle` until `stop` is set;
/// returns the offending command lines (none expected).
pub fn watch_cmdlines(
    needle: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut scans = 0usize;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            scans += 1;
            for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
                    let text = String::from_utf8_lossy(&cmd).replace('\0', " ");
                    if text.contains(&needle) {
                        seen.push(text);
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        (scans, seen)
    })
}

/// Writes an executable wrapper `dir/name` that appends its own argv (one
/// line, NUL-separated args shown as spaces) and whether `env_var` names an
/// existing file to `dir/argv.log`, then runs `real` with the same args.
pub fn recording_wrapper(dir: &std::path::Path, name: &str, real: &str, env_var: &str) {
    use std::os::unix::fs::PermissionsExt;
    let log = dir.join("argv.log");
    let script = format!(
        "#!/bin/sh\n\
         {{ tr '\\0' ' ' < /proc/$$/cmdline; printf ' | {env_var}-file:'; \
            if [ -n \"${env_var}\" ] && [ -f \"${env_var}\" ]; then printf yes; else printf no; fi; \
            echo; }} >> '{log}'\n\
         exec {real} \"$@\"\n",
        log = log.display()
    );
    let path = dir.join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Every file under `dir`, recursively.
pub fn all_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Panics if any file under `dir` contains `needle`.
pub fn assert_not_in_files(dir: &std::path::Path, needle: &str) {
    for f in all_files(dir) {
        if let Ok(bytes) = std::fs::read(&f) {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "the secret appears in {}",
                f.display()
            );
        }
    }
}
