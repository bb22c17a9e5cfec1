//! Every failure is visible: a backup that fails at any point — before its
//! dump starts, during it, or in storage — is recorded as a failed run,
//! turns its source CRIT (status, check, metrics) and is cleared by the next
//! good run. And every stop is clean: a signal leaves no process, no
//! `running` row, no snapshot and no partial output.
//!
//! Real components: PostgreSQL and MariaDB on 127.0.0.1, real tools, the
//! real binary. Processes are found by a marker in their environment that
//! only this test's runs carry, never by name.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::db::{self, Engine, TempDb, TempRole};
use crate::support::monitoring::{run_check, sample, stdout};
use crate::support::{self, Vault};

/// A password that must never be shown.
const SECRET: &str = "Wr0ng-pw-7c1d9e";

/// A source that always works, under `name`.
fn good(name: &str) -> String {
    format!(
        "\n[[source]]\nname = \"{name}\"\nkind = \"command\"\ncommand = [\"printf\", \"ok %s\\n\", \"{name}\"]\n"
    )
}

fn write_config(v: &Vault, base: &str, source: &str) {
    std::fs::write(&v.config, format!("{base}{source}")).unwrap();
}

fn status_of(v: &Vault, source: &str) -> serde_json::Value {
    let s: serde_json::Value = serde_json::from_str(&stdout(v, &["status", "--json"])).unwrap();
    s["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["source"] == source)
        .cloned()
        .unwrap_or_else(|| panic!("no {source} in status: {s}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Case {
    name: &'static str,
    /// The `[[source]]` under test (named "src").
    source: String,
    /// Text the recorded error must contain.
    expect: &'static str,
    outcome: &'static str,
    /// Breaks the environment before the failing run and repairs it after.
    setup: Option<fn(&Vault)>,
    teardown: Option<fn(&Vault)>,
}

fn move_repo_away(v: &Vault) {
    std::fs::rename(v.repo(), v.path().join("repo.moved")).unwrap();
}

fn move_repo_back(v: &Vault) {
    std::fs::rename(v.path().join("repo.moved"), v.repo()).unwrap();
}

#[test]
fn every_failure_point_is_recorded_critical_and_cleared_by_the_next_good_run() {
    let pg = db::reachable(Engine::Postgres);
    let my = db::reachable(Engine::Mariadb);
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("pw");
    std::fs::write(&secret_file, SECRET).unwrap();
    let pgdb = pg.then(|| TempDb::create(Engine::Postgres, "fail"));
    let role = my.then(|| TempRole::create(Engine::Mariadb, "right-one-3e8a", ""));
    let no_trailer = dir.path().join("mariadb-dump");
    // A dump tool that ends "successfully" without its completion line.
    std::fs::write(
        &no_trailer,
        "#!/bin/sh\necho '-- MariaDB dump'\necho 'CREATE TABLE t (x int);'\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &no_trailer,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let mut cases = vec![
        Case {
            name: "missing tool",
            source: "kind = \"command\"\ncommand = [\"lockbox-test-no-such-tool\"]\n".into(),
            expect: "program not found",
            outcome: "failed",
            setup: None,
            teardown: None,
        },
        Case {
            name: "dump exits non-zero",
            source: "kind = \"command\"\ncommand = [\"sh\", \"-c\", \"echo partial; exit 3\"]\n"
                .into(),
            expect: "exit status 3",
            outcome: "failed",
            setup: None,
            teardown: None,
        },
        Case {
            name: "timeout",
            source: "kind = \"command\"\ncommand = [\"sleep\", \"30\"]\ntimeout = \"1s\"\n".into(),
            expect: "timed out after 1s",
            outcome: "timed_out",
            setup: None,
            teardown: None,
        },
        Case {
            name: "storage unreachable (repository moved away)",
            source: "kind = \"command\"\ncommand = [\"printf\", \"x\"]\n".into(),
            expect: "repo",
            outcome: "failed",
            setup: Some(move_repo_away),
            teardown: Some(move_repo_back),
        },
    ];
    if pg {
        let db = &pgdb.as_ref().unwrap().name;
        cases.push(Case {
            name: "postgres: missing database",
            source: format!(
                "kind = \"postgres\"\nhost = \"127.0.0.1\"\nport = 5432\nuser = \"postgres\"\n\
                 database = \"{db}_renamed\"\n"
            ),
            expect: "_renamed",
            outcome: "failed",
            setup: None,
            teardown: None,
        });
        cases.push(Case {
            name: "postgres: connection refused",
            source: format!(
                "kind = \"postgres\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"postgres\"\n\
                 database = \"{db}\"\n",
                free_port()
            ),
            expect: "127.0.0.1",
            outcome: "failed",
            setup: None,
            teardown: None,
        });
    }
    if my {
        let user = &role.as_ref().unwrap().name;
        cases.push(Case {
            name: "mariadb: wrong password",
            source: format!(
                "kind = \"mariadb\"\nhost = \"127.0.0.1\"\nport = 3306\nuser = \"{user}\"\n\
                 database = \"mysql\"\npassword_file = \"{}\"\n",
                secret_file.display()
            ),
            expect: "ccess denied",
            outcome: "failed",
            setup: None,
            teardown: None,
        });
        cases.push(Case {
            name: "mariadb: dump without its completion line",
            source: format!(
                "kind = \"mariadb\"\nhost = \"127.0.0.1\"\nport = 3306\nuser = \"root\"\n\
                 database = \"mysql\"\ndump_tool = \"{}\"\n",
                no_trailer.display()
            ),
            expect: "Dump completed",
            outcome: "failed",
            setup: None,
            teardown: None,
        });
    }

    let v = Vault::new("");
    let base = std::fs::read_to_string(&v.config).unwrap();
    let mut failed_total = 0.0;
    for case in &cases {
        write_config(&v, &base, &good("src"));
        v.ok(&["backup", "src"]);

        write_config(
            &v,
            &base,
            &format!("\n[[source]]\nname = \"src\"\n{}", case.source),
        );
        if let Some(f) = case.setup {
            f(&v);
        }
        let (code, err) = v.fails(&["backup", "src"]);
        if let Some(f) = case.teardown {
            f(&v);
        }
        let name = case.name;
        assert_eq!(code, 1, "{name}: {err}");
        assert!(!err.contains(SECRET), "{name}: secret in stderr: {err}");
        failed_total += 1.0;

        let st = status_of(&v, "src");
        let run = &st["last_run"];
        assert_eq!(run["outcome"], case.outcome, "{name}: {st}");
        let error = run["error"].as_str().unwrap_or_default();
        assert!(error.contains(case.expect), "{name}: error {error:?}");
        assert!(!error.contains(SECRET), "{name}: secret in the run's error");
        assert_eq!(st["health"], "CRIT", "{name}: {st}");
        let first = st["reasons"][0].as_str().unwrap();
        assert!(
            first.starts_with(&format!("last backup {}", case.outcome.replace('_', " "))),
            "{name}: {first}"
        );
        let (code, out) = run_check(&v, &["--source", "src"]);
        assert_eq!(code, 2, "{name}: {out}");
        let metrics = stdout(&v, &["metrics"]);
        assert_eq!(
            sample(&metrics, "lockbox_last_run_failed", r#"source="src""#),
            Some(1.0),
            "{name}"
        );
        let failures: f64 = ["failed", "timed_out"]
            .iter()
            .filter_map(|o| {
                sample(
                    &metrics,
                    "lockbox_backup_runs_total",
                    &format!(r#"outcome="{o}",source="src""#),
                )
            })
            .sum();
        assert_eq!(failures, failed_total, "{name}: failure counter");

        // The next good run clears it.
        write_config(&v, &base, &good("src"));
        v.ok(&["backup", "src"]);
        let st = status_of(&v, "src");
        assert_eq!(st["last_run_failed"], false, "{name}: {st}");
        assert_ne!(st["health"], "CRIT", "{name}: {st}");
        let metrics = stdout(&v, &["metrics"]);
        assert_eq!(
            sample(&metrics, "lockbox_last_run_failed", r#"source="src""#),
            Some(0.0),
            "{name}"
        );
    }
    assert!(
        cases.len() >= 4 + 2 * usize::from(pg) + 2 * usize::from(my),
        "cases"
    );
}

/// Pids of processes whose environment holds `marker`.
fn marked(marker: &str) -> Vec<u32> {
    let needle = format!("LOCKBOX_TEST_MARKER={marker}");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rfind(')')
            .is_some_and(|i| stat[i + 1..].trim_start().starts_with('Z'));
        if !zombie && env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[allow(unsafe_code)] // a raw syscall is the point here
fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) has no memory effects.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// A backup whose dump tool is a small tree (`sh`, a background `sleep`,
/// a foreground `sleep`) that writes some data and then hangs; returns the
/// running `lockbox backup` once the tree is up.
fn start_hanging_backup(v: &Vault, marker: &str) -> Child {
    let child = v
        .cmd()
        .args(["backup", "hang"])
        .env("LOCKBOX_TEST_MARKER", marker)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the dump tree", Duration::from_secs(10), || {
        marked(marker).len() >= 4 // lockbox, guardian, sh, sleeps
    });
    child
}

fn hanging_source(marker: &str) -> String {
    format!(
        "\n[[source]]\nname = \"hang\"\nkind = \"command\"\n\
         command = [\"sh\", \"-c\", \"head -c 300000 /dev/urandom; sleep 300 & sleep 301\"]\n\
         env = {{ LOCKBOX_TEST_MARKER = \"{marker}\" }}\n"
    )
}

#[test]
fn stop_signals_leave_no_process_no_running_row_and_no_snapshot() {
    let marker = db::unique("stop");
    let v = Vault::new(&hanging_source(&marker));
    for (sig, code) in [
        (libc::SIGINT, 130),
        (libc::SIGTERM, 143),
        (libc::SIGHUP, 129),
    ] {
        let mut child = start_hanging_backup(&v, &marker);
        signal(&child, sig);
        let status = child.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(code), "signal {sig}: {err}");
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: interrupted by SIG") && last.ends_with("no snapshot written"),
            "signal {sig}: {err}"
        );
        wait_until("the dump tree to go", Duration::from_secs(5), || {
            marked(&marker).is_empty()
        });
        let st = status_of(&v, "hang");
        assert_eq!(st["last_run"]["outcome"], "interrupted", "{st}");
        assert!(
            st["last_run"]["error"]
                .as_str()
                .unwrap()
                .contains("interrupted by SIG"),
            "{st}"
        );
        assert_eq!(st["health"], "CRIT", "{st}");
        v.assert_no_snapshots("hang");
    }
}

#[test]
fn sigkill_of_lockbox_takes_its_tools_and_the_next_reader_closes_the_run() {
    let marker = db::unique("kill");
    let v = Vault::new(&hanging_source(&marker));
    let mut child = start_hanging_backup(&v, &marker);
    let st = status_of(&v, "hang");
    assert_eq!(st["last_run"]["outcome"], "running", "{st}");
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    wait_until(
        "the guardian to take the dump tree",
        Duration::from_secs(5),
        || marked(&marker).is_empty(),
    );
    let st = status_of(&v, "hang");
    assert_eq!(st["last_run"]["outcome"], "interrupted", "{st}");
    assert!(
        st["last_run"]["error"]
            .as_str()
            .unwrap()
            .contains("process gone"),
        "{st}"
    );
    let (code, out) = run_check(&v, &["--source", "hang"]);
    assert_eq!(code, 2, "{out}");
    v.assert_no_snapshots("hang");
}

#[test]
fn a_stopped_restore_leaves_no_partial_output() {
    let v = Vault::new("");
    let data = support::mixed_data(48 << 20, 11);
    v.backup_bytes("big", &data);
    let out_dir = v.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let target = out_dir.join("restored.bin");
    for (i, delay_ms) in [30u64, 80, 150, 300].into_iter().enumerate() {
        let _ = std::fs::remove_file(&target);
        let mut child = v
            .cmd()
            .args(v.restore_args("latest", "big", target.to_str().unwrap()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let sig = if i % 2 == 0 {
            libc::SIGTERM
        } else {
            libc::SIGINT
        };
        signal(&child, sig);
        let status = child.wait().unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(&out_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        if status.success() {
            // Finished before the signal: complete and verified.
            assert!(std::fs::read(&target).unwrap() == data, "delay {delay_ms}");
        } else {
            // 128 + n from the handler; a signal that beats the handler's
            // installation kills the process outright, before any output.
            use std::os::unix::process::ExitStatusExt;
            assert!(
                status.code() == Some(128 + sig) || status.signal() == Some(sig),
                "delay {delay_ms}: {status}"
            );
            assert!(leftovers.is_empty(), "delay {delay_ms}: {leftovers:?}");
        }
    }
}
