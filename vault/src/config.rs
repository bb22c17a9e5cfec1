//! The Lockbox configuration file (TOML), parsed strictly: an unknown or
//! misspelt key is an error naming the key, never silently ignored.
//!
//! Two layers: [`raw`] is the file as serde sees it (strings, flat tables);
//! [`Config::parse`] checks it key by key and converts it once into the
//! typed [`Config`] (a [`RepositoryUrl`], [`SourceKind`]s, parsed
//! [`Schedule`]s and durations), which is all the rest of Lockbox reads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::format::valid_source_name;
use crate::keys::{KeyError, Recipients};
use crate::scheduler::{Schedule, parse_duration};
use crate::storage::{BackendOptions, LockMode, RepositoryUrl, S3Settings};

mod drill;
mod notify;
mod prune;
pub mod raw;
mod retention;
mod source;
pub use drill::{
    DEFAULT_ROW_TOLERANCE_PCT, DrillCheck, DrillConfig, ROW_TOLERANCE_FLOOR, expect_text,
};
pub use notify::{NotifyConfig, NotifyTarget, PingStyle, SecretFrom, Sink, TargetUrl};
pub use prune::PruneSection;
pub use retention::{Retention, RetentionSection};
pub use source::{
    DEFAULT_LOCK_WAIT, DEFAULT_TIMEOUT, DatabaseSource, DbFlavor, PasswordFrom, SourceConfig,
    SourceKind, url_has_password,
};

/// Why a configuration file cannot be used. Every variant is a usage error.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read (missing, unreadable, not UTF-8).
    #[error("cannot read config file {path}: {reason}")]
    Read {
        /// The file as given.
        path: String,
        /// The I/O failure.
        reason: String,
    },
    /// The file is not valid TOML, a value has the wrong type, or a key is unknown or missing.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file as given.
        path: String,
        /// The key path and the parser's message, with line and column.
        message: String,
    },
    /// The TOML is well-formed but a value is not allowed (e.g. a relative `state_dir`, a bad
    /// schedule, a duplicate source name).
    #[error("config file {path}: {key}: {message}")]
    Invalid {
        /// The file as given.
        path: String,
        /// The key at fault, e.g. `source[1].schedule`.
        key: String,
        /// What is wrong with it and what is expected.
        message: String,
    },
}

impl ConfigError {
    /// A configuration that cannot be read or is wrong: fix it.
    pub fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Usage
    }
}

/// A key at fault and what is wrong with it; [`Config::parse`] adds the
/// file's name.
type KeyResult<T> = Result<T, (String, String)>;

/// A loaded configuration: every key checked and converted.
#[derive(Debug, Clone)]
pub struct Config {
    /// Catalog, ID key, locks and temporary files.
    pub state_dir: PathBuf,
    /// `[repository]`: where snapshots are stored and who can read them.
    pub repository: RepositoryConfig,
    /// `[[source]]`: the configured sources, in file order; names are unique.
    pub sources: Vec<SourceConfig>,
    /// `[daemon]`: settings of `lockbox daemon`.
    pub daemon: DaemonSettings,
    /// `[health]`: default thresholds of `status`, `check` and metrics.
    pub health: Thresholds,
    /// `[retention]`: the default retention policy and its timezone.
    pub retention: Retention,
    /// `[prune]`: the pruner's credentials and limits.
    pub prune: PruneSection,
    /// `[[notify]]`: webhooks, ping URLs and commands told of failures.
    pub notify: Vec<NotifyConfig>,
    /// Where the config was read from (for messages); not a TOML key.
    pub path: PathBuf,
}

/// `[repository]`, checked.
#[derive(Debug, Clone)]
pub struct RepositoryConfig {
    /// Where the repository is (`file://` or `s3://`), parsed.
    pub url: RepositoryUrl,
    /// The age recipients every object is encrypted to (already checked to parse).
    pub recipients: Vec<String>,
    /// Minimum Object Lock retention of each snapshot and all it references.
    pub lock_days: u32,
    /// Extra days added whenever Lockbox sets or extends a chunk's lock, so a
    /// chunk reused by daily backups needs one extension per `lock_slack_days`
    /// instead of one per backup.
    pub lock_slack_days: u32,
    /// Chunks hashed/compressed/encrypted in parallel (default: CPU count).
    pub workers: Option<usize>,
    /// Objects written to storage concurrently.
    pub max_in_flight: usize,
    /// A changed chunk is stored as a delta against a similar chunk of the
    /// previous backup while the delta is at most this percentage of its
    /// full stored size; 0 turns delta chunks (and the base cache) off.
    pub delta_max_percent: u32,
    /// Object Lock mode on S3: `compliance` (default) or `governance`.
    pub lock_mode: Option<LockMode>,
    /// `[repository.s3]`: settings of an `s3://` repository.
    pub s3: Option<S3Settings>,
}

impl RepositoryConfig {
    /// Whether the repository is on S3 (Object Lock, versions) rather than local.
    pub fn is_s3(&self) -> bool {
        self.url.is_s3()
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
/// Upper bound of `lock_slack_days`.
pub const MAX_SLACK_DAYS: u32 = 90;

/// The daemon's settings, validated.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// Backups running at once, across all sources (at least 1; default 1).
    pub max_concurrent: usize,
    /// On SIGTERM, how long runs in flight may take to finish before they are aborted
    /// (default 10 s).
    pub shutdown_grace: Duration,
    /// Time zone of the schedules (default UTC).
    pub timezone: chrono_tz::Tz,
    /// Where the status server listens; `None` when it is off.
    pub listen: Option<std::net::SocketAddr>,
}

/// The default address of the daemon's status server.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9187";

/// Defaults of the health thresholds: a daily backup may be a couple of
/// hours late; a weekly drill may be a day late.
pub const DEFAULT_MAX_BACKUP_AGE: Duration = Duration::from_secs(26 * 3600);
/// Default of `max_verified_age`.
pub const DEFAULT_MAX_VERIFIED_AGE: Duration = Duration::from_secs(8 * 86400);

/// A source's health thresholds, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Health is CRIT when a source's newest snapshot is older than this.
    pub max_backup_age: Duration,
    /// Health is WARN when a source's newest verified snapshot is older than this.
    pub max_verified_age: Duration,
}

/// An optional duration key (`"90s"`, `"2h"`, `"7d"`).
fn duration(v: Option<&str>, key: &str) -> KeyResult<Option<Duration>> {
    v.map(|v| parse_duration(v).map_err(|e| (key.to_string(), e)))
        .transpose()
}

/// An optional duration key that must be longer than zero.
fn positive_duration(v: Option<&str>, key: &str) -> KeyResult<Option<Duration>> {
    let d = duration(v, key)?;
    if d.is_some_and(|d| d.is_zero()) {
        return Err((key.to_string(), "must be longer than 0s".into()));
    }
    Ok(d)
}

/// An optional schedule key, in the daemon's timezone.
fn schedule(v: Option<&str>, key: &str, tz: chrono_tz::Tz) -> KeyResult<Option<Schedule>> {
    v.map(|v| Schedule::parse(v, tz).map_err(|e| (key.to_string(), e)))
        .transpose()
}

impl raw::RawHealth {
    fn thresholds(&self) -> KeyResult<Thresholds> {
        Ok(Thresholds {
            max_backup_age: positive_duration(
                self.max_backup_age.as_deref(),
                "health.max_backup_age",
            )?
            .unwrap_or(DEFAULT_MAX_BACKUP_AGE),
            max_verified_age: positive_duration(
                self.max_verified_age.as_deref(),
                "health.max_verified_age",
            )?
            .unwrap_or(DEFAULT_MAX_VERIFIED_AGE),
        })
    }
}

impl raw::RawDaemon {
    fn settings(&self) -> KeyResult<DaemonSettings> {
        let max_concurrent = self.max_concurrent.unwrap_or(1);
        if max_concurrent == 0 {
            return Err(("daemon.max_concurrent".into(), "must be at least 1".into()));
        }
        let shutdown_grace = duration(self.shutdown_grace.as_deref(), "daemon.shutdown_grace")?
            .unwrap_or(Duration::from_secs(10));
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
    /// Reads and checks the configuration file at `path`, and registers the environment
    /// variables that hold database passwords, so that no child tool inherits them.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let mut config = Self::parse(&text, &shown)?;
        config.path = path.to_path_buf();
        crate::sys::register_secret_env_names(config.sources.iter().filter_map(
            |s| match s.kind() {
                SourceKind::Database(DatabaseSource {
                    password: Some(PasswordFrom::Env(name)),
                    ..
                }) => Some(name.as_str()),
                _ => None,
            },
        ));
        Ok(config)
    }

    /// Parses and checks configuration `text`; `shown` names the file in errors. Unlike
    /// [`Config::load`], leaves `path` empty.
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
        let raw: raw::RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
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
        Self::from_raw(raw).map_err(|(key, message)| ConfigError::Invalid {
            path: shown.into(),
            key,
            message,
        })
    }

    /// Checks every key, in the order of the file's sections, and keeps
    /// the parsed values.
    fn from_raw(raw: raw::RawConfig) -> KeyResult<Self> {
        let invalid = |key: &str, message: String| (key.to_string(), message);
        if !raw.state_dir.is_absolute() {
            return Err(invalid(
                "state_dir",
                "must be an absolute path, e.g. /var/lib/lockbox".into(),
            ));
        }
        let repository = repository(raw.repository)?;
        let mut seen = std::collections::HashSet::new();
        for (i, s) in raw.sources.iter().enumerate() {
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
        let daemon = raw.daemon.settings()?;
        let health = raw.health.thresholds()?;
        let retention = raw.retention.checked(daemon.timezone)?;
        raw.prune.check()?;
        let mut notify = raw.notify;
        notify::check(&mut notify)?;
        let sources = raw
            .sources
            .into_iter()
            .enumerate()
            .map(|(i, s)| SourceConfig::from_raw(s, i, daemon.timezone))
            .collect::<KeyResult<Vec<_>>>()?;
        Ok(Config {
            state_dir: raw.state_dir,
            repository,
            sources,
            daemon,
            health,
            retention,
            prune: raw.prune,
            notify,
            path: PathBuf::new(),
        })
    }

    /// The `[daemon]` settings.
    pub fn daemon_settings(&self) -> &DaemonSettings {
        &self.daemon
    }

    /// The `[health]` default thresholds.
    pub fn default_thresholds(&self) -> Thresholds {
        self.health
    }

    /// The retention policy of `source`: its own `keep_*` keys if it sets
    /// any, otherwise `[retention]`'s.
    pub fn retention_policy(&self, source: &SourceConfig) -> crate::retention::Policy {
        source
            .own_retention()
            .copied()
            .unwrap_or(self.retention.policy)
    }

    /// The timezone retention periods are counted in.
    pub fn retention_timezone(&self) -> chrono_tz::Tz {
        self.retention.timezone
    }

    /// The source named `name`, if configured.
    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// The catalog, the local SQLite cache of the repository: `<state_dir>/catalog.sqlite`.
    pub fn catalog_path(&self) -> PathBuf {
        self.state_dir.join("catalog.sqlite")
    }
    /// The ID key file (the 32-byte key behind keyed object ids): `<state_dir>/id.key`.
    pub fn id_key_path(&self) -> PathBuf {
        self.state_dir.join("id.key")
    }
    /// The private temporary directory (credential files, verified dumps): `<state_dir>/tmp`.
    pub fn tmp_dir(&self) -> PathBuf {
        self.state_dir.join("tmp")
    }
    /// Local copies of the bases for delta chunks (see `delta`).
    pub fn base_cache_dir(&self) -> PathBuf {
        self.state_dir.join("base-cache")
    }
}

/// `[repository]`, checked key by key.
fn repository(repo: raw::RawRepository) -> KeyResult<RepositoryConfig> {
    let invalid = |key: &str, message: String| Err((key.to_string(), message));
    Recipients::parse(&repo.recipients).map_err(|e| match e {
        KeyError::UnusableRecipient { index, problem } => (
            format!("repository.recipients[{index}]"),
            problem.to_string(),
        ),
        e => ("repository.recipients".to_string(), e.to_string()),
    })?;
    // A compliance lock cannot be shortened once written, so an
    // implausible value is refused rather than obeyed.
    if !(1..=MAX_LOCK_DAYS).contains(&repo.lock_days) {
        return invalid(
            "repository.lock_days",
            format!(
                "must be between 1 and {MAX_LOCK_DAYS} (10 years): every snapshot is locked \
                 for this many days and a lock can never be shortened"
            ),
        );
    }
    if repo.lock_slack_days > MAX_SLACK_DAYS {
        return invalid(
            "repository.lock_slack_days",
            format!("must be at most {MAX_SLACK_DAYS}"),
        );
    }
    if repo.workers == Some(0) {
        return invalid("repository.workers", "must be at least 1".into());
    }
    if repo.delta_max_percent > 100 {
        return invalid(
            "repository.delta_max_percent",
            format!(
                "is {}; it is a percentage from 0 (off) to 100",
                repo.delta_max_percent
            ),
        );
    }
    if repo.max_in_flight == 0 {
        return invalid("repository.max_in_flight", "must be at least 1".into());
    }
    // Parsed here, not first when the backend opens, so the error names
    // the key (and `lockbox doctor` can report it).
    let url = RepositoryUrl::parse(&repo.url)
        .map_err(|e| ("repository.url".to_string(), e.to_string()))?;
    if !url.is_s3() {
        if repo.s3.is_some() {
            return invalid("repository.s3", "applies only to s3:// repositories".into());
        }
        if repo.lock_mode.is_some() {
            return invalid(
                "repository.lock_mode",
                "applies only to s3:// repositories (Object Lock)".into(),
            );
        }
    }
    if let Some(s3) = &repo.s3 {
        if s3.max_in_flight == Some(0) {
            return invalid("repository.s3.max_in_flight", "must be at least 1".into());
        }
        if let Some(e) = &s3.endpoint
            && !(e.starts_with("https://") || e.starts_with("http://"))
        {
            return invalid(
                "repository.s3.endpoint",
                "must be an http:// or https:// URL, e.g. https://minio.example:9000".into(),
            );
        }
        for (key, v) in [("region", &s3.region), ("profile", &s3.profile)] {
            if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return invalid(&format!("repository.s3.{key}"), "must not be empty".into());
            }
        }
    }
    Ok(RepositoryConfig {
        url,
        recipients: repo.recipients,
        lock_days: repo.lock_days,
        lock_slack_days: repo.lock_slack_days,
        workers: repo.workers,
        max_in_flight: repo.max_in_flight,
        delta_max_percent: repo.delta_max_percent,
        lock_mode: repo.lock_mode,
        s3: repo.s3,
    })
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

    /// Every key the parser accepts, table by table, is explained in the
    /// annotated example (set, or shown commented out): asked of the parser
    /// itself, which names the keys it expects when it meets an unknown one.
    #[test]
    fn shipped_example_documents_every_key_the_parser_accepts() {
        use toml::{Table, Value};
        let example = include_str!("../../examples/lockbox.toml");
        let base: Table = toml::from_str(&shipped_example()).unwrap();
        // Accepted only to be refused with guidance (a secret in the config).
        let refused = ["secret"];
        type Reach = fn(&mut Table) -> &mut Table;
        let tables: [(&str, Reach); 11] = [
            ("top level", |t| t),
            ("[repository]", |t| table(t, "repository")),
            ("[repository.s3]", |t| table(table(t, "repository"), "s3")),
            ("[daemon]", |t| table(t, "daemon")),
            ("[health]", |t| table(t, "health")),
            ("[retention]", |t| table(t, "retention")),
            ("[prune]", |t| table(t, "prune")),
            ("[[source]]", |t| first(t, "source")),
            ("[source.drill]", |t| table(first(t, "source"), "drill")),
            ("[[source.drill.check]]", |t| {
                first(table(first(t, "source"), "drill"), "check")
            }),
            ("[[notify]]", |t| first(t, "notify")),
        ];
        fn table<'a>(t: &'a mut Table, key: &str) -> &'a mut Table {
            t.entry(key)
                .or_insert_with(|| Value::Table(Table::new()))
                .as_table_mut()
                .unwrap()
        }
        fn first<'a>(t: &'a mut Table, key: &str) -> &'a mut Table {
            let list = t
                .entry(key)
                .or_insert_with(|| Value::Array(vec![Value::Table(Table::new())]));
            list.as_array_mut().unwrap()[0].as_table_mut().unwrap()
        }
        let mut checked = 0;
        for (name, reach) in tables {
            let mut config = base.clone();
            if name == "[[notify]]" {
                let mut n = Table::new();
                n.insert("kind".into(), "command".into());
                n.insert("command".into(), Value::Array(vec!["/bin/true".into()]));
                config.insert("notify".into(), Value::Array(vec![Value::Table(n)]));
            }
            reach(&mut config).insert("zzz_probe".into(), Value::Integer(1));
            let text = toml::to_string(&config).unwrap();
            let err = Config::parse(&text, "probe.toml").unwrap_err().to_string();
            // serde says "expected one of `a`, `b`" or "expected `a` or `b`".
            let expected = err
                .split_once("expected ")
                .unwrap_or_else(|| panic!("{name}: no key list in {err}"))
                .1
                .trim_start_matches("one of ")
                .replace(" or ", ", ");
            let keys: Vec<&str> = expected
                .split(", ")
                .filter_map(|k| k.strip_prefix('`'))
                .map(|k| k.split('`').next().unwrap())
                .collect();
            assert!(keys.len() >= 2, "{name}: {keys:?}");
            for key in keys {
                if refused.contains(&key) {
                    continue;
                }
                // Set (`key = …`), commented out, or in a key list of the
                // comments (`#   key  what it does`, `#   key, key2`,
                // `#   key / key2  what they do`).
                let documented = example.lines().any(|line| {
                    let line = line.trim_start_matches('#').trim_start();
                    let head = line.split("  ").next().unwrap_or("");
                    line.strip_prefix(key)
                        .is_some_and(|rest| rest.starts_with(" =") || rest.starts_with('='))
                        || head.split([',', '/']).any(|word| word.trim() == key)
                        || line.contains(&format!("[{key}]"))
                        || line.contains(&format!(".{key}]"))
                });
                assert!(
                    documented,
                    "examples/lockbox.toml does not explain {name} {key}"
                );
                checked += 1;
            }
        }
        assert!(checked > 60, "only {checked} keys");
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
