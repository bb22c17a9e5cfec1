//! `kind = "mariadb"` / `"mysql"`: `mariadb-dump` (or `mysqldump`) in one
//! consistent transaction, with table metadata from the `mariadb` client
//! first. The password reaches both only through a temporary defaults file
//! (0600) given as the first argument, never argv.

use std::path::Path;
use std::process::Command;

use crate::config::DatabaseSource;

use super::db::{self, Wrap};
use super::{DumpStream, SourceError};
use crate::dbtool;

fn connection_args(db: &DatabaseSource) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(h) = &db.host {
        args.push(format!("--host={h}"));
    }
    if let Some(p) = db.port {
        args.push(format!("--port={p}"));
    }
    if let Some(u) = &db.user {
        args.push(format!("--user={u}"));
    }
    args
}

const METADATA_SQL: &str = "SELECT 'v', VERSION(), \
  (SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables \
   WHERE table_schema = DATABASE()); \
  SELECT 't', table_name, COALESCE(table_rows, -1), COALESCE(engine, '') \
  FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' \
  ORDER BY table_name;";

/// Parses the client's batch output of [`METADATA_SQL`].
fn parse_metadata(out: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    let mut tables = Vec::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["v", version, size] => {
                m.insert("server_version".into(), (*version).into());
                if let Ok(n) = size.parse::<u64>() {
                    m.insert("database_size".into(), n.into());
                }
            }
            ["t", name, rows, engine] => {
                let rows: Option<i64> = rows.parse().ok().filter(|n| *n >= 0);
                tables.push(serde_json::json!({
                    "name": name,
                    "rows": rows,
                    // information_schema.tables.table_rows is an estimate
                    // for InnoDB.
                    "exact": false,
                    "engine": engine,
                }));
            }
            _ => {}
        }
    }
    m.insert("tables".into(), tables.into());
    m
}

/// Tables estimated below this many rows (at most [`EXACT_COUNT_TABLES`]
/// of them) are counted exactly.
pub const EXACT_COUNT_BELOW: i64 = 100_000;
const EXACT_COUNT_TABLES: usize = 500;

fn exact_counts_sql(meta: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let tables = meta.get("tables")?.as_array()?;
    let parts: Vec<String> = tables
        .iter()
        .filter(|t| t["rows"].as_i64().is_some_and(|n| n < EXACT_COUNT_BELOW))
        .filter_map(|t| t["name"].as_str())
        .take(EXACT_COUNT_TABLES)
        .map(|name| {
            let lit = name.replace('\\', "\\\\").replace('\'', "''");
            let ident = name.replace('`', "``");
            format!("SELECT 'c', '{lit}', COUNT(*) FROM `{ident}`")
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; ") + ";")
}

fn apply_exact_counts(meta: &mut serde_json::Map<String, serde_json::Value>, out: &str) {
    let Some(tables) = meta.get_mut("tables").and_then(|t| t.as_array_mut()) else {
        return;
    };
    for line in out.lines() {
        if let ["c", name, count] = line.split('\t').collect::<Vec<_>>().as_slice()
            && let Ok(n) = count.parse::<u64>()
            && let Some(t) = tables.iter_mut().find(|t| t["name"] == *name)
        {
            t["rows"] = n.into();
            t["exact"] = true.into();
        }
    }
}

/// Keeps a password meant for Lockbox (or a stray `MYSQL_PWD`) out of a
/// child's environment: the tools read it from the defaults file only.
fn scrub_env(cmd: &mut Command, db: &DatabaseSource) {
    dbtool::mariadb::configure_env(cmd);
    if let Some(crate::config::PasswordFrom::Env(var)) = &db.password {
        cmd.env_remove(var);
    }
}

/// The SQL client as the source's account, batch output without column
/// names, running `sql` (in `database` when given).
fn client(
    db: &DatabaseSource,
    defaults: Option<&tempfile::NamedTempFile>,
    sql: &str,
    database: Option<&str>,
) -> Command {
    let mut q = Command::new(db::client_beside(&db.dump_tool, db.flavor.default_client()));
    // Must be the very first argument, or the client ignores it.
    if let Some(f) = defaults {
        q.arg(dbtool::mariadb::defaults_arg(f));
    }
    q.args(["--batch", "--skip-column-names", "--connect-timeout=30"])
        .args(connection_args(db))
        .args(["-e", sql]);
    if let Some(d) = database {
        q.args(["--", d]);
    }
    scrub_env(&mut q, db);
    q
}

pub(super) fn open(
    source_name: &str,
    db: &DatabaseSource,
    tmp_dir: &Path,
) -> Result<DumpStream, SourceError> {
    let login = db::login(source_name, db.password.as_ref(), tmp_dir)?;
    let defaults = db::credentials_file(
        source_name,
        &login,
        dbtool::mariadb::OPTIONS_PREFIX,
        dbtool::mariadb::options_file,
    )?;
    // Must be the very first argument, or the tools ignore it.
    let first: Vec<String> = defaults.iter().map(dbtool::mariadb::defaults_arg).collect();
    let conn = connection_args(db);
    let database = db
        .database
        .clone()
        .expect("validated: database is required");
    let mut info = serde_json::json!({
        "dump_tool": db.dump_tool,
        "database": database,
        "format": "SQL text (restore with the mariadb/mysql client)",
    });
    let q = client(db, defaults.as_ref(), METADATA_SQL, Some(&database));
    match db::run_query(source_name, q, &login) {
        Ok(out) => {
            let mut meta = parse_metadata(&out);
            // Exact counts where cheap: one batch of COUNT(*) for the small tables.
            if let Some(sql) = exact_counts_sql(&meta) {
                let c = client(db, defaults.as_ref(), &sql, Some(&database));
                match db::run_query(source_name, c, &login) {
                    Ok(out) => apply_exact_counts(&mut meta, &out),
                    Err(Some(e)) => return Err(e),
                    Err(None) => {}
                }
            }
            info.as_object_mut().expect("object").extend(meta);
            info["metadata"] = "collected by the client just before the dump; row counts \
                 exact where marked, else InnoDB's estimates"
                .into();
        }
        Err(Some(e)) => return Err(e),
        Err(None) => info["metadata"] = "unavailable".into(),
    }

    let mut cmd = Command::new(&db.dump_tool);
    cmd.args(&first)
        .args([
            "--single-transaction",
            "--quick",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
        ])
        .args(&conn)
        .args(["--", &database]);
    scrub_env(&mut cmd, db);
    db::spawn_dump(
        source_name,
        cmd,
        Wrap {
            kind: db.flavor.kind_name(),
            info,
            login,
            temp_files: defaults.into_iter().collect(),
            trailer: Some("-- Dump completed"),
        },
    )
}

/// Runs `sql` with the client as the source's account; batch output
/// without column names.
pub(crate) fn query(
    source_name: &str,
    db: &DatabaseSource,
    tmp_dir: &Path,
    sql: &str,
) -> Result<String, SourceError> {
    let login = db::login(source_name, db.password.as_ref(), tmp_dir)?;
    let defaults = db::credentials_file(
        source_name,
        &login,
        dbtool::mariadb::OPTIONS_PREFIX,
        dbtool::mariadb::options_file,
    )?;
    let q = client(db, defaults.as_ref(), sql, None);
    db::run_checked(source_name, q, &login)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_metadata() {
        let m = parse_metadata("v\t10.11.6-MariaDB\t16384\nt\tbig\t199872\tInnoDB\nt\tv\tNULL\t\n");
        assert_eq!(m["server_version"], "10.11.6-MariaDB");
        assert_eq!(m["database_size"], 16384);
        assert_eq!(m["tables"][0]["rows"], 199872);
        assert_eq!(m["tables"][0]["exact"], false);
        let mut m = parse_metadata("v\tx\t1\nt\tbig\t199872\tInnoDB\nt\tsm'all\t3\tInnoDB\n");
        let sql = exact_counts_sql(&m).unwrap();
        assert_eq!(sql, "SELECT 'c', 'sm''all', COUNT(*) FROM `sm'all`;");
        apply_exact_counts(&mut m, "c\tsm'all\t4\n");
        assert_eq!(m["tables"][1]["rows"], 4);
        assert_eq!(m["tables"][1]["exact"], true);
        assert_eq!(m["tables"][0]["exact"], false);
    }
}
