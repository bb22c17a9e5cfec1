//! Replacing a catalog that cannot be used: a broken cache must never stop
//! backups, and must never be silently thrown away.
//!
//! A catalog needs replacing when SQLite reports it damaged (SQLITE_CORRUPT,
//! SQLITE_NOTADB: garbage bytes, a truncated file, a malformed image), when
//! `PRAGMA quick_check` finds damage, or when it was written for another
//! schema version of this repository. [`replace`] then, under a lock so two
//! processes never both do it:
//!
//! 1. moves the file aside with its `-wal`/`-shm`/`-journal` files, as
//!    `catalog.sqlite.corrupt-<UTC time>` (or `.schema<N>-<UTC time>`), kept
//!    for inspection and named in a warning;
//! 2. creates an empty catalog and records in its `meta` why and when
//!    (`rebuilt_at`, `rebuilt_reason`, `rebuilt_kept_as`);
//! 3. leaves the refill to the caller, who holds the repository:
//!    [`Catalog::refill_if_rebuilt`] syncs snapshots and attestations, and
//!    the first successful sync records `rebuilt_refilled_at`. Chunk rows
//!    are re-learned by later backups.
//!
//! Readers that must not write (`status`, `check`, metrics) open with
//! [`Catalog::open_existing`], which never replaces anything: damage is an
//! error that says the next backup rebuilds the catalog.
//!
//! `health` reports a rebuild for `health::CATALOG_REBUILT_WINDOW`.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};
use serde::Serialize;
use time::OffsetDateTime;

use super::{Catalog, CatalogError, SCHEMA_VERSION, SyncReport, sqlite_err};
use crate::ids::IdKey;
use crate::rfc3339;
use crate::storage::ReadBackend;

/// `meta` keys of a catalog that was started afresh.
const REBUILT_AT: &str = "rebuilt_at";
const REBUILT_REASON: &str = "rebuilt_reason";
const REBUILT_KEPT_AS: &str = "rebuilt_kept_as";
const REBUILT_REFILLED_AT: &str = "rebuilt_refilled_at";

/// The record of the last time this catalog replaced an unusable one.
/// Times are RFC 3339 UTC. JSON fields may be added.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rebuilt {
    /// When the unusable catalog was moved aside.
    pub rebuilt_at: String,
    /// Why, e.g. "file is not a database" or "schema version 2, this
    /// lockbox uses 1".
    pub reason: String,
    /// Where the unusable catalog was moved to.
    pub kept_as: String,
    /// When the first sync from the repository after it finished; `None`
    /// while the catalog has not been refilled.
    pub refilled_at: Option<String>,
}

/// The reason text when `e` means the file is damaged; `None` for every
/// other error (busy, I/O, permissions), which never moves a file aside.
pub(super) fn damage(e: &rusqlite::Error) -> Option<String> {
    match e.sqlite_error_code()? {
        ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => Some(match e {
            rusqlite::Error::SqliteFailure(_, Some(msg)) => msg.clone(),
            other => other.to_string(),
        }),
        _ => None,
    }
}

/// `open` replaces the catalog on these errors only.
pub(super) fn needs_replacing(e: &CatalogError) -> bool {
    matches!(
        e,
        CatalogError::Unreadable { .. } | CatalogError::OtherSchema { .. }
    )
}

impl Catalog {
    /// `PRAGMA quick_check`: a walk of every page (O(size), without the
    /// index cross-check of `integrity_check`) that finds truncated files
    /// and malformed pages before a backup trips over them.
    pub(super) fn check_integrity(&self) -> Result<(), CatalogError> {
        let first: String = self
            .conn
            .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
            .map_err(sqlite_err(&self.path))?;
        if first == "ok" {
            return Ok(());
        }
        Err(CatalogError::Unreadable {
            path: self.path.clone(),
            reason: format!("integrity check: {}", cut(&first, 200)),
        })
    }

    /// Opens an existing catalog to read it, taking the repository id from
    /// the catalog itself. Never creates, repairs or moves anything; a
    /// damaged catalog, or one of another schema version, is an error that
    /// says what to do. `None` when there is no catalog (or an empty one).
    pub fn open_existing(path: &Path) -> Result<Option<Self>, CatalogError> {
        if !path.exists() {
            return Ok(None);
        }
        let shown = path.display().to_string();
        let err = sqlite_err(&shown);
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(&err)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(&err)?;
        let has_meta: bool = conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
                [],
                |r| r.get(0),
            )
            .map_err(&err)?;
        if !has_meta {
            return Ok(None);
        }
        let meta = |key: &str| -> Result<Option<String>, CatalogError> {
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(&err)
        };
        if meta("repository_id")?.is_none() {
            return Ok(None);
        }
        let version = meta("schema_version")?.and_then(|v| v.parse::<i64>().ok());
        if version != Some(SCHEMA_VERSION) {
            return Err(CatalogError::OtherSchema {
                path: shown.clone(),
                found: version.unwrap_or(0),
            });
        }
        let cat = Self {
            conn,
            path: shown.clone(),
        };
        // Run history gains columns in place; readers need them too.
        cat.migrate_runs()?;
        Ok(Some(cat))
    }

    /// The last time this catalog replaced an unusable one, if it ever did.
    pub fn rebuilt(&self) -> Result<Option<Rebuilt>, CatalogError> {
        let Some(rebuilt_at) = self.meta(REBUILT_AT)? else {
            return Ok(None);
        };
        Ok(Some(Rebuilt {
            rebuilt_at,
            reason: self.meta(REBUILT_REASON)?.unwrap_or_default(),
            kept_as: self.meta(REBUILT_KEPT_AS)?.unwrap_or_default(),
            refilled_at: self.meta(REBUILT_REFILLED_AT)?,
        }))
    }

    /// Refills a catalog that replaced an unusable one and has not been
    /// synced since: snapshots and attestations come back from the
    /// repository. `None` when there was nothing to do.
    pub fn refill_if_rebuilt(
        &mut self,
        backend: &dyn ReadBackend,
        id_key: &IdKey,
    ) -> Result<Option<SyncReport>, CatalogError> {
        match self.rebuilt()? {
            Some(r) if r.refilled_at.is_none() => self.sync(backend, id_key).map(Some),
            _ => Ok(None),
        }
    }

    /// After a successful sync: a rebuilt catalog is refilled.
    pub(super) fn mark_refilled(&self) -> Result<(), CatalogError> {
        if self.meta(REBUILT_AT)?.is_some() && self.meta(REBUILT_REFILLED_AT)?.is_none() {
            self.set_meta(
                REBUILT_REFILLED_AT,
                &rfc3339::format(OffsetDateTime::now_utc()),
            )?;
        }
        Ok(())
    }
}

/// Moves the unusable catalog at `path` aside and returns a new, empty one
/// that records why. Another process may have done it while this one
/// waited for the lock; then its new catalog is used as it is.
pub(super) fn replace(path: &Path, repository_id: &str) -> Result<Catalog, CatalogError> {
    let _lock = lock(path)?;
    let (reason, label) = match Catalog::open_as_is(path, repository_id) {
        Ok(cat) => return Ok(cat),
        Err(CatalogError::Unreadable { reason, .. }) => (reason, "corrupt".to_string()),
        Err(CatalogError::OtherSchema { found, .. }) => (
            format!("schema version {found}, this lockbox uses {SCHEMA_VERSION}"),
            format!("schema{found}"),
        ),
        Err(e) => return Err(e),
    };
    let now = OffsetDateTime::now_utc();
    let kept = move_aside(path, &label, now)?;
    let kept_shown = kept.display().to_string();
    tracing::warn!(
        catalog = %path.display(),
        reason = %reason,
        kept_as = %kept_shown,
        "the catalog was unreadable: moved it aside and started a new one, rebuilt from the repository"
    );
    let cat = Catalog::open_as_is(path, repository_id)?;
    cat.set_meta(REBUILT_AT, &rfc3339::format(now))?;
    cat.set_meta(REBUILT_REASON, &reason)?;
    cat.set_meta(REBUILT_KEPT_AS, &kept_shown)?;
    Ok(cat)
}

/// An exclusive `flock(2)` on `<catalog>.lock`, held while a catalog is
/// replaced; the kernel releases it however the holder exits.
fn lock(path: &Path) -> Result<File, CatalogError> {
    let lock_path = sibling(path, ".lock");
    let io = |source| CatalogError::Io {
        path: lock_path.display().to_string(),
        source,
    };
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io)?;
    file.lock().map_err(io)?;
    Ok(file)
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Renames the catalog and its SQLite side files to
/// `<catalog>.<label>-<UTC time>[.N]`, never over an existing file.
fn move_aside(path: &Path, label: &str, now: OffsetDateTime) -> Result<PathBuf, CatalogError> {
    let stamp = now
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .expect("UTC times format");
    let base = format!(".{label}-{stamp}");
    let mut kept = sibling(path, &base);
    let mut n = 1;
    while kept.exists() {
        kept = sibling(path, &format!("{base}.{n}"));
        n += 1;
    }
    let rename = |from: &Path, to: &Path| {
        std::fs::rename(from, to).map_err(|source| CatalogError::Io {
            path: from.display().to_string(),
            source,
        })
    };
    rename(path, &kept)?;
    // The kept copy opens with its own write-ahead log, as it was.
    for side in ["-wal", "-shm", "-journal"] {
        let from = sibling(path, side);
        if from.exists() {
            rename(&from, &sibling(&kept, side))?;
        }
    }
    Ok(kept)
}

fn cut(s: &str, max: usize) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn kept_copies(dir: &Path, label: &str) -> Vec<String> {
        files(dir)
            .into_iter()
            .filter(|n| n.starts_with(&format!("c.db.{label}-")) && !n.ends_with("-wal"))
            .filter(|n| !n.ends_with("-shm"))
            .collect()
    }

    fn with_run(path: &Path) {
        let cat = Catalog::open(path, "repo").unwrap();
        cat.set_meta("marker", "old").unwrap();
        assert_eq!(cat.rebuilt().unwrap(), None);
    }

    #[test]
    fn garbage_is_moved_aside_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        with_run(&path);
        std::fs::write(&path, vec![0x5a; 40_000]).unwrap();
        // A reader is told, and changes nothing.
        let e = Catalog::open_existing(&path)
            .err()
            .expect("garbage is an error");
        assert!(matches!(e, CatalogError::Unreadable { .. }), "{e}");
        let text = e.to_string();
        assert!(text.contains("the next backup rebuilds it"), "{text}");
        assert!(text.contains("lockbox catalog rebuild"), "{text}");
        assert!(kept_copies(dir.path(), "corrupt").is_empty());

        let cat = Catalog::open(&path, "repo").unwrap();
        let r = cat.rebuilt().unwrap().expect("recorded");
        assert_eq!(r.reason, "file is not a database");
        assert_eq!(r.refilled_at, None);
        assert_eq!(cat.meta("marker").unwrap(), None, "a new catalog");
        let kept = kept_copies(dir.path(), "corrupt");
        assert_eq!(kept.len(), 1, "{:?}", files(dir.path()));
        assert_eq!(r.kept_as, dir.path().join(&kept[0]).display().to_string());
        assert_eq!(std::fs::read(&r.kept_as).unwrap(), vec![0x5a; 40_000]);
        // A second open keeps it.
        drop(cat);
        let cat = Catalog::open(&path, "repo").unwrap();
        assert_eq!(cat.rebuilt().unwrap(), Some(r));
        assert_eq!(kept_copies(dir.path(), "corrupt").len(), 1);
    }

    #[test]
    fn a_truncated_catalog_is_found_by_the_integrity_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        {
            let mut cat = Catalog::open(&path, "repo").unwrap();
            let chunks: Vec<_> = (0..3000u32)
                .map(|i| {
                    let mut b = [0u8; 32];
                    b[..4].copy_from_slice(&i.to_le_bytes());
                    let id = crate::ids::ObjectId::from_bytes(b);
                    (
                        id,
                        super::super::KnownChunk {
                            stored_len: 1,
                            stored_hash: id,
                            retain_until: 1,
                        },
                    )
                })
                .collect();
            cat.record_chunks(&chunks).unwrap();
        }
        let len = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len / 2).unwrap();
        drop(f);
        let cat = Catalog::open(&path, "repo").unwrap();
        let r = cat.rebuilt().unwrap().expect("recorded");
        assert_eq!(kept_copies(dir.path(), "corrupt").len(), 1, "{r:?}");
        assert!(
            cat.chunk(&crate::ids::ObjectId::from_bytes([0; 32]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn another_schema_version_is_moved_aside_another_repository_is_wiped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        with_run(&path);
        Catalog::open(&path, "repo")
            .unwrap()
            .set_meta("schema_version", "999")
            .unwrap();
        let e = Catalog::open_existing(&path).err().expect("other schema");
        assert!(e.to_string().contains("schema version 999"), "{e}");
        let cat = Catalog::open(&path, "repo").unwrap();
        let r = cat.rebuilt().unwrap().expect("recorded");
        assert_eq!(
            r.reason,
            format!("schema version 999, this lockbox uses {SCHEMA_VERSION}")
        );
        assert_eq!(kept_copies(dir.path(), "schema999").len(), 1);
        assert!(Catalog::open_existing(&path).unwrap().is_some());
        drop(cat);

        // Another repository's catalog is wiped in place, as before.
        let cat = Catalog::open(&path, "other-repo").unwrap();
        assert_eq!(cat.rebuilt().unwrap(), None);
        assert_eq!(kept_copies(dir.path(), "schema999").len(), 1);
        assert_eq!(kept_copies(dir.path(), "corrupt").len(), 0);
    }

    #[test]
    fn sync_marks_a_rebuilt_catalog_refilled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        std::fs::write(&path, b"not a database, not at all, no").unwrap();
        let mut cat = Catalog::open(&path, "repo").unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        let backend = crate::storage::LocalBackend::open(&repo).unwrap();
        let key = IdKey::from_bytes([7; 32]);
        let r = cat.refill_if_rebuilt(&backend, &key).unwrap();
        assert!(r.is_some());
        assert!(cat.rebuilt().unwrap().unwrap().refilled_at.is_some());
        assert!(cat.refill_if_rebuilt(&backend, &key).unwrap().is_none());
    }

    #[test]
    fn busy_or_missing_permissions_never_move_a_file() {
        let e = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert_eq!(damage(&e), None);
        let e = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            None,
        );
        assert_eq!(damage(&e), None);
        let e = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            Some("database disk image is malformed".into()),
        );
        assert_eq!(
            damage(&e).as_deref(),
            Some("database disk image is malformed")
        );
    }
}
