//! The daemon's status server: `/healthz`, `/status`, `/metrics`, and the
//! HTML page at `/` as a person sees it in headless Chromium (a screenshot is
//! kept under the target directory's tmp/).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::Vault;
use crate::support::monitoring::*;

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

/// A scheduled source whose dump fails before it starts (the database it
/// names does not exist) and one whose dump exits non-zero: the daemon's
/// runs are recorded, and `/status`, `/metrics` and the page say CRIT.
#[test]
fn daemon_runs_that_fail_are_critical_on_status_metrics_and_the_page() {
    let v = Vault::new(
        "[daemon]\nlisten = \"127.0.0.1:0\"\n\
         [[source]]\nname = \"gone\"\nkind = \"postgres\"\nhost = \"127.0.0.1\"\n\
         port = 5432\nuser = \"postgres\"\ndatabase = \"lbt_no_such_database_9d1\"\n\
         schedule = \"* * * * * *\"\n\
         [[source]]\nname = \"exits\"\nkind = \"command\"\n\
         command = [\"sh\", \"-c\", \"echo half; exit 3\"]\nschedule = \"* * * * * *\"\n",
    );
    let mut d = Daemon::start(&v);
    let addr = d.address();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let (code, _, body) = get(&addr, "/status");
        assert_eq!(code, 200, "{body}");
        let s: serde_json::Value = serde_json::from_str(&body).unwrap();
        let failed = |name: &str| {
            s["sources"].as_array().unwrap().iter().any(|x| {
                x["source"] == name && x["last_run"]["outcome"] == "failed" && x["health"] == "CRIT"
            })
        };
        if failed("gone") && failed("exits") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "daemon runs not recorded as failed: {s}\n{}",
            std::fs::read_to_string(&d.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["health"], "CRIT", "{status}");
    let gone = status["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["source"] == "gone")
        .unwrap();
    let reasons = gone["reasons"].as_array().unwrap();
    assert!(
        reasons.iter().any(|r| {
            let r = r.as_str().unwrap();
            r.starts_with("last backup failed") && r.contains("the database does not exist")
        }),
        "{reasons:?}"
    );
    let error = gone["last_run"]["error"].as_str().unwrap();
    assert!(error.contains("lbt_no_such_database_9d1"), "{error}");
    let (_, _, metrics) = get(&addr, "/metrics");
    for name in ["gone", "exits"] {
        let labels = format!(r#"source="{name}""#);
        assert_eq!(
            sample(&metrics, "lockbox_last_run_failed", &labels),
            Some(1.0),
            "{name}"
        );
        assert_eq!(sample(&metrics, "lockbox_health", &labels), Some(2.0));
    }
    let (_, _, page) = get(&addr, "/");
    assert!(page.contains("CRIT"), "{page}");
    assert!(page.contains("last backup failed"), "{page}");
}
