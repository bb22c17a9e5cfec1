//! Disk and resource limits: the state directory (catalog, base cache,
//! temporary files) on a small tmpfs that fills up, and a restore target
//! that fills up. Each gives a clear error naming the directory, no
//! snapshot, an intact catalog, and a working next run once there is room.
//!
//! Needs root to mount a tmpfs (CI runs as root). Without root, or when the
//! mount fails, the tests skip: loudly, and under `CI` as a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::skip::skip;
use crate::support::{Vault, mixed_data};

const MIB: usize = 1 << 20;

/// A tmpfs mounted on a directory for the life of the value.
struct Tmpfs(PathBuf);

impl Tmpfs {
    #[allow(unsafe_code)] // a raw syscall is the point here
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        if unsafe { libc::geteuid() } != 0 {
            skip("mounting a small tmpfs needs root");
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Self(dir.to_path_buf())),
            other => {
                skip(format_args!(
                    "cannot mount a tmpfs on {}: {other:?}",
                    dir.display()
                ));
                None
            }
        }
    }

    /// Fills the file system up to `leave` bytes free.
    fn fill(&self, leave: u64) -> PathBuf {
        let ballast = self.0.join("ballast");
        let free = free_bytes(&self.0);
        let n = free.saturating_sub(leave);
        std::fs::write(&ballast, vec![0u8; n as usize]).unwrap();
        ballast
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Moves `v`'s initialised state directory onto a tmpfs of `size`.
fn state_on_tmpfs(v: &Vault, size: &str) -> Option<Tmpfs> {
    let state = v.state();
    let saved = v.path().join("state-saved");
    std::fs::rename(&state, &saved).unwrap();
    let fs = Tmpfs::mount(&state, size)?;
    let out = Command::new("cp")
        .args(["-a", "--"])
        .arg(format!("{}/.", saved.display()))
        .arg(&state)
        .status()
        .unwrap();
    assert!(out.success());
    Some(fs)
}

fn backup_fails(v: &Vault, data: &[u8]) -> String {
    let file = v.path().join("input.bin");
    std::fs::write(&file, data).unwrap();
    let out = v
        .cmd()
        .args(["backup", "--stdin", "db"])
        .stdin(Stdio::from(std::fs::File::open(&file).unwrap()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "backup did not fail: {err}");
    err
}

fn catalog_intact(v: &Vault) {
    v.ok(&["status", "--json"]);
    let c = rusqlite::Connection::open(v.state().join("catalog.sqlite")).unwrap();
    let r: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(r, "ok");
}

#[test]
fn state_dir_full_before_and_during_a_backup() {
    let v = Vault::new("");
    let first = mixed_data(4 * MIB, 1);
    v.backup_bytes("db", &first);
    let Some(fs) = state_on_tmpfs(&v, "64m") else {
        return;
    };
    let state = v.state().display().to_string();

    // Already full when the backup starts: refused before the dump runs.
    let ballast = fs.fill(64 * 1024);
    let err = backup_fails(&v, &mixed_data(4 * MIB, 2));
    assert!(err.contains(&state) && err.contains("is full"), "{err}");
    assert!(err.contains("no snapshot was written"), "{err}");
    std::fs::remove_file(&ballast).unwrap();
    let snaps: Vec<serde_json::Value> =
        serde_json::from_slice(&v.ok(&["snapshots", "--json"]).stdout).unwrap();
    assert_eq!(snaps.len(), 1, "a snapshot appeared: {snaps:?}");
    catalog_intact(&v);
    // The refused run is recorded (a run row fits where a backup does not)
    // and makes the source CRIT until a backup succeeds.
    let status: serde_json::Value =
        serde_json::from_slice(&v.ok(&["status", "--json"]).stdout).unwrap();
    let db = &status["sources"][0];
    assert_eq!(db["last_run"]["outcome"], "failed", "{db}");
    assert!(
        db["last_run"]["error"]
            .as_str()
            .unwrap()
            .contains("is full"),
        "{db}"
    );
    assert_eq!(db["health"], "CRIT", "{db}");

    // Fills up during the backup (the base cache of 24 MiB of mostly
    // incompressible data does not fit in 3 MiB).
    let ballast = fs.fill(3 * MIB as u64);
    let data = mixed_data(24 * MIB, 3);
    let err = backup_fails(&v, &data);
    assert!(
        err.contains(&state),
        "the error does not name the state directory: {err}"
    );
    assert!(
        err.contains("is full") || err.contains("disk is full"),
        "{err}"
    );
    let snaps: Vec<serde_json::Value> =
        serde_json::from_slice(&v.ok(&["snapshots", "--json"]).stdout).unwrap();
    assert_eq!(snaps.len(), 1, "a snapshot appeared: {snaps:?}");
    catalog_intact(&v);

    // With room again, the next backup works and reuses what landed.
    std::fs::remove_file(&ballast).unwrap();
    let s = v.backup_bytes("db", &data);
    assert!(s["reused_chunks"].as_u64().unwrap() > 0, "{s}");
    assert!(v.restore_bytes("db", "latest") == data);
    assert!(v.restore_bytes("db", snaps[0]["short_id"].as_str().unwrap()) == first);
    drop(fs);
}

#[test]
fn temp_dir_full_while_copying_a_sqlite_source() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("CREATE TABLE t (x BLOB); ").unwrap();
    for i in 0..48 {
        c.execute("INSERT INTO t VALUES (?1)", [mixed_data(128 * 1024, i)])
            .unwrap();
    }
    drop(c);
    let v = Vault::new(&format!(
        "[[source]]\nname = \"app\"\nkind = \"sqlite\"\npath = \"{}\"\n",
        db.display()
    ));
    let Some(fs) = state_on_tmpfs(&v, "16m") else {
        return;
    };
    // Room for the catalog, not for the 6 MiB copy of the database.
    let ballast = fs.fill(2 * MIB as u64);
    let out = v.cmd().args(["backup", "app"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&v.state().join("tmp").display().to_string()),
        "{err}"
    );
    assert!(err.contains("no snapshot was written"), "{err}");
    v.assert_no_snapshots("app");
    catalog_intact(&v);
    let leftovers: Vec<_> = std::fs::read_dir(v.state().join("tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    std::fs::remove_file(&ballast).unwrap();
    v.ok(&["backup", "app"]);
    drop(fs);
}

#[test]
fn restore_target_full_leaves_nothing_and_names_the_path() {
    let v = Vault::new("");
    let data = mixed_data(12 * MIB, 4);
    v.backup_bytes("db", &data);
    let target_dir = v.path().join("out");
    let Some(_fs) = Tmpfs::mount(&target_dir, "4m") else {
        return;
    };
    let target = target_dir.join("restored.bin");
    let out = v
        .cmd()
        .args(["restore", "latest", "--source", "db", "--identity"])
        .arg(&v.identity)
        .arg("--output")
        .arg(&target)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "restore into a full disk succeeded");
    assert!(err.contains(&target_dir.display().to_string()), "{err}");
    assert!(
        std::fs::read_dir(&target_dir).unwrap().next().is_none(),
        "a failed restore left files behind"
    );
}
