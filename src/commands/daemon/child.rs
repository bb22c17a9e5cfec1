//! A run the daemon starts as a child `lockbox` process (a backup or a
//! drill): its own process group watched by a guardian, its output
//! collected on threads (so a chatty child never blocks on a full pipe), and
//! its `--json` report read back as the type the child wrote.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::Instant;

use lockbox_vault::sys::{self, GroupChild};
use serde::de::DeserializeOwned;

use crate::cli::LogFormat;

/// A running child.
pub(super) struct Child {
    pub group: GroupChild,
    pub started: Instant,
    stdout: JoinHandle<Vec<u8>>,
    stderr: JoinHandle<Vec<u8>>,
}

/// What a finished child printed.
pub(super) struct Output {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    pub seconds: f64,
}

/// Starts `lockbox --config CONFIG --log-format F -q ARGS…` in its own
/// process group; if the daemon itself is killed, the run goes too (and the
/// run's guardian takes its dump tool).
pub(super) fn spawn(
    exe: &Path,
    config_path: &Path,
    log_format: LogFormat,
    args: &[&str],
    env_remove: &[&str],
) -> std::io::Result<Child> {
    let mut cmd = Command::new(exe);
    cmd.arg("--config")
        .arg(config_path)
        .arg("--log-format")
        .arg(match log_format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
        .arg("-q")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in env_remove {
        cmd.env_remove(name);
    }
    let mut group = sys::spawn_group(&mut cmd)?;
    let mut out = group.child.stdout.take().expect("piped");
    let mut err = group.child.stderr.take().expect("piped");
    Ok(Child {
        group,
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

impl Child {
    /// Waits for the output threads (the child has exited or been killed).
    pub fn collect(self) -> Output {
        Output {
            stdout: self.stdout.join().unwrap_or_default(),
            stderr: self.stderr.join().unwrap_or_default(),
            seconds: self.started.elapsed().as_secs_f64(),
        }
    }
}

impl Output {
    /// The child's `--json` report; `None` if it printed none (it failed
    /// before its report) or one of another shape.
    pub fn report<T: DeserializeOwned>(&self) -> Option<T> {
        match serde_json::from_slice(&self.stdout) {
            Ok(r) => Some(r),
            Err(e) => {
                if !self.stdout.is_empty() {
                    tracing::warn!(error = %e, "the run's JSON report could not be read");
                }
                None
            }
        }
    }

    /// The last `n` lines of the child's stderr: its error.
    pub fn stderr_tail(&self, n: usize) -> String {
        let text = String::from_utf8_lossy(&self.stderr);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}
