//! The local backend's files, for tests that inspect or damage a vault on
//! disk: an object with key `k` is the file `<root>/k`, its retention is the
//! sidecar `<root>/k.retain` holding Unix seconds, and `.tmp-*` files are
//! writes in progress (see `vault/src/storage/local.rs`). Tests name this
//! layout only here.
//!
//! Dependency-free on purpose: `restore/tests` includes this file by path.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

const RETAIN_SUFFIX: &str = ".retain";
const TEMP_PREFIX: &str = ".tmp-";

/// The retention sidecar of the object file `object`.
pub fn retain_path(object: &Path) -> PathBuf {
    let mut p = object.as_os_str().to_owned();
    p.push(RETAIN_SUFFIX);
    PathBuf::from(p)
}

/// True if `path` is an object file, not a retention sidecar or a write in
/// progress.
pub fn is_object(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    !name.ends_with(RETAIN_SUFFIX) && !name.starts_with(TEMP_PREFIX)
}

/// Every object file under `root/prefix` (recursively), sorted.
pub fn objects(root: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.join(prefix)];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(p);
            } else if is_object(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The object's retain-until, Unix seconds.
pub fn retain_until(object: &Path) -> i64 {
    let path = retain_path(object);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

/// Rewrites the object's retain-until to `secs` (Unix seconds), as someone
/// with direct disk access could.
pub fn set_retain_until(object: &Path, secs: i64) {
    let path = retain_path(object);
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, format!("{secs}\n")).unwrap();
}

/// Deletes the object and its retention sidecar.
pub fn remove(object: &Path) {
    std::fs::remove_file(object).unwrap();
    let _ = std::fs::remove_file(retain_path(object));
}
