//! MariaDB/MySQL targets: the `mariadb` (or `mysql`) client for queries,
//! DDL and the load. The password goes in a temporary options file given
//! as the first argument (the tools ignore it anywhere else).

use std::path::Path;
use std::process::Command;

use lockbox_vault::dbtool::mariadb::{self as mytool, quote_ident};

use super::{LoadError, Login, Server, TableName};

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
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
    login: &Login,
) -> Result<(Command, Option<tempfile::NamedTempFile>), LoadError> {
    let mut cmd = Command::new(client(s));
    let file = login
        .credential_file(mytool::OPTIONS_PREFIX, mytool::options_file)
        .map_err(|e| LoadError::Io {
            what: "temporary credentials file".into(),
            reason: e.to_string(),
        })?;
    if let Some(f) = &file {
        cmd.arg(mytool::defaults_arg(f));
    }
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
    // Nor LOCKBOX_RESTORE_PASSWORD or a source's password_env, which a
    // drill's process also carries.
    mytool::configure_env(&mut cmd);
    Ok((cmd, file))
}

fn query(
    s: &Server,
    database: Option<&str>,
    login: &Login,
    sql: &str,
    what: &str,
) -> Result<String, LoadError> {
    let (mut cmd, _file) = command(s, database, login)?;
    cmd.args(["--batch", "--skip-column-names", "-e", sql]);
    super::run_tool(
        cmd,
        None,
        login,
        &super::DbTarget::Mariadb(s.clone()).to_string(),
        what,
    )
}

pub(super) fn exists(s: &Server, login: &Login) -> Result<bool, LoadError> {
    let out = query(
        s,
        None,
        login,
        &format!(
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = {}",
            quote_literal(&s.database)
        ),
        "checking whether the database exists",
    )?;
    Ok(out.trim() != "0")
}

pub(super) fn create(s: &Server, login: &Login) -> Result<(), LoadError> {
    query(
        s,
        None,
        login,
        &format!("CREATE DATABASE {}", quote_ident(&s.database)),
        "creating the database",
    )
    .map(std::mem::drop)
}

pub(super) fn drop(s: &Server, login: &Login) -> Result<(), LoadError> {
    query(
        s,
        None,
        login,
        &format!("DROP DATABASE IF EXISTS {}", quote_ident(&s.database)),
        "dropping the database",
    )
    .map(std::mem::drop)
}

pub(super) fn is_empty(s: &Server, login: &Login) -> Result<bool, LoadError> {
    let db = quote_literal(&s.database);
    let out = query(
        s,
        None,
        login,
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
    login: &Login,
    sql: &str,
) -> Result<Option<String>, LoadError> {
    let out = query(s, Some(&s.database), login, sql, "running a query")?;
    Ok(out
        .lines()
        .next()
        .map(|l| l.split('\t').next().unwrap_or("").to_string())
        .filter(|v| v != "NULL"))
}

pub(super) fn list_tables(s: &Server, login: &Login) -> Result<Vec<TableName>, LoadError> {
    let out = query(
        s,
        None,
        login,
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

pub(super) fn load(s: &Server, login: &Login, dump: &Path) -> Result<(), LoadError> {
    let (mut cmd, _file) = command(s, Some(&s.database), login)?;
    // Batch mode stops at the first error (no --force).
    cmd.arg("--batch");
    super::run_tool(
        cmd,
        Some(dump),
        login,
        &super::DbTarget::Mariadb(s.clone()).to_string(),
        "loading the dump",
    )
    .map(std::mem::drop)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::load::Secret;

    /// A restore's or drill's options file: the first argument, in the state
    /// directory's `tmp`, 0600, and removed with the command's file handle.
    #[test]
    fn options_file_is_private_under_state_tmp_and_removed() {
        let state = tempfile::tempdir().unwrap();
        let private_tmp = state.path().join("tmp");
        let login = Login::new(Some(Secret::new("hunter2")), &private_tmp);
        let server = Server::parse("mariadb://root@localhost/shop").unwrap();
        let (cmd, file) = command(&server, None, &login).unwrap();
        let path = file.as_ref().expect("a password gives a file").path();
        let first = cmd
            .get_args()
            .next()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(first, format!("--defaults-extra-file={}", path.display()));
        assert_eq!(path.parent(), Some(private_tmp.as_path()));
        let mode = std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            !cmd.get_args()
                .any(|a| a.to_string_lossy().contains("hunter2"))
        );
        std::mem::drop(file);
        assert_eq!(std::fs::read_dir(&private_tmp).unwrap().count(), 0);
    }
}
