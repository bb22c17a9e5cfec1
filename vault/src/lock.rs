//! Per-source run locks in the state directory, so the daemon, a timer and a
//! person never back up the same source at once on one host.
//!
//! A lock is an advisory `flock(2)` on `state_dir/locks/<source>.lock`: the
//! kernel releases it when the holder exits, however it exits, so a crash
//! never leaves a stale lock. The file's text names the holder (pid, start
//! time) for the message the loser prints; it is informative, never trusted.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::error::ErrorClass;

/// Why a source's run lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run on this host holds the source's lock.
    #[error("source {source_name} is being backed up by another run ({holder}); try again later")]
    Busy {
        /// The source.
        source_name: String,
        /// What the lock file says of the holder (pid, start time); informative only.
        holder: String,
    },
    /// The lock file could not be created or opened.
    #[error("lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: String,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
}

impl LockError {
    /// A held lock is [`ErrorClass::Busy`] (retry later); failing to take
    /// it is operational.
    pub fn class(&self) -> ErrorClass {
        match self {
            LockError::Busy { .. } => ErrorClass::Busy,
            LockError::Io { .. } => ErrorClass::Operational,
        }
    }
}

/// Held while a source is being backed up; dropping it releases the lock.
#[derive(Debug)]
pub struct SourceLock {
    _file: File,
    path: PathBuf,
}

impl SourceLock {
    /// Takes the lock for `source` or fails at once with who holds it.
    pub fn acquire(state_dir: &Path, source: &str) -> Result<Self, LockError> {
        let dir = state_dir.join("locks");
        let path = dir.join(format!("{source}.lock"));
        let io = |source: std::io::Error| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        crate::state::ensure_private_dir(&dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = match text.trim() {
                    "" => "holder unknown: it has only just started".to_string(),
                    t => t.to_string(),
                };
                return Err(LockError::Busy {
                    source_name: source.into(),
                    holder,
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let started = crate::rfc3339::format(OffsetDateTime::now_utc());
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| writeln!(file, "pid {} since {started}", std::process::id()))
            .map_err(io)?;
        Ok(Self { _file: file, path })
    }

    /// The lock file, `state_dir/locks/<source>.lock`; it names the holder's pid
    /// and start time.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_is_refused_with_the_holder_and_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let held = SourceLock::acquire(dir.path(), "orders").unwrap();
        let err = SourceLock::acquire(dir.path(), "orders").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, LockError::Busy { .. }));
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        // Other sources are independent.
        SourceLock::acquire(dir.path(), "users").unwrap();
        drop(held);
        SourceLock::acquire(dir.path(), "orders").unwrap();
    }
}
