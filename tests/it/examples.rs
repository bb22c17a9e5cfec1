//! The shipped examples say what they claim: IAM policies that separate the
//! writer, restorer and pruner credentials.

use serde_json::Value;

fn policy(name: &str) -> Value {
    let path = format!("{}/examples/iam/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not valid JSON: {e}"))
}

/// (effect, action) pairs of a policy; a single string action counts as a list.
fn actions(p: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for st in p["Statement"].as_array().expect("Statement array") {
        let effect = st["Effect"].as_str().unwrap().to_string();
        let list = match &st["Action"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_string()).collect(),
            other => panic!("unexpected Action {other}"),
        };
        out.extend(list.into_iter().map(|a| (effect.clone(), a)));
    }
    out
}

const DESTRUCTIVE: [&str; 8] = [
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:BypassGovernanceRetention",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutBucketVersioning",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketPolicy",
    "s3:DeleteBucket",
];

fn is_destructive(action: &str) -> bool {
    action == "s3:*" || action == "*" || DESTRUCTIVE.contains(&action)
}

#[test]
fn writer_and_restorer_cannot_delete_or_reconfigure() {
    for name in ["writer-policy.json", "restorer-policy.json"] {
        let acts = actions(&policy(name));
        for (effect, action) in &acts {
            assert!(
                !(effect == "Allow" && (is_destructive(action) || action.contains('*'))),
                "{name} allows {action}"
            );
        }
        for needed in DESTRUCTIVE {
            assert!(
                acts.iter().any(|(e, a)| e == "Deny" && a == needed),
                "{name} does not explicitly deny {needed}"
            );
        }
    }
    let writer = actions(&policy("writer-policy.json"));
    for needed in [
        "s3:PutObject",
        "s3:PutObjectRetention",
        "s3:ListBucketVersions",
        "s3:GetObjectVersion",
    ] {
        assert!(
            writer.contains(&("Allow".into(), needed.into())),
            "writer lacks {needed}"
        );
    }
    // The restore host may write drill attestations, and nothing else.
    let restorer = policy("restorer-policy.json");
    let attestations = "arn:aws:s3:::BUCKET/PREFIX/attestations/*";
    let mut may_attest = false;
    let mut denies_other_puts = false;
    for st in restorer["Statement"].as_array().unwrap() {
        let acts = actions(&serde_json::json!({ "Statement": [st] }));
        let puts = acts.iter().any(|(_, a)| a.starts_with("s3:Put"));
        if st["Effect"] == "Allow" && puts {
            assert_eq!(
                st["Resource"], attestations,
                "restorer may put elsewhere: {st}"
            );
            may_attest |= acts.iter().any(|(_, a)| a == "s3:PutObject");
        }
        if st["Effect"] == "Deny" && puts && st["NotResource"] == attestations {
            denies_other_puts = acts.iter().any(|(_, a)| a == "s3:PutObject")
                && acts.iter().any(|(_, a)| a == "s3:PutObjectRetention");
        }
    }
    assert!(may_attest, "the restore host cannot write attestations");
    assert!(
        denies_other_puts,
        "puts outside attestations/ are not explicitly denied"
    );
}

#[test]
fn pruner_deletes_but_never_bypasses_locks() {
    let acts = actions(&policy("pruner-policy.json"));
    assert!(acts.contains(&("Allow".into(), "s3:DeleteObjectVersion".into())));
    assert!(acts.contains(&("Deny".into(), "s3:BypassGovernanceRetention".into())));
    assert!(
        !acts
            .iter()
            .any(|(e, a)| e == "Allow" && (a == "s3:BypassGovernanceRetention" || a.contains('*')))
    );
}

/// `lockbox prune --apply` needs exactly this: read and list versions,
/// delete versions, put audit records (only under audit/), lengthen locks.
/// The writer, whose profile prune refuses to use, has no delete at all.
#[test]
fn pruner_may_do_what_prune_apply_needs_and_the_writer_may_not_delete() {
    let p = policy("pruner-policy.json");
    let acts = actions(&p);
    for needed in [
        "s3:ListBucketVersions",
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:GetObjectRetention",
        "s3:DeleteObjectVersion",
        "s3:PutObject",
        "s3:PutObjectRetention",
    ] {
        assert!(
            acts.contains(&("Allow".into(), needed.into())),
            "pruner lacks {needed}"
        );
    }
    for st in p["Statement"].as_array().unwrap() {
        let a = actions(&serde_json::json!({ "Statement": [st] }));
        if st["Effect"] == "Allow" && a.iter().any(|(_, x)| x == "s3:PutObject") {
            assert_eq!(st["Resource"], "arn:aws:s3:::BUCKET/PREFIX/audit/*", "{st}");
        }
    }
    let writer = actions(&policy("writer-policy.json"));
    for (effect, action) in &writer {
        assert!(
            !(effect == "Allow" && action.starts_with("s3:Delete")),
            "the writer may {action}"
        );
    }
    for denied in ["s3:DeleteObject", "s3:DeleteObjectVersion"] {
        assert!(writer.contains(&("Deny".into(), denied.into())));
    }
}

#[test]
fn bucket_policy_denies_deletion_to_all_but_the_pruner() {
    let p = policy("bucket-policy.json");
    let st = p["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["Effect"] == "Deny"
                && s["Action"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == "s3:DeleteObjectVersion"))
        })
        .expect("a Deny of s3:DeleteObjectVersion");
    assert_eq!(st["Principal"], "*");
    let exempt = &st["Condition"]["ArnNotEquals"]["aws:PrincipalArn"];
    assert!(
        exempt
            .as_str()
            .is_some_and(|a| a.ends_with(":role/lockbox-pruner")),
        "{exempt}"
    );
    assert!(actions(&p).contains(&("Deny".into(), "s3:BypassGovernanceRetention".into())));
}

/// The systemd units load cleanly: `systemd-analyze verify` exits 0 and
/// prints nothing (it reports unknown or misspelt keys only as warnings).
#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let Some(tool) = crate::support::skip::tool("/usr/bin/systemd-analyze", "systemd") else {
        return;
    };
    let src = format!("{}/examples/systemd", env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for unit in [
        "lockbox-backup@.service",
        "lockbox-backup@.timer",
        "lockbox.service",
    ] {
        let text = std::fs::read_to_string(format!("{src}/{unit}")).unwrap();
        // verify checks that ExecStart exists: point it at the binary under test.
        let text = text.replace("/usr/local/bin/lockbox", env!("CARGO_BIN_EXE_lockbox"));
        std::fs::write(dir.path().join(unit), text).unwrap();
    }
    let out = std::process::Command::new(tool)
        .args(["verify", "--man=no"])
        .arg(dir.path().join("lockbox-backup@orders.service"))
        .arg(dir.path().join("lockbox-backup@orders.timer"))
        .arg(dir.path().join("lockbox.service"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify:\n{stderr}"
    );
}

#[test]
fn crontab_uses_lockbox_without_flock() {
    let text = std::fs::read_to_string(format!(
        "{}/examples/cron/lockbox",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let jobs: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.contains('='))
        .collect();
    assert!(jobs.len() >= 2);
    for job in jobs {
        let fields: Vec<&str> = job.split_whitespace().collect();
        assert!(fields.len() > 7, "not a /etc/cron.d line: {job}");
        assert_eq!(fields[5], "lockbox", "jobs run as the lockbox user: {job}");
        assert_eq!(fields[6], "lockbox", "{job}");
        assert!(!job.contains("flock"), "{job}");
    }
}
