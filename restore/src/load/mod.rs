//! Loading a verified snapshot into a database: `lockbox restore --into URL`.
//!
//! **This API is shared with restore drills** (which create a scratch
//! database, load a snapshot with [`restore_into`], and compare what they
//! find, via [`DbTarget::list_tables`] / [`DbTarget::count_rows`] /
//! [`DbTarget::query_scalar`], with the table metadata the snapshot recorded
//! at backup time, returned in [`LoadReport::source_info`]). Keep its shape:
//! [`DbTarget::parse`], [`DbTarget::with_database`], `create_database`,
//! `drop_database`, `is_empty`, `query_scalar`, `list_tables`, `count_rows`,
//! and [`restore_into`] returning a [`LoadReport`].
//!
//! Verification happens BEFORE anything is loaded: the snapshot is restored,
//! with every chunk and the whole-stream hash checked, into a private (0600)
//! temporary file in the state directory's `tmp` ([`Login::private_tmp`]),
//! and only a fully verified file is handed to `pg_restore` / `psql` / the
//! `mariadb` client (SQLite: renamed into place). The dump tools cannot roll back on a verification
//! failure discovered mid-stream, so streaming straight into them could
//! leave a half-loaded database; the cost is disk space for one dump.
//! PostgreSQL loads run in a single transaction (all or nothing); a database
//! this module created for the load is dropped again if the load fails.
//!
//! Passwords never appear in a URL (refused) or in argv: they reach the
//! tools through a temporary 0600 passfile (`PGPASSFILE`) or MySQL options
//! file (`--defaults-extra-file`) in the state directory's private `tmp`
//! (see [`lockbox_vault::dbtool`]), removed after each call, and they are
//! scrubbed from any captured tool output.

mod mariadb;
mod postgres;
mod sqlite;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use lockbox_vault::dbtool::{self, STDERR_TAIL};
pub use lockbox_vault::dbtool::{Login, PASSWORD_ENV, Secret, Server};
use lockbox_vault::error::ErrorClass;
use lockbox_vault::keys::Identities;
use lockbox_vault::repository::SnapshotRef;
use lockbox_vault::storage::ReadBackend;

use crate::{RestoreError, RestoreOptions, RestoreProgress};

/// Why a snapshot could not be loaded into a database (`restore --into`, drills).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The `--into` URL cannot be parsed, names an unsupported scheme, or carries a password.
    #[error("--into {url}: {reason}")]
    BadUrl {
        /// The URL with any password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Restoring and verifying the snapshot into the temporary dump file failed; nothing was
    /// loaded.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// The target database already has tables and `force` was not set.
    #[error(
        "{target} is not empty; choose a new database (it is created), or pass --force to load \
         over it (objects in the dump replace those with the same names)"
    )]
    NotEmpty {
        /// The target (URL without password, or SQLite path).
        target: String,
    },
    /// The dump's kind or format does not fit the target (e.g. an SQLite file into PostgreSQL).
    #[error("snapshot of kind {kind:?} cannot be loaded into {target}: {reason}")]
    KindMismatch {
        /// The snapshot's source kind.
        kind: String,
        /// The target (URL without password, or SQLite path).
        target: String,
        /// Why they do not fit.
        reason: String,
    },
    /// A database tool (`psql`, `pg_restore`, the `mariadb` client, …) exited non-zero or was
    /// killed.
    #[error("{target}: {what}: {tool} failed ({status}){}", tail_suffix(.stderr))]
    Tool {
        /// The target (URL without password, or SQLite path).
        target: String,
        /// The step that failed (e.g. creating the database, loading the dump).
        what: String,
        /// The tool's program name.
        tool: String,
        /// How it ended (exit code or signal).
        status: String,
        /// The end of its stderr, passwords scrubbed (may be empty).
        stderr: String,
    },
    /// A database tool could not be started (e.g. not installed).
    #[error("{target}: cannot start {tool:?}: {reason}")]
    Spawn {
        /// The target (URL without password, or SQLite path).
        target: String,
        /// The tool's program name.
        tool: String,
        /// The operating system's reason.
        reason: String,
    },
    /// Reading, writing or moving a local file (the verified dump, an SQLite target) failed.
    #[error("{what}: {reason}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O failure.
        reason: String,
    },
    /// The password file could not be read or is empty.
    #[error("password: {reason}")]
    Password {
        /// Which file, and why.
        reason: String,
    },
    /// A protective refusal (e.g. the target is a source's own database).
    #[error("{reason}")]
    Refused {
        /// What was refused, and how to confirm it if that is possible.
        reason: String,
    },
}

impl LoadError {
    /// A wrong request (bad URL, occupied or protected target, wrong kind,
    /// unreadable password file) is a usage error; the verified restore
    /// inside answers for itself; a failing tool is operational.
    pub fn class(&self) -> ErrorClass {
        match self {
            LoadError::Restore(e) => e.class(),
            LoadError::BadUrl { .. }
            | LoadError::NotEmpty { .. }
            | LoadError::KindMismatch { .. }
            | LoadError::Refused { .. }
            | LoadError::Password { .. } => ErrorClass::Usage,
            LoadError::Tool { .. } | LoadError::Spawn { .. } | LoadError::Io { .. } => {
                ErrorClass::Operational
            }
        }
    }
}

fn tail_suffix(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!("; its stderr ended with:\n{}", stderr.trim_end())
    }
}

/// The login for a target database: the password from `password_file`,
/// else from [`PASSWORD_ENV`], else none; credential files go to
/// `private_tmp`, the state directory's `tmp` (`Config::tmp_dir`).
pub fn login(password_file: Option<&Path>, private_tmp: &Path) -> Result<Login, LoadError> {
    let secret = match password_file {
        Some(f) => Some(Secret::from_file(f).map_err(|e| LoadError::Password {
            reason: match e {
                dbtool::SecretError::Read { path, source } => {
                    format!("reading {}: {source}", path.display())
                }
                e @ dbtool::SecretError::Empty { .. } => e.to_string(),
            },
        })?),
        None => Secret::from_env(PASSWORD_ENV),
    };
    Ok(Login::new(secret, private_tmp))
}

/// Where `restore --into` loads a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbTarget {
    /// PostgreSQL (`postgresql://` or `postgres://`).
    Postgres(Server),
    /// MariaDB or MySQL (`mysql://` uses the `mysql` client, `mariadb://`
    /// the `mariadb` client).
    Mariadb(Server),
    /// An SQLite database file (absolute path).
    Sqlite(PathBuf),
}

/// A table of a database, as [`DbTarget::list_tables`] finds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct TableName {
    /// PostgreSQL schema; `None` for MariaDB and SQLite.
    pub schema: Option<String>,
    /// Table name, unquoted.
    pub name: String,
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

impl DbTarget {
    /// Parses `postgresql://user@host:port/db`, `mysql://…`, `mariadb://…`
    /// or `sqlite:///abs/path.db`. A URL carrying a password is refused.
    pub fn parse(url: &str) -> Result<DbTarget, LoadError> {
        let bad = |reason: &str| LoadError::BadUrl {
            url: dbtool::redact_url(url),
            reason: reason.into(),
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            bad("expected postgresql://user@host:port/db, mysql://…, mariadb://… or sqlite:///path")
        })?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme == "sqlite" {
            let path = dbtool::percent_decode(rest).map_err(|e| bad(&e))?;
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(bad(
                    "the SQLite path must be absolute: sqlite:///abs/path.db",
                ));
            }
            return Ok(DbTarget::Sqlite(path));
        }
        if !matches!(
            scheme.as_str(),
            "postgresql" | "postgres" | "mysql" | "mariadb"
        ) {
            return Err(bad(
                "unknown scheme; use postgresql://, mysql://, mariadb:// or sqlite://",
            ));
        }
        let server = Server::parse(url).map_err(|e| LoadError::BadUrl {
            url: e.url,
            reason: e.reason,
        })?;
        Ok(if server.is_postgres() {
            DbTarget::Postgres(server)
        } else {
            DbTarget::Mariadb(server)
        })
    }

    /// The same server (or directory, for SQLite), another database.
    pub fn with_database(&self, name: &str) -> DbTarget {
        match self {
            DbTarget::Postgres(s) => DbTarget::Postgres(Server {
                database: name.into(),
                ..s.clone()
            }),
            DbTarget::Mariadb(s) => DbTarget::Mariadb(Server {
                database: name.into(),
                ..s.clone()
            }),
            DbTarget::Sqlite(p) => DbTarget::Sqlite(p.with_file_name(name)),
        }
    }

    /// The database name (SQLite: the file name).
    pub fn database(&self) -> String {
        match self {
            DbTarget::Postgres(s) | DbTarget::Mariadb(s) => s.database.clone(),
            DbTarget::Sqlite(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }

    /// The engine's name, as source kinds spell it.
    pub fn engine(&self) -> &'static str {
        match self {
            DbTarget::Postgres(_) => "postgres",
            DbTarget::Mariadb(_) => "mariadb",
            DbTarget::Sqlite(_) => "sqlite",
        }
    }

    /// True if both name the same database on the same server (host names
    /// for the local machine count as equal), or the same SQLite file.
    pub fn same_database(&self, other: &DbTarget) -> bool {
        match (self, other) {
            (DbTarget::Postgres(a), DbTarget::Postgres(b))
            | (DbTarget::Mariadb(a), DbTarget::Mariadb(b)) => a.same_database(b),
            (DbTarget::Sqlite(a), DbTarget::Sqlite(b)) => {
                let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
                canon(a) == canon(b)
            }
            _ => false,
        }
    }

    /// The server a drill target shares with `other`: same engine, host
    /// (local spellings equal) and port. False for SQLite.
    pub fn same_server(&self, other: &DbTarget) -> bool {
        match (self, other) {
            (
                DbTarget::Postgres(a) | DbTarget::Mariadb(a),
                DbTarget::Postgres(b) | DbTarget::Mariadb(b),
            ) => a.same_server(b),
            _ => false,
        }
    }

    /// The database a configured source dumps, for [`Self::same_database`].
    /// `None` for kinds that are not databases (or a URL we cannot parse).
    pub fn of_source(config: &lockbox_vault::config::SourceConfig) -> Option<DbTarget> {
        use lockbox_vault::config::SourceKind;
        match config.kind() {
            SourceKind::Sqlite { path } => Some(DbTarget::Sqlite(path.clone())),
            SourceKind::Database(db) => Server::of_source(db).map(|server| {
                if server.is_postgres() {
                    DbTarget::Postgres(server)
                } else {
                    DbTarget::Mariadb(server)
                }
            }),
            SourceKind::Command { .. } => None,
        }
    }

    /// True if the database exists (SQLite: the file exists).
    pub fn exists(&self, login: &Login) -> Result<bool, LoadError> {
        match self {
            DbTarget::Postgres(s) => postgres::exists(s, login),
            DbTarget::Mariadb(s) => mariadb::exists(s, login),
            DbTarget::Sqlite(p) => Ok(p.exists()),
        }
    }

    /// Creates the (empty) database.
    pub fn create_database(&self, login: &Login) -> Result<(), LoadError> {
        match self {
            DbTarget::Postgres(s) => postgres::create(s, login),
            DbTarget::Mariadb(s) => mariadb::create(s, login),
            DbTarget::Sqlite(p) => sqlite::create(p),
        }
    }

    /// Drops the database if it exists.
    pub fn drop_database(&self, login: &Login) -> Result<(), LoadError> {
        match self {
            DbTarget::Postgres(s) => postgres::drop(s, login),
            DbTarget::Mariadb(s) => mariadb::drop(s, login),
            DbTarget::Sqlite(p) => sqlite::drop(p),
        }
    }

    /// True if the database is missing or holds no tables, views, sequences
    /// or routines of its own.
    pub fn is_empty(&self, login: &Login) -> Result<bool, LoadError> {
        match self {
            DbTarget::Postgres(s) => postgres::is_empty(s, login),
            DbTarget::Mariadb(s) => mariadb::is_empty(s, login),
            DbTarget::Sqlite(p) => sqlite::is_empty(p),
        }
    }

    /// Runs one query in the database; the first column of the first row
    /// (`None` if there is no row or it is NULL). For checks, not for
    /// untrusted SQL.
    pub fn query_scalar(&self, login: &Login, sql: &str) -> Result<Option<String>, LoadError> {
        match self {
            DbTarget::Postgres(s) => postgres::query_scalar(s, login, sql),
            DbTarget::Mariadb(s) => mariadb::query_scalar(s, login, sql),
            DbTarget::Sqlite(p) => sqlite::query_scalar(p, sql),
        }
    }

    /// The base tables of the database (not views), sorted.
    pub fn list_tables(&self, login: &Login) -> Result<Vec<TableName>, LoadError> {
        let mut t = match self {
            DbTarget::Postgres(s) => postgres::list_tables(s, login),
            DbTarget::Mariadb(s) => mariadb::list_tables(s, login),
            DbTarget::Sqlite(p) => sqlite::list_tables(p),
        }?;
        t.sort();
        Ok(t)
    }

    /// `count(*)` of one table.
    pub fn count_rows(&self, login: &Login, table: &TableName) -> Result<u64, LoadError> {
        let sql = match self {
            DbTarget::Postgres(_) => format!(
                "select count(*) from {}{}",
                table
                    .schema
                    .as_deref()
                    .map(|s| format!("{}.", dbtool::postgres::quote_ident(s)))
                    .unwrap_or_default(),
                dbtool::postgres::quote_ident(&table.name)
            ),
            DbTarget::Mariadb(_) => {
                format!(
                    "SELECT COUNT(*) FROM {}",
                    dbtool::mariadb::quote_ident(&table.name)
                )
            }
            DbTarget::Sqlite(_) => format!(
                "SELECT count(*) FROM {}",
                dbtool::postgres::quote_ident(&table.name)
            ),
        };
        let v = self.query_scalar(login, &sql)?.unwrap_or_default();
        v.trim().parse().map_err(|_| LoadError::Io {
            what: format!("counting rows of {table} in {self}"),
            reason: format!("unexpected answer {v:?}"),
        })
    }
}

impl std::fmt::Display for DbTarget {
    /// Shown in messages: the URL without a password (there never is one).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbTarget::Postgres(s) | DbTarget::Mariadb(s) => s.fmt(f),
            DbTarget::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
        }
    }
}

/// Runs a client tool to completion (stdin from `input` or nothing) and
/// returns its stdout; a failure carries its scrubbed stderr.
fn run_tool(
    cmd: Command,
    input: Option<&Path>,
    login: &Login,
    target: &str,
    what: &str,
) -> Result<String, LoadError> {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    let stdin = match input {
        Some(p) => Stdio::from(std::fs::File::open(p).map_err(|e| LoadError::Io {
            what: format!("opening the verified dump {}", p.display()),
            reason: e.to_string(),
        })?),
        None => Stdio::null(),
    };
    tracing::debug!(tool = %tool, what, target, "running");
    let out = dbtool::run(cmd, stdin, login).map_err(|e| LoadError::Spawn {
        target: target.into(),
        tool: tool.clone(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            "program not found; install the database client tools".into()
        } else {
            e.to_string()
        },
    })?;
    if !out.status.success() {
        return Err(LoadError::Tool {
            target: target.into(),
            what: what.into(),
            tool,
            status: dbtool::describe_status(out.status),
            stderr: dbtool::tail(&out.stderr, STDERR_TAIL),
        });
    }
    if !out.stderr.trim().is_empty() {
        tracing::debug!(tool = %tool, stderr = %dbtool::tail(&out.stderr, STDERR_TAIL).trim_end(), "tool stderr");
    }
    Ok(out.stdout)
}

/// Refuses `target` if it is the database of one of `sources`, unless
/// `overwrite_source` repeats that database's name exactly.
pub fn guard_sources(
    sources: &[lockbox_vault::config::SourceConfig],
    target: &DbTarget,
    overwrite_source: Option<&str>,
) -> Result<(), LoadError> {
    let hit = sources
        .iter()
        .find(|s| DbTarget::of_source(s).is_some_and(|t| t.same_database(target)));
    match (hit, overwrite_source) {
        (Some(src), Some(name)) if name == target.database() => {
            tracing::warn!(source = %src.name, target = %target,
                "overwriting the database of a configured source (--overwrite-source)");
            Ok(())
        }
        (Some(src), _) => Err(LoadError::Refused {
            reason: format!(
                "{target} is the database of source {:?}; loading into it would overwrite the \
                 data being backed up. Restore into another database, or pass \
                 --overwrite-source {} to confirm",
                src.name,
                target.database()
            ),
        }),
        (None, Some(name)) => Err(LoadError::Refused {
            reason: format!(
                "--overwrite-source {name}: {target} is not the database of a configured source"
            ),
        }),
        (None, None) => Ok(()),
    }
}

/// Options of [`restore_into`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Load into a database that already has tables (objects in the dump
    /// replace those with the same names; SQLite: the file is replaced).
    pub force: bool,
    /// How the snapshot is restored and verified before loading.
    pub restore: RestoreOptions,
}

/// What [`restore_into`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    /// The loaded snapshot's manifest id (hex).
    pub snapshot: String,
    /// Its source.
    pub source: String,
    /// The snapshot's source kind (`postgres`, `mariadb`, `sqlite`, …).
    pub kind: String,
    /// Where it was loaded (the URL, without password).
    pub target: String,
    /// Verified dump bytes.
    pub bytes: u64,
    /// Chunk entries restored (a repeated chunk counts each time).
    pub chunks: usize,
    /// Restore + verification, then loading.
    pub restore_seconds: f64,
    /// Loading the verified dump into the target, in seconds.
    pub load_seconds: f64,
    /// Both together.
    pub seconds: f64,
    /// True if the database did not exist and was created for the load.
    pub created: bool,
    /// The snapshot's sealed `source_info` as recorded at backup time
    /// (server version, database size, tables with row counts; see
    /// vault/FORMAT.md), for comparison with what was loaded.
    pub source_info: serde_json::Value,
    /// Delete markers and bad versions passed over to find verified data (S3).
    pub tampering: Vec<lockbox_vault::storage::TamperEvent>,
}

/// Which loader a verified dump needs, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DumpFormat {
    PgCustom,
    SqliteFile,
    SqlText,
}

fn sniff(path: &Path) -> Result<DumpFormat, LoadError> {
    let mut head = [0u8; 16];
    let mut f = std::fs::File::open(path).map_err(|e| LoadError::Io {
        what: format!("reading the verified dump {}", path.display()),
        reason: e.to_string(),
    })?;
    let n = f.read(&mut head).map_err(|e| LoadError::Io {
        what: "reading the verified dump".into(),
        reason: e.to_string(),
    })?;
    Ok(if head[..n].starts_with(b"PGDMP") {
        DumpFormat::PgCustom
    } else if head[..n].starts_with(b"SQLite format 3\0") {
        DumpFormat::SqliteFile
    } else {
        DumpFormat::SqlText
    })
}

/// Checks the snapshot's kind fits the target; `command` and `stdin`
/// snapshots are accepted and their content decides (checked after the
/// verified restore).
fn check_kind(kind: &str, target: &DbTarget) -> Result<(), LoadError> {
    let fits = match kind {
        "postgres" => matches!(target, DbTarget::Postgres(_)),
        "mariadb" | "mysql" => matches!(target, DbTarget::Mariadb(_)),
        "sqlite" => matches!(target, DbTarget::Sqlite(_)),
        _ => true,
    };
    if fits {
        Ok(())
    } else {
        Err(LoadError::KindMismatch {
            kind: kind.into(),
            target: target.to_string(),
            reason: format!(
                "it is a {kind} dump; restore it into a {kind} database, or use --output FILE"
            ),
        })
    }
}

/// Restores `snap` verified into a private temporary file in the login's
/// private directory (the state directory's `tmp`), then
/// loads it into `target` (created if missing). Refuses a non-empty target
/// unless `opts.force`. On failure, a database created here is dropped again
/// and nothing unverified was ever loaded.
#[allow(clippy::too_many_arguments)]
pub fn restore_into(
    backend: &dyn ReadBackend,
    identities: &Identities,
    snap: &SnapshotRef,
    target: &DbTarget,
    login: &Login,
    opts: &LoadOptions,
    progress: &dyn RestoreProgress,
) -> Result<LoadReport, LoadError> {
    let clock = Instant::now();
    let opened = crate::open_snapshot(backend, identities, snap)?;
    let kind = opened.manifest.kind.clone();
    check_kind(&kind, target)?;
    let shown = target.to_string();

    // Before fetching anything: a refusal costs no download.
    let existed = target.exists(login)?;
    if existed && !opts.force && !target.is_empty(login)? {
        return Err(LoadError::NotEmpty { target: shown });
    }

    if let DbTarget::Sqlite(path) = target {
        // Verified into a temporary file beside the target, then renamed
        // over it: never a half-written database at the path.
        let mut file = crate::FileTarget::create(path, true)?;
        let r = crate::pipeline::run(
            backend,
            identities,
            &opened.id_key,
            snap,
            &opened.manifest,
            &opened.sealed,
            file.writer(),
            &opts.restore,
            progress,
        )?;
        let restore_seconds = clock.elapsed().as_secs_f64();
        file.commit_checked(|p| match sniff(p)? {
            DumpFormat::SqliteFile => Ok(()),
            _ => Err(LoadError::KindMismatch {
                kind: kind.clone(),
                target: shown.clone(),
                reason: "the snapshot is not an SQLite database file".into(),
            }),
        })?;
        let seconds = clock.elapsed().as_secs_f64();
        return Ok(LoadReport {
            snapshot: r.snapshot,
            source: r.source,
            kind,
            target: shown,
            bytes: r.bytes,
            chunks: r.chunks,
            restore_seconds,
            load_seconds: seconds - restore_seconds,
            seconds,
            created: !existed,
            source_info: opened.sealed.source_info.clone(),
            tampering: r.tampering,
        });
    }

    let tmp_dir = login.private_tmp();
    let tmp = lockbox_vault::state::private_temp_file(tmp_dir, "restore-").map_err(|e| {
        LoadError::Io {
            what: format!(
                "temporary file for the verified dump in {}",
                tmp_dir.display()
            ),
            reason: e.to_string(),
        }
    })?;
    let r = {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
        let r = crate::pipeline::run(
            backend,
            identities,
            &opened.id_key,
            snap,
            &opened.manifest,
            &opened.sealed,
            &mut w,
            &opts.restore,
            progress,
        )?;
        w.flush().map_err(|e| LoadError::Io {
            what: format!("writing the verified dump to {}", tmp.path().display()),
            reason: e.to_string(),
        })?;
        r
    };
    let restore_seconds = clock.elapsed().as_secs_f64();
    let format = sniff(tmp.path())?;
    let load_start = Instant::now();
    let created = !existed;
    if created {
        target.create_database(login)?;
    }
    let loaded = match target {
        DbTarget::Postgres(s) => postgres::load(s, login, tmp.path(), format, opts.force),
        DbTarget::Mariadb(s) => {
            if format != DumpFormat::SqlText {
                Err(LoadError::KindMismatch {
                    kind: kind.clone(),
                    target: shown.clone(),
                    reason: "the snapshot is not an SQL text dump".into(),
                })
            } else {
                mariadb::load(s, login, tmp.path())
            }
        }
        DbTarget::Sqlite(_) => unreachable!("handled above"),
    };
    if let Err(e) = loaded {
        if created && let Err(d) = target.drop_database(login) {
            tracing::warn!(target = %shown, error = %d, "could not drop the database created for the failed load");
        }
        return Err(e);
    }
    drop(tmp);
    Ok(LoadReport {
        snapshot: r.snapshot,
        source: r.source,
        kind,
        target: shown,
        bytes: r.bytes,
        chunks: r.chunks,
        restore_seconds,
        load_seconds: load_start.elapsed().as_secs_f64(),
        seconds: clock.elapsed().as_secs_f64(),
        created,
        source_info: opened.sealed.source_info.clone(),
        tampering: r.tampering,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = DbTarget::parse("postgresql://backup@db.example:6543/orders").unwrap();
        assert_eq!(
            t,
            DbTarget::Postgres(Server {
                scheme: "postgresql".into(),
                host: "db.example".into(),
                port: 6543,
                user: Some("backup".into()),
                database: "orders".into(),
            })
        );
        let m = DbTarget::parse("mariadb://root@127.0.0.1/shop").unwrap();
        assert!(matches!(&m, DbTarget::Mariadb(s) if s.port == 3306 && s.database == "shop"));
        assert_eq!(m.with_database("other").database(), "other");
        assert_eq!(
            DbTarget::parse("sqlite:///var/lib/x.db").unwrap(),
            DbTarget::Sqlite("/var/lib/x.db".into())
        );
        assert!(DbTarget::parse("mysql://[::1]:3307/a").is_ok());
    }

    #[test]
    fn refuses_passwords_and_bad_urls() {
        for url in [
            "postgresql://u:hunter2@h/db",
            "postgresql://u@h/db?password=hunter2",
            "mysql://u@h/",
            "sqlite://relative.db",
            "ftp://h/x",
            "postgresql://u@h/a=b",
        ] {
            let e = DbTarget::parse(url).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn same_database_ignores_local_host_spelling() {
        let a = DbTarget::parse("postgresql://a@localhost/x").unwrap();
        let b = DbTarget::parse("postgres://b@127.0.0.1:5432/x").unwrap();
        assert!(a.same_database(&b));
        assert!(!a.same_database(&b.with_database("y")));
    }
}
