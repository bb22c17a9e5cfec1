//! PostgreSQL targets: `psql` for queries and DDL, `pg_restore` (custom
//! format) or `psql` (plain SQL) for the load, in one transaction.

use std::path::Path;
use std::process::Command;

use lockbox_vault::dbtool::postgres::{self as pgtool, quote_ident};

use super::{DumpFormat, LoadError, Login, Server, TableName};

/// Objects of the database's own (non-system) schemas.
const OWN_OBJECTS_SQL: &str = "select (select count(*) from pg_class c \
   join pg_namespace n on n.oid = c.relnamespace \
   where n.nspname not in ('pg_catalog', 'information_schema') \
     and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%') \
 + (select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace \
   where n.nspname not in ('pg_catalog', 'information_schema'))";

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A psql/pg_restore command for `database` on `s`; the passfile must live
/// until the command has run.
fn command(
    program: &str,
    s: &Server,
    database: &str,
    login: &Login,
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
    let passfile = login
        .credential_file(pgtool::PASSFILE_PREFIX, pgtool::passfile_line)
        .map_err(|e| LoadError::Io {
            what: "temporary credentials file".into(),
            reason: e.to_string(),
        })?;
    // The restore password reaches the tool only through the passfile,
    // never through an inherited PGPASSWORD, LOCKBOX_RESTORE_PASSWORD or a
    // source's password_env (a drill's process carries those too).
    cmd.env_remove("PGPASSWORD").env_remove("PGSERVICE");
    pgtool::configure_env(
        &mut cmd,
        passfile.as_ref().map(|f| f.path()),
        "lockbox-restore",
    );
    Ok((cmd, passfile))
}

fn psql(
    s: &Server,
    database: &str,
    login: &Login,
    sql: &str,
    what: &str,
) -> Result<String, LoadError> {
    let (mut cmd, _passfile) = command("psql", s, database, login)?;
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
    super::run_tool(cmd, None, login, &target(s, database), what)
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

pub(super) fn exists(s: &Server, login: &Login) -> Result<bool, LoadError> {
    let out = psql(
        s,
        MAINTENANCE_DB,
        login,
        &format!(
            "select 1 from pg_database where datname = {}",
            quote_literal(&s.database)
        ),
        "checking whether the database exists",
    )?;
    Ok(out.trim() == "1")
}

pub(super) fn create(s: &Server, login: &Login) -> Result<(), LoadError> {
    // template0: truly empty, whatever was added to template1.
    psql(
        s,
        MAINTENANCE_DB,
        login,
        &format!(
            "create database {} template template0",
            quote_ident(&s.database)
        ),
        "creating the database",
    )
    .map(std::mem::drop)
}

pub(super) fn drop(s: &Server, login: &Login) -> Result<(), LoadError> {
    psql(
        s,
        MAINTENANCE_DB,
        login,
        &format!("drop database if exists {}", quote_ident(&s.database)),
        "dropping the database",
    )
    .map(std::mem::drop)
}

pub(super) fn is_empty(s: &Server, login: &Login) -> Result<bool, LoadError> {
    if !exists(s, login)? {
        return Ok(true);
    }
    let n = psql(
        s,
        &s.database,
        login,
        OWN_OBJECTS_SQL,
        "checking whether the database is empty",
    )?;
    Ok(n.trim() == "0")
}

pub(super) fn query_scalar(
    s: &Server,
    login: &Login,
    sql: &str,
) -> Result<Option<String>, LoadError> {
    let out = psql(s, &s.database, login, sql, "running a query")?;
    Ok(out
        .lines()
        .next()
        .map(|l| l.split('\t').next().unwrap_or("").to_string())
        .filter(|v| !v.is_empty()))
}

pub(super) fn list_tables(s: &Server, login: &Login) -> Result<Vec<TableName>, LoadError> {
    let out = psql(
        s,
        &s.database,
        login,
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
    login: &Login,
    dump: &Path,
    format: DumpFormat,
    force: bool,
) -> Result<(), LoadError> {
    let shown = target(s, &s.database);
    match format {
        DumpFormat::PgCustom => {
            let (mut cmd, _passfile) = command("pg_restore", s, &s.database, login)?;
            // One transaction: the database is loaded completely or not at all.
            cmd.args(["--exit-on-error", "--single-transaction"]);
            if force {
                cmd.args(["--clean", "--if-exists"]);
            }
            cmd.arg(dump);
            super::run_tool(cmd, None, login, &shown, "loading the dump").map(std::mem::drop)
        }
        DumpFormat::SqlText => {
            let (mut cmd, _passfile) = command("psql", s, &s.database, login)?;
            cmd.args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "--single-transaction",
                "-f",
            ])
            .arg(dump);
            super::run_tool(cmd, None, login, &shown, "loading the SQL dump").map(std::mem::drop)
        }
        DumpFormat::SqliteFile => Err(LoadError::KindMismatch {
            kind: "sqlite".into(),
            target: shown,
            reason: "the snapshot is an SQLite database file".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use super::*;
    use crate::load::Secret;

    /// A restore's or drill's passfile: in the state directory's `tmp`, 0600,
    /// named to the tool by `PGPASSFILE`, and gone once the command has run
    /// (it used to be written to the system temp directory).
    #[test]
    fn passfile_is_private_under_state_tmp_and_removed_after_the_tool() {
        let state = tempfile::tempdir().unwrap();
        let private_tmp = state.path().join("tmp");
        let login = Login::new(Some(Secret::new("s3:cret")), &private_tmp);
        let server = Server::parse("postgresql://u@localhost/db").unwrap();
        let (cmd, passfile) = command("psql", &server, "db", &login).unwrap();
        let path = passfile
            .as_ref()
            .expect("a password gives a passfile")
            .path();
        let given: Option<PathBuf> = cmd
            .get_envs()
            .find(|(k, _)| *k == "PGPASSFILE")
            .and_then(|(_, v)| v.map(PathBuf::from));
        assert_eq!(given.as_deref(), Some(path));
        assert_eq!(path.parent(), Some(private_tmp.as_path()));
        let mode = std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(path).unwrap(),
            "*:*:*:*:s3\\:cret\n"
        );
        assert!(
            !cmd.get_args()
                .any(|a| a.to_string_lossy().contains("s3:cret"))
        );
        let removed = (
            cmd.get_envs()
                .any(|(k, v)| k == "PGPASSWORD" && v.is_none()),
            cmd.get_envs()
                .any(|(k, v)| k == crate::load::PASSWORD_ENV && v.is_none()),
        );
        assert_eq!(removed, (true, true));
        std::mem::drop(passfile);
        assert_eq!(std::fs::read_dir(&private_tmp).unwrap().count(), 0);
    }

    /// Through a whole tool run: no credential file is left afterwards,
    /// whether the tool succeeds, fails or cannot be started, and no error
    /// carries the password.
    #[test]
    fn no_passfile_is_left_after_a_tool_run() {
        let state = tempfile::tempdir().unwrap();
        let private_tmp = state.path().join("tmp");
        let login = Login::new(Some(Secret::new("hunter2")), &private_tmp);
        let server = Server::parse("postgresql://u@localhost/db").unwrap();
        // `psql` is not needed: any failure to run still cleans up.
        let err = psql(&server, "db", &login, "select 1", "testing");
        if let Err(e) = &err {
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        assert_eq!(std::fs::read_dir(&private_tmp).unwrap().count(), 0);
    }
}
