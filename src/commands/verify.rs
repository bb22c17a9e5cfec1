//! `lockbox verify`: the repository checked for damage, one line per problem.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use lockbox_restore::verify::{self, KnownSnapshot, VerifyOptions, VerifyReport};
use lockbox_vault::catalog::{Catalog, RunKind, RunOutcome, VerificationKind, VerificationRow};
use lockbox_vault::config::Config;
use lockbox_vault::keys::Identities;
use lockbox_vault::rfc3339;
use lockbox_vault::run::{REPOSITORY_WIDE, RunGuard, RunSuccess};
use time::OffsetDateTime;

use lockbox_vault::access::{open_read, read_key};

use super::note;
use crate::cli::VerifyArgs;
use crate::error::{self, UsageError};
use crate::progress::Bar;
use crate::render::{human_bytes, print_json};
use lockbox_vault::error::ErrorClass;

pub fn run(config: &Config, args: VerifyArgs) -> Result<ExitCode> {
    lockbox_vault::sys::set_stop_note("nothing recorded as verified");
    // Recorded on a backup host (it has a catalog); a restore host has none.
    let guard = config.id_key_path().exists().then(|| {
        RunGuard::begin(
            &config.catalog_path(),
            RunKind::Verify,
            args.source.as_deref().unwrap_or(REPOSITORY_WIDE),
        )
    });
    let result = verify_repository(config, &args);
    if let Some(guard) = guard {
        let report = match &result {
            Ok((_, Some(problem))) => {
                guard.close(RunOutcome::Failed, None, None, None, Some(problem))
            }
            Ok((_, None)) => guard.succeed(RunSuccess::default()),
            Err(e) => guard.fail(&format!("{e:#}"), e.as_ref()),
        };
        lockbox_vault::run::notify_end(&lockbox_vault::run::notifier_for(config), config, &report);
    }
    result.map(|(code, _)| code)
}

/// The verify itself; `Ok((code, Some(summary)))` when it found problems.
fn verify_repository(config: &Config, args: &VerifyArgs) -> Result<(ExitCode, Option<String>)> {
    if let Some(pct) = args.sample
        && !(pct > 0.0 && pct <= 100.0)
    {
        bail!(UsageError::arg(
            "--sample",
            "must be a percentage above 0 and at most 100"
        ));
    }
    let backend = open_read(config)?;
    let identities = args
        .identity
        .as_deref()
        .map(Identities::from_file)
        .transpose()?;
    let (repo_config, id_key) = read_key(config, backend.as_ref(), identities.as_ref())?;
    // A backup host's catalog: what it knows lets verify notice a vanished
    // newest snapshot, and the verdicts are recorded there.
    let catalog = if config.id_key_path().exists() {
        Some(Catalog::open(&config.catalog_path(), &repo_config.id)?)
    } else {
        None
    };
    let known = match &catalog {
        Some(c) => c
            .snapshots(args.source.as_deref())?
            .into_iter()
            .map(|s| KnownSnapshot {
                retain_until: s.retain_until,
                key: s.key,
                source: s.source,
            })
            .collect(),
        None => Vec::new(),
    };
    let seed = args.seed.unwrap_or_else(rand_seed);
    if let Some(pct) = args.sample {
        note!("reading a {pct}% sample of the objects, seed {seed} (repeat with --seed {seed})");
    }
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let opts = VerifyOptions {
        source: args.source.clone(),
        snapshot: args.snapshot.clone(),
        read_data: args.read_data,
        sample_pct: args.sample,
        seed,
        identities: identities.filter(|_| args.read_data),
        known,
        workers: if config.repository.is_s3() {
            config.repository.effective_max_in_flight()
        } else {
            cpus.max(2)
        },
        // Predecessors removed by prune are not chain gaps.
        pruned: lockbox_vault::prune::audit::pruned_snapshots(backend.as_ref())
            .context("reading prune audit records")?
            .into_iter()
            .collect(),
        time_tolerance: config.prune.time_tolerance(),
    };
    let started = OffsetDateTime::now_utc();
    let bar = Bar::restore();
    let result = verify::verify(backend.as_ref(), &id_key, &opts, &bar);
    bar.finish();
    let report = result.with_context(|| format!("verify of {}", backend.location()))?;

    // A full read is a verification of each snapshot; a sample is not.
    if args.read_data
        && args.sample.is_none()
        && let Some(catalog) = &catalog
    {
        record(catalog, &report, started)?;
    }
    if args.json {
        print_json(&report)?;
    } else {
        print_human(&report);
    }
    Ok(if report.ok() {
        (ExitCode::SUCCESS, None)
    } else {
        let first = report
            .problems
            .first()
            .map(|p| format!(": first {} {}: {}", p.kind.as_str(), p.object, p.detail))
            .unwrap_or_default();
        (
            error::exit(ErrorClass::Integrity),
            Some(format!(
                "verify found {} problem(s) in {} snapshot(s){first}",
                report.problems.len(),
                report.results.iter().filter(|s| !s.passed).count()
            )),
        )
    })
}

fn record(catalog: &Catalog, report: &VerifyReport, started: OffsetDateTime) -> Result<()> {
    let finished = rfc3339::format(OffsetDateTime::now_utc());
    for r in &report.results {
        catalog.record_verification(&VerificationRow {
            source: r.source.clone(),
            snapshot: r.id.clone(),
            snapshot_started_at: r.started_at.clone(),
            kind: VerificationKind::Verify,
            passed: r.passed,
            started_at: rfc3339::format(started),
            finished_at: finished.clone(),
            restore_seconds: None,
            detail: Some(if r.passed {
                format!(
                    "verify --read-data{}: all objects intact",
                    if report.decrypted { " (decrypted)" } else { "" }
                )
            } else {
                format!("verify --read-data: {} problem(s)", r.problems)
            }),
            attestation_key: None,
        })?;
    }
    Ok(())
}

fn print_human(r: &VerifyReport) {
    let mode = match (r.read_data, r.decrypted, r.sample_pct) {
        (false, _, _) => "metadata only (no --read-data)".to_string(),
        (true, d, s) => format!(
            "read {} objects, {}{}{}",
            r.objects_read,
            human_bytes(r.bytes_read),
            if d { ", decrypted" } else { "" },
            s.map(|p| format!(", {p}% sample, seed {}", r.seed.unwrap_or(0)))
                .unwrap_or_default()
        ),
    };
    for p in &r.warnings {
        println!(
            "WARNING {:<19} snapshot {} ({})  {}: {}",
            p.kind.as_str(),
            p.snapshot.as_deref().unwrap_or("-"),
            p.source.as_deref().unwrap_or("-"),
            p.object,
            p.detail
        );
    }
    for p in &r.problems {
        println!(
            "PROBLEM {:<19} snapshot {} ({})  {}: {}",
            p.kind.as_str(),
            p.snapshot.as_deref().unwrap_or("-"),
            p.source.as_deref().unwrap_or("-"),
            p.object,
            p.detail
        );
    }
    let rate = r.bytes_read as f64 / r.seconds.max(1e-9) / (1024.0 * 1024.0);
    println!(
        "verified {} snapshot(s), {} object(s): {mode}; {:.1}s{}: {}",
        r.snapshots,
        r.objects,
        r.seconds,
        if r.read_data {
            format!(" ({rate:.0} MiB/s)")
        } else {
            String::new()
        },
        if r.ok() {
            "no problems".to_string()
        } else {
            format!(
                "{} PROBLEM(S) in {} snapshot(s)",
                r.problems.len(),
                r.results.iter().filter(|s| !s.passed).count()
            )
        }
    );
}

fn rand_seed() -> u64 {
    // Not security relevant: only which objects a sample reads.
    let t = OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
    (t ^ (u64::from(std::process::id()) << 32)) % 1_000_000_000
}
