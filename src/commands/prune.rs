//! `lockbox prune --plan FILE` and `lockbox prune --apply FILE --confirm
//! DIGEST`: glue around `lockbox_vault::prune`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use lockbox_vault::catalog::Catalog;
use lockbox_vault::config::Config;
use lockbox_vault::error::ErrorClass;
use lockbox_vault::ids::ObjectId;
use lockbox_vault::prune::plan::{self, MAX_PLAN_BYTES, ObjectKind};
use lockbox_vault::prune::{ApplyOptions, ApplyReport, Plan, PlanError, PlanOptions, PruneError};
use lockbox_vault::rfc3339;
use lockbox_vault::storage;
use serde::Serialize;
use time::OffsetDateTime;

use lockbox_vault::access;

use super::note;
use crate::cli::PruneArgs;
use crate::error::{self, UsageError};
use crate::render::{human_bytes, print_json};

pub fn run(config: &Config, args: PruneArgs) -> Result<ExitCode> {
    match (&args.plan, &args.apply, &args.confirm) {
        (Some(path), None, None) => make_plan(config, path, args.json),
        (None, Some(path), Some(digest)) => apply(config, path, digest, args.json),
        _ => bail!(UsageError::arg(
            "prune",
            "give either --plan FILE, or --apply FILE --confirm DIGEST"
        )),
    }
}

/// Snapshots this host's catalog records as verified (passing drill or
/// full verify); attestations in the repository are read by the library.
/// An unreadable catalog is an error, not an empty set: `verify` records
/// live only here, and a prune must not plan without them. It is read
/// as it is, never repaired.
fn catalog_verified(config: &Config, repo_id: &str) -> Result<BTreeSet<ObjectId>> {
    let Some(catalog) = Catalog::open_existing(&config.catalog_path())? else {
        return Ok(BTreeSet::new());
    };
    if catalog.meta("repository_id")?.as_deref() != Some(repo_id) {
        return Ok(BTreeSet::new());
    }
    Ok(catalog
        .verifications(None)?
        .into_iter()
        .filter(|v| v.passed)
        .filter_map(|v| ObjectId::from_hex(&v.snapshot).ok())
        .collect())
}

#[derive(Serialize)]
struct PlanSummary<'a> {
    plan_file: String,
    digest: String,
    repository: &'a str,
    created_at: String,
    snapshots_kept: usize,
    snapshots_removed: usize,
    versions_to_delete: usize,
    bytes_to_delete: u64,
    held: usize,
    extensions: usize,
    sources: &'a [plan::SourcePlan],
    delete: &'a [plan::Deletion],
    extend: &'a [plan::Extension],
    invalid: &'a [String],
}

fn make_plan(config: &Config, path: &Path, json: bool) -> Result<ExitCode> {
    let backend = access::open_read(config)?;
    let (repo_config, id_key) = access::read_key(config, backend.as_ref(), None)?;
    let opts = PlanOptions {
        policies: config
            .sources
            .iter()
            .map(|s| (s.name.clone(), config.retention_policy(s)))
            .collect::<BTreeMap<_, _>>(),
        default_policy: config.retention.policy,
        timezone: config.retention_timezone(),
        tolerance: config.prune.time_tolerance(),
        grace_hours: config.prune.grace_hours(),
        verified: catalog_verified(config, &repo_config.id)?,
    };
    let plan = plan::compute(
        backend.as_ref(),
        &id_key,
        &repo_config.id,
        &opts,
        OffsetDateTime::now_utc(),
    )
    .with_context(|| format!("computing a prune plan for {}", backend.location()))?;
    lockbox_vault::state::replace_file(path, &plan.to_bytes(), 0o600)
        .with_context(|| format!("writing the plan to {}", path.display()))?;
    let digest = plan.digest();
    let all = || plan.sources.iter().flat_map(|s| &s.snapshots);
    let summary = PlanSummary {
        plan_file: path.display().to_string(),
        digest: digest.clone(),
        repository: &plan.repository,
        created_at: rfc3339::format(plan.created_at),
        snapshots_kept: all().filter(|v| v.keep).count(),
        snapshots_removed: all().filter(|v| !v.keep).count(),
        versions_to_delete: plan.delete.len(),
        bytes_to_delete: plan.delete.iter().map(|d| d.size).sum(),
        held: plan.held.len(),
        extensions: plan.extend.len(),
        sources: &plan.sources,
        delete: &plan.delete,
        extend: &plan.extend,
        invalid: &plan.invalid,
    };
    if json {
        print_json(&summary)?;
    } else {
        print_plan(&plan, &summary);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_plan(plan: &Plan, s: &PlanSummary) {
    println!(
        "prune plan for {} (repository {}), computed {}",
        plan.location, plan.repository, s.created_at
    );
    for sp in &plan.sources {
        let kept = sp.snapshots.iter().filter(|v| v.keep).count();
        println!(
            "\nsource {}: {} snapshot(s), keep {kept}, remove {}",
            sp.source,
            sp.snapshots.len(),
            sp.snapshots.len() - kept
        );
        for v in &sp.snapshots {
            println!(
                "  {:<6}  {}  stored {}  claimed {}{}  {}",
                if v.keep { "keep" } else { "REMOVE" },
                &v.id[..12],
                rfc3339::format(v.trusted_time),
                rfc3339::format(v.claimed_time),
                if v.suspicious { " (SUSPICIOUS)" } else { "" },
                if v.keep {
                    v.reasons.join(", ")
                } else {
                    String::new()
                }
            );
        }
    }
    let count = |k: ObjectKind| plan.delete.iter().filter(|d| d.kind == k).count();
    println!(
        "\ndelete: {} manifest version(s), {} garbage marker(s), {} chunk version(s) no kept \
         snapshot references; {} in all",
        count(ObjectKind::Manifest),
        count(ObjectKind::Garbage),
        count(ObjectKind::Chunk),
        human_bytes(s.bytes_to_delete)
    );
    if !plan.held.is_empty() {
        println!(
            "held: {} unreferenced object(s) not deleted yet (still locked, or within the {}h grace period)",
            plan.held.len(),
            plan.grace_hours
        );
    }
    for e in &plan.extend {
        println!(
            "extend: {} snapshot {} and its chunks locked until {} (keep horizon)",
            e.source,
            &e.snapshot[..12],
            rfc3339::format(e.until)
        );
    }
    for k in &plan.invalid {
        println!("not judged: {k} (forged or unreadable manifest; see `lockbox verify`)");
    }
    println!("\nplan written to {}", s.plan_file);
    println!("digest: {}", s.digest);
    println!(
        "review it, then: lockbox prune --apply {} --confirm {}",
        s.plan_file, s.digest
    );
}

fn read_plan(path: &Path) -> Result<Plan> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("reading the plan file {}", path.display()))?;
    let mut bytes = Vec::new();
    f.take(MAX_PLAN_BYTES as u64 + 1).read_to_end(&mut bytes)?;
    let plan: Result<Plan, PlanError> = Plan::from_bytes(&bytes);
    plan.with_context(|| format!("plan file {}", path.display()))
}

/// The pruner's backend options: `[prune] profile`, never the writer's.
fn apply(config: &Config, path: &Path, confirm: &str, json: bool) -> Result<ExitCode> {
    let plan = read_plan(path)?;
    let digest = plan.digest();
    if confirm.trim().to_ascii_lowercase() != digest {
        bail!(PruneError::DigestMismatch {
            actual: digest,
            confirmed: confirm.into(),
        });
    }
    let opts = config.pruner_backend_options()?;
    let backend = storage::open_delete_with(&config.repository.url, &opts)?;
    let (repo_config, id_key) = access::read_key(config, backend.as_ref(), None)?;
    let apply_opts = ApplyOptions {
        confirm: confirm.into(),
        lock_days: config.repository.lock_days,
        max_extend_days: config.prune.max_extend_days(),
        verified: catalog_verified(config, &repo_config.id)?,
        host: lockbox_vault::sys::host_name().to_string(),
    };
    let report = lockbox_vault::prune::apply::apply(
        backend.as_ref(),
        &id_key,
        &repo_config.id,
        &plan,
        &apply_opts,
        OffsetDateTime::now_utc(),
    )
    .with_context(|| format!("applying prune plan {}", path.display()))?;
    // The catalog is a cache: bring it in line (pruned snapshots dropped,
    // the new audit record picked up for `status`).
    if config.catalog_path().exists() {
        let synced = Catalog::open(&config.catalog_path(), &repo_config.id)
            .and_then(|mut c| c.sync(backend.as_ref(), &id_key));
        if let Err(e) = synced {
            tracing::warn!(error = %e, "the catalog could not be synced after prune");
        }
    }
    if json {
        print_json(&report)?;
    } else {
        print_report(&report);
    }
    Ok(if report.clean() {
        ExitCode::SUCCESS
    } else {
        error::exit(ErrorClass::Operational)
    })
}

fn print_report(r: &ApplyReport) {
    for s in &r.snapshots_deleted {
        println!("deleted snapshot {} of {}", &s.id[..12], s.source);
    }
    for n in &r.refused {
        println!("REFUSED {}: {}", n.key, n.reason);
    }
    for n in &r.failed {
        println!("FAILED  {}: {}", n.key, n.reason);
    }
    for e in &r.extended {
        println!(
            "extended snapshot {} ({} objects) until {}{}",
            &e.snapshot[..12],
            e.objects,
            rfc3339::format(e.until),
            if e.capped {
                format!(
                    " (capped by max_extend_days; horizon {})",
                    rfc3339::format(e.horizon)
                )
            } else {
                String::new()
            }
        );
    }
    if !r.skipped.is_empty() {
        let mut why: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &r.skipped {
            *why.entry(s.reason.as_str()).or_default() += 1;
        }
        for (reason, n) in why {
            note!("skipped {n} object version(s): {reason}");
        }
    }
    println!(
        "prune {}: {} snapshot(s), {} object version(s), {} deleted; {} skipped, {} refused, {} failed; audit record {}",
        &r.plan_digest[..16],
        r.snapshots_deleted.len(),
        r.objects_deleted.len(),
        human_bytes(r.bytes_deleted),
        r.skipped.len(),
        r.refused.len(),
        r.failed.len(),
        r.audit_records.last().map(String::as_str).unwrap_or("-")
    );
}
