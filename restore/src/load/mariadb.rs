//! MariaDB/MySQL targets: the `mariadb` (or `mysql`) client for queries,
//! DDL and the load. The password goes in a temporary options file given
//! as the first argument (the tools ignore it anywhere else).

use std::path::Path;
use std::process::Command;

use super::{LoadError, Password, Server, TableName};

pub(super) fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

fn options_file(pw: &Password) -> String {
    let mut v = String::new();
    for c in pw.expose().chars() {
        match c {
            '\\' => v.push_str("\\\\"),
            '"' => v.push_str("\\\""),
            '\n' => v.push_str("\\n"),
            '\r' => v.push_str("\\r"),
            '\t' => v.push_str("\\t"),
            c => v.push(c),
        }
    }
    format!("[client]\npassword=\"{v}\"\n")
}

fn client(s: &Server) -> &'static str {
    if s.scheme == "mysql" {
        "mysql"
    } else {
        "mariadb"
    }
}

/// The client for `s`, connected to `database` (or none); the options file
/// must live until the command has run.
fn command(
    s: &Server,
    database: Option<&str>,
    pw: Option<&Password>,
) -> Result<(Command, Option<tempfile::NamedTempFile>), LoadError> {
    let mut cmd = Command::new(client(s));
    let file = match pw {
        Some(pw) => {
            let f = super::secret_file(&options_file(pw))?;
            cmd.arg(format!("--defaults-extra-file={}", f.path().display()));
            Some(f)
        }
        None => None,
    };
    cmd.arg(format!("--host={}", s.host))
        .arg(format!("--port={}", s.port))
        .arg("--connect-timeout=30")
        .arg("--default-character-set=utf8mb4");
    if let Some(u) = &s.user {
        cmd.arg(format!("--user={u}"));
    }
    if let Some(db) = database {
        cmd.arg(format!("--database={db}"));
    }
    cmd.env_remove("MYSQL_PWD").env_remove(super::PASSWORD_ENV);
    // Nor a source's password_env, which a drill's process also carries.
    lockbox_vault::source::db::scrub_secret_env(&mut cmd);
    Ok((cmd, file))
}

fn query(
    s: &Server,
    database: Option<&str>,
    pw: Option<&Password>,
    sql: &str,
    what: &str,
) -> Result<String, LoadError> {
    let (mut cmd, _file) = command(s, database, pw)?;
    cmd.args(["--batch", "--skip-column-names", "-e", sql]);
    super::run_tool(
        cmd,
        None,
        pw,
        &super::DbTarget::Mariadb(s.clone()).to_string(),
        what,
    )
}

pub(super) fn exists(s: &Server, pw: Option<&Password>) -> Result<bool, LoadError> {
    let out = query(
        s,
        None,
        pw,
        &format!(
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = {}",
            quote_literal(&s.database)
        ),
        "checking whether the database exists",
    )?;
    Ok(out.trim() != "0")
}

pub(super) fn create(s: &Server, pw: Option<&Password>) -> Result<(), LoadError> {
    query(
        s,
        None,
        pw,
        &format!("CREATE DATABASE {}", quote_ident(&s.database)),
        "creating the database",
    )
    .map(std::mem::drop)
}

pub(super) fn drop(s: &Server, pw: Option<&Password>) -> Result<(), LoadError> {
    query(
        s,
        None,
        pw,
        &format!("DROP DATABASE IF EXISTS {}", quote_ident(&s.database)),
        "dropping the database",
    )
    .map(std::mem::drop)
}

pub(super) fn is_empty(s: &Server, pw: Option<&Password>) -> Result<bool, LoadError> {
    let db = quote_literal(&s.database);
    let out = query(
        s,
        None,
        pw,
        &format!(
            "SELECT (SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = {db}) \
             + (SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = {db}) \
             + (SELECT COUNT(*) FROM information_schema.events WHERE event_schema = {db})"
        ),
        "checking whether the database is empty",
    )?;
    Ok(out.trim() == "0")
}

pub(super) fn query_scalar(
    s: &Server,
    pw: Option<&Password>,
    sql: &str,
) -> Result<Option<String>, LoadError> {
    let out = query(s, Some(&s.database), pw, sql, "running a query")?;
    Ok(out
        .lines()
        .next()
        .map(|l| l.split('\t').next().unwrap_or("").to_string())
        .filter(|v| v != "NULL"))
}

pub(super) fn list_tables(s: &Server, pw: Option<&Password>) -> Result<Vec<TableName>, LoadError> {
    let out = query(
        s,
        None,
        pw,
        &format!(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = {} \
             AND table_type = 'BASE TABLE' ORDER BY table_name",
            quote_literal(&s.database)
        ),
        "listing tables",
    )?;
    Ok(out
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| TableName {
            schema: None,
            name: l.into(),
        })
        .collect())
}

pub(super) fn load(s: &Server, pw: Option<&Password>, dump: &Path) -> Result<(), LoadError> {
    let (mut cmd, _file) = command(s, Some(&s.database), pw)?;
    // Batch mode stops at the first error (no --force).
    cmd.arg("--batch");
    super::run_tool(
        cmd,
        Some(dump),
        pw,
        &super::DbTarget::Mariadb(s.clone()).to_string(),
        "loading the dump",
    )
    .map(std::mem::drop)
}
