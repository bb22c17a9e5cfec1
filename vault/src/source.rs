//! Sources: where a dump stream comes from, and how we learn whether it was
//! complete. A stream whose source fails is never turned into a snapshot.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::config::{SourceConfig, SourceKind};
use crate::error::ErrorClass;

mod db;
mod mariadb;
mod postgres;

pub use db::classify_failure;

/// How much of a failing tool's stderr is kept for the error message.
const STDERR_TAIL_BYTES: usize = 4096;

/// Why a source could not produce a complete dump stream. No snapshot is written for it.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A `command` source's program could not be started (e.g. not installed, not
    /// executable). Database sources report this as [`SourceError::Database`].
    #[error("source {source_name}: cannot start {program:?}: {reason}")]
    Spawn {
        /// The configured source's name.
        source_name: String,
        /// The program that was to run.
        program: String,
        /// The operating system's reason.
        reason: String,
    },
    /// A `command` source's program exited non-zero or was killed. Database sources report
    /// this as [`SourceError::Database`].
    #[error("source {source_name}: {program:?} failed ({status}){}", stderr_suffix(.stderr))]
    Failed {
        /// The configured source's name.
        source_name: String,
        /// The program that ran.
        program: String,
        /// How it ended (exit code or signal).
        status: String,
        /// The end of its stderr (at most 4 KiB).
        stderr: String,
    },
    /// The SQLite database is missing, cannot be opened, or its online backup failed.
    #[error("source {source_name}: SQLite database {path}: {reason}")]
    Sqlite {
        /// The configured source's name.
        source_name: String,
        /// The database file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// Local I/O around the dump failed (a `workdir` that is not a directory, waiting for the
    /// tool, a credential or temporary file).
    #[error("source {source_name}: {reason}")]
    Io {
        /// The configured source's name.
        source_name: String,
        /// What failed.
        reason: String,
    },
    /// The dump ran longer than the source's `timeout`; its tool was killed.
    #[error(
        "source {source_name}: timed out after {after} (the source's `timeout`); the dump \
         tool was stopped"
    )]
    TimedOut {
        /// The configured source's name.
        source_name: String,
        /// The configured timeout, as written.
        after: String,
    },
    /// A database dump or metadata query failed; `reason` says what to fix,
    /// `stderr` has the password removed.
    #[error("source {source_name}: {what}: {reason}{}", stderr_suffix(.stderr))]
    Database {
        /// The configured source's name.
        source_name: String,
        /// The step that failed (the tool and how it ended).
        what: String,
        /// The likely cause and what to fix.
        reason: String,
        /// The end of the tool's stderr, password scrubbed.
        stderr: String,
    },
}

impl SourceError {
    /// A source that cannot be dumped (tool missing or failing, database
    /// unreachable, timeout) is operational: nothing in the repository was
    /// touched, and the run is recorded as failed.
    pub fn class(&self) -> ErrorClass {
        match self {
            SourceError::Spawn { .. }
            | SourceError::Failed { .. }
            | SourceError::Sqlite { .. }
            | SourceError::Io { .. }
            | SourceError::TimedOut { .. }
            | SourceError::Database { .. } => ErrorClass::Operational,
        }
    }
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!("; its stderr ended with:\n{}", stderr.trim_end())
    }
}

type Finisher = Box<dyn FnOnce() -> Result<serde_json::Value, SourceError> + Send>;

/// The dump tool's process group, shared between the finisher (which reaps
/// it) and a timeout watchdog (which may kill it first).
type SharedChild = Arc<Mutex<Option<crate::sys::GroupChild>>>;

/// A dump in progress: read it to the end, then call [`DumpStream::finish`]
/// to learn whether it is complete. Dropping it unfinished aborts the source
/// (a child process is killed).
pub struct DumpStream {
    /// The configured source's name.
    pub source_name: String,
    /// Its kind (`command`, `sqlite`, `stdin`, `postgres`, `mariadb`), recorded in the manifest.
    pub kind: &'static str,
    reader: Option<Box<dyn Read + Send>>,
    finisher: Option<Finisher>,
    child: Option<SharedChild>,
    /// Dropped to stop the timeout watchdog.
    watchdog: Option<crossbeam_channel::Sender<()>>,
}

impl DumpStream {
    /// A dump read from `reader` that is complete when it reaches its end (e.g. `stdin`).
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
            child: None,
            watchdog: None,
        }
    }

    /// Stops the source if it has not finished within `timeout`: the dump
    /// tool is killed, reading fails, and [`DumpStream::finish`] reports
    /// [`SourceError::TimedOut`], so no snapshot is written.
    pub fn with_timeout(mut self, timeout: Option<std::time::Duration>) -> Self {
        let Some(timeout) = timeout else {
            return self;
        };
        let expired = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let after = humantime::format_duration(timeout).to_string();
        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        let child = self.child.clone();
        let flag = Arc::clone(&expired);
        let name = self.source_name.clone();
        let shown = after.clone();
        std::thread::spawn(move || {
            if rx.recv_timeout(timeout) != Err(crossbeam_channel::RecvTimeoutError::Timeout) {
                return; // finished or dropped in time
            }
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            tracing::error!(source = %name, timeout = %shown, "source timed out; stopping the dump");
            if let Some(child) = child
                && let Some(c) = child.lock().unwrap().as_mut()
            {
                c.kill_group();
            }
        });
        self.watchdog = Some(tx);
        let inner = self.reader.take().expect("reader not taken yet");
        self.reader = Some(Box::new(DeadlineReader {
            inner,
            expired: Arc::clone(&expired),
            after: after.clone(),
        }));
        let finisher = self.finisher.take().expect("not finished");
        let source_name = self.source_name.clone();
        self.finisher = Some(Box::new(move || {
            let result = finisher();
            if expired.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(SourceError::TimedOut { source_name, after });
            }
            result
        }));
        self
    }

    /// Takes the reader (once) so it can move to the chunking thread.
    pub fn take_reader(&mut self) -> Box<dyn Read + Send> {
        self.reader.take().expect("reader taken once")
    }

    /// Waits for the source to end and reports whether the dump is complete,
    /// with kind-specific facts for the manifest.
    pub fn finish(mut self) -> Result<serde_json::Value, SourceError> {
        drop(self.reader.take());
        let result = (self.finisher.take().expect("finished once"))();
        drop(self.watchdog.take());
        result
    }
}

/// Fails reads once the source's timeout has expired (the dump tool's
/// stdout then ends early, which must not look like a complete dump).
struct DeadlineReader {
    inner: Box<dyn Read + Send>,
    expired: Arc<std::sync::atomic::AtomicBool>,
    after: String,
}

impl Read for DeadlineReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf);
        if self.expired.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "timed out after {} (the source's `timeout`); the dump tool was stopped",
                    self.after
                ),
            ));
        }
        n
    }
}

/// Runs one query as a database source's account (for `lockbox doctor`),
/// with the same connection settings and password handling as the dump.
pub fn query_as_source(
    source_name: &str,
    db: &crate::config::DatabaseSource,
    tmp_dir: &Path,
    sql: &str,
) -> Result<String, SourceError> {
    match db.flavor {
        crate::config::DbFlavor::Postgres => postgres::query(source_name, db, tmp_dir, sql),
        _ => mariadb::query(source_name, db, tmp_dir, sql),
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

/// Kills and reaps the tool's group if the stream is dropped unfinished.
struct ChildGuard {
    child: SharedChild,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // GroupChild's own drop kills, reaps and releases the group.
        drop(self.child.lock().unwrap().take());
    }
}

/// Waits for the child to exit. Polls, so that a timeout watchdog can take
/// the lock and kill it meanwhile (and never kills a reaped pid).
fn wait_shared(child: &SharedChild) -> io::Result<std::process::ExitStatus> {
    loop {
        {
            let mut slot = child.lock().unwrap();
            let c = slot.as_mut().expect("child present until reaped");
            if let Some(status) = c.child.try_wait()? {
                // Stray background processes of the tool go with it.
                c.release();
                slot.take();
                return Ok(status);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
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
    let mut group = crate::sys::spawn_group(&mut cmd).map_err(|e| SourceError::Spawn {
        source_name: source_name.into(),
        program: program.clone(),
        reason: if e.kind() == io::ErrorKind::NotFound {
            "program not found; install it or give its full path".into()
        } else {
            e.to_string()
        },
    })?;
    let stdout = group.child.stdout.take().expect("piped stdout");
    let stderr = group.child.stderr.take().expect("piped stderr");
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
    let shared: SharedChild = Arc::new(Mutex::new(Some(group)));
    let guard = ChildGuard {
        child: Arc::clone(&shared),
    };
    let name = source_name.to_string();
    let prog = program.clone();
    let finisher: Finisher = Box::new(move || {
        let status = wait_shared(&guard.child).map_err(|e| SourceError::Io {
            source_name: name.clone(),
            reason: format!("waiting for {prog:?}: {e}"),
        })?;
        let _ = stderr_thread.join();
        let stderr = String::from_utf8_lossy(tail.lock().unwrap().make_contiguous()).into_owned();
        if !status.success() {
            return Err(SourceError::Failed {
                source_name: name,
                program: prog,
                status: crate::dbtool::describe_status(status),
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
        child: Some(shared),
        watchdog: None,
    })
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
        // Failures here are usually the temporary directory's (full, not
        // writable): name it, not only the database.
        let in_tmp = |e: rusqlite::Error| {
            err(format!(
                "online backup into a temporary copy in {} failed: {e}",
                tmp_dir.display()
            ))
        };
        let copied = (|| {
            let mut dst = rusqlite::Connection::open(tmp.path())?;
            // A throwaway copy needs no rollback journal (one file less
            // to leave behind when the disk fills).
            dst.pragma_update(None, "journal_mode", "OFF")?;
            let backup = rusqlite::backup::Backup::new(&src, &mut dst)?;
            backup.run_to_completion(1024, std::time::Duration::from_millis(5), None)
        })();
        if let Err(e) = copied {
            for suffix in ["-journal", "-wal", "-shm"] {
                let mut side = tmp.path().as_os_str().to_owned();
                side.push(suffix);
                let _ = std::fs::remove_file(side);
            }
            return Err(in_tmp(e));
        }
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
        child: None,
        watchdog: None,
        finisher: Some(Box::new(move || {
            drop(tmp); // removes the temporary copy
            tracing::debug!(path = %tmp_path.display(), "removed temporary SQLite copy");
            Ok(info)
        })),
    })
}
