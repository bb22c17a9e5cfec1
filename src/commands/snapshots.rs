use std::process::ExitCode;

use anyhow::Result;
use lockbox_vault::catalog::SnapshotRow;
use lockbox_vault::config::Config;
use lockbox_vault::keys::Identities;
use lockbox_vault::repository;
use lockbox_vault::rfc3339;

use lockbox_vault::access::{BackupHost, open_read};

use crate::cli::SnapshotsArgs;
use crate::render::{human_bytes, print_json};

pub fn run(config: &Config, args: SnapshotsArgs) -> Result<ExitCode> {
    let rows = match &args.identity {
        // A restore host: no catalog, no ID key file; the identity unseals the key.
        Some(identity) if !config.id_key_path().exists() => {
            list_with_identity(config, identity, args.source.as_deref())?
        }
        _ => {
            let mut host = BackupHost::open(config)?;
            let report = host
                .catalog
                .sync(host.repo.backend.as_ref(), &host.repo.id_key)?;
            tracing::debug!(
                added = report.added,
                removed = report.removed,
                "catalog synced"
            );
            host.catalog.snapshots(args.source.as_deref())?
        }
    };
    if args.json {
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no snapshots");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<8}  {:<16}  {:<27}  {:>10}  {:>10}  {:<27}",
        "ID", "SOURCE", "STARTED", "SIZE", "ADDED", "LOCKED UNTIL"
    );
    for r in &rows {
        println!(
            "{:<8}  {:<16}  {:<27}  {:>10}  {:>10}  {:<27}",
            r.short_id,
            r.source,
            rfc3339::format(r.started_at),
            human_bytes(r.input_bytes),
            human_bytes(r.added_bytes),
            rfc3339::format(r.retain_until)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads every manifest straight from the repository, checking each name
/// with the ID key unsealed by the identity. Writes nothing locally.
fn list_with_identity(
    config: &Config,
    identity: &std::path::Path,
    source: Option<&str>,
) -> Result<Vec<SnapshotRow>> {
    let backend = open_read(config)?;
    let ids = Identities::from_file(identity)?;
    let key = repository::load_config(backend.as_ref())?.unseal_id_key(&ids)?;
    let mut rows = Vec::new();
    for snap in repository::list_snapshots(backend.as_ref(), source)? {
        let m = repository::read_manifest(backend.as_ref(), &key, &snap)?;
        rows.push(SnapshotRow::from_manifest(&snap.id, &snap.key, &m));
    }
    rows.sort_by(|a, b| (&a.source, &a.key).cmp(&(&b.source, &b.key)));
    Ok(rows)
}
