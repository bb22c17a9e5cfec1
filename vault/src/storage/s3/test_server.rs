//! Starts the moto S3 test server with `tests/support/s3-server` for one test
//! and stops it (by pid) when dropped.

use std::path::PathBuf;
use std::process::Command;

use super::{LockMode, S3Backend, S3Settings};

pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/support/s3-server");

pub struct TestServer {
    pub endpoint: String,
    pub pid: u32,
    _dir: tempfile::TempDir,
    pub admin: S3Backend,
    buckets: std::sync::atomic::AtomicU32,
}

impl TestServer {
    /// Starts a server, or returns `None` after printing a loud `SKIPPED:`
    /// line when it cannot be started. Under `CI` that is a failure instead.
    pub fn start_or_skip(test: &str) -> Option<Self> {
        match Self::start() {
            Ok(s) => Some(s),
            Err(e) if std::env::var_os("CI").is_some() => {
                panic!("{test}: cannot start the S3 test server (CI is set): {e}")
            }
            Err(e) => {
                // Straight to the stderr handle: the harness captures
                // `eprintln!` of passing tests, and a silent skip is a pass.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "SKIPPED: {test}: cannot start the S3 test server (set CI to make this \
                     an error): {e}"
                );
                None
            }
        }
    }

    /// Starts a server for the caller to skip or fail on as it decides.
    pub fn start() -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let pidfile: PathBuf = dir.path().join("moto.pid");
        let out = Command::new(SCRIPT)
            .arg(&pidfile)
            .output()
            .map_err(|e| format!("running {SCRIPT}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{SCRIPT} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let endpoint = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let pid: u32 = std::fs::read_to_string(&pidfile)
            .map_err(|e| e.to_string())?
            .trim()
            .parse()
            .map_err(|e| format!("pid file: {e}"))?;
        let admin = S3Backend::open_with_static_credentials(
            "s3://admin-unused",
            &settings(&endpoint),
            LockMode::Compliance,
            "test",
            "test",
        )
        .map_err(|e| e.to_string())?;
        Ok(Self {
            endpoint,
            pid,
            _dir: dir,
            admin,
            buckets: std::sync::atomic::AtomicU32::new(0),
        })
    }

    /// Creates a fresh bucket, with Object Lock (and so versioning) or without.
    pub fn bucket(&self, object_lock: bool) -> String {
        let n = self
            .buckets
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let name = format!("lockbox-test-{n}");
        self.admin
            .block_on(
                self.admin
                    .client()
                    .create_bucket()
                    .bucket(&name)
                    .object_lock_enabled_for_bucket(object_lock)
                    .send(),
            )
            .expect("create bucket");
        name
    }

    pub fn backend(&self, url: &str, mode: LockMode) -> S3Backend {
        S3Backend::open_with_static_credentials(
            url,
            &settings(&self.endpoint),
            mode,
            "test",
            "test",
        )
        .expect("open S3 backend")
    }
}

fn settings(endpoint: &str) -> S3Settings {
    S3Settings {
        endpoint: Some(endpoint.to_string()),
        region: Some("us-east-1".into()),
        path_style: true,
        ..Default::default()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
    }
}
