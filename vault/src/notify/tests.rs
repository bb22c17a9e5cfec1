//! Deliveries to real receivers on 127.0.0.1 (tiny_http servers that record
//! what they get, a listener that never answers, real child processes), and
//! the stale transitions with an injected clock.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;
use time::macros::datetime;

use super::*;
use crate::config::Config;
use crate::health::{RepositoryStatus, SourceFacts, StatusReport, assess};
use crate::rfc3339;
use crate::sys::host_name;

const RCPT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
const HMAC_SECRET: &str = "s3cr3t-hmac-key-never-shown";
const PING_UUID: &str = "5f1e0c9a-secret-ping-uuid";

fn config(notify: &str) -> Config {
    let text = format!(
        "state_dir = \"/var/lib/lockbox\"\n[repository]\nurl = \"file:///srv/lockbox\"\nrecipients = [\"{RCPT}\"]\nlock_days = 30\n{notify}"
    );
    Config::parse(&text, "t.toml").unwrap()
}

fn notifier(notify: &str) -> Notifier {
    Notifier::new(&config(notify).notify).unwrap()
}

#[derive(Debug, Clone)]
struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP server on 127.0.0.1 that records every request and answers
/// `status`.
struct Receiver {
    base: String,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    fn start(status: u16) -> Self {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let base = format!("http://{}", server.server_addr().to_ip().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for mut req in server.incoming_requests() {
                let mut body = Vec::new();
                req.as_reader().read_to_end(&mut body).unwrap();
                log.lock().unwrap().push(Request {
                    method: req.method().to_string(),
                    url: req.url().to_string(),
                    headers: req
                        .headers()
                        .iter()
                        .map(|h| (h.field.to_string(), h.value.to_string()))
                        .collect(),
                    body,
                });
                let _ = req.respond(tiny_http::Response::empty(status));
            }
        });
        Self { base, seen }
    }

    fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

/// A listener that accepts connections and never answers.
fn hanging() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    base
}

/// Everything logged by this test binary from the first call on: a global
/// subscriber, because tracing caches per call site whether anyone listens,
/// and a scoped one can miss events while other tests run in parallel.
fn logs() -> String {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    static BUF: std::sync::OnceLock<Buf> = std::sync::OnceLock::new();
    let buf = BUF.get_or_init(|| {
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
        buf
    });
    String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned()
}

fn failed_backup() -> Event {
    let mut e = Event::new(EventKind::BackupFailed, "orders");
    e.outcome = Some("failed".into());
    e.error = Some("pg_dump exited with status 1: connection refused".into());
    e.started_at = Some(datetime!(2026-11-21 02:30:00 UTC));
    e.finished_at = Some(datetime!(2026-11-21 02:30:07.5 UTC));
    e.duration_seconds = Some(7.5);
    e.input_bytes = Some(1234);
    e.health = Some("WARN".into());
    e
}

#[test]
fn webhook_sends_the_versioned_payload_signed_with_custom_headers() {
    let rx = Receiver::start(200);
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("hmac.key");
    std::fs::write(&secret_file, format!("{HMAC_SECRET}\n")).unwrap();
    let n = notifier(&format!(
        "[[notify]]\nkind = \"webhook\"\nurl = \"{}/hooks/lockbox\"\nsecret_file = \"{}\"\nheaders = {{ \"X-Foo\" = \"bar\" }}\ntimeout = \"1s\"\n",
        rx.base,
        secret_file.display()
    ));
    let d = n.send(&failed_backup());
    assert_eq!(d.len(), 1);
    assert!(d[0].ok, "{d:?}");
    assert_eq!((d[0].kind, d[0].attempts), ("webhook", 1));
    assert_eq!(d[0].target, format!("notify[0] {}", rx.base));

    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.url.as_str()),
        ("POST", "/hooks/lockbox")
    );
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.header("X-Foo"), Some("bar"));
    assert_eq!(r.header("X-Lockbox-Event"), Some("backup_failed"));
    assert!(r.header("User-Agent").unwrap().starts_with("lockbox/"));

    // The receiver's check, done independently: HMAC-SHA256 of the exact body.
    let mut mac = Hmac::<Sha256>::new_from_slice(HMAC_SECRET.as_bytes()).unwrap();
    mac.update(&r.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(r.header("X-Lockbox-Signature"), Some(expected.as_str()));

    let p: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(p["schema"], 1);
    assert_eq!(p["event"], "backup_failed");
    assert_eq!(p["source"], "orders");
    assert_eq!(p["host"], host_name());
    assert_eq!(p["outcome"], "failed");
    assert_eq!(
        p["error"],
        "pg_dump exited with status 1: connection refused"
    );
    assert_eq!(p["started_at"], "2026-11-21T02:30:00Z");
    assert_eq!(p["finished_at"], "2026-11-21T02:30:07.5Z");
    assert_eq!(p["duration_seconds"], 7.5);
    assert_eq!(p["input_bytes"], 1234);
    assert_eq!(p["added_bytes"], serde_json::Value::Null);
    assert_eq!(p["snapshot"], serde_json::Value::Null);
    assert_eq!(p["health"], "WARN");
    assert_eq!(p["lockbox_version"], env!("CARGO_PKG_VERSION"));
    assert!(p["sent_at"].as_str().unwrap().ends_with('Z'));
    assert!(
        p["text"]
            .as_str()
            .unwrap()
            .contains("backup of orders failed: pg_dump exited"),
        "{p}"
    );
    // Every documented field is there, and no other.
    let keys: BTreeSet<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    let documented: BTreeSet<&str> = [
        "schema",
        "event",
        "source",
        "host",
        "snapshot",
        "outcome",
        "error",
        "started_at",
        "finished_at",
        "duration_seconds",
        "input_bytes",
        "added_bytes",
        "health",
        "lockbox_version",
        "sent_at",
        "text",
    ]
    .into();
    assert_eq!(keys, documented);

    // Not subscribed by default: a success goes nowhere.
    assert!(
        n.send(&Event::new(EventKind::BackupSucceeded, "orders"))
            .is_empty()
    );
    assert_eq!(rx.requests().len(), 1);
}

#[test]
fn unreadable_secrets_are_errors_naming_the_file_or_variable_only() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.key");
    let c = config(&format!(
        "[[notify]]\nkind = \"webhook\"\nurl = \"https://h/x\"\nsecret_file = \"{}\"\n",
        missing.display()
    ));
    let err = Notifier::new(&c.notify).unwrap_err().to_string();
    assert!(
        err.starts_with("notify[0]: cannot read secret_file") && err.contains("missing.key"),
        "{err}"
    );

    let empty = dir.path().join("empty.key");
    std::fs::write(&empty, "\n").unwrap();
    let c = config(&format!(
        "[[notify]]\nkind = \"webhook\"\nurl = \"https://h/x\"\nsecret_file = \"{}\"\n",
        empty.display()
    ));
    let err = Notifier::new(&c.notify).unwrap_err().to_string();
    assert!(err.contains("empty.key") && err.contains("empty"), "{err}");

    let c = config(
        "[[notify]]\nkind = \"webhook\"\nurl = \"https://h/x\"\nsecret_env = \"LOCKBOX_TEST_NOTIFY_UNSET_SECRET\"\n",
    );
    let err = Notifier::new(&c.notify).unwrap_err().to_string();
    assert_eq!(
        err,
        "notify[0]: the environment variable LOCKBOX_TEST_NOTIFY_UNSET_SECRET (secret_env) is not set or empty"
    );
}

#[test]
fn ping_follows_the_healthchecks_convention() {
    let rx = Receiver::start(200);
    let url = format!("{}/ping/{PING_UUID}", rx.base);
    let n = notifier(&format!(
        "[[notify]]\nkind = \"ping\"\nurl = \"{url}\"\nsources = [\"orders\"]\ntimeout = \"1s\"\n"
    ));
    let started = Event::new(EventKind::BackupStarted, "orders");
    for d in [n.send(&started), n.send(&failed_backup())] {
        assert!(d.len() == 1 && d[0].ok, "{d:?}");
        assert!(!d[0].target.contains(PING_UUID));
    }
    let mut ok = Event::new(EventKind::BackupSucceeded, "orders");
    ok.snapshot = Some("ab".repeat(32));
    n.send(&started);
    n.send(&ok);
    // Another source's run, or an event not subscribed by default: nothing.
    assert!(
        n.send(&Event::new(EventKind::BackupFailed, "crm"))
            .is_empty()
    );
    assert!(
        n.send(&Event::new(EventKind::DrillPassed, "orders"))
            .is_empty()
    );

    let reqs = rx.requests();
    let paths: Vec<&str> = reqs.iter().map(|r| r.url.as_str()).collect();
    let p = format!("/ping/{PING_UUID}");
    assert_eq!(
        paths,
        [
            format!("{p}/start"),
            format!("{p}/fail"),
            format!("{p}/start"),
            p.clone()
        ]
    );
    assert!(reqs.iter().all(|r| r.method == "POST"));
    let fail_body = String::from_utf8_lossy(&reqs[1].body);
    assert!(
        fail_body.contains("pg_dump exited with status 1: connection refused"),
        "{fail_body}"
    );
    assert!(String::from_utf8_lossy(&reqs[3].body).contains("snapshot abababab"));
}

#[test]
fn ping_styles_of_cronitor_and_uptime_kuma_use_their_query_parameters() {
    let rx = Receiver::start(200);
    let n = notifier(&format!(
        "[[notify]]\nkind = \"ping\"\nstyle = \"cronitor\"\nurl = \"{0}/p/KEY/nightly?state=ignored\"\ntimeout = \"1s\"\n\
         [[notify]]\nkind = \"ping\"\nstyle = \"uptime-kuma\"\nurl = \"{0}/api/push/TOKEN?status=up&msg=OK&ping=\"\ntimeout = \"1s\"\n",
        rx.base
    ));
    // Uptime Kuma has no start signal: only Cronitor hears it.
    assert_eq!(
        n.send(&Event::new(EventKind::BackupStarted, "orders"))
            .len(),
        1
    );
    assert_eq!(n.send(&failed_backup()).len(), 2);
    let mut urls: Vec<String> = rx.requests().into_iter().map(|r| r.url).collect();
    urls.sort();
    assert_eq!(urls.len(), 3);
    assert!(
        urls[0].starts_with("/api/push/TOKEN?status=down&msg=lockbox%20on%20"),
        "{urls:?}"
    );
    assert!(
        urls[1].starts_with("/p/KEY/nightly?state=fail&message="),
        "{urls:?}"
    );
    assert!(
        urls[2].starts_with("/p/KEY/nightly?state=run&message="),
        "{urls:?}"
    );
}

#[test]
fn command_hook_gets_the_event_in_its_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env.txt");
    // `sh -c SCRIPT FILE`: argv, so the file name is $0 and nothing is
    // interpolated by Lockbox.
    let n = notifier(&format!(
        "[[notify]]\nkind = \"command\"\ncommand = [\"/bin/sh\", \"-c\", \"env > \\\"$0\\\"\", \"{}\"]\ntimeout = \"5s\"\n",
        out.display()
    ));
    let d = n.send(&failed_backup());
    assert!(d.len() == 1 && d[0].ok, "{d:?}");
    assert_eq!(d[0].target, "notify[0] /bin/sh");
    let env = std::fs::read_to_string(&out).unwrap();
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    };
    assert_eq!(var("LOCKBOX_EVENT").as_deref(), Some("backup_failed"));
    assert_eq!(var("LOCKBOX_SOURCE").as_deref(), Some("orders"));
    assert_eq!(var("LOCKBOX_OUTCOME").as_deref(), Some("failed"));
    assert_eq!(var("LOCKBOX_HOST").as_deref(), Some(host_name()));
    assert_eq!(
        var("LOCKBOX_ERROR").as_deref(),
        Some("pg_dump exited with status 1: connection refused")
    );
    assert_eq!(
        var("LOCKBOX_STARTED_AT").as_deref(),
        Some("2026-11-21T02:30:00Z")
    );
    assert_eq!(var("LOCKBOX_INPUT_BYTES").as_deref(), Some("1234"));
    assert_eq!(var("LOCKBOX_SNAPSHOT"), None);
    let json: serde_json::Value =
        serde_json::from_str(&var("LOCKBOX_EVENT_JSON").unwrap()).unwrap();
    assert_eq!(
        (json["schema"].as_u64(), json["event"].as_str()),
        (Some(1), Some("backup_failed"))
    );
}

#[test]
fn command_hook_failures_and_overruns_are_reported_and_killed() {
    let n = notifier(
        "[[notify]]\nkind = \"command\"\ncommand = [\"/bin/sh\", \"-c\", \"echo boom >&2; exit 3\"]\n\
         [[notify]]\nkind = \"command\"\ncommand = [\"/bin/sh\", \"-c\", \"sleep 30\"]\ntimeout = \"1s\"\n\
         [[notify]]\nkind = \"command\"\ncommand = [\"/nonexistent/hook\"]\n",
    );
    let start = Instant::now();
    let d = n.send(&failed_backup());
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(d.iter().all(|d| !d.ok), "{d:?}");
    let err = |i: usize| d[i].error.clone().unwrap();
    assert!(
        err(0).contains("/bin/sh exited with status 3: boom"),
        "{}",
        err(0)
    );
    assert!(
        err(1).contains("was killed: still running after 1.0s"),
        "{}",
        err(1)
    );
    assert!(
        err(2).starts_with("cannot start /nonexistent/hook"),
        "{}",
        err(2)
    );
}

/// A receiver that never answers and one that answers 500 cost at most
/// their budget, together (in parallel), and are reported failed; the
/// secrets reach neither the log nor a delivery.
#[test]
fn hanging_and_failing_receivers_cost_at_most_the_budget_and_leak_no_secret() {
    let failing = Receiver::start(500);
    let good = Receiver::start(204);
    let hang = hanging();
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("hmac.key");
    std::fs::write(&secret_file, HMAC_SECRET).unwrap();
    let n = notifier(&format!(
        "[[notify]]\nkind = \"webhook\"\nurl = \"{hang}/hook\"\nsecret_file = \"{0}\"\ntimeout = \"1s\"\n\
         [[notify]]\nkind = \"ping\"\nurl = \"{hang}/ping/{PING_UUID}\"\ntimeout = \"1s\"\n\
         [[notify]]\nkind = \"ping\"\nurl = \"{1}/ping/{PING_UUID}\"\ntimeout = \"1s\"\n\
         [[notify]]\nkind = \"webhook\"\nurl = \"{1}/hook\"\nsecret_file = \"{0}\"\ntimeout = \"1s\"\n\
         [[notify]]\nkind = \"webhook\"\nurl = \"{2}/hook\"\nsecret_file = \"{0}\"\ntimeout = \"1s\"\n",
        secret_file.display(),
        failing.base,
        good.base
    ));
    logs();
    let start = Instant::now();
    let d = n.send(&failed_backup());
    let took = start.elapsed();
    // A delivery thread that reports after `send` gave up logs a moment
    // later (a loaded machine): wait for every target's line, briefly.
    let deadline = Instant::now() + Duration::from_secs(5);
    let logs = loop {
        let logs = logs();
        let all = d
            .iter()
            .all(|d| logs.contains(&format!("notify={} ", d.target)));
        if all || Instant::now() > deadline {
            break logs;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Four 1 s budgets one after another would take 4 s.
    assert!(took < Duration::from_millis(2500), "{took:?}");
    assert!(took >= Duration::from_millis(900), "{took:?}");

    assert_eq!(d.len(), 5);
    let ok: Vec<bool> = d.iter().map(|d| d.ok).collect();
    assert_eq!(ok, [false, false, false, false, true], "{d:?}");
    for i in [0, 1] {
        // Its own timeout, or `send`'s, when the thread reports late.
        let e = d[i].error.as_deref().unwrap();
        assert!(
            e.contains("timed out") || e.contains("budget"),
            "{:?}",
            d[i]
        );
    }
    for i in [2, 3] {
        let e = d[i].error.as_deref().unwrap();
        assert!(
            e.starts_with("HTTP 500 Internal Server Error (after"),
            "{e}"
        );
        assert!(d[i].attempts >= 2, "{:?}", d[i]);
    }
    assert!(failing.requests().len() >= 4);

    for secret in [HMAC_SECRET, PING_UUID] {
        assert!(!logs.contains(secret), "{logs}");
        assert!(!format!("{d:?}").contains(secret), "{d:?}");
        assert!(!format!("{n:?}").contains(secret));
    }
    // One line per delivery, naming the target by entry and scheme://host.
    for d in &d {
        let word = if d.ok { "delivered" } else { "failed" };
        let lines: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains(&format!("notify={} ", d.target)))
            .collect();
        // At most one line, or two when `send` gave up on a thread that
        // then finished. (That every delivery is logged is asserted on the
        // binary's stderr in tests/it/notify.rs: in this test binary, events
        // of callsites other tests hit first are sometimes not captured.)
        assert!(lines.len() <= 2, "{}: {lines:?}", d.target);
        assert!(
            lines
                .iter()
                .all(|l| l.contains(&format!("notification {word}"))),
            "{lines:?}"
        );
    }
}

#[test]
fn a_test_event_reaches_every_target_whatever_it_subscribes_to() {
    let rx = Receiver::start(200);
    let n = notifier(&format!(
        "[[notify]]\nkind = \"webhook\"\nurl = \"{0}/a\"\non = [\"drill_failed\"]\nsources = [\"crm\"]\n\
         [[notify]]\nkind = \"ping\"\nurl = \"{0}/b\"\n",
        rx.base
    ));
    let d = n.send(&Event::new(EventKind::Test, ""));
    assert_eq!(d.iter().filter(|d| d.ok).count(), 2, "{d:?}");
    let mut urls: Vec<String> = rx.requests().into_iter().map(|r| r.url).collect();
    urls.sort();
    // healthchecks' /log records the test without changing the check.
    assert_eq!(urls, ["/a", "/b/log"]);
    assert!(Notifier::none().is_empty() && Notifier::none().send(&failed_backup()).is_empty());
}

const NOW: OffsetDateTime = datetime!(2026-11-21 12:00 UTC);
const HOUR: i64 = 3600;

fn report_at(backup_age: i64, verified_age: Option<i64>, now: OffsetDateTime) -> StatusReport {
    let at = |age: i64| rfc3339::format(now - time::Duration::seconds(age));
    let id = hex::encode([7u8; 32]);
    let snapshot = crate::catalog::SnapshotRow {
        short_id: id[..8].to_string(),
        id: id.clone(),
        source: "orders".into(),
        kind: "command".into(),
        started_at: now - time::Duration::seconds(backup_age),
        finished_at: now - time::Duration::seconds(backup_age - 60),
        retain_until: now + time::Duration::seconds(30 * 24 * HOUR),
        previous: None,
        input_bytes: 10,
        stored_bytes: 10,
        added_bytes: 10,
        chunks: 1,
        key: format!("snapshots/orders/x-{id}"),
    };
    let verified = verified_age.map(|age| crate::catalog::VerificationRow {
        source: "orders".into(),
        snapshot: id.clone(),
        snapshot_started_at: at(age),
        kind: crate::catalog::VerificationKind::Drill,
        passed: true,
        started_at: at(age),
        finished_at: at(age),
        restore_seconds: None,
        detail: None,
        attestation_key: None,
    });
    let facts = SourceFacts {
        source: "orders".into(),
        configured: true,
        snapshots: vec![snapshot],
        last_verified: verified.clone(),
        verifications: verified.into_iter().collect(),
        ..Default::default()
    };
    let thresholds = crate::config::Thresholds {
        max_backup_age: Duration::from_secs(26 * 3600),
        max_verified_age: Duration::from_secs(8 * 24 * 3600),
    };
    let s = assess(&facts, thresholds, now);
    StatusReport {
        generated_at: rfc3339::format(now),
        health: s.health,
        repository: RepositoryStatus {
            retain_until_min: None,
            tamper_events: 0,
            catalog_rebuilt: None,
            retain_until_min_unix: None,
        },
        sources: vec![s],
    }
}

#[test]
fn stale_is_told_once_per_transition() {
    let mut told = BTreeSet::new();
    // Fresh, and never verified: nothing to tell.
    assert!(stale_events(&report_at(HOUR, None, NOW), &mut told).is_empty());
    // Past max_backup_age: told once…
    let e = stale_events(&report_at(27 * HOUR, None, NOW), &mut told);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        (e[0].kind, e[0].source.as_str()),
        (EventKind::Stale, "orders")
    );
    assert_eq!(e[0].outcome.as_deref(), Some("backup_stale"));
    assert_eq!(e[0].health.as_deref(), Some("CRIT"));
    assert_eq!(
        e[0].error.as_deref(),
        Some("newest snapshot is 1d 3h old, older than max_backup_age 1d 2h")
    );
    // …not again while it stays stale…
    assert!(stale_events(&report_at(30 * HOUR, None, NOW), &mut told).is_empty());
    // …and again after a fresh backup and a new lapse.
    assert!(stale_events(&report_at(HOUR, None, NOW), &mut told).is_empty());
    assert_eq!(
        stale_events(&report_at(27 * HOUR, None, NOW), &mut told).len(),
        1
    );
    // The verified age is its own transition.
    let mut told = BTreeSet::new();
    let e = stale_events(&report_at(HOUR, Some(9 * 24 * HOUR), NOW), &mut told);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].outcome.as_deref(), Some("verified_stale"));
    assert!(
        e[0].error
            .as_deref()
            .unwrap()
            .contains("max_verified_age 8d 0h")
    );
    assert!(stale_events(&report_at(HOUR, Some(9 * 24 * HOUR), NOW), &mut told).is_empty());
}
