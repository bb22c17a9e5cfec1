use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use lockbox_vault::catalog::Catalog;
use lockbox_vault::config::Config;
use lockbox_vault::keys::{self, Identities, Recipients};
use lockbox_vault::repository::{self, RepoError};
use lockbox_vault::{state, storage};
use time::{Duration, OffsetDateTime};

use crate::cli::InitArgs;
use crate::error::UsageError;

pub fn run(config: &Config, args: InitArgs) -> Result<ExitCode> {
    state::ensure_private_dir(&config.state_dir)
        .with_context(|| format!("state directory {}", config.state_dir.display()))?;
    let backend =
        storage::open_write_with(&config.repository.url, &config.repository.backend_options())?;
    // S3: versioning and Object Lock on, or nothing is written.
    backend
        .check_ready()
        .with_context(|| format!("repository {} is not ready", backend.location()))?;
    let key_path = config.id_key_path();
    match repository::load_config(backend.as_ref()) {
        Ok(existing) => {
            if key_path.exists() {
                let key = keys::read_id_key(&key_path, &existing.id)?;
                existing.check_id_key(&key)?;
                super::note!(
                    "repository {} at {} is already initialised and this host holds its ID key",
                    existing.id,
                    backend.location()
                );
            } else if let Some(identity) = &args.identity {
                let ids = Identities::from_file(identity)?;
                let key = existing.unseal_id_key(&ids)?;
                keys::write_id_key(&key_path, &existing.id, &key)?;
                super::note!(
                    "joined repository {}: wrote its ID key to {} (mode 0600). \
                     Remove the identity from this host if it is a backup host.",
                    existing.id,
                    key_path.display()
                );
            } else {
                bail!(UsageError::new(format!(
                    "{} already holds repository {}, and this host has no ID key for it. \
                     Copy {} from another backup host, or run `lockbox init --identity FILE` \
                     once to recover it",
                    backend.location(),
                    existing.id,
                    key_path.display()
                )));
            }
            if existing.recipients != config.repository.recipients {
                tracing::warn!(
                    "repository.recipients in the config differ from the repository's; \
                     backups encrypt to the repository's recipients"
                );
            }
            Catalog::open(&config.catalog_path(), &existing.id)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(RepoError::NotInitialized { .. }) => {
            if key_path.exists() {
                bail!(UsageError::new(format!(
                    "{} exists but {} holds no repository; refusing to mix keys. \
                     Move the old key file away if this is a new repository",
                    key_path.display(),
                    backend.location()
                )));
            }
            let recipients = Recipients::parse(&config.repository.recipients)?;
            let until = OffsetDateTime::now_utc()
                + Duration::days(i64::from(
                    config.repository.lock_days + config.repository.lock_slack_days,
                ));
            let (repo, key) = repository::init(backend.as_ref(), &recipients, until)?;
            keys::write_id_key(&key_path, &repo.id, &key)?;
            Catalog::open(&config.catalog_path(), &repo.id)?;
            super::note!(
                "created repository {} at {}\nID key: {} (mode 0600; not a decryption key)\n\
                 next: lockbox backup SOURCE",
                repo.id,
                backend.location(),
                key_path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e.into()),
    }
}
