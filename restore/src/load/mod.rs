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
//! temporary file in the caller's temp directory, and only a fully verified
//! file is handed to `pg_restore` / `psql` / the `mariadb` client (SQLite:
//! renamed into place). The dump tools cannot roll back on a verification
//! failure discovered mid-stream, so streaming straight into them could
//! leave a half-loaded database; the cost is disk space for one dump.
//! PostgreSQL loads run in a single transaction (all or nothing); a database
//! this module created for the load is dropped again if the load fails.
//!
//! Passwords never appear in a URL (refused) or in argv: they reach the
//! tools through a temporary 0600 passfile (`PGPASSFILE`) or MySQL options
//! file (`--defaults-extra-file`), removed after each call, and they are
//! scrubbed from any captured tool output.

mod mariadb;
mod postgres;
mod sqlite;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use lockbox_vault::error::ErrorClass;
use lockbox_vault::keys::Identities;
use lockbox_vault::repository::SnapshotRef;
use lockbox_vault::storage::ReadBackend;

use crate::{RestoreError, RestoreOptions, RestoreProgress};

/// Bytes of a failing tool's stderr kept for the error message.
const STDERR_TAIL: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("--into {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error(
        "{target} is not empty; choose a new database (it is created), or pass --force to load \
         over it (objects in the dump replace those with the same names)"
    )]
    NotEmpty { target: String },
    #[error("snapshot of kind {kind:?} cannot be loaded into {target}: {reason}")]
    KindMismatch {
        kind: String,
        target: String,
        reason: String,
    },
    #[error("{target}: {what}: {tool} failed ({status}){}", tail_suffix(.stderr))]
    Tool {
        target: String,
        what: String,
        tool: String,
        status: String,
        stderr: String,
    },
    #[error("{target}: cannot start {tool:?}: {reason}")]
    Spawn {
        target: String,
        tool: String,
        reason: String,
    },
    #[error("{what}: {reason}")]
    Io { what: String, reason: String },
    #[error("password: {reason}")]
    Password { reason: String },
    /// A protective refusal (e.g. the target is a source's own database).
    #[error("{reason}")]
    Refused { reason: String },
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

/// A database password, never shown by `Debug` and scrubbed from tool
/// output.
pub struct Password(String);

impl Password {
    pub fn new(value: impl Into<String>) -> Self {
        Password(value.into())
    }

    /// The first line of `path`.
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoadError::Password {
            reason: format!("reading {}: {e}", path.display()),
        })?;
        let line = text.lines().next().unwrap_or("");
        if line.is_empty() {
            return Err(LoadError::Password {
                reason: format!("{} is empty", path.display()),
            });
        }
        Ok(Password(line.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A server database named by a `postgresql://` or `mysql://`/`mariadb://`
/// URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The URL scheme as given (`postgresql`, `postgres`, `mysql`, `mariadb`).
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub database: String,
}

/// Where `restore --into` loads a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbTarget {
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
            url: redact_url(url),
            reason: reason.into(),
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            bad("expected postgresql://user@host:port/db, mysql://…, mariadb://… or sqlite:///path")
        })?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme == "sqlite" {
            let path = percent_decode(rest).map_err(|e| bad(&e))?;
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(bad(
                    "the SQLite path must be absolute: sqlite:///abs/path.db",
                ));
            }
            return Ok(DbTarget::Sqlite(path));
        }
        let default_port = match scheme.as_str() {
            "postgresql" | "postgres" => 5432,
            "mysql" | "mariadb" => 3306,
            _ => {
                return Err(bad(
                    "unknown scheme; use postgresql://, mysql://, mariadb:// or sqlite://",
                ));
            }
        };
        if rest.contains('?') || rest.contains('#') {
            return Err(bad(
                "query parameters are not supported (a password never goes in the URL; \
                 use --password-file)",
            ));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if userinfo.is_some_and(|u| u.contains(':')) {
            return Err(bad(
                "the URL must not contain a password (it would show in the process list and \
                 shell history); use --password-file or LOCKBOX_RESTORE_PASSWORD",
            ));
        }
        let user = match userinfo {
            Some(u) if !u.is_empty() => Some(percent_decode(u).map_err(|e| bad(&e))?),
            _ => None,
        };
        let (host, port) = split_host_port(hostport).map_err(|e| bad(&e))?;
        let port = port.unwrap_or(default_port);
        let database = percent_decode(path).map_err(|e| bad(&e))?;
        if database.is_empty() {
            return Err(bad("name the database: …://user@host:port/DATABASE"));
        }
        check_name(&database).map_err(|e| bad(&e))?;
        if let Some(u) = &user {
            check_name(u).map_err(|e| bad(&format!("user: {e}")))?;
        }
        let server = Server {
            scheme: scheme.clone(),
            host: if host.is_empty() {
                "localhost".into()
            } else {
                host
            },
            port,
            user,
            database,
        };
        Ok(if default_port == 5432 {
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
        fn host(h: &str) -> String {
            let h = h.to_ascii_lowercase();
            match h.as_str() {
                "localhost" | "127.0.0.1" | "::1" | "[::1]" | "" => "localhost".into(),
                _ => h,
            }
        }
        match (self, other) {
            (DbTarget::Postgres(a), DbTarget::Postgres(b))
            | (DbTarget::Mariadb(a), DbTarget::Mariadb(b)) => {
                host(&a.host) == host(&b.host) && a.port == b.port && a.database == b.database
            }
            (DbTarget::Sqlite(a), DbTarget::Sqlite(b)) => {
                let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
                canon(a) == canon(b)
            }
            _ => false,
        }
    }

    /// The database a configured source dumps, for [`Self::same_database`].
    /// `None` for kinds that are not databases (or a URL we cannot parse).
    pub fn of_source(config: &lockbox_vault::config::SourceConfig) -> Option<DbTarget> {
        use lockbox_vault::config::{DbFlavor, SourceKind};
        match config.kind() {
            SourceKind::Sqlite { path } => Some(DbTarget::Sqlite(path.clone())),
            SourceKind::Database(db) => {
                if let Some(url) = &db.url {
                    // Parameters (sslmode=…) do not change which database it is.
                    return DbTarget::parse(url.split('?').next().unwrap_or(url)).ok();
                }
                let server = Server {
                    scheme: db.flavor.kind_name().into(),
                    host: db.host.clone().unwrap_or_else(|| "localhost".into()),
                    port: db.port.unwrap_or(if db.flavor == DbFlavor::Postgres {
                        5432
                    } else {
                        3306
                    }),
                    user: db.user.clone(),
                    database: db.database.clone()?,
                };
                Some(if db.flavor == DbFlavor::Postgres {
                    DbTarget::Postgres(server)
                } else {
                    DbTarget::Mariadb(server)
                })
            }
            SourceKind::Command { .. } => None,
        }
    }

    /// True if the database exists (SQLite: the file exists).
    pub fn exists(&self, pw: Option<&Password>) -> Result<bool, LoadError> {
        match self {
            DbTarget::Postgres(s) => postgres::exists(s, pw),
            DbTarget::Mariadb(s) => mariadb::exists(s, pw),
            DbTarget::Sqlite(p) => Ok(p.exists()),
        }
    }

    /// Creates the (empty) database.
    pub fn create_database(&self, pw: Option<&Password>) -> Result<(), LoadError> {
        match self {
            DbTarget::Postgres(s) => postgres::create(s, pw),
            DbTarget::Mariadb(s) => mariadb::create(s, pw),
            DbTarget::Sqlite(p) => sqlite::create(p),
        }
    }

    /// Drops the database if it exists.
    pub fn drop_database(&self, pw: Option<&Password>) -> Result<(), LoadError> {
        match self {
            DbTarget::Postgres(s) => postgres::drop(s, pw),
            DbTarget::Mariadb(s) => mariadb::drop(s, pw),
            DbTarget::Sqlite(p) => sqlite::drop(p),
        }
    }

    /// True if the database is missing or holds no tables, views, sequences
    /// or routines of its own.
    pub fn is_empty(&self, pw: Option<&Password>) -> Result<bool, LoadError> {
        match self {
            DbTarget::Postgres(s) => postgres::is_empty(s, pw),
            DbTarget::Mariadb(s) => mariadb::is_empty(s, pw),
            DbTarget::Sqlite(p) => sqlite::is_empty(p),
        }
    }

    /// Runs one query in the database; the first column of the first row
    /// (`None` if there is no row or it is NULL). For checks, not for
    /// untrusted SQL.
    pub fn query_scalar(
        &self,
        pw: Option<&Password>,
        sql: &str,
    ) -> Result<Option<String>, LoadError> {
        match self {
            DbTarget::Postgres(s) => postgres::query_scalar(s, pw, sql),
            DbTarget::Mariadb(s) => mariadb::query_scalar(s, pw, sql),
            DbTarget::Sqlite(p) => sqlite::query_scalar(p, sql),
        }
    }

    /// The base tables of the database (not views), sorted.
    pub fn list_tables(&self, pw: Option<&Password>) -> Result<Vec<TableName>, LoadError> {
        let mut t = match self {
            DbTarget::Postgres(s) => postgres::list_tables(s, pw),
            DbTarget::Mariadb(s) => mariadb::list_tables(s, pw),
            DbTarget::Sqlite(p) => sqlite::list_tables(p),
        }?;
        t.sort();
        Ok(t)
    }

    /// `count(*)` of one table.
    pub fn count_rows(&self, pw: Option<&Password>, table: &TableName) -> Result<u64, LoadError> {
        let sql = match self {
            DbTarget::Postgres(_) => format!(
                "select count(*) from {}{}",
                table
                    .schema
                    .as_deref()
                    .map(|s| format!("{}.", postgres::quote_ident(s)))
                    .unwrap_or_default(),
                postgres::quote_ident(&table.name)
            ),
            DbTarget::Mariadb(_) => {
                format!("SELECT COUNT(*) FROM {}", mariadb::quote_ident(&table.name))
            }
            DbTarget::Sqlite(_) => format!(
                "SELECT count(*) FROM {}",
                postgres::quote_ident(&table.name)
            ),
        };
        let v = self.query_scalar(pw, &sql)?.unwrap_or_default();
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
            DbTarget::Postgres(s) | DbTarget::Mariadb(s) => write!(
                f,
                "{}://{}{}:{}/{}",
                s.scheme,
                s.user
                    .as_deref()
                    .map(|u| format!("{u}@"))
                    .unwrap_or_default(),
                s.host,
                s.port,
                s.database
            ),
            DbTarget::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
        }
    }
}

fn split_host_port(hostport: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("unclosed [ in the host")?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.starts_with('-') {
        return Err("the host must not start with '-'".into());
    }
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("bad port {p:?}"))?,
        ),
    };
    Ok((host, port))
}

/// Names reach tools as separate arguments; refuse those a tool would read
/// as an option or (libpq) as a connection string.
fn check_name(name: &str) -> Result<(), String> {
    if name.starts_with('-') {
        return Err(format!("{name:?} must not start with '-'"));
    }
    if name.contains('=') || name.contains('\0') || name.contains('\n') {
        return Err(format!("{name:?} must not contain '=', NUL or newlines"));
    }
    Ok(())
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("truncated %-escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad %-escape %{hex}"))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 after %-decoding".into())
}

/// The URL with any user-info password replaced, for error messages.
fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, tail) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:***@{host}{}", redact_query(tail));
        }
        return format!("{scheme}://{authority}{}", redact_query(tail));
    }
    url.to_string()
}

fn redact_query(tail: &str) -> String {
    match tail.split_once('?') {
        Some((path, _)) => format!("{path}?***"),
        None => tail.to_string(),
    }
}

/// Replaces the password in captured tool output.
fn scrub(text: &str, pw: Option<&Password>) -> String {
    match pw {
        Some(p) if !p.expose().is_empty() => text.replace(p.expose(), "[password removed]"),
        _ => text.to_string(),
    }
}

/// The environment variable `restore --into` and `drill` read a target
/// password from; removed from every child's environment.
pub const PASSWORD_ENV: &str = "LOCKBOX_RESTORE_PASSWORD";

/// A private (0600) temporary file with `contents`, removed when dropped.
fn secret_file(contents: &str) -> Result<tempfile::NamedTempFile, LoadError> {
    use std::os::unix::fs::PermissionsExt;
    let mut f = tempfile::Builder::new()
        .prefix("lockbox-cred-")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile()
        .map_err(|e| LoadError::Io {
            what: "temporary credentials file".into(),
            reason: e.to_string(),
        })?;
    f.write_all(contents.as_bytes())
        .and_then(|_| f.flush())
        .map_err(|e| LoadError::Io {
            what: "writing temporary credentials file".into(),
            reason: e.to_string(),
        })?;
    Ok(f)
}

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    }
}

fn tail(s: &str) -> String {
    if s.len() <= STDERR_TAIL {
        return s.to_string();
    }
    let mut start = s.len() - STDERR_TAIL;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

/// Runs a client tool to completion (stdin from `input` or nothing) and
/// returns its stdout; a failure carries its scrubbed stderr.
fn run_tool(
    mut cmd: Command,
    input: Option<&Path>,
    pw: Option<&Password>,
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
    cmd.stdin(stdin);
    let out = lockbox_vault::sys::output_in_group(&mut cmd).map_err(|e| LoadError::Spawn {
        target: target.into(),
        tool: tool.clone(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            "program not found; install the database client tools".into()
        } else {
            e.to_string()
        },
    })?;
    let stderr = scrub(&String::from_utf8_lossy(&out.stderr), pw);
    if !out.status.success() {
        return Err(LoadError::Tool {
            target: target.into(),
            what: what.into(),
            tool,
            status: describe_status(out.status),
            stderr: tail(&stderr),
        });
    }
    if !stderr.trim().is_empty() {
        tracing::debug!(tool = %tool, stderr = %tail(&stderr).trim_end(), "tool stderr");
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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
    pub restore: RestoreOptions,
}

/// What [`restore_into`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    pub snapshot: String,
    pub source: String,
    /// The snapshot's source kind (`postgres`, `mariadb`, `sqlite`, …).
    pub kind: String,
    /// Where it was loaded (the URL, without password).
    pub target: String,
    /// Verified dump bytes.
    pub bytes: u64,
    pub chunks: usize,
    /// Restore + verification, then loading.
    pub restore_seconds: f64,
    pub load_seconds: f64,
    /// Both together.
    pub seconds: f64,
    /// True if the database did not exist and was created for the load.
    pub created: bool,
    /// The snapshot's sealed `source_info` as recorded at backup time
    /// (server version, database size, tables with row counts; see
    /// vault/FORMAT.md), for comparison with what was loaded.
    pub source_info: serde_json::Value,
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

/// Restores `snap` verified into a private temporary file in `tmp_dir`, then
/// loads it into `target` (created if missing). Refuses a non-empty target
/// unless `opts.force`. On failure, a database created here is dropped again
/// and nothing unverified was ever loaded.
#[allow(clippy::too_many_arguments)]
pub fn restore_into(
    backend: &dyn ReadBackend,
    identities: &Identities,
    snap: &SnapshotRef,
    target: &DbTarget,
    password: Option<&Password>,
    tmp_dir: &Path,
    opts: &LoadOptions,
    progress: &dyn RestoreProgress,
) -> Result<LoadReport, LoadError> {
    let clock = Instant::now();
    let opened = crate::open_snapshot(backend, identities, snap)?;
    let kind = opened.manifest.kind.clone();
    check_kind(&kind, target)?;
    let shown = target.to_string();

    // Before fetching anything: a refusal costs no download.
    let existed = target.exists(password)?;
    if existed && !opts.force && !target.is_empty(password)? {
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
        target.create_database(password)?;
    }
    let loaded = match target {
        DbTarget::Postgres(s) => postgres::load(s, password, tmp.path(), format, opts.force),
        DbTarget::Mariadb(s) => {
            if format != DumpFormat::SqlText {
                Err(LoadError::KindMismatch {
                    kind: kind.clone(),
                    target: shown.clone(),
                    reason: "the snapshot is not an SQL text dump".into(),
                })
            } else {
                mariadb::load(s, password, tmp.path())
            }
        }
        DbTarget::Sqlite(_) => unreachable!("handled above"),
    };
    if let Err(e) = loaded {
        if created && let Err(d) = target.drop_database(password) {
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
