//! End to end against both S3 test servers: the real binary backs up into
//! and restores from an Object Lock bucket. Each test runs once per server,
//! as `s3::moto::NAME` and `s3::seaweedfs::NAME`.
//!
//! What the servers can and cannot show: both refuse versioned deletes of
//! locked versions and make delete markers like S3, so those are checked on
//! both. moto (`tests/support/s3-server`) does NOT refuse shortening a
//! COMPLIANCE retention; SeaweedFS (`tests/support/seaweedfs-server`) does,
//! as S3 does, and there the tests check that storage refuses it too, not
//! only that Lockbox never asks for it.

use std::process::Stdio;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ObjectLockMode;
use lockbox_vault::storage::s3::test_server::{ServerKind, TestServer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::{self, Vault, mixed_data};

const MIB: usize = 1 << 20;

lockbox_vault::on_each_s3_server!(
    s3_backup_restore_roundtrip_with_compliance_locks,
    s3_restore_survives_delete_markers_and_garbage_versions,
    s3_reused_chunk_retention_is_extended_for_a_longer_lock,
    s3_init_refuses_bucket_without_object_lock,
    s3_storage_lost_mid_backup_leaves_no_snapshot_and_rerun_reuses_chunks,
);

/// An object in the bucket, as HeadObject reports its current version.
struct Obj {
    key: String,
    mode: Option<ObjectLockMode>,
    retain_until: Option<OffsetDateTime>,
    /// The CRC32 sent with the put, if any.
    crc32: Option<String>,
}

fn objects(s: &TestServer, bucket: &str) -> Vec<Obj> {
    let c = s.admin.client();
    let list = s
        .admin
        .block_on(c.list_objects_v2().bucket(bucket).max_keys(1000).send())
        .unwrap();
    assert_ne!(list.is_truncated(), Some(true), "test buckets stay small");
    list.contents()
        .iter()
        .map(|o| {
            let key = o.key().unwrap().to_string();
            let h = s
                .admin
                .block_on(
                    c.head_object()
                        .bucket(bucket)
                        .key(&key)
                        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
                        .send(),
                )
                .unwrap();
            Obj {
                crc32: h.checksum_crc32().map(str::to_string),
                mode: h.object_lock_mode().cloned(),
                retain_until: h
                    .object_lock_retain_until_date()
                    .map(|d| OffsetDateTime::from_unix_timestamp(d.secs()).unwrap()),
                key,
            }
        })
        .collect()
}

fn retain_until(summary: &serde_json::Value) -> OffsetDateTime {
    OffsetDateTime::parse(summary["retain_until"].as_str().unwrap(), &Rfc3339).unwrap()
}

/// Restores `latest` of `source` to a file; returns (bytes, stderr).
fn restore(v: &Vault, source: &str) -> (Vec<u8>, String) {
    let target = v.path().join(format!("restored-{source}.bin"));
    let _ = std::fs::remove_file(&target);
    let out = v
        .cmd()
        .args(["restore", "latest", "--source", source, "--identity"])
        .arg(&v.identity)
        .arg("--output")
        .arg(&target)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "restore failed: {stderr}");
    (std::fs::read(&target).unwrap(), stderr)
}

fn s3_backup_restore_roundtrip_with_compliance_locks(kind: ServerKind) {
    let Some(s) = support::s3_server_kind(kind) else {
        return;
    };
    let bucket = s.bucket(true);
    let v = Vault::s3(&s, &bucket, "");
    v.ok(&["init"]);
    let data = mixed_data(12 * MIB, 1);
    let summary = v.backup_bytes("orders", &data);
    assert!(summary["chunks"].as_u64().unwrap() >= 3);
    let (restored, _) = restore(&v, "orders");
    assert!(restored == data, "restore through S3 is not byte-identical");

    let until = retain_until(&summary);
    let objs = objects(&s, &bucket);
    assert!(objs.iter().any(|o| o.key == "vault/config"));
    assert!(
        objs.iter()
            .any(|o| o.key.starts_with("vault/snapshots/orders/"))
    );
    assert!(
        objs.iter()
            .filter(|o| o.key.starts_with("vault/chunks/"))
            .count()
            >= 3
    );
    for o in &objs {
        assert_eq!(o.mode, Some(ObjectLockMode::Compliance), "{}", o.key);
        assert!(o.crc32.is_some(), "{} was put without a checksum", o.key);
        let got = o.retain_until.expect("every object is locked");
        assert!(
            got >= until,
            "{} locked until {got}, snapshot needs {until}",
            o.key
        );
    }
    // A second backup of the same data writes no chunk again.
    let again = v.backup_bytes("orders", &data);
    assert_eq!(again["added_bytes"], 0);

    // Storage itself refuses to shorten the locks, the admin's bypass
    // header notwithstanding (moto 5.1.22 does not: there Lockbox only
    // shows it never asks for a shorter lock).
    if kind.enforces_like_s3() {
        let c = s.admin.client();
        let chunk = objs.iter().find(|o| o.key.contains("/chunks/")).unwrap();
        for bypass in [false, true] {
            let r = s.admin.block_on(
                c.put_object_retention()
                    .bucket(&bucket)
                    .key(&chunk.key)
                    .bypass_governance_retention(bypass)
                    .retention(
                        aws_sdk_s3::types::ObjectLockRetention::builder()
                            .mode(aws_sdk_s3::types::ObjectLockRetentionMode::Compliance)
                            .retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(
                                OffsetDateTime::now_utc().unix_timestamp() + 60,
                            ))
                            .build(),
                    )
                    .send(),
            );
            assert!(
                r.is_err(),
                "{kind}: shortening a COMPLIANCE lock (bypass {bypass}) succeeded"
            );
        }
        let after = objects(&s, &bucket);
        let now = after.iter().find(|o| o.key == chunk.key).unwrap();
        assert_eq!(
            now.retain_until, chunk.retain_until,
            "{kind}: the lock changed"
        );
        assert_eq!(now.mode, Some(ObjectLockMode::Compliance), "{kind}");
    }
}

fn s3_restore_survives_delete_markers_and_garbage_versions(kind: ServerKind) {
    let Some(s) = support::s3_server_kind(kind) else {
        return;
    };
    let bucket = s.bucket(true);
    let v = Vault::s3(&s, &bucket, "");
    v.ok(&["init"]);
    let data = mixed_data(8 * MIB, 2);
    v.backup_bytes("orders", &data);

    // A second client with plain Put/Delete rights (e.g. stolen production
    // credentials): delete every key without a version id, then upload
    // garbage over one chunk key.
    let c = s.admin.client();
    let keys: Vec<String> = objects(&s, &bucket).into_iter().map(|o| o.key).collect();
    for k in &keys {
        s.admin
            .block_on(c.delete_object().bucket(&bucket).key(k).send())
            .unwrap();
    }
    let chunk = keys.iter().find(|k| k.contains("/chunks/")).unwrap();
    s.admin
        .block_on(
            c.put_object()
                .bucket(&bucket)
                .key(chunk)
                .body(ByteStream::from(vec![0x5a; 4096]))
                .send(),
        )
        .unwrap();
    // Plain reads now see nothing but the garbage.
    let listed = s
        .admin
        .block_on(c.list_objects_v2().bucket(&bucket).send())
        .unwrap();
    assert_eq!(listed.contents().len(), 1);

    let (restored, stderr) = restore(&v, "orders");
    assert!(
        restored == data,
        "restore after tampering is not byte-identical"
    );
    assert!(
        stderr.contains("tampering"),
        "no tampering warning:\n{stderr}"
    );
    assert!(stderr.contains("delete marker"), "{stderr}");
    assert!(stderr.contains("fails verification"), "{stderr}");
    // Recorded in the backup host's catalog, once per event.
    let count = || -> i64 {
        rusqlite::Connection::open(v.state().join("catalog.sqlite"))
            .unwrap()
            .query_row("SELECT count(*) FROM tamper_events", [], |r| r.get(0))
            .unwrap()
    };
    let n = count();
    // A delete marker on every chunk, plus the garbage version.
    assert!(n >= 3, "{n} tamper events recorded");

    // Versioned delete of a locked version is refused.
    let versions = s
        .admin
        .block_on(
            c.list_object_versions()
                .bucket(&bucket)
                .prefix(chunk)
                .send(),
        )
        .unwrap();
    let locked = versions
        .versions()
        .iter()
        .find(|v| v.is_latest() != Some(true))
        .and_then(|v| v.version_id())
        .unwrap()
        .to_string();
    let r = s.admin.block_on(
        c.delete_object()
            .bucket(&bucket)
            .key(chunk)
            .version_id(&locked)
            .send(),
    );
    assert!(r.is_err(), "a locked version was deleted");
    let (again, _) = restore(&v, "orders");
    assert!(again == data);
    assert_eq!(count(), n, "the same tampering was recorded twice");
}

fn s3_reused_chunk_retention_is_extended_for_a_longer_lock(kind: ServerKind) {
    let Some(s) = support::s3_server_kind(kind) else {
        return;
    };
    let bucket = s.bucket(true);
    let v = Vault::s3(&s, &bucket, "");
    v.ok(&["init"]);
    let data = mixed_data(6 * MIB, 3);
    let first = v.backup_bytes("orders", &data);
    let short = retain_until(&first);

    // The same host with lock_days = 40: every reused chunk must be raised.
    let longer = v.path().join("longer.toml");
    let text = std::fs::read_to_string(&v.config).unwrap();
    std::fs::write(&longer, text.replace("lock_days = 2", "lock_days = 40")).unwrap();
    let out = support::lockbox()
        .arg("--config")
        .arg(&longer)
        .envs(v.env.iter().map(|(k, v)| (k, v)))
        .args(["backup", "--json", "--stdin", "orders"])
        .stdin(Stdio::from(
            std::fs::File::open(v.path().join("input-orders.bin")).unwrap(),
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(second["added_bytes"], 0, "chunks were reused");
    let long = retain_until(&second);
    assert!(long > short + time::Duration::days(30));
    for o in objects(&s, &bucket) {
        if o.key.contains("/chunks/") || o.key == "vault/config" {
            let got = o.retain_until.unwrap();
            assert!(got >= long, "{} still locked only until {got}", o.key);
        }
    }
    let (restored, _) = restore(&v, "orders");
    assert!(restored == data);
}

fn s3_init_refuses_bucket_without_object_lock(kind: ServerKind) {
    let Some(s) = support::s3_server_kind(kind) else {
        return;
    };
    let bucket = s.bucket(false);
    let v = Vault::s3(&s, &bucket, "");
    let (code, stderr) = v.fails(&["init"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("versioning") || stderr.contains("Object Lock"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--object-lock-enabled-for-bucket"),
        "{stderr}"
    );
    // Nothing was written, and no ID key was made.
    assert!(objects(&s, &bucket).is_empty());
    assert!(!v.state().join("id.key").exists());
}

/// A TCP relay from a loopback port to the test server that can be cut
/// (every connection dropped, new ones refused) and restored on the same port:
/// storage that vanishes mid-backup and comes back with its data.
struct Relay {
    port: u16,
    target: String,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Relay {
    fn start(target: &str) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let r = Relay {
            port: listener.local_addr().unwrap().port(),
            target: target.trim_start_matches("http://").to_string(),
            up: Default::default(),
            conns: Default::default(),
        };
        r.serve(listener);
        r
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn serve(&self, listener: std::net::TcpListener) {
        use std::sync::atomic::Ordering;
        self.up.store(true, Ordering::SeqCst);
        let (up, conns, target) = (self.up.clone(), self.conns.clone(), self.target.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if !up.load(Ordering::SeqCst) {
                    return; // drops the listener: the port refuses connections
                }
                let Ok(client) = client else { continue };
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                let mut list = conns.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
    }

    /// Drops every connection and stops accepting new ones.
    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it drops the listener.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    /// Accepts connections again on the same port.
    fn restore(&self) {
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        self.serve(listener);
    }
}

fn s3_storage_lost_mid_backup_leaves_no_snapshot_and_rerun_reuses_chunks(kind: ServerKind) {
    let Some(s) = support::s3_server_kind(kind) else {
        return;
    };
    let bucket = s.bucket(true);
    let relay = Relay::start(&s.endpoint);
    let v = Vault::s3_via(&s, &relay.endpoint(), &bucket, "");
    v.ok(&["init"]);
    let data = mixed_data(64 * MIB, 4);
    let input = v.path().join("big.bin");
    std::fs::write(&input, &data).unwrap();
    let backup = || {
        v.cmd()
            .args(["backup", "--json", "--stdin", "orders"])
            .stdin(Stdio::from(std::fs::File::open(&input).unwrap()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let child = backup();
    // Wait until some chunks have landed, then take storage away.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let chunks = |s: &TestServer| {
        objects(s, &bucket)
            .iter()
            .filter(|o| o.key.contains("/chunks/"))
            .count()
    };
    while chunks(&s) < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    relay.cut();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "backup did not fail cleanly: {stderr}"
    );
    assert!(
        stderr.contains("s3://"),
        "error does not name the repository: {stderr}"
    );
    let landed = chunks(&s);
    assert!(landed >= 3, "{landed}");
    assert!(
        !objects(&s, &bucket)
            .iter()
            .any(|o| o.key.contains("/snapshots/")),
        "a failed backup left a snapshot"
    );

    relay.restore();
    let out = backup().wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "rerun failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        summary["reused_chunks"].as_u64().unwrap() >= landed as u64,
        "chunks that landed before the failure were not reused: {summary}"
    );
    let (restored, _) = restore(&v, "orders");
    assert!(restored == data);
}
