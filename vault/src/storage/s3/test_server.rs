//! Starts an S3 test server for one test and stops it (by pid) when dropped:
//! moto (`tests/support/s3-server`), an emulator that accepts any
//! credentials, or SeaweedFS (`tests/support/seaweedfs-server`), a real
//! object store that enforces Object Lock and checks signatures against
//! its identities file. [`ServerKind`] says which, and what each enforces.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::{LockMode, S3Backend, S3Settings};

/// The moto launcher.
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/support/s3-server");
/// The SeaweedFS launcher.
pub const SEAWEEDFS_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/support/seaweedfs-server"
);

/// Which S3 test server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// moto, pinned in `tests/support/s3-server`: an in-memory emulator.
    Moto,
    /// SeaweedFS (`weed mini`), pinned in `tests/support/seaweedfs-server`.
    SeaweedFs,
}

impl ServerKind {
    /// Both servers, moto first.
    pub const ALL: [ServerKind; 2] = [ServerKind::Moto, ServerKind::SeaweedFs];

    /// Short name, used in test names and messages.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Moto => "moto",
            ServerKind::SeaweedFs => "seaweedfs",
        }
    }

    /// The script that starts it.
    pub fn script(self) -> &'static str {
        match self {
            ServerKind::Moto => SCRIPT,
            ServerKind::SeaweedFs => SEAWEEDFS_SCRIPT,
        }
    }

    /// Whether the server behaves like S3 where moto does not: it refuses
    /// to shorten a COMPLIANCE retention or turn it into GOVERNANCE (with or
    /// without the bypass header), and `If-None-Match: *` is atomic, so
    /// concurrent puts of one key land exactly one version. moto 5.1.22
    /// does neither (see vault/FORMAT.md, "Assumptions about S3 and Object
    /// Lock").
    pub fn enforces_like_s3(self) -> bool {
        match self {
            ServerKind::Moto => false,
            ServerKind::SeaweedFs => true,
        }
    }

    /// The credentials the server accepts for its admin identity: moto
    /// takes any; SeaweedFS checks them against the identities file its
    /// script writes.
    fn admin_credentials(self) -> (&'static str, &'static str) {
        match self {
            ServerKind::Moto => ("test", "test"),
            ServerKind::SeaweedFs => ("lockbox-test-admin", "lockbox-test-admin-secret"),
        }
    }
}

impl std::fmt::Display for ServerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Runs `$name(kind)` as a test on each server: one module per server
/// (`moto::$name`, `seaweedfs::$name`), so a failure names the server and
/// `cargo test seaweedfs` selects one. The functions take a [`ServerKind`].
#[macro_export]
#[doc(hidden)]
macro_rules! on_each_s3_server {
    ($($name:ident),* $(,)?) => {
        mod moto {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::storage::s3::test_server::ServerKind::Moto)
                }
            )*
        }
        mod seaweedfs {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::storage::s3::test_server::ServerKind::SeaweedFs)
                }
            )*
        }
    };
}

pub struct TestServer {
    pub kind: ServerKind,
    pub endpoint: String,
    /// The server's pid; SeaweedFS's is also its process group.
    pub pid: u32,
    /// Keys of an identity that may do everything (moto accepts any keys).
    pub access_key: String,
    pub secret_key: String,
    /// Holds the pid file and, for SeaweedFS, its data, identities and log.
    dir: Option<tempfile::TempDir>,
    pub admin: S3Backend,
    buckets: std::sync::atomic::AtomicU32,
}

impl TestServer {
    /// Starts moto, or returns `None` after printing a loud `SKIPPED:` line
    /// when it cannot be started. Under `CI` that is a failure instead.
    pub fn start_or_skip(test: &str) -> Option<Self> {
        Self::start_or_skip_kind(test, ServerKind::Moto)
    }

    /// Starts `kind`, or returns `None` after printing a loud `SKIPPED:`
    /// line when it cannot be started. Under `CI` that is a failure instead.
    pub fn start_or_skip_kind(test: &str, kind: ServerKind) -> Option<Self> {
        match Self::start_kind(kind) {
            Ok(s) => Some(s),
            Err(e) if std::env::var_os("CI").is_some() => {
                panic!("{test}: cannot start the {kind} S3 test server (CI is set): {e}")
            }
            Err(e) => {
                // Straight to the stderr handle: the harness captures
                // `eprintln!` of passing tests, and a silent skip is a pass.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "SKIPPED: {test}: cannot start the {kind} S3 test server (set CI to make \
                     this an error): {e}"
                );
                None
            }
        }
    }

    /// Starts moto for the caller to skip or fail on as it decides.
    pub fn start() -> Result<Self, String> {
        Self::start_kind(ServerKind::Moto)
    }

    /// Starts `kind` for the caller to skip or fail on as it decides.
    pub fn start_kind(kind: ServerKind) -> Result<Self, String> {
        let script = kind.script();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let pidfile: PathBuf = dir.path().join(format!("{kind}.pid"));
        let out = Command::new(script)
            .arg(&pidfile)
            .output()
            .map_err(|e| format!("running {script}: {e}"))?;
        // The pid, if the script got as far as starting the server (it
        // stops it itself when it then fails).
        let pid: Option<u32> = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|p| p.trim().parse().ok());
        if !out.status.success() {
            return Err(format!(
                "{script} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let pid = pid.ok_or_else(|| format!("{script} wrote no pid to {}", pidfile.display()))?;
        let endpoint = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let (access_key, secret_key) = kind.admin_credentials();
        let admin = S3Backend::open_with_static_credentials(
            "s3://admin-unused",
            &settings(&endpoint),
            LockMode::Compliance,
            access_key,
            secret_key,
        );
        let admin = match admin {
            Ok(a) => a,
            Err(e) => {
                stop(kind, pid, Some(dir));
                return Err(e.to_string());
            }
        };
        Ok(Self {
            kind,
            endpoint,
            pid,
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            dir: Some(dir),
            admin,
            buckets: std::sync::atomic::AtomicU32::new(0),
        })
    }

    /// Creates a fresh bucket, with Object Lock (and so versioning) or
    /// without. Both servers enable versioning with Object Lock at creation,
    /// as S3 does (`x-amz-bucket-object-lock-enabled: true`).
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
            .unwrap_or_else(|e| {
                panic!(
                    "{}: create bucket {name}: {}",
                    self.kind,
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
        name
    }

    /// A backend for `url` with the admin identity's credentials.
    pub fn backend(&self, url: &str, mode: LockMode) -> S3Backend {
        self.backend_via(&self.endpoint, url, mode)
    }

    /// Like [`backend`](Self::backend) through another endpoint (a relay
    /// or proxy in front of this server).
    pub fn backend_via(&self, endpoint: &str, url: &str, mode: LockMode) -> S3Backend {
        S3Backend::open_with_static_credentials(
            url,
            &settings(endpoint),
            mode,
            &self.access_key,
            &self.secret_key,
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

/// Stops the server. moto: SIGTERM to its pid. SeaweedFS: the `stop` script
/// its launcher wrote (SIGTERM to the process group, a wait for the clean
/// shutdown of about 3 s, removal of the sockets it leaves in /tmp), run
/// detached so the test does not wait; the server's directory is removed
/// after it.
fn stop(kind: ServerKind, pid: u32, dir: Option<tempfile::TempDir>) {
    match kind {
        ServerKind::Moto => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        ServerKind::SeaweedFs => {
            let Some(dir) = dir else { return };
            let path = dir.keep();
            let stop = path.join(format!("{kind}.pid.d")).join("stop");
            let spawned = Command::new("setsid")
                .arg("sh")
                .arg("-c")
                .arg("if [ -x \"$1\" ]; then \"$1\"; else kill -- -\"$2\"; fi; rm -rf \"$3\"")
                .arg("seaweedfs-stop")
                .arg(&stop)
                .arg(pid.to_string())
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            if spawned.is_err() {
                let _ = Command::new("kill")
                    .arg("--")
                    .arg(format!("-{pid}"))
                    .stderr(Stdio::null())
                    .status();
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        stop(self.kind, self.pid, self.dir.take());
    }
}
