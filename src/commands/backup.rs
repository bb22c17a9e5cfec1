use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, Result};
use lockbox_vault::backup::{self, BackupSummary};
use lockbox_vault::catalog::RunKind;
use lockbox_vault::config::Config;
use lockbox_vault::error::ErrorClass;
use lockbox_vault::format::valid_source_name;
use lockbox_vault::ids::ObjectId;
use lockbox_vault::lock::SourceLock;
use lockbox_vault::notify::Notifier;
use lockbox_vault::run::{self, RunGuard, RunSuccess};
use lockbox_vault::source::{self, DumpStream};
use serde::Serialize;

use lockbox_vault::access::BackupHost;
use lockbox_vault::backup::BackupOptions;

use super::configured_source;
use crate::cli::BackupArgs;
use crate::error::{self, UsageError};
use crate::progress::Bar;
use crate::render::{human_bytes, print_json};

pub fn run(config: &Config, args: BackupArgs) -> Result<ExitCode> {
    lockbox_vault::sys::set_stop_note("no snapshot written");
    // Opened by the first source's run, so that a repository that cannot be
    // reached is recorded as that run's failure.
    let mut host = None;
    let notifier = lockbox_vault::run::notifier_for(config);
    if args.all {
        return run_all(config, &mut host, &notifier, args.json);
    }
    let (name, from_stdin) = match (&args.source, &args.stdin) {
        (_, Some(name)) => (name.clone(), true),
        (Some(name), None) => (name.clone(), false),
        (None, None) => unreachable!("clap requires a source, --stdin or --all"),
    };
    let summary = backup_one(config, &mut host, &notifier, &name, from_stdin)?;
    if args.json {
        print_json(&summary)?;
    } else {
        print_summary(&summary);
    }
    Ok(ExitCode::SUCCESS)
}

/// Locks, starts and backs up one source; the run is recorded from the
/// moment the lock is held, whatever fails after.
fn backup_one(
    config: &Config,
    host: &mut Option<BackupHost>,
    notifier: &Notifier,
    name: &str,
    from_stdin: bool,
) -> Result<BackupSummary> {
    let stream = if from_stdin {
        if !valid_source_name(name) {
            return Err(UsageError::arg(
                "--stdin",
                format!("{name:?} is not a valid source name: use 1-64 of A-Z a-z 0-9 . _ -"),
            )
            .into());
        }
        if std::io::stdin().is_terminal() {
            return Err(UsageError::new(format!(
                "--stdin reads the dump from standard input, which is a terminal; \
                 pipe a dump in, e.g. `pg_dump mydb | lockbox backup --stdin {name}`"
            ))
            .into());
        }
        None
    } else {
        Some(configured_source(config, name)?)
    };
    // Taken before the dump starts, so a busy source costs the database nothing.
    let _lock = SourceLock::acquire(&config.state_dir, name)?;
    let guard = RunGuard::begin(&config.catalog_path(), RunKind::Backup, name);
    run::notify_started(notifier, &config.catalog_path(), name);
    let result = run_guarded(config, host, name, stream)
        .with_context(|| format!("backup of source {name} failed; no snapshot was written"));
    match &result {
        Ok(summary) => {
            let report = guard.succeed(RunSuccess {
                snapshot: ObjectId::from_hex(&summary.snapshot).ok(),
                input_bytes: summary.input_bytes,
                added_bytes: summary.added_bytes,
            });
            run::notify_end(notifier, config, &report);
            tracing::info!(
                source = %summary.source,
                snapshot = %summary.short_id,
                input_bytes = summary.input_bytes,
                added_bytes = summary.added_bytes,
                seconds = summary.seconds,
                "backup finished"
            );
        }
        Err(e) => {
            let report = guard.fail(&format!("{e:#}"), e.as_ref());
            tracing::error!(
                source = %name,
                outcome = report.outcome.as_str(),
                error = %format!("{e:#}"),
                "backup failed"
            );
            run::notify_end(notifier, config, &report);
        }
    }
    result
}

/// The part of a backup that runs under its run record.
fn run_guarded(
    config: &Config,
    host: &mut Option<BackupHost>,
    name: &str,
    src: Option<&lockbox_vault::config::SourceConfig>,
) -> Result<BackupSummary> {
    let host = match host {
        Some(h) => h,
        None => host.insert(BackupHost::open(config)?),
    };
    let stream = match src {
        None => DumpStream::from_reader(name, "stdin", Box::new(std::io::stdin())),
        Some(src) => source::open(src, &config.tmp_dir())?.with_timeout(Some(src.timeout)),
    };
    tracing::info!(source = %name, "backup started");
    let bar = Bar::backup();
    let result = backup::run(
        &host.repo,
        &mut host.catalog,
        stream,
        &BackupOptions::from_config(config),
        &bar,
    );
    bar.finish();
    Ok(result?)
}

/// One source's result in `backup --all --json`. Fields may be added.
#[derive(Serialize)]
struct SourceResult {
    source: String,
    /// `success`, `failed`, or `busy` (another run held the source's lock).
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot: Option<BackupSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct AllSummary {
    succeeded: usize,
    failed: usize,
    busy: usize,
    sources: Vec<SourceResult>,
}

fn run_all(
    config: &Config,
    host: &mut Option<BackupHost>,
    notifier: &Notifier,
    json: bool,
) -> Result<ExitCode> {
    if config.sources.is_empty() {
        return Err(UsageError::new(format!("no [[source]] in {}", config.path.display())).into());
    }
    let mut results = Vec::new();
    for src in &config.sources {
        let r = match backup_one(config, host, notifier, &src.name, false) {
            Ok(summary) => {
                if !json {
                    print_summary(&summary);
                }
                SourceResult {
                    source: src.name.clone(),
                    outcome: "success",
                    snapshot: Some(summary),
                    error: None,
                }
            }
            Err(e) => {
                if lockbox_vault::sys::stop_signal().is_some() {
                    // The remaining sources are not started after a stop.
                    return Err(e);
                }
                let busy = error::class_of(&e) == ErrorClass::Busy;
                SourceResult {
                    source: src.name.clone(),
                    outcome: if busy { "busy" } else { "failed" },
                    snapshot: None,
                    error: Some(format!("{e:#}")),
                }
            }
        };
        results.push(r);
    }
    let count = |o: &str| results.iter().filter(|r| r.outcome == o).count();
    let summary = AllSummary {
        succeeded: count("success"),
        failed: count("failed"),
        busy: count("busy"),
        sources: results,
    };
    if json {
        print_json(&summary)?;
    } else {
        println!(
            "{} sources: {} succeeded, {} failed, {} busy",
            summary.sources.len(),
            summary.succeeded,
            summary.failed,
            summary.busy
        );
        for r in summary.sources.iter().filter(|r| r.outcome != "success") {
            println!(
                "  {} {}: {}",
                r.outcome,
                r.source,
                r.error.as_deref().unwrap_or("")
            );
        }
    }
    Ok(if summary.failed > 0 {
        error::exit(ErrorClass::Operational)
    } else if summary.busy > 0 {
        error::exit(ErrorClass::Busy)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_summary(s: &BackupSummary) {
    let rate = s.input_bytes as f64 / s.seconds.max(1e-9) / (1024.0 * 1024.0);
    println!(
        "snapshot {} of {}: {} read in {:.1}s ({rate:.0} MiB/s), {} chunks ({} new, {} reused), \
         {} added to the repository, locked until {}",
        s.short_id,
        s.source,
        human_bytes(s.input_bytes),
        s.seconds,
        s.chunks,
        s.new_chunks,
        s.reused_chunks,
        human_bytes(s.added_bytes),
        s.retain_until
    );
}
