//! What an error means for whoever has to act on it: one [`ErrorClass`] per
//! failure, answered by every public error type of this crate and of
//! `lockbox-restore` through its `class()` method, and
//! [`crate::classify::class_of`], the registry that finds it behind a
//! `dyn Error` (a file of its own: it names every module, and every module
//! names this one).
//!
//! Rules for the error types of the libraries:
//! * Each public error type has `fn class(&self) -> ErrorClass`. A variant
//!   that wraps another typed error answers with that error's class; only
//!   variants that are themselves the cause decide.
//! * A cause is kept as a typed field (`#[from]`, `#[source]`), not flattened
//!   into a `String`, wherever its class or its chain matters to the caller.
//! * The class is decided where the error is made, by what went wrong, never
//!   by which command ran into it: an unknown source is a usage error whether
//!   `backup` or `drill` was asked for it.
//! * A new public error type is added to [`crate::classify::class_of`] (and to
//!   `lockbox_restore::class_of` for that crate), so callers that only hold a
//!   `dyn Error` find it.

/// The kind of a failure, as the operator has to act on it. The binary maps
/// each class to one exit code; see README's exit-code table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The request or the configuration is wrong (bad argument, unknown
    /// source, missing or unreadable identity file, a refused target), or
    /// the repository or a plan was written by a newer Lockbox: retrying
    /// the same thing cannot help; the operator has to change something.
    Usage,
    /// Data in the repository failed verification: corrupt, truncated,
    /// missing or forged.
    Integrity,
    /// The identity given cannot decrypt this repository or snapshot.
    Identity,
    /// Another run holds the lock; retry later.
    Busy,
    /// A stop signal ended the run; `signal` is its number.
    Interrupted {
        /// The signal's number (e.g. 15 for SIGTERM).
        signal: i32,
    },
    /// Everything else: storage, I/O, a dump or load tool, the host. Nothing
    /// in the repository was lost.
    Operational,
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;
    use crate::classify::class_of;
    use crate::envelope::EnvelopeError;
    use crate::keys::{Identities, KeyError};
    use crate::lock::{LockError, SourceLock};
    use crate::manifest::{Manifest, ManifestError};
    use crate::repository::RepoError;

    #[test]
    fn a_manifest_from_a_newer_lockbox_asks_for_an_upgrade_not_integrity() {
        let v9 = br#"{"format":"lockbox-snapshot","version":9,"chunks":[]}"#;
        let err = RepoError::from(Manifest::parse_unchecked(v9, "snapshots/s/k").unwrap_err());
        assert!(
            matches!(
                err,
                RepoError::Manifest(ManifestError::UnsupportedVersion { found: 9, .. })
            ),
            "{err}"
        );
        assert_eq!(err.class(), ErrorClass::Usage);
        assert_eq!(
            RepoError::UnsupportedVersion { found: 9 }.class(),
            ErrorClass::Usage
        );
        let garbage =
            RepoError::from(Manifest::parse_unchecked(b"{\"version\":1}", "k").unwrap_err());
        assert_eq!(garbage.class(), ErrorClass::Integrity);
    }

    #[test]
    fn a_manifest_sealed_to_another_identity_is_an_identity_failure() {
        let unseal = |source| {
            RepoError::Manifest(ManifestError::Unseal {
                key: "snapshots/s/k".into(),
                source,
            })
        };
        let wrong = unseal(EnvelopeError::NoMatchingIdentity);
        assert_eq!(wrong.class(), ErrorClass::Identity);
        assert_eq!(class_of(&wrong), Some(ErrorClass::Identity));
        // The identity matched but the ciphertext did not open: damage.
        let altered = unseal(EnvelopeError::Decrypt("header MAC".into()));
        assert_eq!(altered.class(), ErrorClass::Integrity);
        assert_eq!(
            RepoError::Unseal(EnvelopeError::NoMatchingIdentity).class(),
            ErrorClass::Identity
        );
    }

    #[test]
    fn a_missing_identity_file_is_a_usage_error_with_its_cause_kept() {
        let dir = tempfile::tempdir().unwrap();
        let err = Identities::from_file(&dir.path().join("nope.txt")).unwrap_err();
        assert!(matches!(err, KeyError::IdentityFile { .. }), "{err}");
        assert_eq!(err.class(), ErrorClass::Usage);
        let cause = err.source().expect("the io::Error is kept as the source");
        assert_eq!(
            cause.downcast_ref::<std::io::Error>().map(|e| e.kind()),
            Some(std::io::ErrorKind::NotFound)
        );
    }

    #[test]
    fn a_held_source_lock_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let _held = SourceLock::acquire(dir.path(), "db").unwrap();
        let err = SourceLock::acquire(dir.path(), "db").unwrap_err();
        assert!(matches!(err, LockError::Busy { .. }), "{err}");
        assert_eq!(class_of(&err), Some(ErrorClass::Busy));
    }

    #[test]
    fn wrapping_errors_answer_with_their_cause() {
        let bad_url = crate::backup::BackupError::from(crate::storage::StorageError::BadUrl {
            url: "ftp://x".into(),
            reason: "unsupported scheme".into(),
        });
        assert_eq!(bad_url.class(), ErrorClass::Usage);
        let interrupted = crate::backup::BackupError::from(crate::sys::Interrupted { signal: 15 });
        assert_eq!(interrupted.class(), ErrorClass::Interrupted { signal: 15 });
        let std_err: &(dyn Error + 'static) = &std::io::Error::other("x");
        assert_eq!(class_of(std_err), None);
    }
}
