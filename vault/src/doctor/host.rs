//! Checks of this host's files: the config, the state directory, the ID
//! key, and age identities (which a backup host must not hold).
//!
//! The host's role decides how a found identity is judged. A **backup
//! host** is one whose state directory holds the ID key (it ran `init`) and
//! whose config names no drill identity (`[source.drill] identity`): it
//! needs only recipients, so an identity on it is a FAIL. Any other host (a
//! restore host without an ID key, or a drill host, which names its
//! identity) may hold one, with a WARN for identities it does not name.
//! Any identity, config or ID key file that group or others can read is a
//! WARN at least.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::Config;

use super::{Check, Status, check};

fn mode_of(path: &Path) -> Option<u32> {
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

/// "readable by group and others" for the group/other bits of `mode`.
fn who_can_read(mode: u32) -> &'static str {
    match (mode & 0o070 != 0, mode & 0o007 != 0) {
        (true, true) => "group and others",
        (true, false) => "its group",
        _ => "others",
    }
}

pub(super) fn file_checks(config: &Config, out: &mut Vec<Check>) {
    match mode_of(&config.path) {
        Some(m) if m & 0o077 != 0 => out.push(check(
            "config file permissions",
            Status::Warn,
            format!(
                "{} is mode {m:o}, open to {}; it describes your databases and where their \
                 passwords are: chmod 600 (owned by the user Lockbox runs as)",
                config.path.display(),
                who_can_read(m)
            ),
        )),
        Some(m) => out.push(check(
            "config file permissions",
            Status::Pass,
            format!("{} is mode {m:o}", config.path.display()),
        )),
        None => {}
    }
    match mode_of(&config.state_dir) {
        Some(0o700) => out.push(check(
            "state directory",
            Status::Pass,
            format!("{} is private (700)", config.state_dir.display()),
        )),
        Some(m) => out.push(check(
            "state directory",
            Status::Warn,
            format!("{} is mode {m:o}: chmod 700", config.state_dir.display()),
        )),
        None => out.push(check(
            "state directory",
            Status::Fail,
            format!(
                "{} does not exist: run `lockbox init`",
                config.state_dir.display()
            ),
        )),
    }
    let key = config.id_key_path();
    match mode_of(&key) {
        Some(0o600) | Some(0o400) => out.push(check(
            "ID key file",
            Status::Pass,
            format!("{} (600)", key.display()),
        )),
        Some(m) => out.push(check(
            "ID key file",
            Status::Warn,
            format!("{} is mode {m:o}: chmod 600", key.display()),
        )),
        None => out.push(check(
            "ID key file",
            Status::Fail,
            format!(
                "{} is missing: run `lockbox init` (or `init --identity` to join)",
                key.display()
            ),
        )),
    }
}

/// The drill identities the config names.
fn configured_identities(config: &Config) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = config
        .sources
        .iter()
        .filter_map(|s| s.drill.as_ref()?.identity.clone())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// True when this host backs up and does not drill (see the module doc).
pub(super) fn is_backup_host(config: &Config) -> bool {
    config.id_key_path().exists() && configured_identities(config).is_empty()
}

/// Places an identity could sit on this host.
fn identity_candidates(config: &Config) -> Vec<PathBuf> {
    let mut dirs = vec![config.state_dir.clone()];
    // `lockbox.toml` given relatively has an empty parent: resolve it first.
    if let Some(parent) = std::path::absolute(&config.path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        dirs.push(parent);
    }
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
        dirs.push(home.join(".config/lockbox"));
        dirs.push(home.join(".config/age"));
        dirs.push(home.clone());
    }
    let mut files = Vec::new();
    for d in dirs {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                files.push(e.path());
            }
        }
    }
    if let Some(p) = std::env::var_os("LOCKBOX_IDENTITY") {
        files.push(PathBuf::from(p));
    }
    files.extend(configured_identities(config));
    files.sort();
    files.dedup();
    files
}

fn holds_identity(path: &Path) -> bool {
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
        .is_ok()
        && head
            .windows(b"AGE-SECRET-KEY-1".len())
            .any(|w| w == b"AGE-SECRET-KEY-1")
}

pub(super) fn identity_checks(config: &Config, out: &mut Vec<Check>) {
    let found: Vec<PathBuf> = identity_candidates(config)
        .into_iter()
        .filter(|p| holds_identity(p))
        .collect();
    let named = configured_identities(config);
    let shown = |paths: &[&PathBuf]| {
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let unnamed: Vec<&PathBuf> = found.iter().filter(|p| !named.contains(p)).collect();
    const PLACES: &str = "the state directory, beside the config, ~/.config/{lockbox,age}, ~, \
                          $LOCKBOX_IDENTITY and [source.drill] identity";
    out.push(if found.is_empty() {
        check(
            "no age identity on this host",
            Status::Pass,
            format!("none readable in {PLACES}"),
        )
    } else if is_backup_host(config) {
        check(
            "no age identity on this host",
            Status::Fail,
            format!(
                "identity found on a backup host (it holds the ID key and names no drill \
                 identity): {}. Anyone who takes this host can decrypt every backup; a backup \
                 host needs only recipients. Move identities to a restore or drill host",
                shown(&found.iter().collect::<Vec<_>>())
            ),
        )
    } else if unnamed.is_empty() {
        check(
            "no age identity on this host",
            Status::Pass,
            format!(
                "drill host: only the configured drill identity is here ({})",
                shown(&found.iter().collect::<Vec<_>>())
            ),
        )
    } else {
        check(
            "no age identity on this host",
            Status::Warn,
            format!(
                "readable identity found: {}. Keep identities only where restores and drills \
                 run, and name a drill host's in [source.drill] identity",
                shown(&unnamed)
            ),
        )
    });
    for p in &found {
        if let Some(m) = mode_of(p)
            && m & 0o077 != 0
        {
            out.push(check(
                "identity file permissions",
                Status::Warn,
                format!(
                    "{} is mode {m:o}, open to {}: chmod 600",
                    p.display(),
                    who_can_read(m)
                ),
            ));
        }
    }
    for p in named.iter().filter(|p| !p.exists()) {
        out.push(check(
            "identity file permissions",
            Status::Warn,
            format!("{} ([source.drill] identity) does not exist", p.display()),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_identities_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let id = dir.path().join("some-name.txt");
        std::fs::write(&id, "# created\nAGE-SECRET-KEY-1QQQ\n").unwrap();
        let other = dir.path().join("notes.txt");
        std::fs::write(&other, "age1 recipients only\n").unwrap();
        assert!(holds_identity(&id));
        assert!(!holds_identity(&other));
    }

    #[test]
    fn names_who_can_read() {
        assert_eq!(who_can_read(0o640), "its group");
        assert_eq!(who_can_read(0o604), "others");
        assert_eq!(who_can_read(0o644), "group and others");
    }
}
