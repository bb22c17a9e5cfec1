//! `init`, joining a repository from a second host, and configuration errors.

use crate::support::Vault;

#[test]
fn init_is_idempotent_and_refuses_a_foreign_key_file() {
    let v = Vault::new("");
    v.ok(&["init"]); // again: nothing changes
    let repo_config = std::fs::read(v.repo().join("config")).unwrap();

    // A key file left from another repository is refused, not overwritten.
    let key = v.state().join("id.key");
    let text = std::fs::read_to_string(&key).unwrap();
    let mut parts: Vec<&str> = text.split_whitespace().collect();
    let fake = "f".repeat(64);
    parts[2] = &fake;
    std::fs::remove_file(&key).unwrap();
    std::fs::write(&key, parts.join(" ")).unwrap();
    let (_, err) = v.fails(&["init"]);
    assert!(err.contains("does not match repository"), "{err}");
    let (_, err) = v.fails(&["backup", "--stdin", "x"]);
    assert!(err.contains("does not match repository"), "{err}");
    assert_eq!(std::fs::read(v.repo().join("config")).unwrap(), repo_config);
}

#[test]
fn a_second_host_joins_with_the_identity_or_is_told_how() {
    let v = Vault::new("");
    v.backup_bytes("a", b"written by host one");
    let (cfg2, state2) = v.other_host("state-host2");
    let run = |args: &[&str]| {
        crate::support::lockbox()
            .arg("--config")
            .arg(&cfg2)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["init"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--identity") && err.contains("id.key"),
        "{err}"
    );

    let out = run(&["init", "--identity", v.identity.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state2.join("id.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read(state2.join("id.key")).unwrap(),
        std::fs::read(v.state().join("id.key")).unwrap()
    );
    // Dedup works across the two hosts: same chunks, same ids.
    let file = v.path().join("input.bin");
    std::fs::write(&file, b"written by host one").unwrap();
    let out = crate::support::lockbox()
        .arg("--config")
        .arg(&cfg2)
        .args(["backup", "--json", "--stdin", "a"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["new_chunks"], 0);
}

#[test]
fn state_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let v = Vault::new("");
    v.backup_bytes("a", b"x");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&v.state()), 0o700);
    assert_eq!(mode(&v.state().join("id.key")), 0o600);
    assert_eq!(mode(&v.state().join("catalog.sqlite")), 0o600);
    assert_eq!(mode(&v.identity), 0o600);
}

#[test]
fn config_errors_exit_2_and_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "state_dir = \"/tmp/x\"\n[repository]\nurl = \"file:///tmp/x\"\nrecipients = [\"age1nope\"]\nlock_days = 3\n",
    )
    .unwrap();
    let out = crate::support::lockbox()
        .arg("--config")
        .arg(&cfg)
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("repository.recipients") && err.contains("bad.toml"),
        "{err}"
    );

    let out = crate::support::lockbox()
        .arg("snapshots")
        .env_remove("LOCKBOX_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));

    // A repository that was never initialised says what to do.
    let v = Vault::new("");
    let text = std::fs::read_to_string(&v.config).unwrap();
    let cfg = v.path().join("empty.toml");
    std::fs::write(&cfg, text.replace("/repo\"", "/elsewhere\"")).unwrap();
    let out = crate::support::lockbox()
        .arg("--config")
        .arg(&cfg)
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lockbox init"));
    assert!(
        !v.path().join("elsewhere").exists(),
        "a read-only command created the vault directory"
    );
}

/// The example's placeholder recipient (whose secret was destroyed), a
/// pasted secret key and an SSH key are refused before anything is
/// written, with exit 2; the secret key is never echoed.
#[test]
fn init_refuses_recipients_that_make_backups_unrestorable() {
    let v = Vault::uninitialised("", Vec::new());
    let text = std::fs::read_to_string(&v.config).unwrap();
    let secret = std::fs::read_to_string(&v.identity)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .expect("keygen wrote a secret key")
        .to_string();
    let cases = [
        (
            "age1tschlyzc9szedr8h0drsh9v2t4zwrgfl9c4psrslrvh2wzx70a5qe972mp".to_string(),
            "repository.recipients[0]: the placeholder from examples/lockbox.toml, whose secret \
             key nobody has: backups to it could never be restored; run `lockbox keygen --output \
             FILE` and paste the recipient it prints",
        ),
        (
            secret.clone(),
            "repository.recipients[0]: a secret key, not a recipient: paste its public recipient \
             (`age-keygen -y FILE`), and keep the secret key off the backup host",
        ),
        (
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN"
                .to_string(),
            "repository.recipients[0]: SSH recipients are not supported; use an age X25519 \
             recipient (age1…)",
        ),
    ];
    for (recipient, message) in cases {
        std::fs::write(&v.config, text.replace(&v.recipient, &recipient)).unwrap();
        for args in [&["init"][..], &["backup", "--all"]] {
            let out = v.cmd().args(args).output().unwrap();
            // Checked first, so a failing assertion never prints the secret.
            for output in [&out.stdout, &out.stderr] {
                let shown = String::from_utf8_lossy(output);
                assert!(
                    !shown.contains(&secret[16..]) && !shown.contains("AGE-SECRET-KEY"),
                    "{args:?}: the secret key is echoed"
                );
            }
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains(message), "{args:?}: {err}");
        }
        assert!(!v.repo().exists(), "nothing was written");
    }
}

#[test]
fn a_restore_host_lists_snapshots_with_its_identity_alone() {
    let v = Vault::new("");
    v.backup_bytes("a", b"one");
    v.backup_bytes("b", b"two");
    let on_backup_host = v.ok(&["snapshots", "--json"]).stdout;
    // Same config, but a state dir that holds nothing: a restore host.
    let (cfg, empty_state) = v.other_host("restore-state");
    let run = |extra: &[&str]| {
        crate::support::lockbox()
            .arg("--config")
            .arg(&cfg)
            .arg("snapshots")
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--json"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--identity"));
    let out = run(&["--json", "--identity", v.identity.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&on_backup_host)
    );
    assert!(
        !empty_state.join("id.key").exists(),
        "a restore host must not gain an ID key file"
    );
}
