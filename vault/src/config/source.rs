//! `[[source]]`: what each source is (its [`SourceKind`], carrying that
//! kind's keys) and when and how it runs, converted from the flat
//! [`RawSource`] table once at load.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::drill::DrillConfig;
use super::raw::RawSource;
use super::{KeyResult, Thresholds, duration, positive_duration, schedule};
use crate::retention::Policy;
use crate::scheduler::Schedule;

/// One `[[source]]`, checked.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The source's name (unique in the file; 1–64 of `A-Z a-z 0-9 . _ -`), used in the
    /// repository's keys and on the command line.
    pub name: String,
    kind: SourceKind,
    /// When `lockbox daemon` backs it up, in `[daemon] timezone`.
    pub schedule: Option<Schedule>,
    /// A random delay of up to this much is added to each slot (zero when
    /// not set), so many sources or hosts do not start at once.
    pub jitter: Duration,
    /// A run still going after this long is stopped: no snapshot, recorded
    /// as timed out. [`DEFAULT_TIMEOUT`] when not set.
    pub timeout: Duration,
    max_backup_age: Option<Duration>,
    max_verified_age: Option<Duration>,
    /// `[source.drill]`: restore drills of this source.
    pub drill: Option<DrillConfig>,
    /// The source's own `keep_*` keys, if it sets any.
    retention: Option<Policy>,
}

impl SourceConfig {
    pub(super) fn from_raw(raw: RawSource, i: usize, tz: chrono_tz::Tz) -> KeyResult<Self> {
        let key = |k: &str| format!("source[{i}].{k}");
        let mut kind = raw.parse_kind(i)?;
        let max_backup_age =
            positive_duration(raw.max_backup_age.as_deref(), &key("max_backup_age"))?;
        let max_verified_age =
            positive_duration(raw.max_verified_age.as_deref(), &key("max_verified_age"))?;
        let schedule = schedule(raw.schedule.as_deref(), &key("schedule"), tz)?;
        let jitter = duration(raw.jitter.as_deref(), &key("jitter"))?;
        let timeout = positive_duration(raw.timeout.as_deref(), &key("timeout"))?;
        let lock_wait =
            positive_duration(raw.lock_wait_timeout.as_deref(), &key("lock_wait_timeout"))?;
        if let SourceKind::Database(db) = &mut kind
            && db.flavor == DbFlavor::Postgres
        {
            db.lock_wait_timeout = Some(lock_wait.unwrap_or(DEFAULT_LOCK_WAIT));
        }
        let own = Policy {
            keep_last: raw.keep_last,
            keep_hourly: raw.keep_hourly,
            keep_daily: raw.keep_daily,
            keep_weekly: raw.keep_weekly,
            keep_monthly: raw.keep_monthly,
            keep_yearly: raw.keep_yearly,
        };
        super::retention::check_keeps(&format!("source[{i}]"), &own)?;
        let drill = raw
            .drill
            .map(|d| DrillConfig::from_raw(d, i, &raw.kind, tz))
            .transpose()?;
        Ok(SourceConfig {
            name: raw.name,
            kind,
            schedule,
            jitter: jitter.unwrap_or(Duration::ZERO),
            timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
            max_backup_age,
            max_verified_age,
            drill,
            retention: (!own.is_empty()).then_some(own),
        })
    }

    /// What the source dumps and how.
    pub fn kind(&self) -> &SourceKind {
        &self.kind
    }

    /// The source's health thresholds: its own keys, else `[health]`'s.
    pub fn thresholds(&self, defaults: Thresholds) -> Thresholds {
        Thresholds {
            max_backup_age: self.max_backup_age.unwrap_or(defaults.max_backup_age),
            max_verified_age: self.max_verified_age.unwrap_or(defaults.max_verified_age),
        }
    }

    /// The `keep_*` keys of this `[[source]]` alone, if it sets any.
    pub(super) fn own_retention(&self) -> Option<&Policy> {
        self.retention.as_ref()
    }
}

/// What a source dumps, with the keys of its `kind`.
#[derive(Debug, Clone)]
pub enum SourceKind {
    /// Any program whose standard output is the dump.
    Command {
        /// The program and its arguments (no shell); its stdout is the dump.
        command: Vec<String>,
        /// Extra environment variables for the program.
        env: BTreeMap<String, String>,
        /// Its working directory (default: Lockbox's).
        workdir: Option<PathBuf>,
    },
    /// An SQLite database copied with SQLite's online backup API.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL or MariaDB/MySQL database dumped with its own tool.
    Database(DatabaseSource),
}

/// Which server family a database source talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFlavor {
    /// PostgreSQL: `pg_dump` and `psql`.
    Postgres,
    /// MariaDB: `mariadb-dump` and `mariadb`.
    Mariadb,
    /// MySQL: the MariaDB code path with `mysqldump`/`mysql` as tools.
    Mysql,
}

impl DbFlavor {
    /// The source kind this flavor is configured as (`postgres`, `mariadb`, `mysql`).
    pub fn kind_name(self) -> &'static str {
        match self {
            DbFlavor::Postgres => "postgres",
            DbFlavor::Mariadb => "mariadb",
            DbFlavor::Mysql => "mysql",
        }
    }
    /// The dump tool used when `dump_tool` is not set.
    pub fn default_dump_tool(self) -> &'static str {
        match self {
            DbFlavor::Postgres => "pg_dump",
            DbFlavor::Mariadb => "mariadb-dump",
            DbFlavor::Mysql => "mysqldump",
        }
    }
    /// The SQL client used for metadata queries.
    pub fn default_client(self) -> &'static str {
        match self {
            DbFlavor::Postgres => "psql",
            DbFlavor::Mariadb => "mariadb",
            DbFlavor::Mysql => "mysql",
        }
    }
}

/// Where a database password comes from. The password itself is never in
/// the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordFrom {
    /// A file whose first line is the password.
    File(PathBuf),
    /// An environment variable of Lockbox's that holds the password (never passed on to tools).
    Env(String),
}

/// A validated `postgres`/`mariadb`/`mysql` source.
#[derive(Debug, Clone)]
pub struct DatabaseSource {
    /// Which server family, and so which tools.
    pub flavor: DbFlavor,
    /// Server host name or address (PostgreSQL: also a Unix socket directory); the tool's
    /// default when not set.
    pub host: Option<String>,
    /// Server port; the tool's default when not set.
    pub port: Option<u16>,
    /// The (read-only) account to dump as; the tool's default when not set.
    pub user: Option<String>,
    /// The database to dump.
    pub database: Option<String>,
    /// `postgres` only: a libpq URL without a password.
    pub url: Option<String>,
    /// Where the password comes from; none when the server needs none.
    pub password: Option<PasswordFrom>,
    /// The dump program (default [`DbFlavor::default_dump_tool`]).
    pub dump_tool: String,
    /// `postgres`: pg_dump's `--lock-wait-timeout`.
    pub lock_wait_timeout: Option<std::time::Duration>,
}

/// A run's timeout when its source sets none. A dump that hangs (a
/// `pg_dump` queued behind an `ACCESS EXCLUSIVE` lock waits forever) would
/// otherwise hold its slot, and with it every other source's backups, for
/// good. Twelve hours is far beyond a healthy dump of several terabytes at
/// the rates dump tools reach, yet a daily source still misses at most one
/// slot.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// pg_dump's wait for a table lock when the source sets none: long enough
/// to ride out a migration's brief lock, short enough that a stuck lock
/// fails the run with pg_dump's own message instead of hanging it.
pub const DEFAULT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// True if a libpq URL carries a password, in its user info
/// (`postgresql://user:secret@host/db`) or as a `password=` parameter.
pub fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = before_query.split('/').next().unwrap_or("");
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && userinfo.contains(':')
    {
        return true;
    }
    query.split('&').any(|kv| {
        kv.split('=')
            .next()
            .unwrap_or("")
            .eq_ignore_ascii_case("password")
    })
}

impl RawSource {
    fn parse_kind(&self, i: usize) -> KeyResult<SourceKind> {
        let key = |k: &str| format!("source[{i}].{k}");
        let present: Vec<&str> = [
            ("command", self.command.is_some()),
            ("env", self.env.is_some()),
            ("workdir", self.workdir.is_some()),
            ("path", self.path.is_some()),
            ("host", self.host.is_some()),
            ("port", self.port.is_some()),
            ("user", self.user.is_some()),
            ("database", self.database.is_some()),
            ("url", self.url.is_some()),
            ("password_file", self.password_file.is_some()),
            ("password_env", self.password_env.is_some()),
            ("dump_tool", self.dump_tool.is_some()),
        ]
        .iter()
        .filter(|(_, p)| *p)
        .map(|(k, _)| *k)
        .collect();
        const DB_KEYS: &[&str] = &[
            "host",
            "port",
            "user",
            "database",
            "password_file",
            "password_env",
            "dump_tool",
        ];
        const PG_KEYS: &[&str] = &[
            "host",
            "port",
            "user",
            "database",
            "url",
            "password_file",
            "password_env",
            "dump_tool",
        ];
        let allowed: &[&str] = match self.kind.as_str() {
            "command" => &["command", "env", "workdir"],
            "sqlite" => &["path"],
            "postgres" => PG_KEYS,
            "mariadb" | "mysql" => DB_KEYS,
            other => {
                return Err((
                    key("kind"),
                    format!(
                        "unknown source kind {other:?}; expected \"command\", \"sqlite\", \
                         \"postgres\", \"mariadb\" or \"mysql\""
                    ),
                ));
            }
        };
        if let Some(extra) = present.iter().find(|k| !allowed.contains(k)) {
            return Err((
                key(extra),
                format!("does not apply to kind = {:?}", self.kind),
            ));
        }
        match self.kind.as_str() {
            "command" => {
                let command = self.command.clone().unwrap_or_default();
                if command.is_empty() || command[0].is_empty() {
                    return Err((
                        key("command"),
                        "must name a program, e.g. [\"pg_dump\", \"orders\"]".into(),
                    ));
                }
                if let Some(dir) = &self.workdir
                    && !dir.is_absolute()
                {
                    return Err((key("workdir"), "must be an absolute path".into()));
                }
                Ok(SourceKind::Command {
                    command,
                    env: self.env.clone().unwrap_or_default(),
                    workdir: self.workdir.clone(),
                })
            }
            "sqlite" => match &self.path {
                Some(path) if path.is_absolute() => Ok(SourceKind::Sqlite { path: path.clone() }),
                Some(_) => Err((key("path"), "must be an absolute path".into())),
                None => Err((key("path"), "is required for kind = \"sqlite\"".into())),
            },
            kind => {
                let flavor = match kind {
                    "postgres" => DbFlavor::Postgres,
                    "mariadb" => DbFlavor::Mariadb,
                    _ => DbFlavor::Mysql,
                };
                self.parse_database(flavor, &key).map(SourceKind::Database)
            }
        }
    }

    fn parse_database(
        &self,
        flavor: DbFlavor,
        key: &dyn Fn(&str) -> String,
    ) -> KeyResult<DatabaseSource> {
        for (k, v) in [
            ("host", &self.host),
            ("user", &self.user),
            ("database", &self.database),
            ("url", &self.url),
            ("password_env", &self.password_env),
            ("dump_tool", &self.dump_tool),
        ] {
            if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err((key(k), "must not be empty".into()));
            }
        }
        for (k, v) in [
            ("host", &self.host),
            ("user", &self.user),
            ("database", &self.database),
        ] {
            if v.as_deref().is_some_and(|v| v.starts_with('-')) {
                return Err((key(k), "must not start with '-'".into()));
            }
        }
        if self.port == Some(0) {
            return Err((key("port"), "must be between 1 and 65535".into()));
        }
        if let Some(url) = &self.url {
            if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
                return Err((
                    key("url"),
                    "must be a libpq URL, e.g. postgresql://backup@db.example:5432/orders".into(),
                ));
            }
            if url_has_password(url) {
                return Err((
                    key("url"),
                    "must not contain a password (it would be visible in the process list); \
                     use password_file or password_env"
                        .into(),
                ));
            }
            for (k, set) in [
                ("host", self.host.is_some()),
                ("port", self.port.is_some()),
                ("user", self.user.is_some()),
                ("database", self.database.is_some()),
            ] {
                if set {
                    return Err((
                        key(k),
                        "cannot be combined with url (put it in the URL)".into(),
                    ));
                }
            }
        } else if self.database.is_none() {
            return Err((
                key("database"),
                format!("is required for kind = {:?}", flavor.kind_name()),
            ));
        }
        let password = match (&self.password_file, &self.password_env) {
            (Some(_), Some(_)) => {
                return Err((
                    key("password_env"),
                    "give at most one of password_file and password_env".into(),
                ));
            }
            (Some(f), None) if !f.is_absolute() => {
                return Err((key("password_file"), "must be an absolute path".into()));
            }
            (Some(f), None) => Some(PasswordFrom::File(f.clone())),
            (None, Some(e)) => {
                if !e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err((
                        key("password_env"),
                        "must be the NAME of an environment variable (A-Z, 0-9, _), not a password"
                            .into(),
                    ));
                }
                Some(PasswordFrom::Env(e.clone()))
            }
            (None, None) => None,
        };
        Ok(DatabaseSource {
            flavor,
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            database: self.database.clone(),
            url: self.url.clone(),
            password,
            dump_tool: self
                .dump_tool
                .clone()
                .unwrap_or_else(|| flavor.default_dump_tool().to_string()),
            // Set with the other durations, after the kind-specific keys.
            lock_wait_timeout: None,
        })
    }
}

impl SourceKind {
    /// The kind as written in `kind = …` (`command`, `sqlite`, `postgres`, `mariadb`, `mysql`).
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::Command { .. } => "command",
            SourceKind::Sqlite { .. } => "sqlite",
            SourceKind::Database(db) => db.flavor.kind_name(),
        }
    }
}
