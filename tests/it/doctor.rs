//! `lockbox doctor` against both S3 test servers (`doctor::moto::NAME`,
//! `doctor::seaweedfs::NAME`) and a local vault.

use lockbox_vault::storage::s3::test_server::ServerKind;

use crate::support::{self, Vault};

lockbox_vault::on_each_s3_server!(
    doctor_passes_on_an_object_lock_bucket_and_probes_another_profile,
    doctor_fails_on_a_bucket_without_object_lock,
);

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

fn doctor_passes_on_an_object_lock_bucket_and_probes_another_profile(kind: ServerKind) {
    let Some(s) = support::s3_server_kind(kind) else {
        return;
    };
    let bucket = s.bucket(true);
    let mut v = Vault::s3(&s, &bucket, "");
    v.ok(&["init"]);
    // A backup host: the identity (kept beside the config by the harness)
    // goes where doctor does not look, or doctor FAILs.
    let kept = v.path().join("restore-host");
    std::fs::create_dir(&kept).unwrap();
    std::fs::rename(&v.identity, kept.join("identity.txt")).unwrap();
    // A second credential ("production's"), known to the SDK as a profile
    // (the admin's keys: SeaweedFS checks them, moto accepts any).
    let creds = v.path().join("aws-credentials");
    std::fs::write(
        &creds,
        format!(
            "[prod]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            s.access_key, s.secret_key
        ),
    )
    .unwrap();
    for (k, val) in v.env.iter_mut() {
        if k == "AWS_SHARED_CREDENTIALS_FILE" {
            *val = creds.display().to_string();
        }
    }
    let out = v
        .cmd()
        .env("HOME", v.path())
        .args(["doctor", "--json", "--as-profile", "prod"])
        .output()
        .unwrap();
    let c = checks(&out);
    assert_eq!(out.status.code(), Some(0), "{c:#?}");
    assert_eq!(status(&c, "bucket versioning"), "PASS");
    assert_eq!(status(&c, "object lock"), "PASS");
    assert_eq!(status(&c, "write and lock a canary"), "PASS");
    assert_eq!(status(&c, "versioned delete refused (configured"), "PASS");
    // The store honours If-None-Match (a second put of the canary is
    // refused) and its clock is this host's.
    assert_eq!(status(&c, "conditional put"), "PASS", "{c:#?}");
    assert_eq!(status(&c, "clock"), "PASS", "{c:#?}");
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

fn doctor_fails_on_a_bucket_without_object_lock(kind: ServerKind) {
    let Some(s) = support::s3_server_kind(kind) else {
        return;
    };
    let bucket = s.bucket(false);
    let v = Vault::s3(&s, &bucket, "");
    let out = v.cmd().args(["doctor", "--json"]).output().unwrap();
    let c = checks(&out);
    assert_eq!(out.status.code(), Some(1), "{c:#?}");
    assert_eq!(status(&c, "object lock"), "FAIL");
}

fn doctor(v: &Vault) -> (Option<i32>, Vec<serde_json::Value>) {
    // HOME is the vault's directory: only the identities the test places count.
    let out = v
        .cmd()
        .env("HOME", v.path())
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    (out.status.code(), checks(&out))
}

fn chmod(p: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn detail<'a>(checks: &'a [serde_json::Value], name: &str, status: &str) -> Vec<&'a str> {
    checks
        .iter()
        .filter(|c| c["check"] == name && c["status"] == status)
        .map(|c| c["detail"].as_str().unwrap())
        .collect()
}

#[test]
fn doctor_fails_for_an_identity_on_a_backup_host() {
    let v = Vault::new("");
    chmod(&v.config, 0o600);
    // The harness keeps identity.txt beside the config, and the state holds
    // the ID key with no drill identity configured: a backup host.
    let (code, c) = doctor(&v);
    assert_eq!(code, Some(1), "{c:#?}");
    assert_eq!(status(&c, "no age identity on this host"), "FAIL");
    let fail = detail(&c, "no age identity on this host", "FAIL");
    assert!(fail[0].contains(v.identity.to_str().unwrap()), "{fail:?}");
    assert!(fail[0].contains("backup host"), "{fail:?}");
    assert_eq!(status(&c, "deletion-proof storage"), "WARN");
    assert_eq!(status(&c, "ID key file"), "PASS");
    assert_eq!(status(&c, "config file permissions"), "PASS");
    assert!(detail(&c, "identity file permissions", "WARN").is_empty());

    // Without the identity the host passes.
    let kept = v.path().join("kept-elsewhere");
    std::fs::create_dir(&kept).unwrap();
    chmod(&kept, 0o700);
    let moved = kept.join("identity.txt");
    std::fs::rename(&v.identity, &moved).unwrap();
    let (code, c) = doctor(&v);
    assert_eq!(code, Some(0), "{c:#?}");
    assert_eq!(status(&c, "no age identity on this host"), "PASS");

    std::fs::remove_file(v.state().join("id.key")).unwrap();
    let (code, c) = doctor(&v);
    assert_eq!(code, Some(1));
    assert_eq!(status(&c, "ID key file"), "FAIL");
}

#[test]
fn doctor_warns_about_group_or_world_readable_config_and_identity() {
    let v = Vault::new("");
    for (mode, who) in [
        (0o640, "its group"),
        (0o604, "others"),
        (0o644, "group and others"),
    ] {
        chmod(&v.config, mode);
        chmod(&v.identity, mode);
        let (_, c) = doctor(&v);
        assert_eq!(status(&c, "config file permissions"), "WARN", "{mode:o}");
        let w = detail(&c, "config file permissions", "WARN");
        assert!(
            w[0].contains(&format!("mode {mode:o}")) && w[0].contains(who),
            "{w:?}"
        );
        let w = detail(&c, "identity file permissions", "WARN");
        assert_eq!(w.len(), 1, "{c:#?}");
        assert!(
            w[0].contains(v.identity.to_str().unwrap()) && w[0].contains("chmod 600"),
            "{w:?}"
        );
    }
    chmod(&v.config, 0o600);
    chmod(&v.identity, 0o600);
    let (_, c) = doctor(&v);
    assert_eq!(status(&c, "config file permissions"), "PASS");
    assert!(detail(&c, "identity file permissions", "WARN").is_empty());
    // A wider ID key file is a warning too.
    chmod(&v.state().join("id.key"), 0o640);
    let (_, c) = doctor(&v);
    assert_eq!(status(&c, "ID key file"), "WARN");
}

#[test]
fn a_drill_host_may_hold_its_configured_identity() {
    let v = Vault::new("");
    chmod(&v.config, 0o600);
    let text = std::fs::read_to_string(&v.config).unwrap();
    std::fs::write(
        &v.config,
        format!(
            "{text}\n[[source]]\nname = \"app\"\nkind = \"sqlite\"\npath = \"/srv/app.db\"\n[source.drill]\nidentity = \"{}\"\n",
            v.identity.display()
        ),
    )
    .unwrap();
    let (code, c) = doctor(&v);
    assert_eq!(status(&c, "no age identity on this host"), "PASS", "{c:#?}");
    assert_eq!(code, Some(0), "{c:#?}");
    // Another identity lying around is a warning, not a failure.
    let stray = v.path().join("old-identity.txt");
    std::fs::copy(&v.identity, &stray).unwrap();
    chmod(&stray, 0o600);
    let (code, c) = doctor(&v);
    assert_eq!(status(&c, "no age identity on this host"), "WARN");
    let w = detail(&c, "no age identity on this host", "WARN");
    assert!(
        w[0].contains("old-identity.txt") && !w[0].contains("/identity.txt"),
        "{w:?}"
    );
    assert_eq!(code, Some(0));
}
