//! Local filesystem backend (`file:///path`): write-once objects with a
//! retain-until kept beside each one.
//!
//! Layout: the object at key `k` is the file `<root>/k` (mode 0444) and its
//! retention is the file `<root>/k.retain` holding Unix seconds. A put writes
//! and fsyncs a temporary file, then hard-links it into place — `link(2)`
//! fails if the name exists, so no put can replace an object — and the
//! directory is fsynced at `flush`. The retention file is written first, so
//! an object is never visible without its lock.
//!
//! What this cannot protect against: anyone with write access to the
//! directory (root, or the Lockbox user itself via `chmod`) can delete
//! objects. It serves tests, demos, and a dedicated backup host whose
//! directory production cannot reach. Object Lock storage is what makes
//! deletion impossible.

use std::collections::HashSet;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use time::OffsetDateTime;

use super::{
    DeleteBackend, ObjectInfo, PutOutcome, ReadBackend, StorageError, StorageResult, WriteBackend,
};

const RETAIN_SUFFIX: &str = ".retain";
const TEMP_PREFIX: &str = ".tmp-";

/// The `file://` backend: one read-only file per object, its retain-until in a
/// `<key>.retain` file beside it (FORMAT.md, "Local backend"). It cannot stop
/// root from deleting files; Object Lock storage can.
pub struct LocalBackend {
    root: PathBuf,
    /// Directories that received new entries since the last flush.
    dirty_dirs: Mutex<HashSet<PathBuf>>,
}

impl LocalBackend {
    /// Opens a repository directory. Nothing is created until the first
    /// put, so a mistyped URL in a read-only command leaves no trace.
    pub fn open(root: impl AsRef<Path>) -> StorageResult<Self> {
        Ok(Self {
            root: root.as_ref().to_path_buf(),
            dirty_dirs: Mutex::new(HashSet::new()),
        })
    }

    fn io(&self, op: &'static str, key: &str, e: std::io::Error) -> StorageError {
        if e.kind() == ErrorKind::NotFound {
            return StorageError::NotFound {
                location: self.location(),
                key: key.to_string(),
            };
        }
        // Out of space or permission problems will not fix themselves.
        let transient = matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::TimedOut);
        StorageError::Io {
            location: self.location(),
            op,
            key: key.to_string(),
            message: e.to_string(),
            transient,
        }
    }

    fn path_of(&self, key: &str) -> StorageResult<PathBuf> {
        // Sidecar and temporary names are this backend's own, never keys.
        let own_names_free = !key.ends_with(RETAIN_SUFFIX)
            && key.split('/').all(|seg| !seg.starts_with(TEMP_PREFIX));
        super::check_key(|| self.location(), key, own_names_free)?;
        Ok(self.root.join(key))
    }

    fn retain_path(path: &Path) -> PathBuf {
        let mut s = path.as_os_str().to_owned();
        s.push(RETAIN_SUFFIX);
        PathBuf::from(s)
    }

    fn read_retention(&self, key: &str, path: &Path) -> StorageResult<Option<OffsetDateTime>> {
        match fs::read_to_string(Self::retain_path(path)) {
            Ok(s) => {
                let secs: i64 = s.trim().parse().map_err(|_| StorageError::Io {
                    location: self.location(),
                    op: "read retention of",
                    key: key.to_string(),
                    message: format!("malformed retention file: {s:?}"),
                    transient: false,
                })?;
                Ok(OffsetDateTime::from_unix_timestamp(secs).ok())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io("read retention of", key, e)),
        }
    }

    /// Atomically replaces the retention file (retention files, unlike
    /// objects, may be rewritten — but only ever to a later time).
    fn write_retention(&self, key: &str, path: &Path, until: OffsetDateTime) -> StorageResult<()> {
        let dir = path.parent().expect("object paths have a parent");
        // Whole seconds, rounded up, so the stored lock never ends early.
        let secs = until.unix_timestamp() + i64::from(until.nanosecond() > 0);
        let data = format!("{secs}\n");
        let tmp = self.write_temp(key, dir, data.as_bytes())?;
        fs::rename(&tmp, Self::retain_path(path)).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            self.io("lock", key, e)
        })?;
        self.dirty_dirs.lock().unwrap().insert(dir.to_path_buf());
        Ok(())
    }

    fn write_temp(&self, key: &str, dir: &Path, data: &[u8]) -> StorageResult<PathBuf> {
        fs::create_dir_all(dir).map_err(|e| self.io("create directory for", key, e))?;
        let tmp = dir.join(format!(
            "{TEMP_PREFIX}{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&tmp)
            .map_err(|e| self.io("write", key, e))?;
        if let Err(e) = f.write_all(data).and_then(|_| f.sync_all()) {
            let _ = fs::remove_file(&tmp);
            return Err(self.io("write", key, e));
        }
        Ok(tmp)
    }

    fn fsync_dir(&self, dir: &Path) -> StorageResult<()> {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io("fsync directory", &dir.display().to_string(), e))
    }
}

impl ReadBackend for LocalBackend {
    fn location(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn get(&self, key: &str, limit: u64) -> StorageResult<Bytes> {
        let path = self.path_of(key)?;
        let f = fs::File::open(&path).map_err(|e| self.io("read", key, e))?;
        // Sized from the file (capped by the limit): read_to_end through
        // `take` gets no size hint and would grow the buffer by doubling,
        // copying each object about twice over.
        let size = f.metadata().map_or(0, |m| m.len()).min(limit);
        let mut buf = Vec::with_capacity(size as usize + 1);
        f.take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| self.io("read", key, e))?;
        if buf.len() as u64 > limit {
            return Err(StorageError::TooLarge {
                location: self.location(),
                key: key.into(),
                limit,
            });
        }
        Ok(Bytes::from(buf))
    }

    fn head(&self, key: &str) -> StorageResult<Option<ObjectInfo>> {
        let path = self.path_of(key)?;
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io("head", key, e)),
        };
        Ok(Some(ObjectInfo {
            key: key.to_string(),
            size: meta.len(),
            retain_until: self.read_retention(key, &path)?,
            last_modified: meta.modified().ok().map(OffsetDateTime::from),
        }))
    }

    fn list(
        &self,
        prefix: &str,
        f: &mut dyn FnMut(ObjectInfo) -> StorageResult<()>,
    ) -> StorageResult<()> {
        // Walk only the directory that can contain the prefix.
        let (dir_part, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_part)
        };
        let mut keys = Vec::new();
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io("list", prefix, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.io("list", prefix, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(TEMP_PREFIX) || name.ends_with(RETAIN_SUFFIX) {
                    continue;
                }
                let path = entry.path();
                let ft = entry.file_type().map_err(|e| self.io("list", prefix, e))?;
                if ft.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&self.root) {
                    let key = rel.to_string_lossy().into_owned();
                    if key.starts_with(prefix) {
                        keys.push(key);
                    }
                }
            }
        }
        keys.sort();
        for key in keys {
            if let Some(info) = self.head(&key)? {
                f(info)?;
            }
        }
        Ok(())
    }
}

impl WriteBackend for LocalBackend {
    fn put(
        &self,
        key: &str,
        data: Bytes,
        retain_until: OffsetDateTime,
    ) -> StorageResult<PutOutcome> {
        let path = self.path_of(key)?;
        if path.exists() {
            return Ok(PutOutcome::AlreadyExists);
        }
        let dir = path
            .parent()
            .expect("object paths have a parent")
            .to_path_buf();
        // Lock first, then publish: a visible object always has a retention.
        let existing = self.read_retention(key, &path)?;
        if existing.is_none_or(|t| t < retain_until) {
            self.write_retention(key, &path, retain_until)?;
        }
        let tmp = self.write_temp(key, &dir, &data)?;
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                self.dirty_dirs.lock().unwrap().insert(dir);
                // A concurrent put of the same key may have rewritten the
                // retention file between our write and our link; settle it
                // under the object's lock.
                self.extend_retention(key, retain_until)?;
                Ok(PutOutcome::Created)
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(PutOutcome::AlreadyExists),
            Err(e) => Err(self.io("write", key, e)),
        }
    }

    fn extend_retention(&self, key: &str, until: OffsetDateTime) -> StorageResult<()> {
        let path = self.path_of(key)?;
        // The object file is never replaced, so its lock serialises every
        // read-compare-write of its retention file across processes: two
        // writers extending to different times can never shorten it.
        let object = fs::File::open(&path).map_err(|e| self.io("lock", key, e))?;
        object.lock().map_err(|e| self.io("lock", key, e))?;
        // A prune may have unlinked it while we waited for the lock.
        if !path.exists() {
            return Err(StorageError::NotFound {
                location: self.location(),
                key: key.into(),
            });
        }
        let result = match self.read_retention(key, &path)? {
            Some(current) if current >= until => Ok(()),
            _ => self.write_retention(key, &path, until),
        };
        drop(object); // releases the lock
        result
    }

    fn flush(&self) -> StorageResult<()> {
        let dirty: Vec<PathBuf> = self.dirty_dirs.lock().unwrap().drain().collect();
        // New entries, and every directory a put may have created on the way
        // (up to the root's own entry in its parent), must reach the disk.
        let mut dirs: std::collections::BTreeSet<&Path> = std::collections::BTreeSet::new();
        for d in &dirty {
            let mut cur = Some(d.as_path());
            while let Some(dir) = cur {
                dirs.insert(dir);
                if dir == self.root {
                    if let Some(parent) = dir.parent() {
                        dirs.insert(parent);
                    }
                    break;
                }
                cur = dir.parent().filter(|p| p.starts_with(&self.root));
            }
        }
        for dir in dirs.iter().rev() {
            self.fsync_dir(dir)?;
        }
        Ok(())
    }
}

impl DeleteBackend for LocalBackend {
    fn delete(&self, key: &str) -> StorageResult<()> {
        let path = self.path_of(key)?;
        if let Some(until) = self.read_retention(key, &path)?
            && until > OffsetDateTime::now_utc()
        {
            return Err(StorageError::Retained {
                location: self.location(),
                key: key.into(),
                until: until.to_string(),
                action: "delete it",
            });
        }
        // Objects are 0444; the directory's write bit is what governs unlink.
        fs::remove_file(&path).map_err(|e| self.io("delete", key, e))?;
        let _ = fs::remove_file(Self::retain_path(&path));
        Ok(())
    }

    /// Checks the retention and unlinks under the object's file lock, the
    /// one [`extend_retention`](WriteBackend::extend_retention) takes: a
    /// backup extending the lock at the same moment either wins (the delete
    /// is refused) or finds the object gone (and stores it again).
    fn delete_version(&self, key: &str, version: Option<&str>) -> StorageResult<()> {
        if version.is_some() {
            return Err(StorageError::NotFound {
                location: self.location(),
                key: key.into(),
            });
        }
        let path = self.path_of(key)?;
        let object = fs::File::open(&path).map_err(|e| self.io("delete", key, e))?;
        object.lock().map_err(|e| self.io("lock", key, e))?;
        if let Some(until) = self.read_retention(key, &path)?
            && until > OffsetDateTime::now_utc()
        {
            return Err(StorageError::Retained {
                location: self.location(),
                key: key.into(),
                until: until.to_string(),
                action: "delete it",
            });
        }
        fs::remove_file(&path).map_err(|e| self.io("delete", key, e))?;
        let _ = fs::remove_file(Self::retain_path(&path));
        drop(object);
        Ok(())
    }
}

/// Whether an existing file's permission bits mark it read-only.
pub fn is_read_only(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o222 == 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::conformance;

    #[test]
    fn local_backend_passes_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::open(dir.path().join("repo")).unwrap();
        conformance::run_all(&b);
    }

    #[test]
    fn concurrent_extensions_never_shorten_a_retention() {
        let dir = tempfile::tempdir().unwrap();
        let b = std::sync::Arc::new(LocalBackend::open(dir.path()).unwrap());
        let base = OffsetDateTime::from_unix_timestamp(4_000_000_000).unwrap()
            + time::Duration::milliseconds(500);
        b.put("chunks/ab/x", Bytes::from_static(b"1"), base)
            .unwrap();
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for i in 0..50i64 {
                        let until = base + time::Duration::seconds((i * 7919 + t * 104729) % 5000);
                        b.extend_retention("chunks/ab/x", until).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let max = (0..8i64)
            .flat_map(|t| (0..50i64).map(move |i| (i * 7919 + t * 104729) % 5000))
            .max()
            .unwrap();
        let got = b
            .head("chunks/ab/x")
            .unwrap()
            .unwrap()
            .retain_until
            .unwrap();
        assert_eq!(
            got.unix_timestamp(),
            (base + time::Duration::seconds(max)).unix_timestamp() + 1
        );
    }

    #[test]
    fn sub_second_retention_rounds_up() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::open(dir.path()).unwrap();
        let until = OffsetDateTime::from_unix_timestamp(4_000_000_000).unwrap()
            + time::Duration::milliseconds(1);
        b.put("k/x", Bytes::from_static(b"1"), until).unwrap();
        let got = b.head("k/x").unwrap().unwrap().retain_until.unwrap();
        assert_eq!(got.unix_timestamp(), 4_000_000_001);
    }

    #[test]
    fn objects_are_read_only_and_keys_cannot_escape() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::open(dir.path()).unwrap();
        let until = OffsetDateTime::now_utc() + time::Duration::days(1);
        b.put("chunks/ab/x", Bytes::from_static(b"1"), until)
            .unwrap();
        assert!(is_read_only(&dir.path().join("chunks/ab/x")));
        for bad in ["../escape", "/abs", "a/../b", "a/.tmp-1", "x.retain", ""] {
            assert!(b.put(bad, Bytes::new(), until).is_err(), "{bad} accepted");
        }
    }
}
