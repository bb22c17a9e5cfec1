//! The Lockbox configuration file (TOML), parsed strictly: an unknown or
//! misspelt key is an error naming the key, never silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::format::valid_source_name;
use crate::keys::Recipients;

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Catalog, ID key, locks and temporary files.
    pub state_dir: PathBuf,
    pub repository: RepositorySection,
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
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
}

impl SourceConfig {
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
        ]
        .iter()
        .filter(|(_, p)| *p)
        .map(|(k, _)| *k)
        .collect();
        let allowed: &[&str] = match self.kind.as_str() {
            "command" => &["command", "env", "workdir"],
            "sqlite" => &["path"],
            other => {
                return Err((
                    key("kind"),
                    format!("unknown source kind {other:?}; expected \"command\" or \"sqlite\""),
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
            _ => match &self.path {
                Some(path) if path.is_absolute() => Ok(SourceKind::Sqlite { path: path.clone() }),
                Some(_) => Err((key("path"), "must be an absolute path".into())),
                None => Err((key("path"), "is required for kind = \"sqlite\"".into())),
            },
        }
    }
}

impl SourceKind {
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::Command { .. } => "command",
            SourceKind::Sqlite { .. } => "sqlite",
        }
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
        Ok(config)
    }

    pub fn parse(text: &str, shown: &str) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: shown.into(),
            message: e.to_string().trim_end().to_string(),
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
        Recipients::parse(&self.repository.recipients)
            .map_err(|e| invalid("repository.recipients", e.to_string()))?;
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
        if self.repository.max_in_flight == 0 {
            return Err(invalid(
                "repository.max_in_flight",
                "must be at least 1".into(),
            ));
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
        for (i, s) in self.sources.iter_mut().enumerate() {
            let kind = s
                .parse_kind(i)
                .map_err(|(key, message)| invalid(&key, message))?;
            s.parsed = Some(kind);
        }
        Ok(())
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
        let c = Config::parse(text, "examples/lockbox.toml").unwrap();
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
            (base() + "workers = 0\n", "repository.workers"),
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
