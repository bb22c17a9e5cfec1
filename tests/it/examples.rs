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
        let text = text.replace(
            "ExecStart=/usr/bin/lockbox",
            &format!("ExecStart={}", env!("CARGO_BIN_EXE_lockbox")),
        );
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

fn example(path: &str) -> String {
    let path = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The package, the units and the crontab agree: the binary is
/// /usr/bin/lockbox, the config /etc/lockbox/lockbox.toml, the user lockbox,
/// the state directory /var/lib/lockbox (created by the package, never
/// removed by it).
#[test]
fn deployment_files_agree_on_paths() {
    for unit in ["lockbox-backup@.service", "lockbox.service"] {
        let text = example(&format!("examples/systemd/{unit}"));
        let keys: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains('='))
            .collect();
        for needed in [
            "User=lockbox",
            "Group=lockbox",
            "StateDirectory=lockbox",
            "StateDirectoryMode=0700",
            "Environment=LOCKBOX_CONFIG=/etc/lockbox/lockbox.toml",
        ] {
            assert!(keys.contains(&needed), "{unit} lacks {needed}");
        }
        let exec: Vec<&&str> = keys
            .iter()
            .filter(|l| l.starts_with("ExecStart="))
            .collect();
        assert_eq!(exec.len(), 1, "{unit}");
        assert!(
            exec[0].starts_with("ExecStart=/usr/bin/lockbox "),
            "{unit}: {}",
            exec[0]
        );
    }

    let cron = example("examples/cron/lockbox");
    assert!(
        cron.lines().any(|l| l == "PATH=/usr/bin:/bin"),
        "crontab PATH"
    );
    assert!(
        cron.lines()
            .any(|l| l == "LOCKBOX_CONFIG=/etc/lockbox/lockbox.toml"),
        "crontab LOCKBOX_CONFIG"
    );

    let config = example("examples/lockbox.toml");
    assert!(
        config
            .lines()
            .any(|l| l == r#"state_dir = "/var/lib/lockbox""#)
    );

    let cargo = example("Cargo.toml");
    let deb = &cargo[cargo
        .find("[package.metadata.deb]")
        .expect("[package.metadata.deb] in Cargo.toml")..];
    for asset in [
        r#"["target/release/lockbox", "usr/bin/", "755"]"#,
        r#"["examples/lockbox.toml", "etc/lockbox/lockbox.toml", "640"]"#,
        r#""usr/share/bash-completion/completions/lockbox""#,
        r#""usr/share/zsh/vendor-completions/_lockbox""#,
        r#""usr/share/fish/vendor_completions.d/lockbox.fish""#,
    ] {
        assert!(deb.contains(asset), "the package lacks {asset}");
    }
    assert!(
        deb.contains("enable = false, start = false"),
        "units must not be enabled"
    );

    let postinst = example("examples/debian/postinst");
    assert!(postinst.contains("adduser --system --group"));
    assert!(postinst.contains("install -d -o lockbox -g lockbox -m 0700 /var/lib/lockbox"));
    assert!(postinst.contains("chown root:lockbox /etc/lockbox/lockbox.toml"));
    assert!(postinst.contains("chmod 0640 /etc/lockbox/lockbox.toml"));
    for script in ["postinst", "prerm", "postrm"] {
        let text = example(&format!("examples/debian/{script}"));
        assert!(text.contains("#DEBHELPER#"), "{script}");
        let code = text.lines().filter(|l| !l.trim_start().starts_with('#'));
        for line in code {
            assert!(
                !(line.contains("rm ") && line.contains("/var/lib/lockbox")),
                "{script} removes the state directory: {line}"
            );
        }
    }
    assert!(example("examples/debian/postrm").contains("rm -rf /etc/lockbox"));
}

/// The Kubernetes examples are valid objects of the Kubernetes API (strict:
/// no unknown fields), checked offline by kubernetes-validate
/// (tests/support/k8s-validate installs a pinned one into a cached venv).
#[test]
fn kubernetes_manifests_pass_schema_validation() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = format!("{root}/examples/kubernetes");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    let out = std::process::Command::new(format!("{root}/tests/support/k8s-validate"))
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        crate::support::skip::skip(format_args!(
            "kubernetes-validate (tests/support/k8s-validate) is not available: {}",
            stderr.trim()
        ));
        return;
    }
    assert!(
        out.status.success(),
        "kubernetes-validate:\n{stdout}{stderr}"
    );
    // Every document was checked: two CronJobs at least, and the ConfigMap.
    let passed = |kind: &str| {
        stdout
            .lines()
            .filter(|l| l.contains("passed for resource") && l.contains(&format!(" {kind}/")))
            .count()
    };
    assert!(passed("cronjob") >= 2, "{stdout}");
    assert_eq!(passed("configmap"), 1, "{stdout}");
}

/// The lockbox.toml inside the Kubernetes ConfigMap, unindented.
fn kubernetes_config() -> String {
    let yaml = example("examples/kubernetes/config.yaml");
    let mut lines = yaml.lines().skip_while(|l| l.trim() != "lockbox.toml: |");
    lines.next().expect("lockbox.toml in the ConfigMap");
    let mut toml = String::new();
    for line in lines {
        match line.strip_prefix("    ") {
            Some(l) => toml.push_str(l),
            None if line.trim().is_empty() => {}
            None => break,
        }
        toml.push('\n');
    }
    toml
}

/// The shipped configurations (the package's /etc/lockbox/lockbox.toml and
/// the Kubernetes ConfigMap's) are refused until their placeholder recipient
/// is replaced, with exit status 2 and a message saying so; with a real
/// recipient (and a writable state_dir) `lockbox config check` accepts the
/// ConfigMap's, and every source a CronJob backs up is in it.
#[test]
fn shipped_configs_refuse_the_placeholder_recipient() {
    const PLACEHOLDER: &str = "age1tschlyzc9szedr8h0drsh9v2t4zwrgfl9c4psrslrvh2wzx70a5qe972mp";
    let dir = tempfile::tempdir().unwrap();
    let k8s = kubernetes_config();
    let package = example("examples/lockbox.toml");
    for (name, text) in [("lockbox.toml", &package), ("k8s.toml", &k8s)] {
        assert!(text.contains(PLACEHOLDER), "{name}");
        let path = dir.path().join(name);
        let state = dir.path().join(format!("{name}.state"));
        let text = text.replace(
            r#"state_dir = "/var/lib/lockbox/state""#,
            &format!("state_dir = {:?}", state.display().to_string()),
        );
        let text = text.replace(
            r#"state_dir = "/var/lib/lockbox""#,
            &format!("state_dir = {:?}", state.display().to_string()),
        );
        std::fs::write(&path, text).unwrap();
        let out = crate::support::lockbox()
            .arg("--config")
            .arg(&path)
            .args(["config", "check"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains("placeholder"), "{name}: {stderr}");
        assert!(
            !state.exists(),
            "{name}: a refused config created its state_dir"
        );
    }

    // The ConfigMap's config with a real recipient: parsed and accepted.
    let recipient = crate::support::keygen(&dir.path().join("identity.txt"));
    let state = dir.path().join("k8s-state");
    let text = k8s.replace(PLACEHOLDER, &recipient).replace(
        r#"state_dir = "/var/lib/lockbox/state""#,
        &format!("state_dir = {:?}", state.display().to_string()),
    );
    let path = dir.path().join("k8s-ok.toml");
    std::fs::write(&path, text).unwrap();
    let out = crate::support::lockbox()
        .arg("--config")
        .arg(&path)
        .args(["config", "check", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "config refused: {stderr}");
    let cronjobs = example("examples/kubernetes/backup-cronjobs.yaml");
    for line in cronjobs.lines().filter(|l| l.contains("command: [lockbox")) {
        let source = line
            .trim_end_matches(']')
            .rsplit(", ")
            .next()
            .unwrap()
            .to_string();
        assert!(
            k8s.contains(&format!("name = \"{source}\"")),
            "a CronJob backs up {source}, which config.yaml does not define"
        );
        assert!(
            stdout.contains(&source),
            "status does not list {source}: {stdout}{stderr}"
        );
    }
}
