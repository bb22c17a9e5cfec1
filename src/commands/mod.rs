//! One module per subcommand; shared setup lives here.

mod backup;
mod catalog;
mod completions;
mod config_check;
mod daemon;
mod doctor;
mod drill;
mod init;
mod keygen;
mod metrics;
mod notify;
mod prune;
mod quickstart;
mod restore;
mod snapshots;
mod status;
mod verify;

#[cfg(test)]
pub(crate) use status::{PLUGIN_OK, PLUGIN_UNKNOWN};

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use lockbox_vault::catalog::Catalog;
use lockbox_vault::config::{Config, SourceConfig};
use lockbox_vault::repository;
use lockbox_vault::storage;

use crate::cli::{CatalogCommand, Cli, Command, ConfigCommand, DEFAULT_CONFIG, NotifyCommand};
use crate::error::UsageError;

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Prints an informational line to stderr unless `--quiet` was given.
macro_rules! note {
    ($($arg:tt)*) => {
        if !$crate::commands::is_quiet() {
            eprintln!($($arg)*);
        }
    };
}
pub(crate) use note;

pub fn is_quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    QUIET.store(cli.quiet, std::sync::atomic::Ordering::Relaxed);
    let config_path = cli.config.clone();
    if matches!(
        cli.command,
        Command::Backup(_) | Command::Restore(_) | Command::Verify(_) | Command::Drill(_)
    ) {
        // Stop cleanly on SIGINT/SIGTERM/SIGHUP: tools' groups killed, the
        // run recorded as interrupted, partial output removed.
        lockbox_vault::sys::install_stop_handler().context("installing signal handlers")?;
    }
    match cli.command {
        Command::Keygen(a) => keygen::run(a),
        Command::Quickstart(a) => quickstart::run(a),
        Command::Completions(a) => completions::completions(a),
        Command::Man(a) => completions::man_pages(a),
        // Every failure of `check` is UNKNOWN (3), a config error included.
        Command::Check(a) => Ok(status::check(load_config(config_path), a)),
        Command::Config {
            command: ConfigCommand::Check(a),
        } => config_check::run(load_config(config_path)?, a),
        Command::Daemon => {
            let config = load_config(config_path)?;
            let path = config.path.clone();
            daemon::run(&path, config, cli.log_format)
        }
        command => dispatch(&load_config(config_path)?, command),
    }
}

/// Runs a command that works on a loaded config. `quickstart` chains the
/// real commands through here rather than reaching into their modules.
fn dispatch(config: &Config, command: Command) -> Result<ExitCode> {
    match command {
        Command::Init(a) => init::run(config, a),
        Command::Backup(a) => backup::run(config, a),
        Command::Snapshots(a) => snapshots::run(config, a),
        Command::Restore(a) => restore::run(config, a),
        Command::Verify(a) => verify::run(config, a),
        Command::Drill(a) => drill::run(config, a),
        Command::Doctor(a) => doctor::run(config, a),
        Command::Prune(a) => prune::run(config, a),
        Command::Catalog {
            command: CatalogCommand::Rebuild,
        } => catalog::rebuild(config),
        Command::Status(a) => status::run(config, a),
        Command::Metrics(a) => metrics::run(config, a),
        Command::Notify {
            command: NotifyCommand::Test(a),
        } => notify::test(config, a),
        Command::Keygen(_)
        | Command::Quickstart(_)
        | Command::Check(_)
        | Command::Daemon
        | Command::Config { .. }
        | Command::Completions(_)
        | Command::Man(_) => {
            unreachable!("run() handles the commands that need no loaded config")
        }
    }
}

/// The one lookup of a configured source by name, for every command.
pub fn configured_source<'a>(config: &'a Config, name: &str) -> Result<&'a SourceConfig> {
    config.source(name).ok_or_else(|| {
        unknown_source(
            name,
            &config.path,
            config.sources.iter().map(|s| s.name.as_str()),
        )
        .into()
    })
}

pub fn unknown_source<'a>(
    name: &str,
    config_path: &Path,
    configured: impl IntoIterator<Item = &'a str>,
) -> UsageError {
    let names: Vec<&str> = configured.into_iter().collect();
    UsageError::new(format!(
        "no source named {name:?} in {}; configured: {}",
        config_path.display(),
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    ))
}

/// `--config`, else `LOCKBOX_CONFIG` (clap reads both into `path`), else
/// [`DEFAULT_CONFIG`].
fn load_config(path: Option<PathBuf>) -> Result<Config> {
    let Some(path) = path else {
        let default = Path::new(DEFAULT_CONFIG);
        if !default.exists() {
            bail!(UsageError::new(format!(
                "no config file: {DEFAULT_CONFIG} (the default) does not exist; pass \
                 --config PATH or set LOCKBOX_CONFIG (every key is explained in the annotated \
                 examples/lockbox.toml), or try `lockbox quickstart`"
            )));
        }
        return Ok(Config::load(default)?);
    };
    Ok(Config::load(&path)?)
}

/// After a restore: warns about tampering that version-aware reads passed
/// over and, on a host with a catalog (a backup host), records it there.
pub fn record_tampering(
    config: &Config,
    backend: &dyn storage::ReadBackend,
    events: &[storage::TamperEvent],
) {
    if events.is_empty() {
        return;
    }
    tracing::warn!(
        events = events.len(),
        "the repository has been tampered with (delete markers or bad object versions); \
         the data was restored from the locked original versions"
    );
    let path = config.catalog_path();
    if !path.exists() {
        return;
    }
    let recorded = repository::load_config(backend)
        .map_err(anyhow::Error::from)
        .and_then(|rc| Ok(Catalog::open(&path, &rc.id)?))
        .and_then(|mut c| Ok(c.record_tampering(events)?));
    if let Err(e) = recorded {
        tracing::warn!(error = %e, "could not record the tampering in the catalog");
    }
}

/// Adds notification deliveries to the catalog's counts (the
/// `lockbox_notifications_total` metric); a failure to count is logged.
pub fn record_notifications(config: &Config, deliveries: &[lockbox_vault::notify::Delivery]) {
    lockbox_vault::run::count_notifications(&config.catalog_path(), deliveries);
}

pub fn absolute(path: &Path) -> Result<PathBuf> {
    Ok(std::path::absolute(path)?)
}
