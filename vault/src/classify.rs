//! Which class an error has when all the caller holds is a `dyn Error`:
//! the registry of this crate's public error types (see [`crate::error`]).

use std::error::Error;

use crate::error::ErrorClass;

/// The class of `err` if it is one of this crate's public error types, or
/// `None` (the caller goes on down the error's chain).
pub fn class_of(err: &(dyn Error + 'static)) -> Option<ErrorClass> {
    use crate::{
        access, attestation, backup, catalog, config, delta, envelope, health, ids, keys, lock,
        manifest, notify, prune, repository, source, storage, sys,
    };
    macro_rules! first_of {
        ($($t:ty),* $(,)?) => {
            $(if let Some(e) = err.downcast_ref::<$t>() {
                return Some(e.class());
            })*
        };
    }
    first_of!(
        access::AccessError,
        attestation::AttestationError,
        backup::BackupError,
        catalog::CatalogError,
        config::ConfigError,
        delta::CacheError,
        envelope::EnvelopeError,
        health::StatusError,
        ids::BadObjectId,
        keys::KeyError,
        keys::UnusableRecipient,
        lock::LockError,
        manifest::ManifestError,
        notify::NotifyError,
        prune::audit::AuditError,
        prune::PlanError,
        prune::PruneError,
        repository::RepoError,
        source::SourceError,
        storage::StorageError,
        sys::Interrupted,
    );
    #[cfg(feature = "fuzzing")]
    if let Some(e) = err.downcast_ref::<crate::fuzzing::FuzzError>() {
        return Some(e.class());
    }
    None
}
