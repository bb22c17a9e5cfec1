//! Everything Lockbox creates in its state directory is private (directories
//! 0700, files 0600), and so are restored files and temporary files: run
//! with umask 000, so any file created without an explicit mode shows up as
//! world-readable here.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{self, Vault};

/// `lockbox` with the vault's config and umask 000.
#[allow(unsafe_code)] // a raw syscall is the point here
fn open_umask(v: &Vault, args: &[&str]) -> std::process::Output {
    let mut c: Command = v.cmd();
    // SAFETY: umask is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        c.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let out = c.args(args).output().unwrap();
    assert!(
        out.status.success(),
        "lockbox {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, u32, bool)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        out.push((e.path(), mode, meta.is_dir()));
        if meta.is_dir() {
            walk(&e.path(), out);
        }
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
#[allow(unsafe_code)] // a raw syscall is the point here
fn state_and_restored_files_are_private_even_with_umask_000() {
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("app.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT); INSERT INTO t (s) VALUES ('a'), ('b');",
    )
    .unwrap();
    drop(c);
    let v = Vault::uninitialised(
        &format!(
            "\n[[source]]\nname = \"app\"\nkind = \"sqlite\"\npath = \"{}\"\n[source.drill]\n",
            db.display()
        ),
        Vec::new(),
    );
    // init creates the state directory, the ID key and the catalog.
    open_umask(&v, &["init"]);
    // Two backups: the SQLite copy is a temp file in state_dir/tmp, the base
    // cache gets a generation, the run lock is taken.
    open_umask(&v, &["backup", "app"]);
    open_umask(&v, &["backup", "app"]);
    // stdin backups go through the same pipeline with another source name.
    let input = v.path().join("input.bin");
    std::fs::write(&input, support::mixed_data(3 << 20, 7)).unwrap();
    let mut c = v.cmd();
    unsafe {
        c.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let out = c
        .args(["backup", "--stdin", "blob"])
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = v.identity.to_str().unwrap();
    // A drill restores into a temp file in state_dir/tmp and writes an attestation.
    open_umask(&v, &["drill", "app", "--identity", id]);
    // Restores: to a file, and into an SQLite database.
    let restored = data.path().join("restored.bin");
    open_umask(
        &v,
        &[
            "restore",
            "latest",
            "--source",
            "blob",
            "--identity",
            id,
            "--output",
            restored.to_str().unwrap(),
        ],
    );
    let restored_db = data.path().join("restored.db");
    open_umask(
        &v,
        &[
            "restore",
            "latest",
            "--source",
            "app",
            "--identity",
            id,
            "--into",
            &format!("sqlite://{}", restored_db.display()),
        ],
    );
    open_umask(&v, &["verify", "--read-data", "--identity", id]);
    open_umask(&v, &["status"]);

    let mut entries = vec![(v.state(), mode(&v.state()), true)];
    walk(&v.state(), &mut entries);
    let names: Vec<String> = entries
        .iter()
        .map(|(p, _, _)| p.strip_prefix(v.state()).unwrap().display().to_string())
        .collect();
    // The walk saw what these commands create.
    for expected in ["id.key", "catalog.sqlite", "locks", "base-cache", "tmp"] {
        assert!(
            names.iter().any(|n| n == expected),
            "no {expected} in {names:?}"
        );
    }
    let wrong: Vec<String> = entries
        .iter()
        .filter(|(_, m, is_dir)| *m != if *is_dir { 0o700 } else { 0o600 })
        .map(|(p, m, _)| format!("{} {m:o}", p.display()))
        .collect();
    assert!(wrong.is_empty(), "not private: {wrong:#?}");
    // Temporary files are gone once their command is done.
    let tmp: Vec<_> = std::fs::read_dir(v.state().join("tmp"))
        .unwrap()
        .flatten()
        .collect();
    assert!(tmp.is_empty(), "left in tmp: {tmp:?}");

    assert_eq!(mode(&restored), 0o600, "restored dump");
    assert_eq!(mode(&restored_db), 0o600, "restored SQLite database");
    assert_eq!(
        std::fs::read(&restored).unwrap(),
        std::fs::read(&input).unwrap()
    );
}
