//! Helpers shared by the monitoring tests (status, metrics, status server,
//! shipped alert rules and dashboard).
//!
//! [`record_drill`] inserts verification rows into the catalog file with
//! SQLite directly, exactly as `Catalog::record_verification` would, because
//! these tests need drills at chosen times (ages, staleness). That `lockbox
//! drill` and `verify --read-data` really write such rows is proven in
//! the `drill` and `verify` tests.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::Vault;

pub const ORDERS_ROWS: u64 = 300_000;

pub fn sources(daemon: &str) -> String {
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
pub fn seq_len(n: u64) -> u64 {
    (1..=n).map(|i| i.to_string().len() as u64 + 1).sum()
}

pub use super::skip::tool;

pub fn run_check(v: &Vault, args: &[&str]) -> (i32, String) {
    let out = v.cmd().arg("check").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

pub fn stdout(v: &Vault, args: &[&str]) -> String {
    String::from_utf8(v.ok(args).stdout).unwrap()
}

/// The value of the sample `name{labels}` in Prometheus text, labels given
/// as they are printed (sorted by name).
pub fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().expect("a number"))
}

pub fn promtool_check_metrics(text: &str) {
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

pub fn unix(rfc3339: &str) -> i64 {
    OffsetDateTime::parse(rfc3339, &Rfc3339)
        .unwrap()
        .unix_timestamp()
}

/// The newest snapshot of `source` as `snapshots --json` lists it.
pub fn newest(v: &Vault, source: &str) -> serde_json::Value {
    let list: serde_json::Value =
        serde_json::from_str(&stdout(v, &["snapshots", "--json", "--source", source])).unwrap();
    list.as_array().unwrap().last().unwrap().clone()
}

/// Records a drill of `snap` in the catalog (see the module doc).
pub fn record_drill(v: &Vault, snap: &serde_json::Value, passed: bool, restore_seconds: f64) {
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
