//! How a host reaches its repository: the read side a restore host needs,
//! the repository's ID key (from the backup host's state, or unsealed with
//! an identity), and the backup host's write side with its catalog.
//!
//! Every command opens the repository through here, so there is one answer
//! to "which ID key, from where, checked how".

use std::path::PathBuf;
use std::sync::Arc;

use crate::catalog::{Catalog, CatalogError};
use crate::config::Config;
use crate::error::ErrorClass;
use crate::ids::IdKey;
use crate::keys::{self, Identities, KeyError};
use crate::repository::{self, RepoConfig, RepoError, WriteRepo};
use crate::state;
use crate::storage::{self, ReadBackend, StorageError};

/// Why the repository could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Neither `state_dir/id.key` nor an identity to unseal the key with.
    #[error("this host has no ID key for repository {repository} ({} is missing): {advice}", path.display())]
    NoIdKey {
        /// The repository's id.
        repository: String,
        /// Where the ID key was looked for.
        path: PathBuf,
        /// What to do, which depends on the host's role.
        advice: &'static str,
    },
    /// The private state directory could not be created or read.
    #[error("state directory {}", path.display())]
    StateDir {
        /// The configured `state_dir`.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The storage backend could not be opened.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The repository's config could not be read, or the key does not fit.
    #[error(transparent)]
    Repository(#[from] RepoError),
    /// The ID key file could not be read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The local catalog could not be opened.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl AccessError {
    /// See [`ErrorClass`]: a host without its ID key is a usage error (the
    /// operator joins it or passes an identity); the rest answer for
    /// themselves.
    pub fn class(&self) -> ErrorClass {
        match self {
            AccessError::NoIdKey { .. } => ErrorClass::Usage,
            AccessError::StateDir { .. } => ErrorClass::Operational,
            AccessError::Storage(e) => e.class(),
            AccessError::Repository(e) => e.class(),
            AccessError::Key(e) => e.class(),
            AccessError::Catalog(e) => e.class(),
        }
    }
}

/// A read-only view of the configured repository (a restore host needs no
/// more).
pub fn open_read(config: &Config) -> Result<Arc<dyn ReadBackend>, StorageError> {
    storage::open_read_with(&config.repository.url, &config.repository.backend_options())
}

/// The repository's config and ID key: from `state_dir/id.key` on a backup
/// host, else unsealed with `identities` (a restore host). With both, the
/// identity is checked too, so a wrong identity fails here rather than in
/// the middle of a restore.
pub fn read_key(
    config: &Config,
    backend: &dyn ReadBackend,
    identities: Option<&Identities>,
) -> Result<(RepoConfig, IdKey), AccessError> {
    let repo_config = repository::load_config(backend)?;
    let path = config.id_key_path();
    let key = if path.exists() {
        let key = keys::read_id_key(&path, &repo_config.id)?;
        repo_config.check_id_key(&key)?;
        if let Some(ids) = identities {
            repo_config.unseal_id_key(ids)?;
        }
        key
    } else if let Some(ids) = identities {
        repo_config.unseal_id_key(ids)?
    } else {
        return Err(AccessError::NoIdKey {
            repository: repo_config.id,
            path,
            advice: "pass --identity FILE (a restore host), or run on a backup host",
        });
    };
    Ok((repo_config, key))
}

/// Everything a backup-host command needs: the repository with its ID key,
/// and the catalog.
pub struct BackupHost {
    /// The repository, opened for writing.
    pub repo: WriteRepo,
    /// The local catalog (a cache of the repository).
    pub catalog: Catalog,
}

impl BackupHost {
    /// Opens the repository with this host's ID key, and the catalog. An
    /// unreadable catalog is moved aside and refilled from the repository;
    /// a failed refill does not stop the caller (the catalog is only a
    /// cache): the next run retries, and `status` says so.
    pub fn open(config: &Config) -> Result<Self, AccessError> {
        let backend =
            storage::open_write_with(&config.repository.url, &config.repository.backend_options())?;
        let repo_config = repository::load_config(backend.as_ref())?;
        let key_path = config.id_key_path();
        if !key_path.exists() {
            return Err(AccessError::NoIdKey {
                repository: repo_config.id,
                path: key_path,
                advice: "run `lockbox init` with --identity once to join, or copy id.key from \
                         another backup host (on a restore host, `lockbox snapshots --identity \
                         FILE` lists snapshots)",
            });
        }
        state::ensure_private_dir(&config.state_dir).map_err(|source| AccessError::StateDir {
            path: config.state_dir.clone(),
            source,
        })?;
        let id_key = keys::read_id_key(&key_path, &repo_config.id)?;
        let repo = WriteRepo::open(backend, id_key)?;
        if repo.config.recipients != config.repository.recipients {
            tracing::warn!(
                config = %config.path.display(),
                "repository.recipients differ from the recipients stored in the repository at \
                 init; backups encrypt to the repository's (changing recipients is not supported yet)"
            );
        }
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
