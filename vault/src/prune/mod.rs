//! Prune: removing what the retention policy no longer keeps, in two steps
//! with two sets of rights.
//!
//! * [`plan::compute`] (read rights only) lists the repository, applies each
//!   source's policy ([`crate::retention`]) using the storage's own
//!   timestamps, and writes a [`Plan`]: per source which snapshots are kept
//!   and why, which object versions are to be deleted (removed snapshots'
//!   manifests, then chunks no kept snapshot references), which locks of
//!   promoted (monthly/yearly) snapshots are to be extended, and the
//!   repository state it saw. Its digest (BLAKE3 of the canonical plan bytes)
//!   is what the operator confirms.
//! * [`apply::apply`] (the pruner's `DeleteBackend`) checks the digest,
//!   re-reads the repository, refuses if a snapshot the plan deletes or keeps
//!   changed, and deletes exactly the listed versions, manifests first, never
//!   a chunk that any snapshot present at apply time references. Every run
//!   leaves locked audit records ([`audit`]).
//!
//! Why a concurrent backup cannot lose a chunk: prune deletes only versions
//! whose lock has expired, and storage refuses the rest. A backup references
//! an existing chunk only after making sure it is locked at least until the
//! new snapshot's retain-until (invariant 3), which is in the future: either
//! its extension lands first and the delete is refused, or the delete lands
//! first, the extension finds nothing, and the backup stores the chunk again
//! (`backup::seal_one`). The local backend serialises the two under the
//! object's file lock. The grace period (objects newer than the plan minus
//! `grace_hours` are never deleted) and the reference re-check at apply time
//! are a second line of defence, not the first.
//!
//! Nothing here trusts the writer's clock: a snapshot's age is its manifest
//! object's LastModified (the oldest real version's, on S3), never the time
//! the manifest claims.

pub mod apply;
pub mod audit;
mod inventory;
pub mod plan;

#[cfg(test)]
mod tests;

pub use apply::{ApplyOptions, ApplyReport};
pub use plan::{Plan, PlanError, PlanOptions};

use crate::attestation::AttestationError;
use crate::error::ErrorClass;
use crate::repository::RepoError;
use crate::storage::StorageError;

/// Why a prune plan could not be made or applied.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// The backend failed while listing, reading, extending locks or deleting.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The repository's `config` or a snapshot could not be opened.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// Listing attestations (which snapshots passed a drill or verify) failed.
    #[error(transparent)]
    Attestation(#[from] AttestationError),
    /// The plan file was refused.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A snapshot's references cannot be known (unreadable manifest, unknown version, no
    /// modification time), so no chunk may be judged unreferenced.
    #[error(
        "snapshot {key}: {reason}; prune cannot tell which chunks it references, so it refuses \
         to plan or apply (upgrade Lockbox, or investigate the object)"
    )]
    UnknownReferences {
        /// The snapshot's storage key.
        key: String,
        /// Why its references are unknown.
        reason: String,
    },
    /// The digest given to confirm the apply is not the plan's; nothing was deleted.
    #[error(
        "the plan's digest is {actual}, but --confirm gave {confirmed}: review the plan file \
         and confirm the digest its summary printed"
    )]
    DigestMismatch {
        /// The plan's digest.
        actual: String,
        /// The digest given to confirm it.
        confirmed: String,
    },
    /// The plan was made for another repository; nothing was deleted.
    #[error("the plan was computed for repository {planned}, but this repository is {actual}")]
    WrongRepository {
        /// The repository id the plan names.
        planned: String,
        /// This repository's id.
        actual: String,
    },
    /// A snapshot the plan keeps is gone, or one it deletes gained versions the plan did not
    /// see; nothing was deleted. The text says which.
    #[error(
        "the repository changed since the plan was made ({0}); nothing was deleted: make a new plan"
    )]
    StateChanged(String),
}

impl PruneError {
    /// The wrong plan, digest or repository is a usage error; a repository
    /// that changed since the plan, or a snapshot prune cannot read the
    /// references of, is operational (nothing was deleted: plan again).
    pub fn class(&self) -> ErrorClass {
        match self {
            PruneError::Storage(e) => e.class(),
            PruneError::Repo(e) => e.class(),
            PruneError::Attestation(e) => e.class(),
            PruneError::Plan(e) => e.class(),
            PruneError::DigestMismatch { .. } | PruneError::WrongRepository { .. } => {
                ErrorClass::Usage
            }
            PruneError::UnknownReferences { .. } | PruneError::StateChanged(_) => {
                ErrorClass::Operational
            }
        }
    }
}
