//! `lockbox status`, `check`, `metrics` and the daemon's status server,
//! driven through the real binary against real backups; the shipped alert
//! rules and dashboard. Every wait polls with a deadline.
//!
//! No command writes verification rows yet (`drill` and `verify` are being
//! built in parallel), so these tests insert them into the catalog file with
//! SQLite directly, exactly as `Catalog::record_verification` would.

mod support;

use std::collections::BTreeSet;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::Vault;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const ORDERS_ROWS: u64 = 300_000;

fn sources(daemon: &str) -> String {
    format!(
        r#"{daemon}
[[source]]
name = "orders"
kind = "command"
command = ["sh", "-c", "seq 1 {ORDERS_ROWS}"]
schedule = "0 3 1 1 *"
[[source]]
name = "broken"
kind = "command"
command = ["sh", "-c", "echo oops-from-broken >&2; exit 3"]
"#
    )
}

/// Bytes `seq 1 N` prints, computed independently of Lockbox.
fn seq_len(n: u64) -> u64 {
    (1..=n).map(|i| i.to_string().len() as u64 + 1).sum()
}

/// A Debian tool the test needs: its path, or None after a loud SKIPPED
/// line. With CI set, a missing tool fails the test.
fn tool(path: &str, package: &str) -> Option<PathBuf> {
    let p = PathBuf::from(path);
    if p.exists() {
        return Some(p);
    }
    let msg = format!("{path} not found (Debian package `{package}`)");
    assert!(
        std::env::var_os("CI").is_none(),
        "{msg}; .ci/run installs it"
    );
    eprintln!("\n**********\nSKIPPED: {msg}\n**********\n");
    None
}

fn run_check(v: &Vault, args: &[&str]) -> (i32, String) {
    let out = v.cmd().arg("check").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn stdout(v: &Vault, args: &[&str]) -> String {
    String::from_utf8(v.ok(args).stdout).unwrap()
}

/// The value of the sample `name{labels}` in Prometheus text, labels given
/// as they are printed (sorted by name).
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().expect("a number"))
}

fn promtool_check_metrics(text: &str) {
    let Some(promtool) = tool("/usr/bin/promtool", "prometheus") else {
        return;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n--- input ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn unix(rfc3339: &str) -> i64 {
    OffsetDateTime::parse(rfc3339, &Rfc3339)
        .unwrap()
        .unix_timestamp()
}

/// The newest snapshot of `source` as `snapshots --json` lists it.
fn newest(v: &Vault, source: &str) -> serde_json::Value {
    let list: serde_json::Value =
        serde_json::from_str(&stdout(v, &["snapshots", "--json", "--source", source])).unwrap();
    list.as_array().unwrap().last().unwrap().clone()
}

/// Records a drill of `snap` in the catalog (see the module comment).
fn record_drill(v: &Vault, snap: &serde_json::Value, passed: bool, restore_seconds: f64) {
    let now = OffsetDateTime::now_utc().format(&Rfc3339).unwrap();
    let conn = rusqlite::Connection::open(v.state().join("catalog.sqlite")).unwrap();
    conn.execute(
        "INSERT INTO verifications (source, snapshot, snapshot_started_at, kind, passed,
            started_at, finished_at, restore_seconds, detail, attestation_key)
         VALUES (?1, ?2, ?3, 'drill', ?4, ?5, ?5, ?6, ?7, NULL)",
        rusqlite::params![
            snap["source"].as_str().unwrap(),
            snap["id"].as_str().unwrap(),
            snap["started_at"].as_str().unwrap(),
            passed,
            now,
            restore_seconds,
            (!passed).then_some("row count of orders differs: 10 != 12"),
        ],
    )
    .unwrap();
}

#[test]
fn status_check_and_metrics_follow_the_catalog() {
    let v = Vault::new(&sources(""));
    let (code, out) = run_check(&v, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.starts_with("LOCKBOX CRITICAL - 2 critical, 0 warning, 0 ok\n"),
        "{out}"
    );
    assert!(out.contains("CRIT orders: never backed up"), "{out}");

    v.ok(&["backup", "orders"]);
    v.ok(&["backup", "orders"]);
    let (code, err) = v.fails(&["backup", "broken"]);
    assert_eq!(code, 1, "{err}");
    let snap = newest(&v, "orders");

    let (code, out) = run_check(&v, &["--source", "orders"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("LOCKBOX WARNING - 0 critical, 1 warning, 0 ok\n"));
    assert!(out.contains("WARN orders: never verified"), "{out}");
    let (code, out) = run_check(&v, &["--source", "nope"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.starts_with("LOCKBOX UNKNOWN - "), "{out}");

    let metrics = stdout(&v, &["metrics"]);
    promtool_check_metrics(&metrics);
    let orders = r#"source="orders""#;
    assert_eq!(
        sample(
            &metrics,
            "lockbox_last_backup_success_timestamp_seconds",
            orders
        ),
        Some(unix(snap["started_at"].as_str().unwrap()) as f64)
    );
    assert_eq!(
        sample(&metrics, "lockbox_snapshot_logical_bytes", orders),
        Some(seq_len(ORDERS_ROWS) as f64)
    );
    assert_eq!(
        sample(&metrics, "lockbox_snapshot_stored_bytes", orders),
        Some(snap["stored_bytes"].as_u64().unwrap() as f64)
    );
    assert_eq!(sample(&metrics, "lockbox_snapshots", orders), Some(2.0));
    assert_eq!(
        sample(
            &metrics,
            "lockbox_backup_runs_total",
            r#"outcome="success",source="orders""#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "lockbox_backup_runs_total",
            r#"outcome="failed",source="broken""#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "lockbox_last_run_failed", r#"source="broken""#),
        Some(1.0)
    );
    assert_eq!(sample(&metrics, "lockbox_health", orders), Some(1.0));
    assert_eq!(
        sample(&metrics, "lockbox_health", r#"source="broken""#),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "lockbox_last_verified_backup_timestamp_seconds",
            orders
        ),
        None
    );
    let all: serde_json::Value =
        serde_json::from_str(&stdout(&v, &["snapshots", "--json"])).unwrap();
    let earliest = all
        .as_array()
        .unwrap()
        .iter()
        .map(|s| unix(s["retain_until"].as_str().unwrap()))
        .min()
        .unwrap();
    assert_eq!(
        sample(
            &metrics,
            "lockbox_repository_retain_until_min_timestamp_seconds",
            ""
        ),
        Some(earliest as f64)
    );

    // The human table: aligned, no colour when not a terminal.
    let table = stdout(&v, &["status"]);
    assert!(!table.contains('\x1b'), "{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("SOURCE  "), "{table}");
    let col = lines[0].find("HEALTH").unwrap();
    assert_eq!(&lines[1][..6], "orders");
    assert_eq!(&lines[1][col..col + 4], "WARN", "{table}");
    assert_eq!(&lines[2][col..col + 4], "CRIT", "{table}");
    assert!(table.contains("oops-from-broken"), "{table}");

    let json: serde_json::Value = serde_json::from_str(&stdout(&v, &["status", "--json"])).unwrap();
    assert_eq!(json["health"], "CRIT");
    let s = &json["sources"][0];
    assert_eq!(s["source"], "orders");
    assert_eq!(s["health"], "WARN");
    assert_eq!(s["last_backup"]["snapshot"], snap["id"]);
    assert_eq!(s["snapshots"], 2);
    assert_eq!(s["logical_bytes"], seq_len(ORDERS_ROWS));
    assert_eq!(s["last_verified"], serde_json::Value::Null);
    assert_eq!(json["sources"][1]["last_error"]["outcome"], "failed");

    // A passing drill of the newest snapshot: OK, and the metrics say so.
    record_drill(&v, &snap, true, 4.5);
    let (code, out) = run_check(&v, &["--source", "orders"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("LOCKBOX OK - 0 critical, 0 warning, 1 ok\n"));
    let metrics = stdout(&v, &["metrics"]);
    promtool_check_metrics(&metrics);
    assert_eq!(
        sample(
            &metrics,
            "lockbox_last_verified_backup_timestamp_seconds",
            orders
        ),
        Some(unix(snap["started_at"].as_str().unwrap()) as f64)
    );
    assert_eq!(
        sample(&metrics, "lockbox_drill_restore_seconds", orders),
        Some(4.5)
    );
    assert_eq!(
        sample(
            &metrics,
            "lockbox_drill_runs_total",
            r#"outcome="passed",source="orders""#
        ),
        Some(1.0)
    );

    // A later failing drill: WARN with its detail.
    record_drill(&v, &snap, false, 1.0);
    let (code, out) = run_check(&v, &["--source", "orders"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("last drill failed"), "{out}");
    assert!(out.contains("row count of orders differs"), "{out}");

    // A threshold shorter than the backup's age: CRIT once the clock passes it.
    let text = std::fs::read_to_string(&v.config).unwrap();
    std::fs::write(
        &v.config,
        text.replace(
            "name = \"orders\"\n",
            "name = \"orders\"\nmax_backup_age = \"2s\"\n",
        ),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, out) = run_check(&v, &["--source", "orders"]);
        if code == 2 {
            assert!(out.contains("older than max_backup_age 2s"), "{out}");
            break;
        }
        assert_eq!(code, 1, "{out}");
        assert!(Instant::now() < deadline, "never went stale: {out}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A broken config is UNKNOWN, not Lockbox's usual exit 2 (= CRITICAL).
    std::fs::write(&v.config, text.replace("lock_days = 2", "lock_dayz = 2")).unwrap();
    let (code, out) = run_check(&v, &[]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.starts_with("LOCKBOX UNKNOWN - ") && out.contains("lock_dayz"),
        "{out}"
    );
}

#[test]
fn metrics_textfile_is_replaced_atomically() {
    let v = Vault::new(&sources(""));
    v.ok(&["backup", "orders"]);
    let reference = stdout(&v, &["metrics"]);
    let dir = v.path().join("textfile");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("lockbox.prom");
    std::fs::write(&file, "# old\n").unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (file, stop, reference) = (file.clone(), stop.clone(), reference.clone());
        std::thread::spawn(move || {
            let (mut old, mut new) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let text = std::fs::read_to_string(&file).expect("the file never disappears");
                if text == "# old\n" {
                    old += 1;
                } else {
                    assert_eq!(text, reference, "a reader saw a partial file");
                    new += 1;
                }
            }
            (old, new)
        })
    };
    for i in 0..15 {
        // A handle opened before the write still reads the previous content
        // after it: the file was replaced, not rewritten in place.
        let mut before = std::fs::File::open(&file).unwrap();
        v.ok(&["metrics", "--textfile", file.to_str().unwrap()]);
        let mut seen = String::new();
        before.read_to_string(&mut seen).unwrap();
        assert_eq!(
            seen,
            if i == 0 {
                "# old\n"
            } else {
                reference.as_str()
            }
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (old, new) = reader.join().unwrap();
    assert!(
        new > 0,
        "the reader never saw the new file ({old} old reads)"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), reference);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["lockbox.prom"], "no temporary file is left behind");
    promtool_check_metrics(&reference);
}

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(v: &Vault) -> Self {
        let log = v.path().join("daemon.log");
        let child = v
            .cmd()
            .arg("daemon")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    /// The address the status server logged (it listens on port 0).
    fn address(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(i) = log.find("listen=127.0.0.1:") {
                let rest = &log[i + "listen=".len()..];
                return rest
                    .split(|c: char| c.is_whitespace())
                    .next()
                    .unwrap()
                    .to_string();
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "daemon exited:\n{log}"
            );
            assert!(Instant::now() < deadline, "no status server:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET: (status, headers, body).
fn get(addr: &str, path: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

/// Runs headless Chromium with `args` and `url`, killing it after a minute.
fn chromium(chrome: &Path, profile: &Path, args: &[&str], url: &str) -> String {
    let mut child = Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1200,800",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium {args:?} failed: {status}");
            return reader.join().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium {args:?} did not finish in 60s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn daemon_serves_status_metrics_and_a_page_people_can_read() {
    let v = Vault::new(&sources("[daemon]\nlisten = \"127.0.0.1:0\"\n"));
    v.ok(&["backup", "orders"]);
    v.fails(&["backup", "broken"]);
    let snap = newest(&v, "orders");
    record_drill(&v, &snap, true, 2.25);
    let mut daemon = Daemon::start(&v);
    let addr = daemon.address();

    let (code, _, body) = get(&addr, "/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, _, body) = get(&addr, "/nope");
    assert_eq!(code, 404, "{body}");

    let (code, _, body) = get(&addr, "/status");
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["health"], "CRIT");
    assert_eq!(status["sources"][0]["source"], "orders");
    assert_eq!(status["sources"][0]["health"], "OK");
    assert_eq!(status["sources"][1]["health"], "CRIT");
    assert_eq!(
        status["sources"][0]["last_verified"]["snapshot"],
        snap["id"]
    );

    let (code, head, metrics) = get(&addr, "/metrics");
    assert_eq!(code, 200);
    assert!(
        head.contains("text/plain; version=0.0.4"),
        "content type: {head}"
    );
    promtool_check_metrics(&metrics);
    assert_eq!(
        sample(
            &metrics,
            "lockbox_snapshot_logical_bytes",
            r#"source="orders""#
        ),
        Some(seq_len(ORDERS_ROWS) as f64)
    );
    assert_eq!(
        sample(
            &metrics,
            "lockbox_last_backup_success_timestamp_seconds",
            r#"source="orders""#
        ),
        Some(unix(snap["started_at"].as_str().unwrap()) as f64)
    );

    // What a person sees.
    let Some(chrome) = tool("/usr/bin/chromium", "chromium") else {
        return;
    };
    let url = format!("http://{addr}/");
    let profile = tempfile::tempdir().unwrap();
    let dom = chromium(&chrome, profile.path(), &["--dump-dom"], &url);
    for needle in [
        "<title>Lockbox: CRIT</title>",
        "id=\"source-orders\"",
        "id=\"source-broken\"",
        "never backed up",
        "oops-from-broken",
        "passed",
        "restore 2.2s",
        "ago",
    ] {
        assert!(dom.contains(needle), "the page lacks {needle:?}:\n{dom}");
    }
    // Health words in their colours: broken red, orders green, worst first.
    let broken = dom.find("id=\"source-broken\"").unwrap();
    let orders = dom.find("id=\"source-orders\"").unwrap();
    assert!(broken < orders, "CRIT sources come first");
    assert!(
        dom[broken..orders].contains("style=\"background:#c62828\">CRIT<"),
        "{dom}"
    );
    assert!(
        dom[orders..].contains("style=\"background:#1a7f37\">OK<"),
        "{dom}"
    );
    assert!(!dom.contains("<script"), "no JavaScript");

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().unwrap();
    chromium(
        &chrome,
        profile.path(),
        &[&format!("--screenshot={}", shot.display())],
        &url,
    );
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "not a screenshot"
    );
    eprintln!("status page screenshot: {}", shot.display());
}

/// `promtool test rules` input: series for one source, and when each alert
/// must (and must not) fire.
const ALERT_TESTS: &str = r#"
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'lockbox_last_backup_success_timestamp_seconds{source="orders",instance="h"}'
        values: '0+0x1700'
      - series: 'lockbox_max_backup_age_seconds{source="orders",instance="h"}'
        values: '93600+0x1700'
      - series: 'lockbox_snapshots{source="orders",instance="h"}'
        values: '1+0x1700'
      - series: 'lockbox_last_run_failed{source="orders",instance="h"}'
        values: '0 0 1+0x1700'
      - series: 'lockbox_tamper_events_total{source="orders",instance="h"}'
        values: '0 0 0 0 0 1+0x1700'
      - series: 'lockbox_last_drill_success{source="orders",instance="h"}'
        values: '1 1 1 0+0x1700'
      - series: 'lockbox_snapshot_retain_until_timestamp_seconds{source="orders",instance="h"}'
        values: '300000+0x1700'
    alert_rule_test:
      - eval_time: 1h
        alertname: LockboxBackupStale
      - eval_time: 1600m
        alertname: LockboxBackupStale
        exp_alerts:
          - exp_labels: {severity: critical, source: orders, instance: h}
            exp_annotations:
              summary: "Lockbox: no recent backup of orders"
              description: "The newest snapshot of orders on h is 1d 2h 40m 0s old, older than its max_backup_age. Run `lockbox status` there."
      - eval_time: 1m
        alertname: LockboxLastRunFailed
      - eval_time: 3m
        alertname: LockboxLastRunFailed
        exp_alerts:
          - exp_labels: {severity: warning, source: orders, instance: h}
            exp_annotations:
              summary: "Lockbox: the last backup run of orders failed"
              description: "See `lockbox status` or the daemon's status page on h for the error."
      - eval_time: 4m
        alertname: LockboxTamperEvent
      - eval_time: 10m
        alertname: LockboxTamperEvent
        exp_alerts:
          - exp_labels: {severity: critical, source: orders, instance: h}
            exp_annotations:
              summary: "Lockbox: the repository was tampered with (orders)"
              description: "Restores read the locked originals, but someone deleted or overwrote objects. Find out whose credentials did it."
      - eval_time: 2m
        alertname: LockboxDrillFailed
      - eval_time: 5m
        alertname: LockboxDrillFailed
        exp_alerts:
          - exp_labels: {severity: warning, source: orders, instance: h}
            exp_annotations:
              summary: "Lockbox: the last restore drill of orders failed"
              description: "A snapshot of orders could not be restored and checked. See `lockbox status`."
      - eval_time: 10m
        alertname: LockboxNeverVerified
      - eval_time: 1500m
        alertname: LockboxNeverVerified
        exp_alerts:
          - exp_labels: {severity: warning, source: orders, instance: h}
            exp_annotations:
              summary: "Lockbox: no backup of orders was ever verified"
              description: "orders has snapshots but none passed a drill or a full verify."
      - eval_time: 600m
        alertname: LockboxRetentionRunningOut
      - eval_time: 720m
        alertname: LockboxRetentionRunningOut
        exp_alerts:
          - exp_labels: {severity: warning, source: orders, instance: h}
            exp_annotations:
              summary: "Lockbox: the newest backup of orders loses its lock soon"
              description: "Its retention ends in 2d 23h 20m 0s; after that it can be deleted."
  - interval: 1m
    input_series:
      - series: 'lockbox_last_verified_backup_timestamp_seconds{source="orders",instance="h"}'
        values: '0+0x100'
      - series: 'lockbox_max_verified_age_seconds{source="orders",instance="h"}'
        values: '3600+0x100'
    alert_rule_test:
      - eval_time: 50m
        alertname: LockboxVerifiedBackupStale
      - eval_time: 70m
        alertname: LockboxVerifiedBackupStale
        exp_alerts:
          - exp_labels: {severity: warning, source: orders, instance: h}
            exp_annotations:
              summary: "Lockbox: last verified backup of orders is too old"
              description: "The newest snapshot of orders proven restorable is 1h 10m 0s old, older than its max_verified_age. Run a drill or `lockbox verify --read-data`."
"#;

/// Names of the metric families in Prometheus text.
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect()
}

/// `lockbox_…` names an expression refers to.
fn referenced(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("lockbox_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn shipped_alert_rules_and_dashboard_use_metrics_lockbox_emits() {
    // Every metric family appears once a source has a backup, a failed run
    // and a drill.
    let v = Vault::new(&sources(""));
    v.ok(&["backup", "orders"]);
    v.fails(&["backup", "broken"]);
    record_drill(&v, &newest(&v, "orders"), true, 1.0);
    let emitted = families(&stdout(&v, &["metrics"]));
    for required in [
        "lockbox_last_backup_success_timestamp_seconds",
        "lockbox_last_verified_backup_timestamp_seconds",
        "lockbox_backup_runs_total",
        "lockbox_backup_duration_seconds",
        "lockbox_snapshot_logical_bytes",
        "lockbox_snapshot_stored_bytes",
        "lockbox_drill_runs_total",
        "lockbox_drill_restore_seconds",
        "lockbox_tamper_events_total",
        "lockbox_repository_retain_until_min_timestamp_seconds",
    ] {
        assert!(
            emitted.contains(required),
            "{required} missing: {emitted:?}"
        );
    }

    let root = env!("CARGO_MANIFEST_DIR");
    let rules_path = format!("{root}/examples/prometheus/alerts.yml");
    let rules = std::fs::read_to_string(&rules_path).unwrap();
    for line in rules
        .lines()
        .filter(|l| l.trim_start().starts_with("expr:"))
    {
        let names = referenced(line);
        assert!(!names.is_empty(), "{line}");
        assert!(names.is_subset(&emitted), "{line} uses {names:?}");
    }
    for alert in [
        "LockboxBackupStale",
        "LockboxVerifiedBackupStale",
        "LockboxLastRunFailed",
        "LockboxDrillFailed",
        "LockboxTamperEvent",
        "LockboxRetentionRunningOut",
    ] {
        assert!(rules.contains(&format!("alert: {alert}\n")), "{alert}");
    }

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/examples/grafana/lockbox.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().unwrap();
    let exprs = |p: &serde_json::Value| -> Vec<String> {
        p["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["expr"].as_str().unwrap().to_string())
            .collect()
    };
    // Front and centre: the first panel, top left and full width.
    let first = &panels[0];
    assert_eq!(first["gridPos"]["y"], 0);
    assert_eq!(first["gridPos"]["x"], 0);
    assert_eq!(first["gridPos"]["w"], 24);
    assert!(exprs(first)[0].contains("lockbox_last_verified_backup_timestamp_seconds"));
    let mut used = BTreeSet::new();
    for p in panels {
        for e in exprs(p) {
            let names = referenced(&e);
            assert!(names.is_subset(&emitted), "{e} uses {names:?}");
            used.extend(names);
        }
    }
    for shown in [
        "lockbox_backup_duration_seconds",
        "lockbox_snapshot_logical_bytes",
        "lockbox_snapshot_stored_bytes",
        "lockbox_dedup_ratio",
    ] {
        assert!(used.contains(shown), "the dashboard does not show {shown}");
    }

    let Some(promtool) = tool("/usr/bin/promtool", "prometheus") else {
        return;
    };
    let out = Command::new(&promtool)
        .args(["check", "rules", &rules_path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tests = v.path().join("alert-tests.yml");
    std::fs::write(&tests, format!("rule_files: [{rules_path}]\n{ALERT_TESTS}")).unwrap();
    let out = Command::new(&promtool)
        .args(["test", "rules"])
        .arg(&tests)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
