//! PostgreSQL targets: `psql` for queries and DDL, `pg_restore` (custom
//! format) or `psql` (plain SQL) for the load, in one transaction.

use std::path::Path;
use std::process::Command;

use super::{DumpFormat, LoadError, Password, Server, TableName};

/// Objects of the database's own (non-system) schemas.
const OWN_OBJECTS_SQL: &str = "select (select count(*) from pg_class c \
   join pg_namespace n on n.oid = c.relnamespace \
   where n.nspname not in ('pg_catalog', 'information_schema') \
     and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%') \
 + (select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace \
   where n.nspname not in ('pg_catalog', 'information_schema'))";

pub(super) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `host:port:database:user:password`, separators escaped.
fn passfile_line(pw: &Password) -> String {
    let escaped = pw.expose().replace('\\', "\\\\").replace(':', "\\:");
    format!("*:*:*:*:{escaped}\n")
}

/// A psql/pg_restore command for `database` on `s`; the passfile must live
/// until the command has run.
fn command(
    program: &str,
    s: &Server,
    database: &str,
    pw: Option<&Password>,
) -> Result<(Command, Option<tempfile::NamedTempFile>), LoadError> {
    let mut cmd = Command::new(program);
    cmd.arg("--no-password")
        .arg("--host")
        .arg(&s.host)
        .arg("--port")
        .arg(s.port.to_string());
    if let Some(u) = &s.user {
        cmd.arg("--username").arg(u);
    }
    cmd.arg("--dbname").arg(database);
    // The restore password reaches the tool only through the passfile,
    // never through an inherited LOCKBOX_RESTORE_PASSWORD.
    cmd.env_remove("PGPASSWORD")
        .env_remove(super::PASSWORD_ENV)
        .env_remove("PGSERVICE")
        .env("PGAPPNAME", "lockbox-restore");
    // Nor a source's password_env, which a drill's process also carries.
    lockbox_vault::source::db::scrub_secret_env(&mut cmd);
    if std::env::var_os("PGCONNECT_TIMEOUT").is_none() {
        cmd.env("PGCONNECT_TIMEOUT", "30");
    }
    let passfile = match pw {
        Some(pw) => {
            let f = super::secret_file(&passfile_line(pw))?;
            cmd.env("PGPASSFILE", f.path());
            Some(f)
        }
        None => None,
    };
    Ok((cmd, passfile))
}

fn psql(
    s: &Server,
    database: &str,
    pw: Option<&Password>,
    sql: &str,
    what: &str,
) -> Result<String, LoadError> {
    let (mut cmd, _passfile) = command("psql", s, database, pw)?;
    cmd.args([
        "-X",
        "-A",
        "-t",
        "-q",
        "-F",
        "\t",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        sql,
    ]);
    super::run_tool(cmd, None, pw, &target(s, database), what)
}

fn target(s: &Server, database: &str) -> String {
    super::DbTarget::Postgres(Server {
        database: database.into(),
        ..s.clone()
    })
    .to_string()
}

/// The maintenance database used to create and drop others.
const MAINTENANCE_DB: &str = "postgres";

pub(super) fn exists(s: &Server, pw: Option<&Password>) -> Result<bool, LoadError> {
    let out = psql(
        s,
        MAINTENANCE_DB,
        pw,
        &format!(
            "select 1 from pg_database where datname = {}",
            quote_literal(&s.database)
        ),
        "checking whether the database exists",
    )?;
    Ok(out.trim() == "1")
}

pub(super) fn create(s: &Server, pw: Option<&Password>) -> Result<(), LoadError> {
    // template0: truly empty, whatever was added to template1.
    psql(
        s,
        MAINTENANCE_DB,
        pw,
        &format!(
            "create database {} template template0",
            quote_ident(&s.database)
        ),
        "creating the database",
    )
    .map(std::mem::drop)
}

pub(super) fn drop(s: &Server, pw: Option<&Password>) -> Result<(), LoadError> {
    psql(
        s,
        MAINTENANCE_DB,
        pw,
        &format!("drop database if exists {}", quote_ident(&s.database)),
        "dropping the database",
    )
    .map(std::mem::drop)
}

pub(super) fn is_empty(s: &Server, pw: Option<&Password>) -> Result<bool, LoadError> {
    if !exists(s, pw)? {
        return Ok(true);
    }
    let n = psql(
        s,
        &s.database,
        pw,
        OWN_OBJECTS_SQL,
        "checking whether the database is empty",
    )?;
    Ok(n.trim() == "0")
}

pub(super) fn query_scalar(
    s: &Server,
    pw: Option<&Password>,
    sql: &str,
) -> Result<Option<String>, LoadError> {
    let out = psql(s, &s.database, pw, sql, "running a query")?;
    Ok(out
        .lines()
        .next()
        .map(|l| l.split('\t').next().unwrap_or("").to_string())
        .filter(|v| !v.is_empty()))
}

pub(super) fn list_tables(s: &Server, pw: Option<&Password>) -> Result<Vec<TableName>, LoadError> {
    let out = psql(
        s,
        &s.database,
        pw,
        "select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace \
         where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema') \
           and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%' order by 1, 2",
        "listing tables",
    )?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(schema, name)| TableName {
            schema: Some(schema.into()),
            name: name.into(),
        })
        .collect())
}

pub(super) fn load(
    s: &Server,
    pw: Option<&Password>,
    dump: &Path,
    format: DumpFormat,
    force: bool,
) -> Result<(), LoadError> {
    let shown = target(s, &s.database);
    match format {
        DumpFormat::PgCustom => {
            let (mut cmd, _passfile) = command("pg_restore", s, &s.database, pw)?;
            // One transaction: the database is loaded completely or not at all.
            cmd.args(["--exit-on-error", "--single-transaction"]);
            if force {
                cmd.args(["--clean", "--if-exists"]);
            }
            cmd.arg(dump);
            super::run_tool(cmd, None, pw, &shown, "loading the dump").map(std::mem::drop)
        }
        DumpFormat::SqlText => {
            let (mut cmd, _passfile) = command("psql", s, &s.database, pw)?;
            cmd.args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "--single-transaction",
                "-f",
            ])
            .arg(dump);
            super::run_tool(cmd, None, pw, &shown, "loading the SQL dump").map(std::mem::drop)
        }
        DumpFormat::SqliteFile => Err(LoadError::KindMismatch {
            kind: "sqlite".into(),
            target: shown,
            reason: "the snapshot is an SQLite database file".into(),
        }),
    }
}
