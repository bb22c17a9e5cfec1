//! The command line's conventions: where the config comes from, shell
//! completions and man pages, `config check`, snapshots named without
//! their source, and usage errors that list the valid choices.

use std::path::Path;

use crate::support::{NO_CONFIG, Vault, lockbox};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tests_never_read_the_system_config() {
    let out = lockbox().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(NO_CONFIG), "{}", stderr(&out));
}

#[test]
fn without_config_or_environment_the_default_path_is_named() {
    let default = Path::new("/etc/lockbox/lockbox.toml");
    if default.exists() {
        eprintln!(
            "SKIPPED: {} exists on this host; the missing-default message is not shown",
            default.display()
        );
        return;
    }
    let out = lockbox()
        .env_remove("LOCKBOX_CONFIG")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("/etc/lockbox/lockbox.toml")
            && err.contains("--config")
            && err.contains("LOCKBOX_CONFIG"),
        "{err}"
    );
}

#[test]
fn config_flag_wins_over_the_environment() {
    let v = Vault::new("");
    let out = lockbox()
        .env("LOCKBOX_CONFIG", v.path().join("missing.toml"))
        .arg("--config")
        .arg(&v.config)
        .arg("snapshots")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // And the environment is used when no flag is given.
    let out = lockbox()
        .env("LOCKBOX_CONFIG", &v.config)
        .arg("snapshots")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = lockbox().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let text = stdout(&out);
        for word in ["restore", "backup", "--identity", "config"] {
            assert!(text.contains(word), "{shell} completions lack {word}");
        }
    }
    // The bash script is valid bash and registers a completion for lockbox.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("lockbox.bash");
    let out = lockbox().args(["completions", "bash"]).output().unwrap();
    std::fs::write(&script, &out.stdout).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p lockbox",
            script.display()
        ))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(stdout(&check).contains("lockbox"), "{}", stdout(&check));
    // A shell it does not know is a usage error naming the ones it does.
    let out = lockbox().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("bash") && stderr(&out).contains("zsh"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn man_pages_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = lockbox()
        .args(["man", "--output-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let help = stdout(&lockbox().arg("--help").output().unwrap());
    let commands: Vec<&str> = help
        .split("Commands:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 18, "{commands:?}");
    for name in std::iter::once("lockbox".to_string())
        .chain(commands.iter().map(|c| format!("lockbox-{c}")))
        .chain([
            "lockbox-config-check".into(),
            "lockbox-catalog-rebuild".into(),
        ])
    {
        let page = dir.path().join(format!("{name}.1"));
        let text =
            std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{name}: not roff"
        );
        assert!(text.contains("Examples:"), "{name}: no examples");
    }
    let restore = std::fs::read_to_string(dir.path().join("lockbox-restore.1")).unwrap();
    assert!(restore.contains("EXIT STATUS IS THE VERDICT"));
}

/// A vault whose config has one scheduled source and one notify command.
fn scheduled(dump: &str) -> Vault {
    Vault::with(|c| {
        c.source_command(
            "orders",
            &[dump, "-c", "echo hi"],
            &["schedule = \"30 2 * * *\""],
        )
        .raw("[[notify]]\nkind = \"command\"\ncommand = [\"/bin/true\"]\n")
    })
}

#[test]
fn config_check_prints_what_the_config_will_do() {
    let v = scheduled("/bin/sh");
    let out = v.cmd().args(["config", "check"]).output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("source orders (command)"), "{text}");
    assert!(text.contains("\"30 2 * * *\": next"), "{text}");
    assert!(text.contains("CRIT after 1d 2h"), "{text}");
    assert!(text.contains("notify[0] (command): /bin/true"), "{text}");
    assert!(text.trim_end().ends_with("OK"), "{text}");

    let out = v
        .cmd()
        .args(["config", "check", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = json["sources"][0]["next_runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "{json}");
    let times: Vec<&str> = runs.iter().map(|r| r.as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    assert!(times.iter().all(|t| t.contains("T02:30:00")), "{times:?}");
    assert_eq!(json["problems"].as_array().unwrap().len(), 0);
}

#[test]
fn config_check_exits_2_on_any_problem() {
    // A program that is not there.
    let v = scheduled("/nonexistent/dump-tool");
    let out = v.cmd().args(["config", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("PROBLEM source orders: /nonexistent/dump-tool"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("1 problem"), "{}", stderr(&out));
    // A config that does not load: the key at fault, exit 2.
    let bad = v.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&v.config)
            .unwrap()
            .replace("schedule = \"30 2 * * *\"", "schedule = \"61 2 * * *\""),
    )
    .unwrap();
    let out = lockbox()
        .arg("--config")
        .arg(&bad)
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("source[0].schedule"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn restore_needs_no_source_for_a_unique_snapshot() {
    let v = Vault::new("");
    let a = v.backup_bytes("alpha", b"first source's bytes");
    v.backup_bytes("beta", b"second source's bytes");
    let id = a["snapshot"].as_str().unwrap();
    let target = v.path().join("out.bin");
    let identity = v.identity.to_str().unwrap();
    v.ok(&[
        "restore",
        &id[..10],
        "--identity",
        identity,
        "--output",
        target.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&target).unwrap(), b"first source's bytes");

    // `latest` with two sources in the repository: which one?
    let (code, err) = v.fails(&["restore", "latest", "--identity", identity, "--output", "-"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--source") && err.contains("alpha, beta"),
        "{err}"
    );

    // A misspelt source: the ones that have snapshots are listed.
    let (code, err) = v.fails(&[
        "restore",
        "latest",
        "--source",
        "alpah",
        "--identity",
        identity,
        "--output",
        "-",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("\"alpah\"") && err.contains("alpha, beta"),
        "{err}"
    );
}

#[test]
fn restore_names_its_target_choices() {
    let v = Vault::new("");
    let out = v
        .cmd()
        .args(["restore", "latest", "--identity"])
        .arg(&v.identity)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("--output") && err.contains("--into"), "{err}");
}

#[test]
fn unknown_source_lists_the_configured_ones() {
    let v = scheduled("/bin/sh");
    for args in [
        &["backup", "ordrs"][..],
        &["drill", "ordrs"],
        &["status", "--source", "ordrs"],
    ] {
        let out = v.cmd().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("configured: orders") || err.contains("known: orders"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn quickstart_leaves_commands_that_work_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let run = || {
        let out = lockbox()
            .args(["quickstart", "--dir"])
            .arg(&demo)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        stdout(&out)
    };
    let first = run();
    assert!(first.contains("The first backup read"), "{first}");
    for step in [
        "1. A real database",
        "2. A drill",
        "3. Storage that cannot be deleted",
    ] {
        assert!(first.contains(step), "{first}");
    }
    // Every command under "Try:" runs as printed, with the binary's real
    // path (after `cargo run`, `lockbox` is not on PATH).
    let tries: Vec<&str> = first
        .split("Try:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.split("  #").next().unwrap().trim())
        .collect();
    assert_eq!(tries.len(), 3, "{first}");
    for line in &tries[..2] {
        assert!(line.starts_with(crate::support::BIN), "{line}");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(line)
            .env_remove("LOCKBOX_CONFIG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{line}: {}", stderr(&out));
    }
    // The second run explains deduplication with its own numbers.
    let second = run();
    let note = second
        .lines()
        .find(|l| l.starts_with("Backup 2 of this database read"))
        .unwrap_or_else(|| panic!("{second}"));
    assert!(note.contains("but stored only"), "{note}");
}
