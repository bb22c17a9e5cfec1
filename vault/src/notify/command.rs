//! The `command` target: a local program (argv, no shell) run with the event
//! in its environment. It runs in its own process group so that the whole
//! group, a wrapper script's children included, is killed when its budget
//! runs out. Exit status 0 is delivered; 75 (EX_TEMPFAIL) is retried within
//! the budget; anything else is a failure.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::retry::{self, Failure};
use super::{Event, PAYLOAD_SCHEMA};
use crate::rfc3339;

/// EX_TEMPFAIL from sysexits.h: "try again later".
const EXIT_TEMPFAIL: i32 = 75;
/// Bytes of the program's stderr kept, for the last line in an error.
const STDERR_TAIL: usize = 4096;
const POLL: Duration = Duration::from_millis(10);

pub(super) fn run(
    argv: &[String],
    event: &Event,
    json: &[u8],
    budget: Duration,
) -> (Result<(), String>, u32) {
    let env = environment(event, json);
    retry::within(budget, |left| once(argv, &env, left))
}

/// The variables a hook gets, `None` where the event has no value (the
/// variable is then removed, so an inherited one cannot be mistaken for it).
pub(super) fn environment(event: &Event, json: &[u8]) -> Vec<(&'static str, Option<String>)> {
    let num = |v: Option<u64>| v.map(|n| n.to_string());
    vec![
        ("LOCKBOX_EVENT", Some(event.kind.as_str().to_string())),
        ("LOCKBOX_SOURCE", Some(event.source.clone())),
        ("LOCKBOX_HOST", Some(event.host.clone())),
        ("LOCKBOX_SNAPSHOT", event.snapshot.clone()),
        ("LOCKBOX_OUTCOME", event.outcome.clone()),
        ("LOCKBOX_ERROR", event.error.clone()),
        ("LOCKBOX_STARTED_AT", event.started_at.map(rfc3339::format)),
        (
            "LOCKBOX_FINISHED_AT",
            event.finished_at.map(rfc3339::format),
        ),
        (
            "LOCKBOX_DURATION_SECONDS",
            event.duration_seconds.map(|d| d.to_string()),
        ),
        ("LOCKBOX_INPUT_BYTES", num(event.input_bytes)),
        ("LOCKBOX_ADDED_BYTES", num(event.added_bytes)),
        ("LOCKBOX_HEALTH", event.health.clone()),
        ("LOCKBOX_SUMMARY", Some(event.summary())),
        (
            "LOCKBOX_VERSION",
            Some(env!("CARGO_PKG_VERSION").to_string()),
        ),
        ("LOCKBOX_SCHEMA", Some(PAYLOAD_SCHEMA.to_string())),
        (
            "LOCKBOX_EVENT_JSON",
            Some(String::from_utf8_lossy(json).into_owned()),
        ),
    ]
}

fn once(
    argv: &[String],
    env: &[(&'static str, Option<String>)],
    left: Duration,
) -> Result<(), Failure> {
    let program = &argv[0];
    let mut cmd = Command::new(program);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    // A hook hears of the event, not of Lockbox's credentials.
    crate::sys::scrub_secret_env(&mut cmd);
    cmd.env_remove("LOCKBOX_RESTORE_PASSWORD");
    for (name, value) in env {
        match value {
            // A NUL cannot be passed in the environment.
            Some(v) => cmd.env(name, v.replace('\0', " ")),
            None => cmd.env_remove(name),
        };
    }
    let mut child = cmd.spawn().map_err(|e| Failure {
        message: format!("cannot start {program}: {e}"),
        retry: false,
    })?;
    let tail = read_tail(&mut child);
    let deadline = Instant::now() + left;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                kill_group(&child);
                let _ = child.wait();
                return Err(Failure {
                    message: format!(
                        "{program} was killed: still running after {:.1}s",
                        left.as_secs_f64()
                    ),
                    retry: false,
                });
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => {
                kill_group(&child);
                let _ = child.wait();
                return Err(Failure {
                    message: format!("waiting for {program}: {e}"),
                    retry: false,
                });
            }
        }
    };
    if status.success() {
        return Ok(());
    }
    // A grandchild may still hold stderr open: wait for it only briefly.
    let said = tail
        .recv_timeout(Duration::from_millis(200))
        .ok()
        .and_then(|b| last_line(&b))
        .map(|l| format!(": {l}"))
        .unwrap_or_default();
    let how = match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => format!("was ended by a signal ({status})"),
    };
    Err(Failure {
        message: format!("{program} {how}{said}"),
        retry: status.code() == Some(EXIT_TEMPFAIL),
    })
}

/// Reads the child's stderr to its end on a thread (so a chatty program
/// never blocks on a full pipe), keeping the last [`STDERR_TAIL`] bytes.
fn read_tail(child: &mut Child) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut err) = child.stderr.take() {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > STDERR_TAIL {
                    kept.drain(..kept.len() - STDERR_TAIL);
                }
            }
            let _ = tx.send(kept);
        });
    }
    rx
}

fn last_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    Some(line.chars().take(300).collect())
}

/// Kills the hook's whole process group. The group is the child's own
/// (`process_group(0)`) and the child is not yet reaped, so its id cannot
/// have been reused.
fn kill_group(child: &Child) {
    crate::sys::signal_group(child.id() as i32, libc::SIGKILL);
}
