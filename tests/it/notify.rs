//! `lockbox notify test` through the real binary, against real HTTP
//! receivers on 127.0.0.1: one that accepts, one that answers 500. Secrets
//! (the ping URL's path, the signing secret) must not reach the output,
//! even at trace level.

use std::sync::{Arc, Mutex};

use crate::support::Vault;

const PING_UUID: &str = "0c6f3e62-secret-ping-uuid";
const HMAC_SECRET: &str = "s3cr3t-signing-key-from-env";

type Seen = Arc<Mutex<Vec<(String, Vec<(String, String)>, Vec<u8>)>>>;

/// An HTTP server recording (path, headers, body) and answering `status`.
fn receiver(status: u16) -> (String, Seen) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let base = format!("http://{}", server.server_addr().to_ip().unwrap());
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for mut req in server.incoming_requests() {
            let mut body = Vec::new();
            req.as_reader().read_to_end(&mut body).unwrap();
            let headers = req
                .headers()
                .iter()
                .map(|h| (h.field.to_string(), h.value.to_string()))
                .collect();
            log.lock()
                .unwrap()
                .push((req.url().to_string(), headers, body));
            let _ = req.respond(tiny_http::Response::empty(status));
        }
    });
    (base, seen)
}

fn notify_toml(good: &str, bad: &str) -> String {
    format!(
        "[[notify]]\nkind = \"webhook\"\nurl = \"{good}/hook\"\nsecret_env = \"LOCKBOX_TEST_HMAC\"\non = [\"drill_failed\"]\ntimeout = \"1s\"\n\
         [[notify]]\nkind = \"ping\"\nurl = \"{bad}/ping/{PING_UUID}\"\nsources = [\"orders\"]\ntimeout = \"1s\"\n"
    )
}

#[test]
fn notify_test_reaches_every_target_and_exits_1_if_one_fails() {
    let (good, good_seen) = receiver(200);
    let (bad, bad_seen) = receiver(500);
    let v = Vault::new(&notify_toml(&good, &bad));
    let out = v
        .cmd()
        .args(["notify", "test"])
        .env("LOCKBOX_TEST_HMAC", HMAC_SECRET)
        .env("LOCKBOX_LOG", "trace")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0], format!("ok      webhook  notify[0] {good}"));
    assert!(
        lines[1].starts_with(&format!(
            "FAILED  ping     notify[1] {bad}: HTTP 500 Internal Server Error (after "
        )),
        "{}",
        lines[1]
    );
    assert!(
        stderr.contains("2 target(s): 1 delivered, 1 failed"),
        "{stderr}"
    );
    for secret in [PING_UUID, HMAC_SECRET] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{stderr}"
        );
    }

    // The webhook got a signed `test` event, though it subscribes only to
    // drill_failed; the ping (healthchecks style) was retried on /log.
    let got = good_seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (path, headers, body) = &got[0];
    assert_eq!(path, "/hook");
    let payload: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(
        (payload["schema"].as_u64(), payload["event"].as_str()),
        (Some(1), Some("test"))
    );
    let signature = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("X-Lockbox-Signature"))
        .map(|(_, v)| v.clone())
        .unwrap();
    let hex = signature.strip_prefix("sha256=").unwrap();
    assert!(
        hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "{signature}"
    );
    let pinged = bad_seen.lock().unwrap().clone();
    assert!(pinged.len() >= 2, "{pinged:?}");
    assert!(
        pinged
            .iter()
            .all(|(p, _, _)| *p == format!("/ping/{PING_UUID}/log"))
    );

    // --json, and the deliveries are counted for the metrics.
    let out = v
        .cmd()
        .args(["notify", "test", "--json"])
        .env("LOCKBOX_TEST_HMAC", HMAC_SECRET)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let oks: Vec<bool> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["ok"].as_bool().unwrap())
        .collect();
    assert_eq!(oks, [true, false]);
    assert_eq!(json[1]["kind"], "ping");
    assert!(json[1]["attempts"].as_u64().unwrap() >= 2);
    let metrics = String::from_utf8(v.ok(&["metrics"]).stdout).unwrap();
    for line in [
        "lockbox_notifications_total{kind=\"webhook\",outcome=\"ok\"} 2",
        "lockbox_notifications_total{kind=\"ping\",outcome=\"failed\"} 2",
        "lockbox_notifications_total{kind=\"command\",outcome=\"failed\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing:\n{metrics}"
        );
    }

    // All delivered: exit 0.
    std::fs::write(
        &v.config,
        std::fs::read_to_string(&v.config)
            .unwrap()
            .replace(&format!("{bad}/ping"), &format!("{good}/ping")),
    )
    .unwrap();
    let out = v
        .cmd()
        .args(["notify", "test"])
        .env("LOCKBOX_TEST_HMAC", HMAC_SECRET)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn notify_test_refuses_a_missing_secret_or_an_inline_one() {
    let (good, _) = receiver(200);
    let v = Vault::new(&notify_toml(&good, &good));
    // The variable is not set: nothing is sent, exit 2, the variable named.
    let (code, stderr) = v.fails(&["notify", "test"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(
            "notify[0]: the environment variable LOCKBOX_TEST_HMAC (secret_env) is not set"
        ),
        "{stderr}"
    );

    let v = Vault::uninitialised(
        &format!(
            "[[notify]]\nkind = \"webhook\"\nurl = \"{good}/hook\"\nsecret = \"{HMAC_SECRET}\"\n"
        ),
        Vec::new(),
    );
    let (code, stderr) = v.fails(&["notify", "test"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("notify[0].secret: a secret must not be written in the config"),
        "{stderr}"
    );
    assert!(!stderr.contains(HMAC_SECRET), "{stderr}");
}

/// `lockbox daemon` checks staleness at start and then every minute: a
/// source whose newest snapshot is older than its max_backup_age is told
/// to the targets that hear `stale`, and counted.
#[test]
#[allow(unsafe_code)] // a raw syscall is the point here
fn notify_daemon_tells_of_a_source_gone_stale() {
    let (url, seen) = receiver(200);
    let v = Vault::new(&format!(
        "[daemon]\nlisten = \"off\"\n\
         [[source]]\nname = \"orders\"\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"echo data\"]\n\
         schedule = \"0 3 1 1 *\"\nmax_backup_age = \"1s\"\n\
         [[notify]]\nkind = \"webhook\"\nurl = \"{url}/hook\"\non = [\"stale\"]\ntimeout = \"1s\"\n"
    ));
    v.ok(&["backup", "orders"]);
    // Ages are whole seconds and must exceed 1 s.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let daemon = v
        .cmd()
        .arg("daemon")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while seen.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Time for the count to reach the catalog after the delivery.
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: signals our own child process, which has not been reaped.
    unsafe {
        libc::kill(daemon.id() as libc::pid_t, libc::SIGTERM);
    }
    let out = daemon.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{log}");
    let payload: serde_json::Value = serde_json::from_slice(&got[0].2).unwrap();
    assert_eq!(payload["event"], "stale", "{payload}");
    assert_eq!(payload["source"], "orders");
    assert_eq!(payload["outcome"], "backup_stale");
    assert_eq!(payload["health"], "CRIT");
    assert!(
        payload["error"]
            .as_str()
            .unwrap()
            .contains("older than max_backup_age 1s"),
        "{payload}"
    );
    assert!(log.contains("source is stale"), "{log}");
    let metrics = String::from_utf8(v.ok(&["metrics"]).stdout).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "lockbox_notifications_total{kind=\"webhook\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
}

/// A backup tells a dead man's switch start → fail and start → success,
/// and a webhook gets the failure with its error and CRIT health; the
/// deliveries are counted in the metrics.
#[test]
fn backups_ping_start_and_outcome_and_a_failure_reaches_the_webhook() {
    let (ping, pings) = receiver(200);
    let (hook, hooks) = receiver(200);
    let v = Vault::new(&format!(
        "[[notify]]\nkind = \"ping\"\nurl = \"{ping}/{PING_UUID}\"\ntimeout = \"2s\"\n\
         [[notify]]\nkind = \"webhook\"\nurl = \"{hook}/hook\"\ntimeout = \"2s\"\n\
         [[source]]\nname = \"db\"\nkind = \"command\"\n\
         command = [\"sh\", \"-c\", \"echo half; echo dump-broke >&2; exit 3\"]\n"
    ));
    let (code, err) = v.fails(&["backup", "db"]);
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains(PING_UUID), "{err}");
    // Each delivery is logged, naming its target without the secret path.
    for target in ["notify=notify[0] ", "notify=notify[1] "] {
        assert!(
            err.lines()
                .any(|l| l.contains("notification delivered") && l.contains(target)),
            "{target}: {err}"
        );
    }
    let text = std::fs::read_to_string(&v.config).unwrap();
    std::fs::write(
        &v.config,
        text.replace("echo half; echo dump-broke >&2; exit 3", "echo fine"),
    )
    .unwrap();
    v.ok(&["backup", "db"]);

    let seen: Vec<(String, Vec<u8>)> = pings
        .lock()
        .unwrap()
        .iter()
        .map(|(p, _, b)| (p.clone(), b.clone()))
        .collect();
    let paths: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
    let base = format!("/{PING_UUID}");
    assert_eq!(
        paths,
        [
            format!("{base}/start"),
            format!("{base}/fail"),
            format!("{base}/start"),
            base.clone()
        ],
        "ping sequence"
    );
    let fail_body = String::from_utf8_lossy(&seen[1].1);
    assert!(fail_body.contains("exit status 3"), "{fail_body}");

    let hooks = hooks.lock().unwrap();
    assert_eq!(hooks.len(), 1, "the webhook hears failures only by default");
    let payload: serde_json::Value = serde_json::from_slice(&hooks[0].2).unwrap();
    assert_eq!(payload["schema"], 1, "{payload}");
    assert_eq!(payload["event"], "backup_failed", "{payload}");
    assert_eq!(payload["source"], "db", "{payload}");
    assert_eq!(payload["outcome"], "failed", "{payload}");
    assert_eq!(payload["health"], "CRIT", "{payload}");
    assert!(
        payload["error"].as_str().unwrap().contains("dump-broke"),
        "{payload}"
    );

    let out = v.ok(&["metrics"]);
    let metrics = String::from_utf8_lossy(&out.stdout);
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("lockbox_notifications_total")
                && l.contains(r#"kind="ping""#)
                && l.contains(r#"outcome="ok""#)
        })
        .unwrap_or_else(|| panic!("no ping counter:\n{metrics}"));
    assert!(line.ends_with(" 4"), "{line}");
}
