//! Concurrent writers, the scale-out path: several `lockbox backup`
//! processes with their own state directories write one repository at the
//! same time — different sources and the same source, on the local backend
//! and on each S3 test server (`concurrent::moto::concurrent_writers_s3`,
//! `concurrent::seaweedfs::concurrent_writers_s3`). Both snapshots are valid, data shared between
//! them is stored once, no object is lost, and `catalog rebuild` on a fresh
//! host sees every snapshot.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use lockbox_vault::storage::s3::test_server::ServerKind;
use lockbox_vault::storage::{LockMode, ReadBackend};
use serde_json::Value;

use crate::support::{self, Vault, mixed_data};

const MIB: usize = 1 << 20;

lockbox_vault::on_each_s3_server!(concurrent_writers_s3);

/// Another backup host of `v`'s repository: its own state dir, same ID key.
struct Host<'a> {
    v: &'a Vault,
    config: PathBuf,
}

impl<'a> Host<'a> {
    fn new(v: &'a Vault, name: &str) -> Self {
        let (config, state) = v.other_host(name);
        std::fs::create_dir(&state).unwrap();
        std::fs::copy(v.state().join("id.key"), state.join("id.key")).unwrap();
        Self { v, config }
    }

    fn cmd(&self) -> Command {
        let mut c = support::lockbox();
        c.arg("--config")
            .arg(&self.config)
            .env("NO_COLOR", "1")
            .env_remove("LOCKBOX_IDENTITY")
            .envs(self.v.env.iter().map(|(k, v)| (k, v)));
        c
    }

    fn ok(&self, args: &[&str]) -> Value {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }
}

/// Starts backups of `(host, source, data)` all at once; their summaries.
fn backup_at_once(runs: &[(&Host, &str, &[u8])]) -> Vec<Value> {
    let children: Vec<_> = runs
        .iter()
        .enumerate()
        .map(|(i, (host, source, data))| {
            let file = host.v.path().join(format!("concurrent-input-{i}.bin"));
            std::fs::write(&file, data).unwrap();
            host.cmd()
                .args(["backup", "--json", "--stdin", source])
                .stdin(Stdio::from(std::fs::File::open(&file).unwrap()))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "a concurrent backup failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect()
}

fn restore(v: &Vault, source: &str, snapshot: &str) -> Vec<u8> {
    v.restore_bytes(source, &snapshot[..16])
}

/// Runs the scenario on `v` (initialised); `chunks` lists every stored
/// version of every chunk object, with its size.
///
/// Versions rather than keys: two writers that put the same new chunk at
/// the same moment both send `If-None-Match: *`. Real S3 lets exactly one of
/// them land; the moto test server checks and writes in two steps, so both
/// can land as two versions of one key (two encryptions of the same
/// plaintext, both locked, either restores). Counting versions keeps the
/// assertion exact on every server: every stored version was counted as
/// added by exactly the writer that stored it. On SeaweedFS, atomic like
/// S3, the S3 test also checks that no key got a second version.
fn scenario(v: &Vault, chunks: &dyn Fn() -> Vec<(String, u64)>) {
    let a = Host::new(v, "host-a");
    let b = Host::new(v, "host-b");

    // Different sources that share half their data, at the same time.
    let common = mixed_data(12 * MIB, 1);
    let orders = [common.clone(), mixed_data(12 * MIB, 2)].concat();
    let users = [common.clone(), mixed_data(12 * MIB, 3)].concat();
    let s = backup_at_once(&[(&a, "orders", &orders), (&b, "users", &users)]);
    assert!(restore(v, "orders", s[0]["snapshot"].as_str().unwrap()) == orders);
    assert!(restore(v, "users", s[1]["snapshot"].as_str().unwrap()) == users);
    let stored: u64 = chunks().iter().map(|(_, n)| n).sum();
    let both = s[0]["stored_bytes"].as_u64().unwrap() + s[1]["stored_bytes"].as_u64().unwrap();
    eprintln!("different sources: {stored} bytes stored for {both} referenced");
    // The common half is stored once (chunk boundaries resynchronise soon
    // after the data diverges).
    assert!(
        (stored as f64) < 0.85 * both as f64,
        "no dedup across hosts: {stored} stored of {both}"
    );
    // Every new byte was counted by exactly one writer: put-if-absent.
    let added = s[0]["added_bytes"].as_u64().unwrap() + s[1]["added_bytes"].as_u64().unwrap();
    assert_eq!(added, stored, "added bytes do not add up to what is stored");

    // The same source, the same data, at the same time.
    let day2 = [orders.clone(), mixed_data(4 * MIB, 4)].concat();
    let before: u64 = chunks().iter().map(|(_, n)| n).sum();
    let s = backup_at_once(&[(&a, "orders", &day2), (&b, "orders", &day2)]);
    assert_ne!(
        s[0]["snapshot"], s[1]["snapshot"],
        "two runs, two snapshots"
    );
    for r in &s {
        assert!(restore(v, "orders", r["snapshot"].as_str().unwrap()) == day2);
    }
    let after: u64 = chunks().iter().map(|(_, n)| n).sum();
    let added = s[0]["added_bytes"].as_u64().unwrap() + s[1]["added_bytes"].as_u64().unwrap();
    assert_eq!(added, after - before, "the same source: stored twice?");
    assert!(
        after - before < s[0]["stored_bytes"].as_u64().unwrap() / 2,
        "day 2 of the same data was not deduplicated"
    );

    // No lost objects, and no stray ones: every stored chunk is referenced
    // and every referenced object is there, intact, and decrypts.
    let out = v
        .cmd()
        .args(["verify", "--json", "--read-data", "--identity"])
        .arg(&v.identity)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "verify: {report}");
    assert_eq!(report["snapshots"], 4);
    let keys: HashSet<String> = chunks().into_iter().map(|(k, _)| k).collect();
    assert_eq!(report["objects"].as_u64().unwrap() as usize, keys.len());

    // A fresh host sees all four snapshots after `catalog rebuild`.
    let c = Host::new(v, "host-c");
    c.ok(&["catalog", "rebuild"]);
    let conn = rusqlite::Connection::open(v.path().join("host-c").join("catalog.sqlite")).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM snapshots", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 4, "catalog rebuild missed snapshots");
    let listed = c.ok(&["snapshots", "--json"]);
    let sources: HashSet<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, HashSet::from(["orders", "users"]));
}

#[test]
fn concurrent_writers_local() {
    let v = Vault::new("");
    let repo = v.repo();
    scenario(&v, &|| {
        let mut out = Vec::new();
        for f in v.chunk_files() {
            let size = std::fs::metadata(&f).unwrap().len();
            out.push((f.strip_prefix(&repo).unwrap().display().to_string(), size));
        }
        out
    });
}

fn concurrent_writers_s3(kind: ServerKind) {
    let Some(s) = support::s3_server_kind(kind) else {
        return;
    };
    let bucket = s.bucket(true);
    let v = Vault::s3(&s, &bucket, "");
    v.ok(&["init"]);
    let reader = s.backend(&format!("s3://{bucket}/vault"), LockMode::Compliance);
    scenario(&v, &|| {
        let mut out = Vec::new();
        reader
            .list_versions("chunks/", &mut |i| {
                assert!(!i.delete_marker, "a backup deleted {}", i.key);
                out.push((i.key, i.size));
                Ok(())
            })
            .unwrap();
        if kind.enforces_like_s3() {
            let keys: HashSet<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                keys.len(),
                out.len(),
                "{kind}: If-None-Match let a second version of a chunk land"
            );
        }
        out
    });
}
