//! One backup of a source at a time (exit 75 naming the holder), and
//! `backup --all` continuing past failures with a summary.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::{TestConfig, Vault};

/// Sources `broken` (a dump tool error, then exit `broken_exit`), `slow`
/// (four seconds) and `fast`.
fn sources(c: TestConfig, broken_exit: u8) -> TestConfig {
    let broken = format!(
        "echo 'pg_dump: error: permission denied for table orders' >&2; exit {broken_exit}"
    );
    c.source_command("broken", &["sh", "-c", &broken], &[])
        .source_command("slow", &["sh", "-c", "echo start; sleep 4; echo end"], &[])
        .source_command("fast", &["sh", "-c", "seq 1 100000"], &[])
}

/// Starts `lockbox backup slow` and waits until it holds the lock.
#[expect(
    clippy::zombie_processes,
    reason = "the child is returned to the caller, which waits for it"
)]
fn hold_slow_lock(v: &Vault) -> Child {
    let mut child = v
        .cmd()
        .args(["-q", "backup", "slow"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = v.state().join("locks/slow.lock");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&lock).unwrap_or_default();
        if text.contains(&format!("pid {}", child.id())) {
            return child;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the slow backup never took its lock");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_busy_source_exits_75_and_names_the_holder() {
    let v = Vault::with(|c| sources(c, 1));
    let mut holder = hold_slow_lock(&v);
    let (code, err) = v.fails(&["backup", "slow"]);
    assert_eq!(code, 75, "{err}");
    assert!(
        err.contains(&format!("pid {}", holder.id())) && err.contains("since"),
        "{err}"
    );
    // Other sources are not blocked.
    v.ok(&["backup", "fast"]);
    assert!(holder.wait().unwrap().success());
    // Released when the holder exits: the source can run again.
    v.ok(&["backup", "slow"]);
}

#[test]
fn a_killed_holder_does_not_leave_a_stale_lock() {
    let v = Vault::with(|c| sources(c, 1));
    let mut holder = hold_slow_lock(&v);
    holder.kill().unwrap(); // SIGKILL: no cleanup code runs
    holder.wait().unwrap();
    v.ok(&["backup", "fast"]);
    let out = v.cmd().args(["backup", "slow"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn backup_all_continues_past_a_failure_and_summarises() {
    let v = Vault::with(|c| sources(c, 1));
    let out = v
        .cmd()
        .args(["backup", "--all", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            s["succeeded"].as_u64(),
            s["failed"].as_u64(),
            s["busy"].as_u64()
        ),
        (Some(2), Some(1), Some(0))
    );
    let broken = &s["sources"][0];
    assert_eq!(broken["source"], "broken");
    assert_eq!(broken["outcome"], "failed");
    assert!(
        broken["error"]
            .as_str()
            .unwrap()
            .contains("permission denied"),
        "{broken}"
    );
    assert_eq!(s["sources"][2]["outcome"], "success");
    let snaps: Vec<serde_json::Value> =
        serde_json::from_slice(&v.ok(&["snapshots", "--json"]).stdout).unwrap();
    let mut names: Vec<&str> = snaps
        .iter()
        .map(|r| r["source"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["fast", "slow"]);
}

#[test]
fn backup_all_reports_busy_sources_with_75() {
    let v = Vault::with(|c| sources(c, 0));
    let mut holder = hold_slow_lock(&v);
    let out = v
        .cmd()
        .args(["backup", "--all", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["busy"], 1);
    assert_eq!(s["sources"][1]["outcome"], "busy");
    assert!(holder.wait().unwrap().success());
}
