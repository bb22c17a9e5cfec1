//! One module per subcommand; shared setup lives here.

mod backup;
mod catalog;
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
mod web;

#[cfg(test)]
pub(crate) use status::{PLUGIN_OK, PLUGIN_UNKNOWN};

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use lockbox_vault::backup::BackupOptions;
use lockbox_vault::catalog::Catalog;
use lockbox_vault::config::{Config, SourceConfig};
use lockbox_vault::delta::DeltaOptions;
use lockbox_vault::keys;
use lockbox_vault::repository::{self, WriteRepo};
use lockbox_vault::{state, storage};

use crate::cli::{CatalogCommand, Cli, Command, NotifyCommand};
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
        Command::Init(a) => init::run(&load_config(config_path)?, a),
        Command::Backup(a) => backup::run(&load_config(config_path)?, a),
        Command::Snapshots(a) => snapshots::run(&load_config(config_path)?, a),
        Command::Restore(a) => restore::run(&load_config(config_path)?, a),
        Command::Verify(a) => verify::run(&load_config(config_path)?, a),
        Command::Drill(a) => drill::run(&load_config(config_path)?, a),
        Command::Doctor(a) => doctor::run(&load_config(config_path)?, a),
        Command::Prune(a) => prune::run(&load_config(config_path)?, a),
        Command::Catalog {
            command: CatalogCommand::Rebuild,
        } => catalog::rebuild(&load_config(config_path)?),
        Command::Quickstart(a) => quickstart::run(a),
        Command::Status(a) => status::run(&load_config(config_path)?, a),
        // Every failure of `check` is UNKNOWN (3), a config error included.
        Command::Check(a) => Ok(status::check(load_config(config_path), a)),
        Command::Metrics(a) => metrics::run(&load_config(config_path)?, a),
        Command::Notify {
            command: NotifyCommand::Test(a),
        } => notify::test(&load_config(config_path)?, a),
        Command::Daemon => {
            let path = config_path.clone();
            let config = load_config(config_path)?;
            daemon::run(
                path.as_deref().expect("load_config succeeded"),
                config,
                cli.log_format,
            )
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

fn load_config(path: Option<PathBuf>) -> Result<Config> {
    let Some(path) = path else {
        bail!(UsageError::new(
            "no config file given: pass --config PATH or set LOCKBOX_CONFIG \
             (see examples/lockbox.toml), or try `lockbox quickstart`"
        ));
    };
    Ok(Config::load(&path)?)
}

/// Everything a backup-host command needs: repository with ID key, catalog.
pub struct BackupHost {
    pub repo: WriteRepo,
    pub catalog: Catalog,
}

impl BackupHost {
    pub fn open(config: &Config) -> Result<Self> {
        let backend =
            storage::open_write_with(&config.repository.url, &config.repository.backend_options())?;
        let repo_config = repository::load_config(backend.as_ref())?;
        let key_path = config.id_key_path();
        if !key_path.exists() {
            bail!(UsageError::new(format!(
                "this host has no ID key for repository {} ({} is missing): run `lockbox init` \
                 with --identity once to join, or copy id.key from another backup host \
                 (on a restore host, `lockbox snapshots --identity FILE` lists snapshots)",
                repo_config.id,
                key_path.display()
            )));
        }
        state::ensure_private_dir(&config.state_dir)
            .with_context(|| format!("state directory {}", config.state_dir.display()))?;
        let id_key = keys::read_id_key(&key_path, &repo_config.id)?;
        let repo = WriteRepo::open(backend, id_key)?;
        if repo.config.recipients != config.repository.recipients {
            tracing::warn!(
                config = %config.path.display(),
                "repository.recipients differ from the recipients stored in the repository at \
                 init; backups encrypt to the repository's (changing recipients is not supported yet)"
            );
        }
        // An unreadable catalog is moved aside and replaced here; the new one
        // is refilled from the repository before use. A failed refill does
        // not stop the backup (the catalog is only a cache): it is retried
        // by the next run, and `status` says the catalog is not refilled.
        let mut catalog = Catalog::open(&config.catalog_path(), &repo.config.id)?;
        match catalog.refill_if_rebuilt(repo.backend.as_ref(), &repo.id_key) {
            Ok(None) => {}
            Ok(Some(r)) => tracing::info!(
                catalog = %catalog.path(),
                snapshots = r.added,
                attestations = r.attestations,
                "catalog rebuilt from the repository"
            ),
            Err(e) => tracing::warn!(
                catalog = %catalog.path(),
                error = %e,
                "the rebuilt catalog could not be refilled from the repository; the next run \
                 tries again"
            ),
        }
        Ok(Self { repo, catalog })
    }
}

pub fn backup_options(config: &Config) -> BackupOptions {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    BackupOptions {
        lock_days: config.repository.lock_days,
        lock_slack_days: config.repository.lock_slack_days,
        workers: config.repository.workers.unwrap_or(cpus),
        max_in_flight: config.repository.effective_max_in_flight(),
        delta: (config.repository.delta_max_percent > 0).then(|| DeltaOptions {
            cache_root: config.base_cache_dir(),
            max_percent: config.repository.delta_max_percent,
        }),
    }
}

/// A read-only view of the repository, for restore hosts.
pub fn open_read(config: &Config) -> Result<Arc<dyn storage::ReadBackend>> {
    Ok(storage::open_read_with(
        &config.repository.url,
        &config.repository.backend_options(),
    )?)
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

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn absolute(path: &Path) -> Result<PathBuf> {
    Ok(std::path::absolute(path)?)
}
