//! Shared harness for end-to-end tests: a fresh vault in a temp directory,
//! driven through the real `lockbox` binary.
#![allow(dead_code)]

pub mod config;
pub mod db;
pub mod local;
pub mod monitoring;
pub mod skip;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use lockbox_vault::storage::s3::test_server::{ServerKind, TestServer};

pub use config::TestConfig;

pub const BIN: &str = env!("CARGO_BIN_EXE_lockbox");

/// Where a test's `lockbox` looks for its config when the test names none:
/// a path that cannot exist, so no test ever reads the host's
/// `/etc/lockbox/lockbox.toml` (the default) by accident.
pub const NO_CONFIG: &str = "/nonexistent/lockbox-test-passes---config.toml";

/// `lockbox keygen --output identity`: writes a new identity there and
/// returns its recipient.
pub fn keygen(identity: &Path) -> String {
    let out = lockbox()
        .args(["keygen", "--output"])
        .arg(identity)
        .output()
        .expect("run keygen");
    assert!(
        out.status.success(),
        "keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Every (key, version id) stored under `prefix` of `bucket`, as the
/// server's admin lists them (test buckets stay within one page).
pub fn s3_versions(s: &TestServer, bucket: &str, prefix: &str) -> Vec<(String, String)> {
    let listed = s
        .admin
        .block_on(
            s.admin
                .client()
                .list_object_versions()
                .bucket(bucket)
                .prefix(prefix)
                .send(),
        )
        .unwrap();
    assert_ne!(listed.is_truncated(), Some(true), "test buckets stay small");
    listed
        .versions()
        .iter()
        .map(|v| {
            (
                v.key().unwrap().to_string(),
                v.version_id().unwrap().to_string(),
            )
        })
        .collect()
}

/// The `lockbox` binary as every test starts it: `LOCKBOX_CONFIG` points
/// at [`NO_CONFIG`] unless the test sets its own (`--config` wins over it),
/// and no identity comes from the environment.
pub fn lockbox() -> Command {
    let mut c = Command::new(BIN);
    c.env("LOCKBOX_CONFIG", NO_CONFIG)
        .env_remove("LOCKBOX_IDENTITY")
        .env("NO_COLOR", "1");
    c
}

/// A temp directory holding an identity, a config, a state dir and a local vault.
pub struct Vault {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub identity: PathBuf,
    pub recipient: String,
    /// Extra environment for every lockbox run (e.g. S3 test credentials).
    pub env: Vec<(String, String)>,
    /// What `config` was written from.
    settings: TestConfig,
}

impl Vault {
    /// Creates and initialises a vault with `extra` TOML appended to the config.
    pub fn new(extra: &str) -> Self {
        let v = Self::uninitialised(extra, Vec::new());
        v.ok(&["init"]);
        v
    }

    /// Creates and initialises a local vault with the config `configure`
    /// makes of the default.
    pub fn with(configure: impl FnOnce(TestConfig) -> TestConfig) -> Self {
        let v = Self::configured(|dir| configure(TestConfig::local(dir)), Vec::new());
        v.ok(&["init"]);
        v
    }

    /// A vault in `s3://BUCKET/vault` on the test server `s`, with its
    /// admin credentials in the environment (never in the config); not
    /// initialised yet. `extra` is appended to the `[repository]` section.
    pub fn s3(s: &TestServer, bucket: &str, extra: &str) -> Self {
        Self::s3_via(s, &s.endpoint, bucket, extra)
    }

    /// Like [`Vault::s3`] through `endpoint`, a relay in front of `s`.
    pub fn s3_via(s: &TestServer, endpoint: &str, bucket: &str, extra: &str) -> Self {
        Self::configured(
            |dir| TestConfig::s3(dir, endpoint, bucket).raw(extra),
            s3_env(s),
        )
    }

    /// Like [`Vault::s3`], with the config `configure` makes of the default.
    pub fn s3_with(
        s: &TestServer,
        bucket: &str,
        configure: impl FnOnce(TestConfig) -> TestConfig,
    ) -> Self {
        Self::configured(
            |dir| configure(TestConfig::s3(dir, &s.endpoint, bucket)),
            s3_env(s),
        )
    }

    /// A local vault with `extra` TOML appended to the config; no init.
    pub fn uninitialised(extra: &str, env: Vec<(String, String)>) -> Self {
        Self::configured(|dir| TestConfig::local(dir).raw(extra), env)
    }

    /// An identity, and the config `base` builds for the vault's directory
    /// with that identity's recipient added; no init.
    pub fn configured(base: impl FnOnce(&Path) -> TestConfig, env: Vec<(String, String)>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let identity = dir.path().join("identity.txt");
        let recipient = keygen(&identity);
        let settings = base(dir.path()).recipient(&recipient);
        let config = dir.path().join("lockbox.toml");
        settings.write(&config);
        Self {
            dir,
            config,
            identity,
            recipient,
            env,
            settings,
        }
    }

    /// The config this vault was created with, to change and
    /// [`Vault::rewrite_config`].
    pub fn settings(&self) -> TestConfig {
        self.settings.clone()
    }

    /// Replaces the vault's config file with `settings`.
    pub fn rewrite_config(&mut self, settings: TestConfig) {
        settings.write(&self.config);
        self.settings = settings;
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn repo(&self) -> PathBuf {
        self.path().join("repo")
    }
    pub fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    pub fn cmd(&self) -> Command {
        let mut c = lockbox();
        c.arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// A config for another host sharing this vault: same repository, its
    /// own (initially empty) state directory `name`. Returns the config path.
    pub fn other_host(&self, name: &str) -> (PathBuf, PathBuf) {
        let state = self.path().join(name);
        let cfg = self.path().join(format!("{name}.toml"));
        self.settings().state_dir(&state).write(&cfg);
        (cfg, state)
    }

    /// Runs lockbox with `args`; panics with its output unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.cmd().args(args).output().expect("run lockbox");
        assert!(
            out.status.success(),
            "lockbox {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs lockbox with `args`, expecting failure; returns (exit code, stderr).
    pub fn fails(&self, args: &[&str]) -> (i32, String) {
        let out = self.cmd().args(args).output().expect("run lockbox");
        assert!(
            !out.status.success(),
            "lockbox {args:?} unexpectedly succeeded"
        );
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Backs up `data` from stdin under `source`; returns the JSON summary.
    pub fn backup_bytes(&self, source: &str, data: &[u8]) -> serde_json::Value {
        let file = self.path().join(format!("input-{source}.bin"));
        std::fs::write(&file, data).unwrap();
        let out = self
            .cmd()
            .args(["backup", "--json", "--stdin", source])
            .stdin(Stdio::from(std::fs::File::open(&file).unwrap()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "backup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("backup --json prints JSON")
    }

    /// Restores `snapshot` of `source` to a file; returns its bytes.
    /// `restore SNAPSHOT --source SOURCE` with this vault's identity, to
    /// `output` (a path, or `-` for standard output).
    pub fn restore_args<'a>(
        &'a self,
        snapshot: &'a str,
        source: &'a str,
        output: &'a str,
    ) -> [&'a str; 8] {
        [
            "restore",
            snapshot,
            "--source",
            source,
            "--identity",
            self.identity.to_str().unwrap(),
            "--output",
            output,
        ]
    }

    pub fn restore_bytes(&self, source: &str, snapshot: &str) -> Vec<u8> {
        let target = self
            .path()
            .join(format!("restored-{source}-{snapshot}.bin"));
        let _ = std::fs::remove_file(&target);
        self.ok(&self.restore_args(snapshot, source, target.to_str().unwrap()));
        std::fs::read(&target).unwrap()
    }

    /// Paths of all chunk objects in the local vault.
    pub fn chunk_files(&self) -> Vec<PathBuf> {
        local::objects(&self.repo(), "chunks")
    }

    /// Paths of all snapshot manifests in the local vault.
    pub fn manifest_files(&self) -> Vec<PathBuf> {
        local::objects(&self.repo(), "snapshots")
    }

    /// `restore latest --source SOURCE --into URL --json` plus `extra`, with
    /// this vault's identity; the output, whatever the exit status.
    pub fn restore_latest_into(&self, source: &str, url: &str, extra: &[&str]) -> Output {
        self.cmd()
            .args(["restore", "latest", "--source", source, "--identity"])
            .arg(&self.identity)
            .args(["--into", url, "--json"])
            .args(extra)
            .output()
            .expect("run lockbox restore --into")
    }

    /// Asserts that `source` has no snapshot.
    pub fn assert_no_snapshots(&self, source: &str) {
        let out = self.ok(&["snapshots", "--json", "--source", source]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
    }
}

/// A fresh moto S3 test server for the running test, or `None` after
/// [`skip::skip`] when it cannot start.
pub fn s3_server() -> Option<TestServer> {
    s3_server_kind(ServerKind::Moto)
}

/// A fresh S3 test server of `kind` for the running test, or `None` after
/// [`skip::skip`] when it cannot start.
pub fn s3_server_kind(kind: ServerKind) -> Option<TestServer> {
    skip::require(
        &format!("the {kind} S3 test server ({})", kind.script()),
        TestServer::start_kind(kind),
    )
}

/// The environment a `lockbox` run needs for the test server `s`: its admin
/// credentials, and nothing from the host's AWS configuration.
pub fn s3_env(s: &TestServer) -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", s.access_key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", s.secret_key.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/lockbox-test"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/lockbox-test"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Makes a file writable so a test can damage it (simulating an attacker
/// or bit rot with direct disk access).
pub fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// Deterministic mixed text/binary data (xorshift), `len` bytes.
pub fn mixed_data(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(2).wrapping_add(1);
    let mut out = Vec::with_capacity(len);
    let mut line = 0u64;
    while out.len() < len {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        if (s >> 60) < 11 {
            // Text rows, like a COPY block of a dump.
            line += 1;
            out.extend_from_slice(
                format!(
                    "{line}\tcustomer-{}\t{}.{:02}\t2026-11-{:02}\tnote {}\n",
                    s % 9973,
                    s % 100_000,
                    s % 100,
                    s % 28 + 1,
                    s >> 40
                )
                .as_bytes(),
            );
        } else {
            // Incompressible binary runs, like bytea or an embedded blob.
            for _ in 0..64 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                out.extend_from_slice(&s.to_le_bytes());
            }
        }
    }
    out.truncate(len);
    out
}
