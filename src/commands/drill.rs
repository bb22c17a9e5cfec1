//! `lockbox drill SOURCE`: restore into a scratch database, check, report,
//! attest (repository) and record (catalog).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use lockbox_restore::attest;
use lockbox_restore::drill::{self, DrillPlan, DrillReport};
use lockbox_restore::load::{self, DbTarget};
use lockbox_vault::attestation;
use lockbox_vault::catalog::{Catalog, RunKind, RunOutcome};
use lockbox_vault::config::{Config, SourceKind};
use lockbox_vault::error::ErrorClass;
use lockbox_vault::ids::IdKey;
use lockbox_vault::keys::Identities;
use lockbox_vault::manifest::Manifest;
use lockbox_vault::repository::{self, RepoConfig, SnapshotRef};
use lockbox_vault::run::{RunGuard, RunSuccess};
use lockbox_vault::{state, storage};
use time::OffsetDateTime;

use super::{configured_source, note};
use crate::cli::DrillArgs;
use crate::error::{self, UsageError};
use crate::progress::Bar;
use crate::render::{human_bytes, print_json};

fn usage(key: &str, message: String) -> anyhow::Error {
    UsageError::arg(key, message).into()
}

pub fn run(config: &Config, args: DrillArgs) -> Result<ExitCode> {
    let source = configured_source(config, &args.source)?;
    lockbox_vault::sys::set_stop_note("scratch database removed, nothing recorded as verified");
    let guard = RunGuard::begin(&config.catalog_path(), RunKind::Drill, &source.name);
    let result = drill_source(config, &args, source);
    let report = match &result {
        Ok((_, None)) => guard.succeed(RunSuccess::default()),
        Ok((_, Some(failure))) => {
            let outcome = if failure == "interrupted" || lockbox_vault::sys::stop_signal().is_some()
            {
                RunOutcome::Interrupted
            } else {
                RunOutcome::Failed
            };
            guard.close(outcome, None, None, None, Some(failure))
        }
        Err(e) => guard.fail(&format!("{e:#}"), e.as_ref()),
    };
    lockbox_vault::run::notify_end(&lockbox_vault::run::notifier_for(config), config, &report);
    result.map(|(code, _)| code)
}

/// The drill itself; `Ok((code, Some(failure)))` for a drill that ran and
/// failed.
fn drill_source(
    config: &Config,
    args: &DrillArgs,
    source: &lockbox_vault::config::SourceConfig,
) -> Result<(ExitCode, Option<String>)> {
    let drill_cfg = source.drill.clone();
    let identity = args
        .identity
        .clone()
        .or_else(|| drill_cfg.as_ref().and_then(|d| d.identity.clone()))
        .ok_or_else(|| {
            usage(
                "--identity",
                "a drill needs an age identity: pass --identity FILE or set \
                 [source.drill] identity"
                    .into(),
            )
        })?;
    let now = OffsetDateTime::now_utc();
    let name = drill::scratch_name(&source.name, now);
    let tmp_dir = config.tmp_dir();
    state::ensure_private_dir(&config.state_dir)
        .and_then(|_| state::ensure_private_dir(&tmp_dir))
        .with_context(|| format!("state directory {}", config.state_dir.display()))?;
    let scratch = match source.kind() {
        SourceKind::Sqlite { .. } => DbTarget::Sqlite(tmp_dir.join(format!("{name}.db"))),
        _ => {
            let url = args
                .target
                .clone()
                .or_else(|| drill_cfg.as_ref().and_then(|d| d.target.clone()))
                .ok_or_else(|| {
                    usage(
                        "--target",
                        format!(
                            "source {:?} has no drill server: set [source.drill] target = URL \
                             or pass --target URL",
                            source.name
                        ),
                    )
                })?;
            let server = DbTarget::parse(&url)?;
            if let Some(src) = DbTarget::of_source(source)
                && src.same_server(&server)
                && !drill_cfg.as_ref().is_some_and(|d| d.allow_source_server)
            {
                return Err(usage(
                    "[source.drill] target",
                    format!(
                        "{server} is the server of source {:?} itself; drills belong on a \
                         separate server (set allow_source_server = true to accept the load \
                         on production)",
                        source.name
                    ),
                ));
            }
            server.with_database(&name)
        }
    };
    // Never the source's own database, whatever the settings say.
    load::guard_sources(&config.sources, &scratch, None)?;
    let login = load::login(
        drill_cfg.as_ref().and_then(|d| d.password_file.as_deref()),
        &tmp_dir,
    )?;

    let backend = lockbox_vault::access::open_read(config)?;
    let identities = Identities::from_file(&identity)?;
    let (repo_config, id_key) =
        lockbox_vault::access::read_key(config, backend.as_ref(), Some(&identities))?;
    let snap = repository::find_snapshot(backend.as_ref(), Some(&source.name), &args.snapshot)?;
    let manifest = repository::read_manifest(backend.as_ref(), &id_key, &snap)?;

    let cancel = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&cancel))?;
    }
    let plan = DrillPlan {
        scratch,
        login,
        keep: args.keep,
        row_tolerance_pct: drill_cfg
            .as_ref()
            .map_or(lockbox_vault::config::DEFAULT_ROW_TOLERANCE_PCT, |d| {
                d.row_tolerance_pct()
            }),
        checks: drill_cfg.map(|d| d.checks).unwrap_or_default(),
        snapshot_started_at: manifest.started_at,
    };
    note!(
        "drill of {} snapshot {} into {}",
        source.name,
        snap.id.short(),
        plan.scratch
    );
    let bar = Bar::restore();
    let report = drill::run(backend.as_ref(), &identities, &snap, &plan, &cancel, &bar);
    bar.finish();
    super::record_tampering(config, backend.as_ref(), &report.tampering);

    let attestation_key =
        write_attestation(config, &repo_config, &id_key, &snap, &manifest, &report)
            .map_err(|e| {
                tracing::warn!(
                    "could not write the attestation to the repository (the drill's result is \
                 recorded in the local catalog only): {e:#}"
                )
            })
            .ok();
    let row = attest::drill_record(&snap, &manifest, &report, attestation_key.clone());
    Catalog::open(&config.catalog_path(), &repo_config.id)?.record_verification(&row)?;

    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["attestation"] = attestation_key.clone().into();
        print_json(&v)?;
    } else {
        print_human(&report, attestation_key.as_deref());
    }
    if report.passed {
        return Ok((ExitCode::SUCCESS, None));
    }
    let failure = report.failure.as_deref().unwrap_or("failed");
    if !args.json {
        eprintln!(
            "error: drill of snapshot {} FAILED: {failure}",
            report.short_id
        );
    }
    Ok((
        error::exit(report.failure_class.unwrap_or(ErrorClass::Integrity)),
        Some(failure.to_string()),
    ))
}

/// Writes the drill's attestation under Object Lock; returns its key.
fn write_attestation(
    config: &Config,
    repo_config: &RepoConfig,
    id_key: &IdKey,
    snap: &SnapshotRef,
    manifest: &Manifest,
    report: &DrillReport,
) -> Result<String> {
    let (a, until) = attest::drill_attestation(
        repo_config,
        snap,
        manifest,
        report,
        lockbox_vault::sys::host_name().to_string(),
        OffsetDateTime::now_utc(),
    )?;
    let backend =
        storage::open_write_with(&config.repository.url, &config.repository.backend_options())?;
    Ok(attestation::write(backend.as_ref(), id_key, &a, until)?)
}

fn print_human(r: &DrillReport, attestation: Option<&str>) {
    for c in &r.checks {
        println!(
            "{} {:<16} {}",
            if c.passed { "PASS" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    println!(
        "drill of {} snapshot {} {}: {} restored and loaded in {} (RTO), data age {:.0}s at the \
         drill (RPO){}{}",
        r.source,
        r.short_id,
        if r.passed { "PASSED" } else { "FAILED" },
        human_bytes(r.bytes),
        r.restore_seconds
            .map_or("-".to_string(), |s| format!("{s:.1}s")),
        r.data_age_seconds,
        if r.kept {
            format!("; kept {}", r.scratch)
        } else {
            String::new()
        },
        attestation
            .map(|k| format!("; attestation {k}"))
            .unwrap_or_default()
    );
}
