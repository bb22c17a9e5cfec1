//! Errors as the binary sees them: the usage errors it finds itself
//! ([`UsageError`]), the class of any error ([`class_of`], one walk down the
//! chain), and exit codes ([`exit_code`], the one table from class to code,
//! which README's exit-code table must match: see the tests below).

use std::fmt;
use std::process::ExitCode;

use lockbox_vault::error::ErrorClass;

/// A command line or request the binary refuses before doing the work:
/// a bad argument, an unknown source, a missing config file. Always
/// [`ErrorClass::Usage`].
#[derive(Debug)]
pub struct UsageError(String);

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// `{what}: {message}`, naming the argument or setting at fault.
    pub fn arg(what: &str, message: impl fmt::Display) -> Self {
        Self(format!("{what}: {message}"))
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The class of `err`: that of the outermost error in its chain that has
/// one (each library error answers for the causes it wraps), else
/// [`ErrorClass::Operational`] (I/O and other errors without a class).
pub fn class_of(err: &anyhow::Error) -> ErrorClass {
    err.chain()
        .find_map(|cause| {
            if cause.is::<UsageError>() {
                return Some(ErrorClass::Usage);
            }
            lockbox_restore::class_of(cause)
        })
        .unwrap_or(ErrorClass::Operational)
}

/// The exit code of each class; README's "Exit codes" table documents it.
pub fn exit_code(class: ErrorClass) -> u8 {
    match class {
        ErrorClass::Operational => 1,
        ErrorClass::Usage => 2,
        ErrorClass::Integrity => 3,
        ErrorClass::Identity => 4,
        // EX_TEMPFAIL from sysexits.h.
        ErrorClass::Busy => 75,
        // The shell's convention for a process stopped by signal n.
        ErrorClass::Interrupted { signal } => (128 + signal).clamp(0, 255) as u8,
    }
}

pub fn exit(class: ErrorClass) -> ExitCode {
    ExitCode::from(exit_code(class))
}

/// `{err:#}` without repeats: a library error whose message already ends
/// with its source's (`lock file …: Permission denied`) also keeps that
/// source in the chain, where `{:#}` would print it a second time.
pub fn render(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;
    use lockbox_vault::envelope::EnvelopeError;
    use lockbox_vault::manifest::ManifestError;
    use lockbox_vault::repository::RepoError;

    const README: &str = include_str!("../README.md");

    /// Every class, and the word its README row must contain.
    fn every_class() -> Vec<(ErrorClass, &'static str)> {
        let word = |class| match class {
            ErrorClass::Operational => "operational",
            ErrorClass::Usage => "usage",
            ErrorClass::Integrity => "integrity",
            ErrorClass::Identity => "identity",
            ErrorClass::Busy => "lock",
            ErrorClass::Interrupted { .. } => "signal",
        };
        [
            ErrorClass::Operational,
            ErrorClass::Usage,
            ErrorClass::Integrity,
            ErrorClass::Identity,
            ErrorClass::Busy,
            ErrorClass::Interrupted { signal: 15 },
        ]
        .into_iter()
        .map(|c| (c, word(c)))
        .collect()
    }

    /// The rows (code, meaning) of the first table after `heading` in
    /// README, whose end must be a blank line (a line glued to a table
    /// renders as one more row).
    fn table_after(heading: &str) -> Vec<(&'static str, &'static str)> {
        let start = README.find(heading).expect("README has the heading");
        let mut lines = README[start..]
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .peekable();
        let mut rows = Vec::new();
        while let Some(line) = lines.next_if(|l| l.starts_with('|')) {
            let mut cells = line.trim_matches('|').splitn(2, '|').map(str::trim);
            let (code, meaning) = (cells.next().unwrap(), cells.next().unwrap_or(""));
            if code != "code" && !code.starts_with("---") {
                rows.push((code, meaning));
            }
        }
        assert_eq!(
            lines.next(),
            Some(""),
            "the table after {heading:?} must end with a blank line"
        );
        rows
    }

    #[test]
    fn readme_exit_code_table_matches_the_mapping() {
        let rows = table_after("### Exit codes");
        let mut documented: Vec<&str> = rows.iter().map(|(code, _)| *code).collect();
        let mut mapped = vec!["0".to_string()];
        for (class, word) in every_class() {
            let code = match class {
                ErrorClass::Interrupted { signal } => {
                    assert_eq!(i32::from(exit_code(class)), 128 + signal);
                    "128 + n".to_string()
                }
                _ => exit_code(class).to_string(),
            };
            let meaning = rows
                .iter()
                .find(|(c, _)| *c == code)
                .unwrap_or_else(|| panic!("README has no exit code {code} ({class:?})"))
                .1;
            assert!(
                meaning.to_lowercase().contains(word),
                "README's exit code {code} does not read as {class:?}: {meaning}"
            );
            mapped.push(code);
        }
        documented.sort_unstable();
        mapped.sort_unstable();
        assert_eq!(
            documented, mapped,
            "README and the mapping list other codes"
        );
    }

    #[test]
    fn readme_check_table_matches_the_plugin_codes() {
        use crate::commands::{PLUGIN_OK, PLUGIN_UNKNOWN};
        use lockbox_vault::health::Health;
        let rows = table_after("`lockbox check` uses the monitoring-plugin convention");
        let expected = [
            (PLUGIN_OK + Health::Ok.code(), "OK:"),
            (PLUGIN_OK + Health::Warn.code(), "WARNING:"),
            (PLUGIN_OK + Health::Crit.code(), "CRITICAL:"),
            (PLUGIN_UNKNOWN, "UNKNOWN:"),
        ];
        assert_eq!(rows.len(), expected.len(), "{rows:?}");
        for ((code, meaning), (want, word)) in rows.iter().zip(expected) {
            assert_eq!(*code, want.to_string(), "{meaning}");
            assert!(meaning.starts_with(word), "{code}: {meaning}");
        }
    }

    #[test]
    fn help_text_lists_every_exit_code() {
        for (class, _) in every_class() {
            let code = match class {
                ErrorClass::Interrupted { .. } => "128+n".to_string(),
                _ => exit_code(class).to_string(),
            };
            assert!(
                crate::cli::EXIT_CODES
                    .lines()
                    .any(|l| l.trim_start().starts_with(&format!("{code} "))),
                "--help does not list exit code {code}"
            );
        }
    }

    #[test]
    fn the_class_is_found_behind_context_and_wrappers() {
        let unseal = RepoError::Manifest(ManifestError::Unseal {
            key: "snapshots/db/k".into(),
            source: EnvelopeError::NoMatchingIdentity,
        });
        let err = Err::<(), _>(lockbox_restore::RestoreError::from(unseal))
            .context("restoring db")
            .unwrap_err();
        assert_eq!(class_of(&err), ErrorClass::Identity);

        let newer = RepoError::Manifest(ManifestError::UnsupportedVersion {
            key: "snapshots/db/k".into(),
            found: 9,
        });
        assert_eq!(class_of(&newer.into()), ErrorClass::Usage);

        let busy = lockbox_vault::lock::LockError::Busy {
            source_name: "db".into(),
            holder: "pid 1".into(),
        };
        assert_eq!(
            exit_code(class_of(&anyhow::Error::from(busy).context("backup db"))),
            75
        );

        let io = anyhow::Error::from(std::io::Error::other("disk on fire"));
        assert_eq!(class_of(&io), ErrorClass::Operational);
    }

    #[test]
    fn an_unknown_source_is_a_usage_error_for_every_command() {
        // `backup`, `drill` and `status --source` all report it with this.
        let err = crate::commands::unknown_source(
            "nosuch",
            std::path::Path::new("/etc/lockbox.toml"),
            ["db", "files"],
        );
        let err = anyhow::Error::from(err).context("drill");
        assert_eq!(exit_code(class_of(&err)), 2);
        let text = format!("{err:#}");
        assert!(
            text.contains("\"nosuch\"") && text.contains("configured: db, files"),
            "{text}"
        );
    }

    #[test]
    fn render_prints_a_kept_source_once() {
        let lock = lockbox_vault::lock::LockError::Io {
            path: "/s/locks/db.lock".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        let text = render(&anyhow::Error::from(lock).context("backup db"));
        assert_eq!(text.matches("permission denied").count(), 1, "{text}");
        assert!(
            text.starts_with("backup db: lock file /s/locks/db.lock: "),
            "{text}"
        );
    }
}
