//! The Lockbox configuration file (TOML), parsed strictly: an unknown or
//! misspelt key is an error naming the key, never silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::format::valid_source_name;
use crate::keys::{KeyError, Recipients};
use crate::storage::{BackendOptions, LockMode, S3Settings};

mod drill;
mod notify;
mod prune;
mod retention;
pub use drill::{
    DEFAULT_ROW_TOLERANCE_PCT, DrillCheck, DrillConfig, ROW_TOLERANCE_FLOOR, expect_text,
};
pub use notify::{NotifyConfig, NotifyTarget, PingStyle, SecretFrom, Sink, TargetUrl};
pub use prune::PruneSection;
pub use retention::RetentionSection;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config file {path}: {key}: {message}")]
    Invalid {
        path: String,
        key: String,
        message: String,
    },
}

impl ConfigError {
    /// A configuration that cannot be read or is wrong: fix it.
    pub fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Usage
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Catalog, ID key, locks and temporary files.
    pub state_dir: PathBuf,
    pub repository: RepositorySection,
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    /// `[daemon]`: settings of `lockbox daemon`.
    #[serde(default)]
    pub daemon: DaemonSection,
    /// `[health]`: default thresholds of `status`, `check` and metrics.
    #[serde(default)]
    pub health: HealthSection,
    /// `[retention]`: the default retention policy of every source.
    #[serde(default)]
    pub retention: RetentionSection,
    /// `[prune]`: the pruner's credentials and limits.
    #[serde(default)]
    pub prune: PruneSection,
    /// `[[notify]]`: webhooks, ping URLs and commands told of failures.
    #[serde(default)]
    pub notify: Vec<NotifyConfig>,
    /// Where the config was read from (for messages); not a TOML key.
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositorySection {
    pub url: String,
    pub recipients: Vec<String>,
    /// Minimum Object Lock retention of each snapshot and all it references.
    pub lock_days: u32,
    /// Extra days added whenever Lockbox sets or extends a chunk's lock, so a
    /// chunk reused by daily backups needs one extension per `lock_slack_days`
    /// instead of one per backup.
    #[serde(default = "default_slack")]
    pub lock_slack_days: u32,
    /// Chunks hashed/compressed/encrypted in parallel (default: CPU count).
    #[serde(default)]
    pub workers: Option<usize>,
    /// Objects written to storage concurrently.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// A changed chunk is stored as a delta against a similar chunk of the
    /// previous backup while the delta is at most this percentage of its
    /// full stored size; 0 turns delta chunks (and the base cache) off.
    #[serde(default = "default_delta_max_percent")]
    pub delta_max_percent: u32,
    /// Object Lock mode on S3: `compliance` (default) or `governance`.
    #[serde(default)]
    pub lock_mode: Option<LockMode>,
    /// `[repository.s3]`: settings of an `s3://` repository.
    #[serde(default)]
    pub s3: Option<S3Settings>,
}

impl RepositorySection {
    pub fn is_s3(&self) -> bool {
        self.url.starts_with("s3://")
    }

    /// What the storage layer needs beyond the URL.
    pub fn backend_options(&self) -> BackendOptions {
        BackendOptions {
            lock_mode: self.lock_mode.unwrap_or_default(),
            s3: self.s3.clone().unwrap_or_default(),
            ..Default::default()
        }
    }

    /// Uploads in flight: `[repository.s3] max_in_flight` for S3 (default
    /// suited to a remote endpoint), `max_in_flight` otherwise.
    pub fn effective_max_in_flight(&self) -> usize {
        match &self.s3 {
            Some(S3Settings {
                max_in_flight: Some(n),
                ..
            }) => *n,
            _ if self.is_s3() => crate::storage::s3::DEFAULT_MAX_IN_FLIGHT,
            _ => self.max_in_flight,
        }
    }
}

/// Upper bounds on lock lengths: a typo must not lock data for a century.
pub const MAX_LOCK_DAYS: u32 = 3650;
pub const MAX_SLACK_DAYS: u32 = 90;

fn default_slack() -> u32 {
    7
}
fn default_in_flight() -> usize {
    4
}

fn default_delta_max_percent() -> u32 {
    crate::format::DELTA_MAX_PERCENT
}

/// One `[[source]]` table as written. Keys that do not apply to its `kind`
/// are rejected by validation, so a typo never silently changes a backup.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub name: String,
    pub kind: String,
    /// `command`: the program and its arguments; its stdout is the dump.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// `command`: extra environment variables for the program.
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    /// `command`: working directory.
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    /// `sqlite`: the database file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `postgres`, `mariadb`, `mysql`: server host name or address (or, for
    /// PostgreSQL, a Unix socket directory).
    #[serde(default)]
    pub host: Option<String>,
    /// `postgres`, `mariadb`, `mysql`: server port.
    #[serde(default)]
    pub port: Option<u16>,
    /// `postgres`, `mariadb`, `mysql`: the (read-only) account to dump as.
    #[serde(default)]
    pub user: Option<String>,
    /// `postgres`, `mariadb`, `mysql`: the database to dump.
    #[serde(default)]
    pub database: Option<String>,
    /// `postgres`: a libpq URL instead of host/port/user/database; it must
    /// not contain a password.
    #[serde(default)]
    pub url: Option<String>,
    /// Database kinds: a file holding the password (first line).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Database kinds: an environment variable of Lockbox's holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Database kinds: the dump program (default `pg_dump`, `mariadb-dump`
    /// or `mysqldump`).
    #[serde(default)]
    pub dump_tool: Option<String>,
    /// Any kind: when `lockbox daemon` backs it up (cron, 5 fields or 6 with
    /// seconds first, in `[daemon] timezone`).
    #[serde(default)]
    pub schedule: Option<String>,
    /// Any kind: a random delay of up to this much is added to each slot
    /// (e.g. `5m`), so many sources or hosts do not start at once.
    #[serde(default)]
    pub jitter: Option<String>,
    /// Any kind: a run still going after this long (e.g. `2h`; default
    /// [`DEFAULT_TIMEOUT`]) is stopped: no snapshot, recorded as timed out.
    #[serde(default)]
    pub timeout: Option<String>,
    /// `postgres`: how long pg_dump waits for a table's shared lock before
    /// failing (`--lock-wait-timeout`; default [`DEFAULT_LOCK_WAIT`]).
    #[serde(default)]
    pub lock_wait_timeout: Option<String>,
    /// Any kind: health is CRIT when the newest snapshot is older than this
    /// (default `[health] max_backup_age`).
    #[serde(default)]
    pub max_backup_age: Option<String>,
    /// Any kind: health is WARN when the newest verified snapshot is older
    /// than this (default `[health] max_verified_age`).
    #[serde(default)]
    pub max_verified_age: Option<String>,
    /// `[source.drill]`: restore drills of this source.
    #[serde(default)]
    pub drill: Option<DrillConfig>,
    /// Any kind: this source's retention policy; setting any of these
    /// replaces all of `[retention]`'s `keep_*` rules for this source.
    #[serde(default)]
    pub keep_last: Option<u32>,
    #[serde(default)]
    pub keep_hourly: Option<u32>,
    #[serde(default)]
    pub keep_daily: Option<u32>,
    #[serde(default)]
    pub keep_weekly: Option<u32>,
    #[serde(default)]
    pub keep_monthly: Option<u32>,
    #[serde(default)]
    pub keep_yearly: Option<u32>,
    /// Parsed form of the kind-specific keys, filled in by validation.
    #[serde(skip)]
    parsed: Option<SourceKind>,
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    /// Any program whose standard output is the dump.
    Command {
        command: Vec<String>,
        env: BTreeMap<String, String>,
        workdir: Option<PathBuf>,
    },
    /// An SQLite database copied with SQLite's online backup API.
    Sqlite { path: PathBuf },
    /// A PostgreSQL or MariaDB/MySQL database dumped with its own tool.
    Database(DatabaseSource),
}

/// Which server family a database source talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFlavor {
    Postgres,
    Mariadb,
    /// MySQL: the MariaDB code path with `mysqldump`/`mysql` as tools.
    Mysql,
}

impl DbFlavor {
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
    File(PathBuf),
    Env(String),
}

/// A validated `postgres`/`mariadb`/`mysql` source.
#[derive(Debug, Clone)]
pub struct DatabaseSource {
    pub flavor: DbFlavor,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub database: Option<String>,
    /// `postgres` only: a libpq URL without a password.
    pub url: Option<String>,
    pub password: Option<PasswordFrom>,
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

/// `[daemon]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    /// Backups running at once, across all sources (default 1).
    #[serde(default)]
    pub max_concurrent: Option<usize>,
    /// On SIGTERM, how long runs in flight may take to finish before they
    /// are aborted (default `10s`).
    #[serde(default)]
    pub shutdown_grace: Option<String>,
    /// Time zone of the schedules (default `UTC`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Address of the status server (`/metrics`, `/healthz`, `/status`,
    /// `/`), default `127.0.0.1:9187`; `"off"` disables it.
    #[serde(default)]
    pub listen: Option<String>,
}

/// The daemon's settings, validated.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    pub max_concurrent: usize,
    pub shutdown_grace: std::time::Duration,
    pub timezone: chrono_tz::Tz,
    /// Where the status server listens; `None` when it is off.
    pub listen: Option<std::net::SocketAddr>,
}

/// The default address of the daemon's status server.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9187";

/// `[health]` as written: defaults for every source's thresholds.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSection {
    /// Default `26h`.
    #[serde(default)]
    pub max_backup_age: Option<String>,
    /// Default `8d`.
    #[serde(default)]
    pub max_verified_age: Option<String>,
}

/// Defaults of the health thresholds: a daily backup may be a couple of
/// hours late; a weekly drill may be a day late.
pub const DEFAULT_MAX_BACKUP_AGE: std::time::Duration = std::time::Duration::from_secs(26 * 3600);
pub const DEFAULT_MAX_VERIFIED_AGE: std::time::Duration = std::time::Duration::from_secs(8 * 86400);

/// A source's health thresholds, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub max_backup_age: std::time::Duration,
    pub max_verified_age: std::time::Duration,
}

fn threshold(v: Option<&str>, key: &str) -> Result<Option<std::time::Duration>, (String, String)> {
    let Some(v) = v else { return Ok(None) };
    let d = crate::scheduler::parse_duration(v).map_err(|e| (key.to_string(), e))?;
    if d.is_zero() {
        return Err((key.to_string(), "must be longer than 0s".into()));
    }
    Ok(Some(d))
}

impl HealthSection {
    fn defaults(&self) -> Result<Thresholds, (String, String)> {
        Ok(Thresholds {
            max_backup_age: threshold(self.max_backup_age.as_deref(), "health.max_backup_age")?
                .unwrap_or(DEFAULT_MAX_BACKUP_AGE),
            max_verified_age: threshold(
                self.max_verified_age.as_deref(),
                "health.max_verified_age",
            )?
            .unwrap_or(DEFAULT_MAX_VERIFIED_AGE),
        })
    }
}

impl DaemonSection {
    fn settings(&self) -> Result<DaemonSettings, (String, String)> {
        let max_concurrent = self.max_concurrent.unwrap_or(1);
        if max_concurrent == 0 {
            return Err(("daemon.max_concurrent".into(), "must be at least 1".into()));
        }
        let shutdown_grace = match &self.shutdown_grace {
            Some(s) => crate::scheduler::parse_duration(s)
                .map_err(|e| ("daemon.shutdown_grace".to_string(), e))?,
            None => std::time::Duration::from_secs(10),
        };
        let timezone = crate::scheduler::parse_tz(self.timezone.as_deref().unwrap_or("UTC"))
            .map_err(|e| ("daemon.timezone".to_string(), e))?;
        let listen = match self.listen.as_deref().unwrap_or(DEFAULT_LISTEN) {
            "off" => None,
            a => Some(a.parse().map_err(|_| {
                (
                    "daemon.listen".to_string(),
                    format!(
                        "{a:?} is not an IP address and port (e.g. {DEFAULT_LISTEN}) or \"off\""
                    ),
                )
            })?),
        };
        Ok(DaemonSettings {
            max_concurrent,
            shutdown_grace,
            timezone,
            listen,
        })
    }
}

impl SourceConfig {
    /// The source's schedule in `tz`, if it has one (validated at load).
    pub fn schedule_in(&self, tz: chrono_tz::Tz) -> Option<crate::scheduler::Schedule> {
        self.schedule
            .as_deref()
            .map(|s| crate::scheduler::Schedule::parse(s, tz).expect("validated at load"))
    }
    pub fn jitter(&self) -> std::time::Duration {
        self.jitter
            .as_deref()
            .map_or(std::time::Duration::ZERO, |s| {
                crate::scheduler::parse_duration(s).expect("validated at load")
            })
    }
    /// The source's run timeout: its own `timeout`, else [`DEFAULT_TIMEOUT`].
    pub fn timeout(&self) -> Option<std::time::Duration> {
        Some(self.timeout.as_deref().map_or(DEFAULT_TIMEOUT, |s| {
            crate::scheduler::parse_duration(s).expect("validated at load")
        }))
    }

    /// The source's health thresholds: its own keys, else `[health]`'s.
    pub fn thresholds(&self, defaults: Thresholds) -> Thresholds {
        let get = |v: &Option<String>| {
            v.as_deref()
                .map(|s| crate::scheduler::parse_duration(s).expect("validated at load"))
        };
        Thresholds {
            max_backup_age: get(&self.max_backup_age).unwrap_or(defaults.max_backup_age),
            max_verified_age: get(&self.max_verified_age).unwrap_or(defaults.max_verified_age),
        }
    }

    fn check_scheduling(&self, i: usize, tz: chrono_tz::Tz) -> Result<(), (String, String)> {
        let key = |k: &str| format!("source[{i}].{k}");
        threshold(self.max_backup_age.as_deref(), &key("max_backup_age"))?;
        threshold(self.max_verified_age.as_deref(), &key("max_verified_age"))?;
        if let Some(s) = &self.schedule {
            crate::scheduler::Schedule::parse(s, tz).map_err(|e| (key("schedule"), e))?;
        }
        for (k, v) in [
            ("jitter", &self.jitter),
            ("timeout", &self.timeout),
            ("lock_wait_timeout", &self.lock_wait_timeout),
        ] {
            if let Some(v) = v {
                let d = crate::scheduler::parse_duration(v).map_err(|e| (key(k), e))?;
                if k != "jitter" && d.is_zero() {
                    return Err((key(k), "must be longer than 0s".into()));
                }
            }
        }
        Ok(())
    }

    /// The `keep_*` keys of this `[[source]]` alone.
    fn own_retention(&self) -> crate::retention::Policy {
        crate::retention::Policy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
        }
    }

    pub fn kind(&self) -> &SourceKind {
        self.parsed
            .as_ref()
            .expect("validated when the config was loaded")
    }

    fn parse_kind(&self, i: usize) -> Result<SourceKind, (String, String)> {
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
    ) -> Result<DatabaseSource, (String, String)> {
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
            lock_wait_timeout: (flavor == DbFlavor::Postgres).then(|| {
                self.lock_wait_timeout
                    .as_deref()
                    .map_or(DEFAULT_LOCK_WAIT, |s| {
                        crate::scheduler::parse_duration(s).expect("validated at load")
                    })
            }),
        })
    }
}

impl SourceKind {
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::Command { .. } => "command",
            SourceKind::Sqlite { .. } => "sqlite",
            SourceKind::Database(db) => db.flavor.kind_name(),
        }
    }
}

/// `message (line L, column C)`: toml's own rendering draws the line with
/// a caret over several lines; an error here is one line, like the rest.
fn one_line(text: &str, message: &str, span: Option<std::ops::Range<usize>>) -> String {
    let message = message.trim_end();
    match span {
        Some(span) if span.start <= text.len() && text.is_char_boundary(span.start) => {
            let before = &text[..span.start];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("{message} (line {line}, column {column})")
        }
        _ => message.to_string(),
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let mut config = Self::parse(&text, &shown)?;
        config.path = path.to_path_buf();
        crate::dbtool::register_secret_env_names(
            config
                .sources
                .iter()
                .filter_map(|s| s.password_env.as_deref()),
        );
        Ok(config)
    }

    pub fn parse(text: &str, shown: &str) -> Result<Self, ConfigError> {
        let parse_err = |message: String| ConfigError::Parse {
            path: shown.into(),
            message: message.trim_end().to_string(),
        };
        let de = toml::Deserializer::parse(text)
            .map_err(|e| parse_err(one_line(text, e.message(), e.span())))?;
        // serde_path_to_error records where in the document a type error or
        // unknown key sits (`source[1].drill.check[0].sql`), which toml's
        // own message (a line and column) does not spell out.
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = inner.message();
            // "missing field `url`" / "unknown field `x`, expected …" are
            // reported at the table; the key path ends in the field.
            let field = ["missing field `", "unknown field `"]
                .iter()
                .find_map(|p| message.strip_prefix(p))
                .and_then(|rest| rest.split('`').next());
            let key = match (path.as_str(), field) {
                (".", Some(f)) => f.to_string(),
                (p, Some(f)) if !p.ends_with(&format!(".{f}")) && p != f => format!("{p}.{f}"),
                (p, _) => p.to_string(),
            };
            let located = one_line(text, message, inner.span());
            parse_err(if key == "." {
                located
            } else {
                format!("{key}: {located}")
            })
        })?;
        config.validate(shown)?;
        Ok(config)
    }

    fn validate(&mut self, shown: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: shown.into(),
            key: key.into(),
            message,
        };
        if !self.state_dir.is_absolute() {
            return Err(invalid(
                "state_dir",
                "must be an absolute path, e.g. /var/lib/lockbox".into(),
            ));
        }
        Recipients::parse(&self.repository.recipients).map_err(|e| match e {
            KeyError::UnusableRecipient { index, problem } => invalid(
                &format!("repository.recipients[{index}]"),
                problem.to_string(),
            ),
            e => invalid("repository.recipients", e.to_string()),
        })?;
        // A compliance lock cannot be shortened once written, so an
        // implausible value is refused rather than obeyed.
        if !(1..=MAX_LOCK_DAYS).contains(&self.repository.lock_days) {
            return Err(invalid(
                "repository.lock_days",
                format!(
                    "must be between 1 and {MAX_LOCK_DAYS} (10 years): every snapshot is locked \
                     for this many days and a lock can never be shortened"
                ),
            ));
        }
        if self.repository.lock_slack_days > MAX_SLACK_DAYS {
            return Err(invalid(
                "repository.lock_slack_days",
                format!("must be at most {MAX_SLACK_DAYS}"),
            ));
        }
        if self.repository.workers == Some(0) {
            return Err(invalid("repository.workers", "must be at least 1".into()));
        }
        if self.repository.delta_max_percent > 100 {
            return Err(invalid(
                "repository.delta_max_percent",
                format!(
                    "is {}; it is a percentage from 0 (off) to 100",
                    self.repository.delta_max_percent
                ),
            ));
        }
        if self.repository.max_in_flight == 0 {
            return Err(invalid(
                "repository.max_in_flight",
                "must be at least 1".into(),
            ));
        }
        let repo = &self.repository;
        if repo.is_s3() {
            crate::storage::s3::parse_url(&repo.url)
                .map_err(|e| invalid("repository.url", e.to_string()))?;
        } else {
            // Checked here, not first when the backend opens, so the error
            // names the key (and `lockbox doctor` can report it).
            match repo.url.strip_prefix("file://") {
                Some(path) if path.starts_with('/') && path.len() > 1 => {}
                Some(_) => {
                    return Err(invalid(
                        "repository.url",
                        format!(
                            "{:?}: file:// URLs need an absolute path, e.g. file:///srv/lockbox",
                            repo.url
                        ),
                    ));
                }
                None => {
                    return Err(invalid(
                        "repository.url",
                        format!(
                            "{:?} is not a repository URL: use file:///absolute/path or \
                             s3://bucket/prefix",
                            repo.url
                        ),
                    ));
                }
            }
            if repo.s3.is_some() {
                return Err(invalid(
                    "repository.s3",
                    "applies only to s3:// repositories".into(),
                ));
            }
            if repo.lock_mode.is_some() {
                return Err(invalid(
                    "repository.lock_mode",
                    "applies only to s3:// repositories (Object Lock)".into(),
                ));
            }
        }
        if let Some(s3) = &repo.s3 {
            if s3.max_in_flight == Some(0) {
                return Err(invalid(
                    "repository.s3.max_in_flight",
                    "must be at least 1".into(),
                ));
            }
            if let Some(e) = &s3.endpoint
                && !(e.starts_with("https://") || e.starts_with("http://"))
            {
                return Err(invalid(
                    "repository.s3.endpoint",
                    "must be an http:// or https:// URL, e.g. https://minio.example:9000".into(),
                ));
            }
            for (key, v) in [("region", &s3.region), ("profile", &s3.profile)] {
                if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
                    return Err(invalid(
                        &format!("repository.s3.{key}"),
                        "must not be empty".into(),
                    ));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let key = format!("source[{i}].name");
            if !valid_source_name(&s.name) {
                return Err(invalid(
                    &key,
                    format!(
                        "{:?} is not a valid source name: use 1-64 of A-Z a-z 0-9 . _ - (not starting with '.')",
                        s.name
                    ),
                ));
            }
            if !seen.insert(&s.name) {
                return Err(invalid(&key, format!("duplicate source name {:?}", s.name)));
            }
        }
        let daemon = self
            .daemon
            .settings()
            .map_err(|(key, message)| invalid(&key, message))?;
        self.health
            .defaults()
            .map_err(|(key, message)| invalid(&key, message))?;
        self.retention
            .timezone(daemon.timezone)
            .map_err(|(key, message)| invalid(&key, message))?;
        self.prune
            .check()
            .map_err(|(key, message)| invalid(&key, message))?;
        notify::check(&mut self.notify).map_err(|(key, message)| invalid(&key, message))?;
        for (i, s) in self.sources.iter_mut().enumerate() {
            let kind = s
                .parse_kind(i)
                .map_err(|(key, message)| invalid(&key, message))?;
            s.parsed = Some(kind);
            s.check_scheduling(i, daemon.timezone)
                .map_err(|(key, message)| invalid(&key, message))?;
            retention::check_keeps(&format!("source[{i}]"), &s.own_retention())
                .map_err(|(key, message)| invalid(&key, message))?;
            if let Some(d) = &s.drill {
                d.validate(i, &s.kind, daemon.timezone)
                    .map_err(|(key, message)| invalid(&key, message))?;
            }
        }
        Ok(())
    }

    pub fn daemon_settings(&self) -> DaemonSettings {
        self.daemon.settings().expect("validated at load")
    }

    /// The `[health]` default thresholds (validated at load).
    pub fn default_thresholds(&self) -> Thresholds {
        self.health.defaults().expect("validated at load")
    }

    /// The retention policy of `source`: its own `keep_*` keys if it sets
    /// any, otherwise `[retention]`'s.
    pub fn retention_policy(&self, source: &SourceConfig) -> crate::retention::Policy {
        let own = source.own_retention();
        if own.is_empty() {
            self.retention.policy()
        } else {
            own
        }
    }

    /// The timezone retention periods are counted in (validated at load).
    pub fn retention_timezone(&self) -> chrono_tz::Tz {
        self.retention
            .timezone(self.daemon_settings().timezone)
            .expect("validated at load")
    }

    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }

    pub fn catalog_path(&self) -> PathBuf {
        self.state_dir.join("catalog.sqlite")
    }
    pub fn id_key_path(&self) -> PathBuf {
        self.state_dir.join("id.key")
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.state_dir.join("tmp")
    }
    /// Local copies of the bases for delta chunks (see `delta`).
    pub fn base_cache_dir(&self) -> PathBuf {
        self.state_dir.join("base-cache")
    }
}

/// `examples/lockbox.toml` as a user edits it: its placeholder recipient
/// replaced by one whose secret key exists. For tests of the example.
#[cfg(test)]
pub(crate) fn shipped_example() -> String {
    include_str!("../../examples/lockbox.toml").replace(
        crate::keys::EXAMPLE_RECIPIENT,
        "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const RCPT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    fn base() -> String {
        format!(
            "state_dir = \"/var/lib/lockbox\"\n[repository]\nurl = \"file:///srv/lockbox\"\nrecipients = [\"{RCPT}\"]\nlock_days = 30\n"
        )
    }

    fn s3_base() -> String {
        base().replace("file:///srv/lockbox", "s3://my-vault/lockbox")
    }

    #[test]
    fn parses_s3_settings() {
        let text = s3_base()
            + "lock_mode = \"governance\"\n[repository.s3]\nendpoint = \"http://127.0.0.1:9000\"\nregion = \"eu-west-1\"\npath_style = true\nprofile = \"backup\"\nmax_in_flight = 3\n";
        let c = Config::parse(&text, "t.toml").unwrap();
        let o = c.repository.backend_options();
        assert_eq!(o.lock_mode, LockMode::Governance);
        assert!(o.s3.path_style);
        assert_eq!(o.s3.profile.as_deref(), Some("backup"));
        assert_eq!(c.repository.effective_max_in_flight(), 3);
        let c = Config::parse(&s3_base(), "t.toml").unwrap();
        assert_eq!(
            c.repository.backend_options().lock_mode,
            LockMode::Compliance
        );
        assert_eq!(
            c.repository.effective_max_in_flight(),
            crate::storage::s3::DEFAULT_MAX_IN_FLIGHT
        );
    }

    #[test]
    fn parses_documented_example() {
        let text = format!(
            "{}\n[[source]]\nname = \"orders\"\nkind = \"command\"\ncommand = [\"pg_dump\", \"orders\"]\n[[source]]\nname = \"app\"\nkind = \"sqlite\"\npath = \"/srv/app.db\"\n",
            base()
        );
        let c = Config::parse(&text, "t.toml").unwrap();
        assert_eq!(c.sources.len(), 2);
        assert_eq!(c.repository.lock_slack_days, 7);
        assert!(matches!(
            c.source("app").unwrap().kind(),
            SourceKind::Sqlite { .. }
        ));
    }

    /// The shipped example must stay a valid, complete config.
    #[test]
    fn shipped_example_parses() {
        let text = include_str!("../../examples/lockbox.toml");
        // As shipped it is refused until its placeholder recipient is replaced.
        let err = Config::parse(text, "examples/lockbox.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("repository.recipients[0]: the placeholder from examples/lockbox.toml"),
            "{err}"
        );
        let c = Config::parse(&shipped_example(), "examples/lockbox.toml").unwrap();
        assert!(c.sources.len() >= 2);
        assert!(
            c.sources
                .iter()
                .any(|s| matches!(s.kind(), SourceKind::Command { .. }))
        );
        assert!(
            c.sources
                .iter()
                .any(|s| matches!(s.kind(), SourceKind::Sqlite { .. }))
        );
        for flavor in [DbFlavor::Postgres, DbFlavor::Mariadb] {
            assert!(
                c.sources
                    .iter()
                    .any(|s| matches!(s.kind(), SourceKind::Database(d) if d.flavor == flavor)),
                "{flavor:?}"
            );
        }
    }

    /// Each malformed config names the key at fault.
    #[test]
    fn malformed_configs_name_the_key() {
        let cases: Vec<(String, &str)> = vec![
            (
                base().replace("lock_days = 30", "lock_days = 0"),
                "repository.lock_days",
            ),
            (
                base().replace("lock_days = 30", "lock_dayz = 30"),
                "lock_dayz",
            ),
            (base().replace(RCPT, "age1nope"), "repository.recipients"),
            (
                base().replace("recipients = [\"", "recipients = []\n#"),
                "repository.recipients",
            ),
            (
                base().replace("/var/lib/lockbox", "relative/state"),
                "state_dir",
            ),
            (
                format!(
                    "{}\n[[source]]\nname = \"a b\"\nkind = \"command\"\ncommand = [\"x\"]\n",
                    base()
                ),
                "source[0].name",
            ),
            (
                format!(
                    "{}\n[[source]]\nname = \"a\"\nkind = \"command\"\ncommand = []\n",
                    base()
                ),
                "source[0].command",
            ),
            (
                format!("{}\n[[source]]\nname = \"a\"\nkind = \"tape\"\n", base()),
                "source[0].kind",
            ),
            (
                format!("{}\n[[source]]\nname = \"a\"\nkind = \"sqlite\"\n", base()),
                "source[0].path",
            ),
            (
                format!(
                    "{}\n[[source]]\nname = \"a\"\nkind = \"sqlite\"\npath = \"rel.db\"\n",
                    base()
                ),
                "source[0].path",
            ),
            (
                format!(
                    "{}\n[[source]]\nname = \"a\"\nkind = \"sqlite\"\npath = \"/x.db\"\ncommand = [\"x\"]\n",
                    base()
                ),
                "source[0].command",
            ),
            (
                format!(
                    "{}\n[[source]]\nname = \"a\"\nkind = \"command\"\ncommand = [\"x\"]\nflavour = 1\n",
                    base()
                ),
                "flavour",
            ),
            (
                base().replace("lock_days = 30", "lock_days = \"30\""),
                "lock_days",
            ),
            (
                base().replace("lock_days = 30", "lock_days = -1"),
                "lock_days",
            ),
            ("state_dir = \"/x\"\n".to_string(), "repository"),
            (base() + "max_in_flight = 0\n", "repository.max_in_flight"),
            (
                base() + "delta_max_percent = 101\n",
                "repository.delta_max_percent",
            ),
            (base() + "workers = 0\n", "repository.workers"),
            (
                format!(
                    "{}\n[[source]]\nname = \"a\"\nkind = \"sqlite\"\npath = \"/x.db\"\nschedule = \"61 * * * *\"\n",
                    base()
                ),
                "source[0].schedule",
            ),
            (
                format!(
                    "{}\n[[source]]\nname = \"a\"\nkind = \"sqlite\"\npath = \"/x.db\"\ntimeout = \"soon\"\n",
                    base()
                ),
                "source[0].timeout",
            ),
            (
                format!(
                    "{}\n[[source]]\nname = \"a\"\nkind = \"sqlite\"\npath = \"/x.db\"\njitter = \"-1s\"\n",
                    base()
                ),
                "source[0].jitter",
            ),
            (
                format!("{}\n[daemon]\ntimezone = \"Mars/Olympus\"\n", base()),
                "daemon.timezone",
            ),
            (
                format!("{}\n[daemon]\nmax_concurrent = 0\n", base()),
                "daemon.max_concurrent",
            ),
            (
                format!("{}\n[daemon]\nshutdown_grace = \"a while\"\n", base()),
                "daemon.shutdown_grace",
            ),
            (
                format!("{}\n[daemon]\nlisten = \"localhost\"\n", base()),
                "daemon.listen",
            ),
            (
                format!("{}\n[health]\nmax_backup_age = \"0s\"\n", base()),
                "health.max_backup_age",
            ),
            (
                format!("{}\n[health]\nmax_verified_agee = \"1d\"\n", base()),
                "max_verified_agee",
            ),
            (
                format!(
                    "{}\n[[source]]\nname = \"a\"\nkind = \"sqlite\"\npath = \"/x.db\"\nmax_verified_age = \"weekly\"\n",
                    base()
                ),
                "source[0].max_verified_age",
            ),
            (
                base().replace("lock_days = 30", "lock_days = 100000000"),
                "repository.lock_days",
            ),
            (
                base().replace("lock_days = 30", "lock_days = 3651"),
                "10 years",
            ),
            (
                base() + "lock_slack_days = 91\n",
                "repository.lock_slack_days",
            ),
            (
                format!(
                    "{}\n[[source]]\nname = \"a\"\nkind = \"command\"\ncommand = [\"x\"]\nworkdir = \"rel\"\n",
                    base()
                ),
                "source[0].workdir",
            ),
            (
                format!(
                    "{}\n[[source]]\nname = \"a\"\nkind = \"sqlite\"\npath = \"/x\"\n[[source]]\nname = \"a\"\nkind = \"sqlite\"\npath = \"/y\"\n",
                    base()
                ),
                "duplicate",
            ),
            (base().replace("url = ", "uri = "), "uri"),
            (
                base() + "lock_mode = \"governance\"\n",
                "repository.lock_mode",
            ),
            (
                base() + "[repository.s3]\nregion = \"x\"\n",
                "repository.s3",
            ),
            (s3_base() + "lock_mode = \"loose\"\n", "lock_mode"),
            (s3_base() + "[repository.s3]\nendpoint = 5\n", "endpoint"),
            (
                s3_base() + "[repository.s3]\nendpoint = \"minio:9000\"\n",
                "repository.s3.endpoint",
            ),
            (
                s3_base() + "[repository.s3]\nsecret_access_key = \"x\"\n",
                "secret_access_key",
            ),
            (
                s3_base() + "[repository.s3]\nmax_in_flight = 0\n",
                "repository.s3.max_in_flight",
            ),
            (
                s3_base() + "[repository.s3]\nregion = \"\"\n",
                "repository.s3.region",
            ),
            (
                s3_base() + "[repository.s3]\npath_style = \"yes\"\n",
                "path_style",
            ),
            (
                base().replace("file:///srv/lockbox", "s3://UPPER/x"),
                "repository.url",
            ),
        ];
        for (text, needle) in cases {
            let err = Config::parse(&text, "t.toml").unwrap_err().to_string();
            assert!(
                err.contains(needle),
                "error {err:?} does not mention {needle:?}"
            );
        }
    }
}
