use std::process::ExitCode;

use anyhow::Result;
use lockbox_vault::config::Config;

use super::{BackupHost, human_bytes, print_json};
use crate::cli::SnapshotsArgs;

pub fn run(config: &Config, args: SnapshotsArgs) -> Result<ExitCode> {
    let mut host = BackupHost::open(config)?;
    let report = host
        .catalog
        .sync(host.repo.backend.as_ref(), &host.repo.id_key)?;
    if report.added + report.removed > 0 {
        tracing::debug!(
            added = report.added,
            removed = report.removed,
            "catalog refreshed"
        );
    }
    let rows = host.catalog.snapshots(args.source.as_deref())?;
    if args.json {
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no snapshots");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<8}  {:<16}  {:<20}  {:>10}  {:>10}  {:<20}",
        "ID", "SOURCE", "STARTED", "SIZE", "ADDED", "LOCKED UNTIL"
    );
    for r in &rows {
        println!(
            "{:<8}  {:<16}  {:<20}  {:>10}  {:>10}  {:<20}",
            r.short_id,
            r.source,
            r.started_at,
            human_bytes(r.input_bytes),
            human_bytes(r.added_bytes),
            r.retain_until
        );
    }
    Ok(ExitCode::SUCCESS)
}
