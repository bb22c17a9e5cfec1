//! Sources: where a dump stream comes from, and how we learn whether it was
//! complete. A stream whose source fails is never turned into a snapshot.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::config::{SourceConfig, SourceKind};

pub mod db;
mod mariadb;
mod postgres;

pub use db::classify_failure;

/// How much of a failing tool's stderr is kept for the error message.
const STDERR_TAIL_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {source_name}: cannot start {program:?}: {reason}")]
    Spawn {
        source_name: String,
        program: String,
        reason: String,
    },
    #[error("source {source_name}: {program:?} failed ({status}){}", stderr_suffix(.stderr))]
    Failed {
        source_name: String,
        program: String,
        status: String,
        stderr: String,
    },
    #[error("source {source_name}: SQLite database {path}: {reason}")]
    Sqlite {
        source_name: String,
        path: String,
        reason: String,
    },
    #[error("source {source_name}: {reason}")]
    Io { source_name: String, reason: String },
    /// A database dump or metadata query failed; `reason` says what to fix,
    /// `stderr` has the password removed.
    #[error("source {source_name}: {what}: {reason}{}", stderr_suffix(.stderr))]
    Database {
        source_name: String,
        what: String,
        reason: String,
        stderr: String,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!("; its stderr ended with:\n{}", stderr.trim_end())
    }
}

type Finisher = Box<dyn FnOnce() -> Result<serde_json::Value, SourceError> + Send>;

/// A dump in progress: read it to the end, then call [`DumpStream::finish`]
/// to learn whether it is complete. Dropping it unfinished aborts the source
/// (a child process is killed).
pub struct DumpStream {
    pub source_name: String,
    pub kind: &'static str,
    reader: Option<Box<dyn Read + Send>>,
    finisher: Option<Finisher>,
}

impl DumpStream {
    pub fn from_reader(
        source_name: &str,
        kind: &'static str,
        reader: Box<dyn Read + Send>,
    ) -> Self {
        Self {
            source_name: source_name.into(),
            kind,
            reader: Some(reader),
            finisher: Some(Box::new(|| Ok(serde_json::Value::Null))),
        }
    }

    /// Takes the reader (once) so it can move to the chunking thread.
    pub fn take_reader(&mut self) -> Box<dyn Read + Send> {
        self.reader.take().expect("reader taken once")
    }

    /// Waits for the source to end and reports whether the dump is complete,
    /// with kind-specific facts for the manifest.
    pub fn finish(mut self) -> Result<serde_json::Value, SourceError> {
        drop(self.reader.take());
        (self.finisher.take().expect("finished once"))()
    }
}

/// Starts the configured source.
pub fn open(config: &SourceConfig, tmp_dir: &Path) -> Result<DumpStream, SourceError> {
    match config.kind() {
        SourceKind::Command {
            command,
            env,
            workdir,
        } => {
            let mut cmd = Command::new(&command[0]);
            cmd.args(&command[1..]).envs(env);
            if let Some(dir) = workdir {
                // Checked here because a missing directory otherwise surfaces
                // as a misleading "program not found" from spawn.
                if !dir.is_dir() {
                    return Err(SourceError::Io {
                        source_name: config.name.clone(),
                        reason: format!("workdir {} is not a directory", dir.display()),
                    });
                }
                cmd.current_dir(dir);
            }
            spawn_command(&config.name, "command", cmd)
        }
        SourceKind::Sqlite { path } => sqlite_snapshot(&config.name, path, tmp_dir),
        SourceKind::Database(db) => match db.flavor {
            crate::config::DbFlavor::Postgres => postgres::open(&config.name, db, tmp_dir),
            _ => mariadb::open(&config.name, db, tmp_dir),
        },
    }
}

struct ChildGuard {
    child: Option<Child>,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `cmd` with its stdout as the dump; its exit status is the verdict.
pub fn spawn_command(
    source_name: &str,
    kind: &'static str,
    mut cmd: Command,
) -> Result<DumpStream, SourceError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| SourceError::Spawn {
        source_name: source_name.into(),
        program: program.clone(),
        reason: if e.kind() == io::ErrorKind::NotFound {
            "program not found; install it or give its full path".into()
        } else {
            e.to_string()
        },
    })?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let tail_writer = Arc::clone(&tail);
    let stderr_thread: JoinHandle<()> = std::thread::spawn(move || {
        let mut stderr = stderr;
        let mut buf = [0u8; 8192];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut t = tail_writer.lock().unwrap();
            t.extend(&buf[..n]);
            let excess = t.len().saturating_sub(STDERR_TAIL_BYTES);
            t.drain(..excess);
        }
    });
    let mut guard = ChildGuard { child: Some(child) };
    let name = source_name.to_string();
    let prog = program.clone();
    let finisher: Finisher = Box::new(move || {
        let mut child = guard.child.take().expect("child present");
        let status = child.wait().map_err(|e| SourceError::Io {
            source_name: name.clone(),
            reason: format!("waiting for {prog:?}: {e}"),
        })?;
        let _ = stderr_thread.join();
        let stderr = String::from_utf8_lossy(tail.lock().unwrap().make_contiguous()).into_owned();
        if !status.success() {
            return Err(SourceError::Failed {
                source_name: name,
                program: prog,
                status: describe_status(status),
                stderr,
            });
        }
        Ok(serde_json::json!({ "program": prog }))
    });
    Ok(DumpStream {
        source_name: source_name.into(),
        kind,
        reader: Some(Box::new(stdout)),
        finisher: Some(finisher),
    })
}

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    }
}

/// Copies the database with SQLite's online backup API into a private
/// temporary file (a consistent snapshot even while it is being written),
/// then streams that file.
fn sqlite_snapshot(
    source_name: &str,
    path: &Path,
    tmp_dir: &Path,
) -> Result<DumpStream, SourceError> {
    let err = |reason: String| SourceError::Sqlite {
        source_name: source_name.into(),
        path: path.display().to_string(),
        reason,
    };
    if !path.exists() {
        return Err(err("no such file".into()));
    }
    let src = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| err(e.to_string()))?;
    let tmp = crate::state::private_temp_file(tmp_dir, "sqlite-")
        .map_err(|e| err(format!("temporary copy in {}: {e}", tmp_dir.display())))?;
    {
        let mut dst = rusqlite::Connection::open(tmp.path()).map_err(|e| err(e.to_string()))?;
        let backup =
            rusqlite::backup::Backup::new(&src, &mut dst).map_err(|e| err(e.to_string()))?;
        backup
            .run_to_completion(1024, std::time::Duration::from_millis(5), None)
            .map_err(|e| err(format!("online backup failed: {e}")))?;
    }
    let page_count: i64 = src
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .map_err(|e| err(e.to_string()))?;
    let file = tmp.reopen().map_err(|e| err(e.to_string()))?;
    let info = serde_json::json!({
        "sqlite_version": rusqlite::version(),
        "page_count": page_count,
    });
    let tmp_path: PathBuf = tmp.path().to_path_buf();
    Ok(DumpStream {
        source_name: source_name.into(),
        kind: "sqlite",
        reader: Some(Box::new(file)),
        finisher: Some(Box::new(move || {
            drop(tmp); // removes the temporary copy
            tracing::debug!(path = %tmp_path.display(), "removed temporary SQLite copy");
            Ok(info)
        })),
    })
}
