use std::process::ExitCode;

use anyhow::Result;
use lockbox_vault::config::Config;

use lockbox_vault::access::BackupHost;

/// `lockbox catalog rebuild`: reads every snapshot back from the repository.
/// An unreadable catalog file is moved aside first (by `BackupHost::open`).
pub fn rebuild(config: &Config) -> Result<ExitCode> {
    let mut host = BackupHost::open(config)?;
    let report = host
        .catalog
        .rebuild(host.repo.backend.as_ref(), &host.repo.id_key)?;
    super::note!(
        "catalog {} rebuilt from {}: {} snapshots",
        host.catalog.path(),
        host.repo.backend.location(),
        report.added
    );
    Ok(ExitCode::SUCCESS)
}
