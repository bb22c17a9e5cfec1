//! Restore targets that never expose unverified bytes at the path the user
//! named: data goes to a temporary file in the same directory, which is
//! fsynced and renamed over the target only after verification.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::RestoreError;

/// A restore into a file: bytes go to a temporary file beside the target, which
/// appears at the target path only on [`commit`](FileTarget::commit), after
/// verification; dropped uncommitted, the temporary file is removed.
pub struct FileTarget {
    target: PathBuf,
    force: bool,
    temp: Option<BufWriter<tempfile::NamedTempFile>>,
    /// Removes the temporary file if a stop signal forces an exit (no
    /// destructor runs then).
    abort_hook: u64,
}

impl Drop for FileTarget {
    fn drop(&mut self) {
        lockbox_vault::sys::remove_abort_hook(self.abort_hook);
    }
}

impl FileTarget {
    /// Prepares a restore to `target`; refuses an existing file unless `force`.
    pub fn create(target: &Path, force: bool) -> Result<Self, RestoreError> {
        let shown = target.display().to_string();
        if target.exists() && !force {
            return Err(RestoreError::OutputExists { path: shown });
        }
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(".lockbox-restore-")
            .tempfile_in(dir)
            .map_err(|e| RestoreError::Output {
                path: shown,
                reason: format!("creating a temporary file in {}: {e}", dir.display()),
            })?;
        let abort_hook = lockbox_vault::sys::remove_on_abort(temp.path());
        Ok(Self {
            target: target.to_path_buf(),
            force,
            temp: Some(BufWriter::with_capacity(1 << 20, temp)),
            abort_hook,
        })
    }

    /// Where the restored stream is written (buffered, into the temporary file).
    pub fn writer(&mut self) -> &mut dyn Write {
        self.temp.as_mut().expect("not committed")
    }

    /// Publishes the verified file at the target path.
    pub fn commit(self) -> Result<(), RestoreError> {
        self.commit_checked(|_| Ok::<(), RestoreError>(()))
    }

    /// Like [`Self::commit`], but first runs `check` on the complete,
    /// synced temporary file; if it fails, nothing is published.
    pub fn commit_checked<E: From<RestoreError>>(
        mut self,
        check: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<(), E> {
        let err = |reason: String| RestoreError::Output {
            path: self.target.display().to_string(),
            reason,
        };
        let temp = self
            .temp
            .take()
            .expect("not committed")
            .into_inner()
            .map_err(|e| err(e.error().to_string()))?;
        temp.as_file().sync_all().map_err(|e| err(e.to_string()))?;
        check(temp.path())?;
        let persisted = if self.force {
            temp.persist(&self.target).map_err(|e| e.error)
        } else {
            temp.persist_noclobber(&self.target).map_err(|e| e.error)
        };
        let file: File = persisted.map_err(|e| err(e.to_string()))?;
        drop(file);
        if let Some(dir) = self.target.parent().filter(|p| !p.as_os_str().is_empty())
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }
}
