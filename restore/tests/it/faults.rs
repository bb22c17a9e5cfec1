//! Storage faults: backup and restore through the fault-injecting decorator
//! (`storage::faulty`) around real backends — the local one, and each S3 test
//! server (moto and SeaweedFS) — under the retry decorator every command
//! uses. Also real faults: the S3 server becomes unreachable mid-run (its
//! port closed, connections in flight reset) and comes back, on each server.
//!
//! What must hold: transient faults are retried and change nothing; a put
//! that landed but reported failure is a success (put-if-absent, content
//! addressing); persistent faults give a clear error naming the object and
//! no snapshot; restore never hands out a wrong byte.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use lockbox_restore::{RestoreError, RestoreOptions};
use lockbox_vault::backup::{self, BackupError, BackupOptions, BackupSummary, NoProgress};
use lockbox_vault::catalog::Catalog;
use lockbox_vault::error::ErrorClass;
use lockbox_vault::ids::IdKey;
use lockbox_vault::keys::{self, Identities, Recipients};
use lockbox_vault::repository::{self, WriteRepo};
use lockbox_vault::source::DumpStream;
use lockbox_vault::storage::faulty::{Fault, Faulty, Op, Rule, Trigger};
use lockbox_vault::storage::s3::test_server::{ServerKind, TestServer};
use lockbox_vault::storage::{
    LocalBackend, LockMode, ReadBackend, RetryPolicy, Retrying, WriteBackend,
};
use time::OffsetDateTime;

use crate::support::{self, proxy};

const MIB: usize = 1 << 20;

/// Quick retries, so the tests spend little time asleep.
fn policy() -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        first_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        rereads: 2,
        reread_delay: Duration::from_millis(10),
    }
}

/// A repository on a real backend, and what a backup and a restore host hold.
struct Repo {
    dir: tempfile::TempDir,
    raw: Arc<dyn WriteBackend>,
    id_key: IdKey,
    identities: Identities,
    repo_id: String,
    /// Keeps the S3 server alive.
    _server: Option<TestServer>,
}

impl Repo {
    fn init(
        raw: Arc<dyn WriteBackend>,
        server: Option<TestServer>,
        dir: tempfile::TempDir,
    ) -> Self {
        let (identity, recipient) = keys::generate_identity();
        let recipients = Recipients::parse(&[recipient]).unwrap();
        let until = OffsetDateTime::now_utc() + time::Duration::days(2);
        let (config, id_key) = repository::init(raw.as_ref(), &recipients, until).unwrap();
        Self {
            dir,
            raw,
            id_key,
            identities: Identities::from_x25519(vec![identity]),
            repo_id: config.id,
            _server: server,
        }
    }

    fn local() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let raw: Arc<dyn WriteBackend> =
            Arc::new(LocalBackend::open(dir.path().join("repo")).unwrap());
        Self::init(raw, None, dir)
    }

    fn s3(kind: ServerKind) -> Option<Self> {
        let server = support::s3_server_kind(kind)?;
        let bucket = server.bucket(true);
        let raw: Arc<dyn WriteBackend> =
            Arc::new(server.backend(&format!("s3://{bucket}/vault"), LockMode::Governance));
        Some(Self::init(raw, Some(server), tempfile::tempdir().unwrap()))
    }

    /// The local repository, and one on each S3 test server that can be
    /// started.
    fn all() -> Vec<(&'static str, Self)> {
        let mut out = vec![("local", Self::local())];
        for (name, kind) in [
            ("s3 on moto", ServerKind::Moto),
            ("s3 on seaweedfs", ServerKind::SeaweedFs),
        ] {
            if let Some(s3) = Self::s3(kind) {
                out.push((name, s3));
            }
        }
        out
    }

    /// `rules` injected beneath the retry decorator.
    fn faulty(&self, rules: Vec<Rule>) -> (Arc<Faulty<dyn WriteBackend>>, Arc<dyn WriteBackend>) {
        let f = Arc::new(Faulty::new(self.raw.clone(), rules));
        let retried: Arc<dyn WriteBackend> = Arc::new(Retrying::new(f.clone(), policy()));
        (f, retried)
    }

    fn catalog(&self) -> Catalog {
        Catalog::open(&self.dir.path().join("catalog.db"), &self.repo_id).unwrap()
    }

    fn backup(
        &self,
        backend: Arc<dyn WriteBackend>,
        data: &[u8],
    ) -> Result<BackupSummary, BackupError> {
        let repo = WriteRepo::open(backend, self.id_key.clone()).unwrap();
        let mut catalog = self.catalog();
        let stream = DumpStream::from_reader("db", "stdin", Box::new(Cursor::new(data.to_vec())));
        let opts = BackupOptions {
            lock_days: 1,
            lock_slack_days: 0,
            workers: 2,
            max_in_flight: 4,
            delta: None,
        };
        // Recorded as the CLI records it: the guard opens the run first.
        let path = self.dir.path().join("catalog.db");
        let guard = lockbox_vault::run::RunGuard::begin(
            &path,
            lockbox_vault::catalog::RunKind::Backup,
            "db",
        );
        let result = backup::run(&repo, &mut catalog, stream, &opts, &NoProgress);
        match &result {
            Ok(_) => {
                guard.succeed(lockbox_vault::run::RunSuccess::default());
            }
            Err(e) => {
                guard.fail(&e.to_string(), e);
            }
        }
        result
    }

    fn snapshots(&self) -> usize {
        repository::list_snapshots(self.raw.as_ref(), Some("db"))
            .unwrap()
            .len()
    }

    /// Restores the newest snapshot through `backend` into a file; the
    /// bytes, or the error (and then the file must not exist).
    fn restore(&self, backend: &dyn ReadBackend) -> Result<Vec<u8>, RestoreError> {
        let snap = repository::find_snapshot(backend, Some("db"), "latest")?;
        let target = self.dir.path().join("restored.bin");
        let _ = std::fs::remove_file(&target);
        let r = lockbox_restore::restore_to_file(
            backend,
            &self.identities,
            &snap,
            &target,
            false,
            &RestoreOptions::default(),
            &(),
        );
        match r {
            Ok(_) => Ok(std::fs::read(&target).unwrap()),
            Err(e) => {
                assert!(!target.exists(), "a failed restore left {target:?}");
                Err(e)
            }
        }
    }

    fn verify_clean(&self) {
        let report = lockbox_restore::verify::verify(
            self.raw.as_ref(),
            &self.id_key,
            &lockbox_restore::verify::VerifyOptions {
                read_data: true,
                identities: Some(self.identities.clone()),
                ..Default::default()
            },
            &(),
        )
        .unwrap();
        assert!(report.ok(), "verify found problems: {:?}", report.problems);
    }
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    // Incompressible-ish, so chunk boundaries and sizes vary.
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            if (i / 4096) % 3 == 0 {
                b"row,with,text\n"[i % 14]
            } else {
                s as u8
            }
        })
        .collect()
}

#[test]
fn backup_rides_out_transient_errors_throttling_and_latency() {
    for (name, r) in Repo::all() {
        let (f, backend) = r.faulty(vec![
            Rule::new(Op::Put, Fault::Transient)
                .keys("chunks/")
                .when(Trigger::FirstPerKey(1)),
            // Per key, not every n-th call overall: with uploads in parallel a
            // global count could throttle one key on every retry and exhaust
            // its attempts (a flake seen in CI). Chunks now fail their first
            // two attempts, other keys their first two, all within 4.
            Rule::new(Op::Put, Fault::Throttle).when(Trigger::FirstPerKey(2)),
            Rule::new(Op::Put, Fault::Latency(Duration::from_millis(30))).when(Trigger::Every(2)),
            Rule::new(Op::Extend, Fault::Throttle).when(Trigger::FirstPerKey(1)),
            Rule::new(Op::List, Fault::Transient).when(Trigger::FirstPerKey(1)),
            Rule::new(Op::Get, Fault::Transient).when(Trigger::FirstPerKey(1)),
            Rule::new(Op::Flush, Fault::Transient).when(Trigger::Every(2)),
        ]);
        let input = data(12 * MIB, 1);
        let s = r
            .backup(backend.clone(), &input)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(s.chunks >= 3, "{name}: {s:?}");
        for i in [0, 1, 3, 4] {
            assert!(f.fired(i) > 0, "{name}: rule {i} never fired");
        }
        assert_eq!(r.snapshots(), 1, "{name}");
        assert!(
            r.restore(backend.as_ref()).unwrap() == input,
            "{name}: wrong bytes"
        );
        r.verify_clean();
    }
}

#[test]
fn put_that_landed_but_reported_failure_is_a_success() {
    for (name, r) in Repo::all() {
        // Every object, the manifest included, lands on the first try and
        // is reported as failed.
        let (f, backend) = r.faulty(vec![
            Rule::new(Op::Put, Fault::LandThenFail).when(Trigger::FirstPerKey(1)),
        ]);
        let input = data(8 * MIB, 2);
        let s = r
            .backup(backend.clone(), &input)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(f.fired(0) >= 2, "{name}: chunks and manifest");
        assert!(s.chunks >= 2, "{name}: {s:?}");
        assert_eq!(r.snapshots(), 1, "{name}");
        // What the manifest records is what storage holds.
        r.verify_clean();
        assert!(
            r.restore(backend.as_ref()).unwrap() == input,
            "{name}: wrong bytes"
        );
        // A second backup of the same data reuses everything.
        let again = r.backup(backend, &input).unwrap();
        assert_eq!(again.added_bytes, 0, "{name}");
    }
}

#[test]
fn permanent_put_error_fails_the_backup_with_no_snapshot() {
    for (name, r) in Repo::all() {
        let (f, backend) = r.faulty(vec![
            Rule::new(Op::Put, Fault::Permanent)
                .keys("chunks/")
                .when(Trigger::Every(4)),
        ]);
        let input = data(12 * MIB, 3);
        let err = r.backup(backend, &input).unwrap_err().to_string();
        assert!(f.fired(0) > 0);
        assert!(
            err.contains("AccessDenied") && err.contains("chunks/"),
            "{name}: {err}"
        );
        assert!(
            err.contains(&r.raw.location()),
            "{name}: error names no location: {err}"
        );
        assert_eq!(r.snapshots(), 0, "{name}: a snapshot appeared");
        let runs = r.catalog().runs(Some("db")).unwrap();
        assert_eq!(runs.len(), 1);
        assert!(
            runs[0]
                .error
                .as_deref()
                .unwrap_or("")
                .contains("AccessDenied"),
            "{name}"
        );

        // Healthy storage again: the next backup succeeds and reuses what landed.
        let s = r.backup(r.raw.clone(), &input).unwrap();
        assert!(s.reused_chunks > 0, "{name}: nothing reused: {s:?}");
        assert!(r.restore(r.raw.as_ref()).unwrap() == input);
    }
}

#[test]
fn transient_errors_that_never_stop_fail_the_backup_with_no_snapshot() {
    for (name, r) in Repo::all() {
        // The manifest put never gets through: everything else landed.
        let (f, backend) = r.faulty(vec![Rule::new(Op::Put, Fault::Throttle).keys("snapshots/")]);
        let input = data(4 * MIB, 4);
        let err = r.backup(backend, &input).unwrap_err().to_string();
        assert_eq!(f.fired(0), u64::from(policy().attempts), "{name}");
        assert!(
            err.contains("SlowDown") && err.contains("gave up after 4 attempts"),
            "{name}: {err}"
        );
        assert!(
            err.contains("snapshots/db/"),
            "{name}: the manifest is not named: {err}"
        );
        assert_eq!(r.snapshots(), 0, "{name}");
    }
}

#[test]
fn restore_rereads_truncated_damaged_and_failed_reads() {
    for (name, r) in Repo::all() {
        let input = data(12 * MIB, 5);
        r.backup(r.raw.clone(), &input).unwrap();
        let (f, backend) = r.faulty(vec![
            Rule::new(Op::Get, Fault::Truncate)
                .keys("chunks/")
                .when(Trigger::FirstPerKey(1)),
            // Once in all: a key's first read may be truncated (rule 0), so
            // two flips of its two re-reads would exhaust them.
            Rule::new(Op::Get, Fault::Flip)
                .keys("chunks/")
                .when(Trigger::Every(2))
                .limit(1),
            // Limited: with parallel reads a global count could hit one key on
            // every attempt; three in all can never exhaust a key's four.
            Rule::new(Op::Get, Fault::Transient)
                .when(Trigger::Every(3))
                .limit(3),
            Rule::new(Op::Get, Fault::Latency(Duration::from_millis(20))).when(Trigger::Every(2)),
            Rule::new(Op::List, Fault::Throttle).when(Trigger::FirstPerKey(1)),
        ]);
        let back = r
            .restore(backend.as_ref())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(back == input, "{name}: wrong bytes");
        for i in 0..3 {
            assert!(f.fired(i) > 0, "{name}: rule {i} never fired");
        }
    }
}

#[test]
fn restore_reports_persistent_damage_naming_the_object_and_writes_nothing() {
    for (name, r) in Repo::all() {
        let input = data(8 * MIB, 6);
        r.backup(r.raw.clone(), &input).unwrap();
        for fault in [Fault::Truncate, Fault::Flip] {
            let (f, backend) = r.faulty(vec![Rule::new(Op::Get, fault).keys("chunks/")]);
            let err = r.restore(backend.as_ref()).unwrap_err();
            assert_eq!(
                err.class(),
                ErrorClass::Integrity,
                "{name} {fault:?}: {err}"
            );
            let text = err.to_string();
            assert!(
                text.contains("chunks/"),
                "{name} {fault:?}: no object named: {text}"
            );
            // Read once, then re-read twice, before giving up.
            assert!(f.fired(0) >= 3, "{name} {fault:?}");
        }
        // A storage that keeps failing: a clear error naming the object.
        let (_, backend) = r.faulty(vec![Rule::new(Op::Get, Fault::Transient).keys("chunks/")]);
        let err = r.restore(backend.as_ref()).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.class(), ErrorClass::Operational, "{name}: {text}");
        assert!(
            text.contains("chunks/") && text.contains("gave up after 4 attempts"),
            "{name}: {text}"
        );
    }
}

mod moto {
    #[test]
    fn s3_outage_mid_run_is_ridden_out_or_fails_cleanly() {
        super::s3_outage_mid_run_is_ridden_out_or_fails_cleanly(
            lockbox_vault::storage::s3::test_server::ServerKind::Moto,
        )
    }
}

mod seaweedfs {
    /// Passes on SeaweedFS in about 26 s, but in one full-suite run it took
    /// 330 s: a request caught by the outage stalled instead of being reset,
    /// and the SDK waited out its per-attempt timeout. Run it by hand
    /// (`-- --ignored seaweedfs::s3_outage`) until a stalled attempt has a
    /// shorter timeout.
    #[test]
    #[ignore = "can stall for the S3 SDK's per-attempt timeout; run by hand"]
    fn s3_outage_mid_run_is_ridden_out_or_fails_cleanly() {
        super::s3_outage_mid_run_is_ridden_out_or_fails_cleanly(
            lockbox_vault::storage::s3::test_server::ServerKind::SeaweedFs,
        )
    }
}

/// Real faults: the S3 server's port goes dark mid-backup and mid-restore
/// (connections refused, those in flight reset), then comes back.
fn s3_outage_mid_run_is_ridden_out_or_fails_cleanly(kind: ServerKind) {
    let Some(server) = support::s3_server_kind(kind) else {
        return;
    };
    let bucket = server.bucket(true);
    let port: u16 = server.endpoint.rsplit(':').next().unwrap().parse().unwrap();
    let proxy_owned = proxy::Proxy::start(port);
    let proxy = &proxy_owned;
    let url = format!("s3://{bucket}/vault");
    let direct: Arc<dyn WriteBackend> = Arc::new(server.backend(&url, LockMode::Governance));
    let r = Repo::init(direct, None, tempfile::tempdir().unwrap());
    let via_proxy = server.backend_via(
        &format!("http://127.0.0.1:{}", proxy.port()),
        &url,
        LockMode::Governance,
    );
    // About 6 s of patience: 0.25 + 0.5 + 1 + 2 + 2 s, plus the SDK's own.
    let patient = RetryPolicy {
        attempts: 6,
        first_delay: Duration::from_millis(250),
        max_delay: Duration::from_secs(2),
        ..RetryPolicy::default()
    };
    let backend: Arc<dyn WriteBackend> = Arc::new(Retrying::new(Arc::new(via_proxy), patient));

    // An outage of about 1.5 s during a backup.
    let input = data(24 * MIB, 7);
    let s = std::thread::scope(|scope| {
        scope.spawn(move || {
            proxy.wait_for_requests(8);
            proxy.down();
            std::thread::sleep(Duration::from_millis(1500));
            proxy.up();
        });
        r.backup(backend.clone(), &input)
    })
    .expect("a short outage is ridden out");
    assert!(proxy.resets() > 0, "the outage hit no connection");
    assert_eq!(r.snapshots(), 1);
    eprintln!("backup through the outage: {} chunks", s.chunks);

    // And during a restore.
    let back = std::thread::scope(|scope| {
        let before = proxy.requests();
        scope.spawn(move || {
            proxy.wait_for_requests(before + 4);
            proxy.down();
            std::thread::sleep(Duration::from_millis(1500));
            proxy.up();
        });
        r.restore(backend.as_ref())
    })
    .expect("a short outage is ridden out");
    assert!(back == input, "wrong bytes after the outage");

    // An outage that does not end: a clear error, and no new snapshot.
    let input2 = data(8 * MIB, 8);
    let err = std::thread::scope(|scope| {
        let before = proxy.requests();
        scope.spawn(move || {
            proxy.wait_for_requests(before + 4);
            proxy.down();
        });
        r.backup(backend.clone(), &input2)
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("gave up after 6 attempts"), "{err}");
    assert!(err.contains(&format!("s3://{bucket}/vault")), "{err}");
    assert_eq!(r.snapshots(), 1, "a snapshot appeared during the outage");
    proxy.up();
    // Back up again: the failed run's chunks are reused, the data restores.
    let s = r.backup(backend.clone(), &input2).unwrap();
    assert_eq!(r.snapshots(), 2);
    eprintln!(
        "after the outage: {} of {} chunks reused",
        s.reused_chunks, s.chunks
    );
    assert!(r.restore(backend.as_ref()).unwrap() == input2);
    r.verify_clean();
}
