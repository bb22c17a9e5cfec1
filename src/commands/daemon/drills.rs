//! Scheduled restore drills in the daemon: each source with a
//! `[source.drill] schedule` (and an identity, required with it) gets a child
//! `lockbox drill SOURCE --json` in its own process group. Drills run beside
//! backups and do not count toward `max_concurrent`; a drill never overlaps
//! itself. On shutdown a drill gets SIGINT (its scratch database is dropped
//! on the way out), then SIGKILL after the grace period.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lockbox_vault::config::Config;
use lockbox_vault::scheduler::Schedule;
use lockbox_vault::sys::{self, GroupChild};
use time::OffsetDateTime;

use crate::cli::LogFormat;

struct Run {
    child: GroupChild,
    started: Instant,
    stdout: JoinHandle<Vec<u8>>,
    stderr: JoinHandle<Vec<u8>>,
}

#[derive(Default)]
pub(super) struct Drills {
    slots: HashMap<String, (Schedule, OffsetDateTime)>,
    running: HashMap<String, Run>,
}

/// True if any source has a drill schedule.
pub(super) fn any_scheduled(config: &Config) -> bool {
    config
        .sources
        .iter()
        .any(|s| s.drill.as_ref().is_some_and(|d| d.schedule.is_some()))
}

impl Drills {
    /// (Re)reads the drill schedules; drills in flight keep running.
    pub(super) fn configure(&mut self, config: &Config, now: OffsetDateTime) {
        self.slots = config
            .sources
            .iter()
            .filter_map(|s| {
                let schedule = s.drill.as_ref()?.schedule.clone()?;
                let next = schedule.next_run(now, Duration::ZERO);
                Some((s.name.clone(), (schedule, next)))
            })
            .collect();
        if !self.slots.is_empty() {
            tracing::info!(drills = self.slots.len(), "drill schedules loaded");
        }
    }

    /// Reaps finished drills and starts due ones.
    pub(super) fn tick(&mut self, exe: &Path, config_path: &Path, log_format: LogFormat) {
        self.reap();
        let now = OffsetDateTime::now_utc();
        let due: Vec<String> = self
            .slots
            .iter_mut()
            .filter(|(_, (_, next))| now >= *next)
            .map(|(name, (schedule, next))| {
                *next = schedule.next_run(now, Duration::ZERO);
                name.clone()
            })
            .collect();
        for name in due {
            if self.running.contains_key(&name) {
                tracing::warn!(source = %name, "previous drill still going; this drill slot is skipped");
                continue;
            }
            match start(exe, config_path, &name, log_format) {
                Ok(r) => {
                    tracing::info!(source = %name, "drill started");
                    self.running.insert(name, r);
                }
                Err(e) => tracing::error!(source = %name, error = %e, "drill could not start"),
            }
        }
    }

    fn reap(&mut self) {
        let mut done = Vec::new();
        for (name, r) in self.running.iter_mut() {
            if matches!(r.child.child.try_wait(), Ok(Some(_))) {
                done.push(name.clone());
            }
        }
        for name in done {
            let mut r = self.running.remove(&name).expect("listed above");
            let code = r.child.child.wait().ok().and_then(|s| s.code());
            r.child.release();
            log_finished(&name, r, code);
        }
    }

    /// Shutdown, first step: SIGINT to every drill's process group (the
    /// drill stops and drops its scratch database).
    pub(super) fn interrupt(&mut self) {
        for r in self.running.values() {
            sys::signal_group(r.child.pgid(), libc::SIGINT);
        }
    }

    /// Shutdown, last step: waits for drills until `deadline`, then SIGKILL.
    pub(super) fn finish(&mut self, deadline: Instant) {
        while !self.running.is_empty() && Instant::now() < deadline {
            self.reap();
            std::thread::sleep(Duration::from_millis(20));
        }
        for (name, mut r) in self.running.drain() {
            r.child.kill_group();
            let _ = r.child.child.wait();
            r.child.release();
            tracing::warn!(source = %name, "drill killed at shutdown; its scratch database may be left (lockbox_drill_*)");
        }
    }
}

fn start(
    exe: &Path,
    config_path: &Path,
    source: &str,
    log_format: LogFormat,
) -> std::io::Result<Run> {
    let mut cmd = Command::new(exe);
    cmd.arg("--config")
        .arg(config_path)
        .arg("--log-format")
        .arg(match log_format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
        .args(["-q", "drill", "--json", source])
        .env_remove("LOCKBOX_IDENTITY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = sys::spawn_group(&mut cmd)?;
    let mut out = child.child.stdout.take().expect("piped");
    let mut err = child.child.stderr.take().expect("piped");
    Ok(Run {
        child,
        started: Instant::now(),
        stdout: std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = out.read_to_end(&mut b);
            b
        }),
        stderr: std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = err.read_to_end(&mut b);
            b
        }),
    })
}

fn log_finished(name: &str, r: Run, code: Option<i32>) {
    let stdout = r.stdout.join().unwrap_or_default();
    let stderr = r.stderr.join().unwrap_or_default();
    let seconds = r.started.elapsed().as_secs_f64();
    let j: serde_json::Value = serde_json::from_slice(&stdout).unwrap_or_default();
    if code == Some(0) {
        tracing::info!(
            source = %name,
            outcome = "passed",
            snapshot = %j["short_id"].as_str().unwrap_or("?"),
            restore_seconds = j["restore_seconds"].as_f64().unwrap_or(0.0),
            data_age_seconds = j["data_age_seconds"].as_f64().unwrap_or(0.0),
            seconds,
            "drill finished"
        );
    } else {
        let text = String::from_utf8_lossy(&stderr);
        let lines: Vec<&str> = text.lines().collect();
        tracing::error!(
            source = %name,
            outcome = "failed",
            exit = ?code,
            snapshot = %j["short_id"].as_str().unwrap_or("?"),
            failure = %j["failure"].as_str().unwrap_or(""),
            error = %lines[lines.len().saturating_sub(8)..].join("\n"),
            seconds,
            "drill finished"
        );
    }
}
