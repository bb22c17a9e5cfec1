//! The configuration file as written: serde's view of the TOML, strings
//! and all. [`super::Config::parse`] deserializes these (unknown keys are
//! errors naming the key) and converts them once, key by key, into the
//! typed [`super::Config`]; nothing else reads them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::drill::RawDrill;
use super::{NotifyConfig, PruneSection, RetentionSection};
use crate::storage::{LockMode, S3Settings};

/// The whole file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Catalog, ID key, locks and temporary files.
    pub state_dir: PathBuf,
    /// `[repository]`.
    pub repository: RawRepository,
    /// `[[source]]`, in file order.
    #[serde(default, rename = "source")]
    pub sources: Vec<RawSource>,
    /// `[daemon]`: settings of `lockbox daemon`.
    #[serde(default)]
    pub daemon: RawDaemon,
    /// `[health]`: default thresholds of `status`, `check` and metrics.
    #[serde(default)]
    pub health: RawHealth,
    /// `[retention]`: the default retention policy of every source.
    #[serde(default)]
    pub retention: RetentionSection,
    /// `[prune]`: the pruner's credentials and limits.
    #[serde(default)]
    pub prune: PruneSection,
    /// `[[notify]]`: webhooks, ping URLs and commands told of failures.
    #[serde(default)]
    pub notify: Vec<NotifyConfig>,
}

/// `[repository]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRepository {
    /// `file:///absolute/path` or `s3://bucket/prefix`.
    pub url: String,
    /// The age X25519 recipients (`age1…`) every object is encrypted to.
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// The source's name.
    pub name: String,
    /// `command`, `sqlite`, `postgres`, `mariadb` or `mysql`.
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
    /// [`DEFAULT_TIMEOUT`](super::DEFAULT_TIMEOUT)) is stopped: no snapshot, recorded as timed out.
    #[serde(default)]
    pub timeout: Option<String>,
    /// `postgres`: how long pg_dump waits for a table's shared lock before
    /// failing (`--lock-wait-timeout`; default [`DEFAULT_LOCK_WAIT`](super::DEFAULT_LOCK_WAIT)).
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
    pub drill: Option<RawDrill>,
    /// Any kind: this source's retention policy; setting any of these
    /// replaces all of `[retention]`'s `keep_*` rules for this source.
    #[serde(default)]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest local hours that hold one.
    #[serde(default)]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest local days that hold one.
    #[serde(default)]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N newest ISO weeks that hold one.
    #[serde(default)]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest months that hold one.
    #[serde(default)]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest years that hold one.
    #[serde(default)]
    pub keep_yearly: Option<u32>,
}

/// `[daemon]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
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

/// `[health]` as written: defaults for every source's thresholds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    /// Default `26h`.
    #[serde(default)]
    pub max_backup_age: Option<String>,
    /// Default `8d`.
    #[serde(default)]
    pub max_verified_age: Option<String>,
}
