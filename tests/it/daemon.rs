//! `lockbox daemon`: schedules, no double runs, catch-up, SIGTERM with a
//! grace period, SIGHUP reloads. Every wait polls with a deadline; no sleep
//! is an assertion.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, Vault};

const TICK: &str = r#"
[[source]]
name = "tick"
kind = "command"
command = ["sh", "-c", "date +%s%N; seq 1 2000"]
schedule = "* * * * * *"
"#;

const SLOW: &str = r#"
[[source]]
name = "slow"
kind = "command"
command = ["sh", "-c", "echo start; sleep 30; echo end"]
schedule = "* * * * * *"
"#;

struct Daemon {
    child: Child,
    log: std::path::PathBuf,
}

impl Daemon {
    fn start(v: &Vault) -> Self {
        let log = v.path().join(format!("daemon-{}.log", rand_suffix()));
        let child = v
            .cmd()
            .arg("daemon")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log }
    }
    #[allow(unsafe_code)] // a raw syscall is the point here
    fn signal(&self, sig: libc::c_int) {
        // SAFETY: signals our own child process, which has not been reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, sig);
        }
    }
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    /// Sends SIGTERM and returns (exit code, seconds until exit).
    fn stop(mut self) -> (Option<i32>, f64, String) {
        self.signal(libc::SIGTERM);
        let t = Instant::now();
        let deadline = t + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), t.elapsed().as_secs_f64(), self.log());
            }
            assert!(
                Instant::now() < deadline,
                "daemon ignored SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn poll(what: &str, timeout_s: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(timeout_s);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn snapshot_count(v: &Vault, source: &str) -> usize {
    snapshot_count_with(&v.config, source)
}

fn snapshot_count_with(config: &std::path::Path, source: &str) -> usize {
    let out = support::lockbox()
        .arg("--config")
        .arg(config)
        .args(["-q", "snapshots", "--json", "--source", source])
        .output()
        .unwrap();
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).map_or(0, |r| r.len())
}

fn runs(v: &Vault, source: &str) -> Vec<(String, Option<String>)> {
    let db = rusqlite::Connection::open(v.state().join("catalog.sqlite")).unwrap();
    let mut st = db
        .prepare("SELECT outcome, error FROM runs WHERE source = ?1 ORDER BY id")
        .unwrap();
    st.query_map([source], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn per_second_schedule_backs_up_repeatedly_and_sigterm_exits_0() {
    let v = Vault::new(TICK);
    let d = Daemon::start(&v);
    poll("three scheduled backups", 90, || {
        snapshot_count(&v, "tick") >= 3
    });
    let (code, _, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("run finished") && log.contains("outcome=\"success\""),
        "{log}"
    );
    assert!(
        log.contains("snapshot="),
        "finish lines name the snapshot: {log}"
    );
}

#[test]
fn a_slow_source_is_never_run_twice_and_sigterm_aborts_it_cleanly() {
    let v = Vault::new(&format!("[daemon]\nshutdown_grace = \"1s\"\n{SLOW}"));
    let d = Daemon::start(&v);
    let lock = v.state().join("locks/slow.lock");
    poll("the slow run to hold its lock", 60, || {
        std::fs::read_to_string(&lock).is_ok_and(|t| t.contains("pid"))
    });
    poll("a skipped slot", 30, || {
        d.log().contains("this slot is skipped")
    });
    // While the daemon's run holds the lock, a manual run exits 75.
    let (code, err) = v.fails(&["backup", "slow"]);
    assert_eq!(code, 75, "{err}");
    let (code, secs, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(secs < 15.0, "shutdown took {secs:.1}s with a 1s grace");
    assert_eq!(
        log.matches("run started source=slow").count(),
        1,
        "slow ran twice: {log}"
    );
    assert_eq!(
        snapshot_count(&v, "slow"),
        0,
        "an aborted run left a snapshot"
    );
    let r = runs(&v, "slow");
    assert_eq!(r.last().map(|x| x.0.as_str()), Some("aborted"), "{r:?}");
    // The sleeping dump tool went down with its run: the run's guardian
    // kills the tool's process group once the run is gone.
    poll("the dump tool to go with its run", 5, || {
        std::process::Command::new("pgrep")
            .args(["-f", "sleep 30; echo end"])
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim().is_empty())
    });
}

#[test]
fn catch_up_runs_an_overdue_source_once_at_start() {
    // Yearly schedule, never backed up: overdue, so it runs at start.
    let v = Vault::new(&TICK.replace("* * * * * *", "0 0 1 1 *"));
    let d = Daemon::start(&v);
    poll("the catch-up backup", 60, || {
        snapshot_count(&v, "tick") == 1
    });
    let (code, _, log) = d.stop();
    assert_eq!(code, Some(0));
    assert!(log.contains("catch-up"), "{log}");
    // Now it is not overdue: a restart does not run it again.
    let d = Daemon::start(&v);
    poll("the daemon to start", 30, || {
        d.log().contains("daemon started")
    });
    let (_, _, log) = d.stop();
    assert!(!log.contains("catch-up"), "{log}");
    assert_eq!(snapshot_count(&v, "tick"), 1);
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_one() {
    let v = Vault::new(TICK);
    let d = Daemon::start(&v);
    poll("a first backup", 60, || snapshot_count(&v, "tick") >= 1);
    let good = std::fs::read_to_string(&v.config).unwrap();
    let good_copy = v.path().join("good.toml");
    std::fs::write(&good_copy, &good).unwrap();
    v.settings().lock_days(0).write(&v.config);
    d.signal(libc::SIGHUP);
    poll("the reload to be rejected", 30, || {
        d.log().contains("reload rejected")
    });
    assert!(d.log().contains("repository.lock_days"), "{}", d.log());
    let before = snapshot_count_with(&good_copy, "tick");
    poll("backups to continue on the old config", 60, || {
        snapshot_count_with(&good_copy, "tick") > before
    });
    // A good config is taken.
    std::fs::write(&v.config, &good).unwrap();
    d.signal(libc::SIGHUP);
    poll("the reload", 30, || {
        d.log().contains("configuration reloaded")
    });
    let (code, _, _) = d.stop();
    assert_eq!(code, Some(0));
}

#[test]
fn a_run_past_its_timeout_is_stopped_and_recorded_timed_out() {
    let v = Vault::new(&SLOW.replace(
        "schedule = \"* * * * * *\"",
        "schedule = \"0 0 1 1 *\"\ntimeout = \"1s\"",
    ));
    let d = Daemon::start(&v);
    poll("the timeout", 60, || {
        runs(&v, "slow").iter().any(|r| r.0 == "timed_out")
    });
    let r = runs(&v, "slow");
    assert!(
        r.iter()
            .any(|x| x.1.as_deref().is_some_and(|e| e.contains("timed out"))),
        "{r:?}"
    );
    let (code, _, _) = d.stop();
    assert_eq!(code, Some(0));
    assert_eq!(snapshot_count(&v, "slow"), 0);
}

#[test]
fn a_source_waiting_for_a_slot_is_logged_and_warned_in_status() {
    // One slot, held by a dump that sleeps; the per-second source waits.
    let v = Vault::new(&format!(
        "[daemon]\nmax_concurrent = 1\nshutdown_grace = \"1s\"\nlisten = \"off\"\n{}{TICK}",
        SLOW.replace("* * * * * *", "0 0 1 1 *")
    ));
    let d = Daemon::start(&v);
    poll("the wait to be logged", 60, || {
        d.log().contains("waiting for a slot since")
    });
    let tick = || {
        let out = v.ok(&["status", "--json"]);
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        s["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["source"] == "tick")
            .cloned()
            .unwrap()
    };
    poll("status to warn about the wait", 30, || {
        let t = tick();
        t["waiting_since"].is_string()
            && t["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r.as_str().unwrap().starts_with("waiting for a slot since"))
    });
    poll("the WARN after the schedule's period", 30, || {
        d.log().contains("longer than the schedule's period")
    });
    let (code, _, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
}
