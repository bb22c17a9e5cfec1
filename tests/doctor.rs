//! `lockbox doctor` against the S3 test server and a local vault.

mod support;

use lockbox_vault::storage::s3::test_server::TestServer;
use support::Vault;

fn checks(out: &std::process::Output) -> Vec<serde_json::Value> {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json: {e}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn status<'a>(checks: &'a [serde_json::Value], name: &str) -> &'a str {
    checks
        .iter()
        .find(|c| c["check"].as_str().is_some_and(|n| n.starts_with(name)))
        .unwrap_or_else(|| panic!("no check {name:?} in {checks:?}"))["status"]
        .as_str()
        .unwrap()
}

#[test]
fn doctor_passes_on_an_object_lock_bucket_and_probes_another_profile() {
    let Some(s) = TestServer::start_or_skip("doctor_passes_on_an_object_lock_bucket") else {
        return;
    };
    let bucket = s.bucket(true);
    let mut v = Vault::s3(&s.endpoint, &bucket, "");
    v.ok(&["init"]);
    // A second credential ("production's"), known to the SDK as a profile.
    let creds = v.path().join("aws-credentials");
    std::fs::write(
        &creds,
        "[prod]\naws_access_key_id = test\naws_secret_access_key = test\n",
    )
    .unwrap();
    for (k, val) in v.env.iter_mut() {
        if k == "AWS_SHARED_CREDENTIALS_FILE" {
            *val = creds.display().to_string();
        }
    }
    let out = v
        .cmd()
        .args(["doctor", "--json", "--as-profile", "prod"])
        .output()
        .unwrap();
    let c = checks(&out);
    assert_eq!(out.status.code(), Some(0), "{c:#?}");
    assert_eq!(status(&c, "bucket versioning"), "PASS");
    assert_eq!(status(&c, "object lock"), "PASS");
    assert_eq!(status(&c, "write and lock a canary"), "PASS");
    assert_eq!(status(&c, "versioned delete refused (configured"), "PASS");
    assert_eq!(
        status(&c, "versioned delete refused (profile prod)"),
        "PASS"
    );
    // The test bucket has no default retention: a warning, not a failure.
    assert_eq!(status(&c, "default bucket retention"), "WARN");
    // A credential that cannot even ask proves nothing: WARN, never PASS.
    let out = v
        .cmd()
        .args(["doctor", "--json", "--as-profile", "nosuch"])
        .output()
        .unwrap();
    let c = checks(&out);
    assert_eq!(
        status(&c, "versioned delete refused (profile nosuch)"),
        "WARN",
        "{c:#?}"
    );
}

#[test]
fn doctor_fails_on_a_bucket_without_object_lock() {
    let Some(s) = TestServer::start_or_skip("doctor_fails_on_a_bucket_without_object_lock") else {
        return;
    };
    let bucket = s.bucket(false);
    let v = Vault::s3(&s.endpoint, &bucket, "");
    let out = v.cmd().args(["doctor", "--json"]).output().unwrap();
    let c = checks(&out);
    assert_eq!(out.status.code(), Some(1), "{c:#?}");
    assert_eq!(status(&c, "object lock"), "FAIL");
}

#[test]
fn doctor_on_a_local_vault_warns_about_identities_and_deletion() {
    let v = Vault::new("");
    // The harness keeps identity.txt beside the config: a backup host should not.
    let out = v.cmd().args(["doctor", "--json"]).output().unwrap();
    let c = checks(&out);
    assert_eq!(out.status.code(), Some(0), "{c:#?}");
    assert_eq!(status(&c, "no age identity on this host"), "WARN");
    assert_eq!(status(&c, "deletion-proof storage"), "WARN");
    assert_eq!(status(&c, "ID key file"), "PASS");
    std::fs::remove_file(v.state().join("id.key")).unwrap();
    let out = v.cmd().args(["doctor", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(status(&checks(&out), "ID key file"), "FAIL");
}
