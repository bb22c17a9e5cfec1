//! Crash consistency: `lockbox backup` killed with SIGKILL at seeded random
//! moments — while chunking, uploading, writing the manifest or updating the
//! catalog — against the local backend and the S3 test server.
//!
//! After every kill: no visible snapshot is incomplete (each new one
//! restores byte-identical), `verify` is clean, the catalog opens
//! (`status`, and SQLite's integrity check), and the next backup of the same
//! input succeeds and reuses every chunk the killed run landed.
//!
//! Iterations: 10 locally and 5 on S3 by default (CI runs these);
//! `LOCKBOX_CRASH_ITERATIONS=N` sets both, e.g. the long run
//! `LOCKBOX_CRASH_ITERATIONS=50 cargo test --release --test it crash:: -- --nocapture`.
//! The seed is printed; `LOCKBOX_CRASH_SEED=N` replays a run. The S3 test
//! runs on each server (`crash::moto::sigkill_mid_backup_s3`,
//! `crash::seaweedfs::sigkill_mid_backup_s3`); every 10 kills get a fresh
//! server and vault (moto keeps all objects in memory).

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use lockbox_vault::storage::s3::test_server::ServerKind;
use lockbox_vault::storage::{LockMode, ReadBackend};
use serde_json::Value;

use crate::support::local;
use crate::support::{self, Vault, mixed_data};

const MIB: usize = 1 << 20;

fn iterations(default: u64) -> u64 {
    std::env::var("LOCKBOX_CRASH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn seed(test: &str) -> u64 {
    let seed = std::env::var("LOCKBOX_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    // Straight to stderr, so it shows even when the harness captures output.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr().lock(),
        "{test}: crash test seed {seed} (LOCKBOX_CRASH_SEED={seed} replays it)"
    );
    seed
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The chunk objects now in the repository.
type ChunkLister<'a> = Box<dyn Fn() -> HashSet<String> + 'a>;

fn snapshots(v: &Vault) -> Vec<Value> {
    let out = v.ok(&["snapshots", "--json", "--source", "db"]);
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// A backup of `input` (a file) killed `delay` after it started; whether it
/// had already finished.
fn killed_backup(v: &Vault, input: &PathBuf, delay: Duration) -> bool {
    let mut child = v
        .cmd()
        .args(["-q", "backup", "--stdin", "db"])
        .stdin(Stdio::from(std::fs::File::open(input).unwrap()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "backup failed before the kill: {status}");
            return true;
        }
        if start.elapsed() >= delay {
            let _ = child.kill(); // SIGKILL
            child.wait().unwrap();
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn catalog_intact(v: &Vault) {
    v.ok(&["status", "--json"]);
    let c = rusqlite::Connection::open(v.state().join("catalog.sqlite")).unwrap();
    let r: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(r, "ok", "catalog damaged");
}

fn verify_clean(v: &Vault, args: &[&str]) {
    let mut all = vec!["verify", "--json"];
    all.extend_from_slice(args);
    let out = v.cmd().args(&all).output().unwrap();
    assert!(
        out.status.success(),
        "verify {args:?} found problems: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn crash_loop(test: &str, seed: u64, v: &Vault, chunks: ChunkLister, n: u64, len: usize) {
    let mut rng = Rng(seed | 1);
    let input = v.path().join("input.bin");

    // Calibrate: how long one full backup of this size takes here.
    std::fs::write(&input, mixed_data(len, rng.next())).unwrap();
    let t = Instant::now();
    assert!(killed_backup(v, &input, Duration::from_secs(600)));
    let mut full = t.elapsed();
    let mut seen: HashSet<String> = snapshots(v)
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen.len(), 1, "the calibration backup made no snapshot");
    eprintln!("{test}: a full backup of {} MiB takes {full:?}", len / MIB);

    let (mut landed_total, mut finished_runs, mut visible_after_kill) = (0usize, 0, 0);
    for i in 0..n {
        // Fresh data each time: what the next backup reuses, the killed run landed.
        let data = mixed_data(len, rng.next());
        std::fs::write(&input, &data).unwrap();
        let before = chunks();
        // 0.1–1.3 × the slowest full run so far: some kills hit the very
        // end (manifest, catalog), a few come after the run finished.
        let delay = full.mul_f64((100 + rng.next() % 1200) as f64 / 1000.0);
        let finished = killed_backup(v, &input, delay);
        finished_runs += usize::from(finished);
        let landed: HashSet<String> = chunks().difference(&before).cloned().collect();
        landed_total += landed.len();

        // Every visible snapshot is complete: the new ones restore exactly.
        let snaps = snapshots(v);
        let ids: HashSet<String> = snaps
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect();
        assert!(
            ids.is_superset(&seen),
            "iteration {i}: a snapshot disappeared"
        );
        for s in snaps
            .iter()
            .filter(|s| !seen.contains(s["id"].as_str().unwrap()))
        {
            let id = s["short_id"].as_str().unwrap();
            assert!(
                v.restore_bytes("db", id) == data,
                "iteration {i}: snapshot {id} left by the killed run restores wrong bytes"
            );
            visible_after_kill += 1;
        }
        seen = ids;
        verify_clean(v, &[]);
        catalog_intact(v);

        // The next backup succeeds and reuses what the killed run landed.
        let t = Instant::now();
        let s = v.backup_bytes("db", &data);
        // Runs with a base cache (delta chunks) are slower than the first.
        full = full.max(t.elapsed());
        let reused = s["reused_chunks"].as_u64().unwrap() as usize;
        eprintln!(
            "{test} iteration {i}: killed after {delay:?}{} with {} chunks landed; \
             the next backup reused {reused} of {}",
            if finished { " (already finished)" } else { "" },
            landed.len(),
            s["chunks"]
        );
        assert!(
            reused >= landed.len(),
            "iteration {i}: {} chunks landed but only {reused} were reused",
            landed.len()
        );
        assert!(v.restore_bytes("db", "latest") == data, "iteration {i}");
        seen.insert(s["snapshot"].as_str().unwrap().to_string());
    }
    // Everything stored is readable and decrypts to what the manifests say.
    verify_clean(
        v,
        &["--read-data", "--identity", v.identity.to_str().unwrap()],
    );
    eprintln!(
        "{test}: {n} kills, {landed_total} chunks landed by killed runs, \
         {visible_after_kill} snapshots completed before the kill, {finished_runs} runs had \
         already exited"
    );
    assert!(
        n < 5 || landed_total > 0,
        "no kill landed any chunk: the kill points are all too early"
    );
}

#[test]
fn sigkill_mid_backup_local() {
    let v = Vault::new("");
    let repo = v.repo();
    let chunks: ChunkLister = Box::new(move || {
        local::objects(&repo, "chunks")
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    });
    let test = "sigkill_mid_backup_local";
    crash_loop(test, seed(test), &v, chunks, iterations(10), 48 * MIB);
}

/// Kills per S3 test server: moto holds every object version in memory, so
/// a long run starts a fresh server (and vault) for each batch rather than
/// grow one server past what the machine has.
const S3_BATCH: u64 = 10;

lockbox_vault::on_each_s3_server!(sigkill_mid_backup_s3);

fn sigkill_mid_backup_s3(kind: ServerKind) {
    let test = &format!("sigkill_mid_backup_s3 on {kind}");
    let n = iterations(5);
    let base_seed = seed(test);
    for batch in 0..n.div_ceil(S3_BATCH) {
        let Some(s) = support::s3_server_kind(kind) else {
            return;
        };
        let bucket = s.bucket(true);
        let v = Vault::s3(&s, &bucket, "");
        v.ok(&["init"]);
        let reader = s.backend(&format!("s3://{bucket}/vault"), LockMode::Governance);
        let chunks: ChunkLister = Box::new(move || {
            let mut out = HashSet::new();
            reader
                .list("chunks/", &mut |i| {
                    out.insert(i.key);
                    Ok(())
                })
                .unwrap();
            out
        });
        let kills = S3_BATCH.min(n - batch * S3_BATCH);
        let seed = base_seed.wrapping_add(batch);
        eprintln!("{test}: batch {batch} ({kills} kills) on a fresh server, seed {seed}");
        crash_loop(test, seed, &v, chunks, kills, 24 * MIB);
    }
}
