//! What the database sources share beyond [`crate::dbtool`]: reading the
//! configured password into a [`Login`], turning a tool's stderr into a
//! message an operator can act on, and wrapping a dump tool's stream.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::config::PasswordFrom;
use crate::dbtool::{self, Login, STDERR_TAIL, Secret, SecretError};

use super::{DumpStream, SourceError};

/// Bytes of the dump's end kept to check a completion trailer.
const TRAILER_TAIL_BYTES: usize = 512;

pub(super) fn io_err(source_name: &str, reason: String) -> SourceError {
    SourceError::Io {
        source_name: source_name.into(),
        reason,
    }
}

/// The login of a database source: the configured password (the first line
/// of `password_file`, or the value of `password_env`) and the private
/// `tmp_dir` its credential files go to.
pub(super) fn login(
    source_name: &str,
    from: Option<&PasswordFrom>,
    tmp_dir: &Path,
) -> Result<Login, SourceError> {
    let secret = match from {
        None => None,
        Some(PasswordFrom::File(path)) => Some(Secret::from_file(path).map_err(|e| match e {
            SecretError::Read { path, source } => io_err(
                source_name,
                format!("password_file {}: {source}", path.display()),
            ),
            SecretError::Empty { path } => io_err(
                source_name,
                format!("password_file {} is empty", path.display()),
            ),
        })?),
        Some(PasswordFrom::Env(var)) => Some(Secret::from_env(var).ok_or_else(|| {
            io_err(
                source_name,
                format!("password_env: environment variable {var} is not set or empty"),
            )
        })?),
    };
    Ok(Login::new(secret, tmp_dir))
}

/// The private credentials file a tool reads the password from (rendered
/// by `render` in the tool's own syntax), or `None` without a password.
pub(super) fn credentials_file(
    source_name: &str,
    login: &Login,
    prefix: &str,
    render: fn(&Secret) -> String,
) -> Result<Option<tempfile::NamedTempFile>, SourceError> {
    login
        .credential_file(prefix, render)
        .map_err(|e| io_err(source_name, e.to_string()))
}

/// What a dump or client tool's stderr says went wrong, in words that tell
/// the operator what to fix. `None` if no known pattern matches.
pub fn classify_failure(stderr: &str) -> Option<&'static str> {
    let l = stderr.to_lowercase();
    let has = |s: &str| l.contains(s);
    if has("password authentication failed")
        || has("access denied for user")
        || has("authentication failed")
    {
        Some("authentication failed: check `user` and the password (password_file / password_env)")
    } else if has("no password supplied") || has("fe_sendauth") {
        Some(
            "authentication failed: the server asks for a password and none is configured \
             (set password_file or password_env)",
        )
    } else if (has("database \"") && has("does not exist")) || has("unknown database") {
        Some("the database does not exist: check `database` (or the URL)")
    } else if has("role \"") && has("does not exist") {
        Some("the user (role) does not exist: check `user`")
    } else if has("connection refused")
        || has("can't connect")
        || has("could not connect")
        || has("could not translate host name")
        || has("unknown server host")
        || has("unknown mysql server host")
        || has("timeout expired")
    {
        Some("cannot connect to the server: check `host` and `port`, and that it is running")
    } else if has("permission denied") || has("command denied") || has("access denied") {
        Some(
            "permission denied: the account lacks read access to some object \
             (PostgreSQL: grant pg_read_all_data; MariaDB: SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES)",
        )
    } else if has("server version mismatch") || has("aborting because of server version") {
        Some("the dump tool is older than the server: install a newer one or set `dump_tool`")
    } else {
        None
    }
}

/// The SQL client to use for metadata: next to `dump_tool` if it is a path
/// and the client is installed there, else `client` from PATH.
pub(super) fn client_beside(dump_tool: &str, client: &str) -> String {
    let p = Path::new(dump_tool);
    if dump_tool.contains('/')
        && let Some(dir) = p.parent()
    {
        let candidate = dir.join(client);
        if candidate.is_file() {
            return candidate.to_string_lossy().into_owned();
        }
    }
    client.to_string()
}

/// Runs a client query whose failure is an error (doctor checks): stdout,
/// or a classified, password-free error.
pub(super) fn run_checked(
    source_name: &str,
    cmd: Command,
    login: &Login,
) -> Result<String, SourceError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = dbtool::run(cmd, Stdio::null(), login).map_err(|e| SourceError::Database {
        source_name: source_name.into(),
        what: format!("cannot start {program:?}"),
        reason: e.to_string(),
        stderr: String::new(),
    })?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let stderr = dbtool::tail(&out.stderr, STDERR_TAIL);
    Err(SourceError::Database {
        source_name: source_name.into(),
        what: format!("{program} failed ({})", dbtool::describe_status(out.status)),
        reason: classify_failure(&stderr)
            .unwrap_or("see the client's stderr below")
            .into(),
        stderr,
    })
}

/// Runs a client for a metadata query. `Ok(stdout)`, or `Err(Some(error))`
/// for a failure that would also sink the dump (authentication, missing
/// database, cannot connect), or `Err(None)` after logging a warning for
/// any other problem (the dump decides).
pub(super) fn run_query(
    source_name: &str,
    cmd: Command,
    login: &Login,
) -> Result<String, Option<SourceError>> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = match dbtool::run(cmd, Stdio::null(), login) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(source = %source_name, program = %program, error = %e,
                "cannot run the SQL client; the snapshot will have no table metadata");
            return Err(None);
        }
    };
    if out.status.success() {
        return Ok(out.stdout);
    }
    let tail = dbtool::tail(&out.stderr, STDERR_TAIL);
    if let Some(reason) = classify_failure(&out.stderr) {
        return Err(Some(SourceError::Database {
            source_name: source_name.into(),
            what: format!(
                "{program} (metadata query) failed ({})",
                dbtool::describe_status(out.status)
            ),
            reason: reason.into(),
            stderr: tail,
        }));
    }
    tracing::warn!(source = %source_name, program = %program, stderr = %tail.trim_end(),
        "metadata query failed; the snapshot will have no table metadata");
    Err(None)
}

/// Keeps the last bytes read, to check a completion trailer.
struct TailReader {
    inner: Box<dyn Read + Send>,
    tail: Arc<Mutex<Vec<u8>>>,
}

impl Read for TailReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            let mut t = self.tail.lock().unwrap();
            t.extend_from_slice(&buf[..n]);
            let excess = t.len().saturating_sub(TRAILER_TAIL_BYTES);
            if excess > 0 {
                t.drain(..excess);
            }
        }
        Ok(n)
    }
}

/// What [`wrap`] adds to a spawned dump tool's stream.
pub(super) struct Wrap {
    pub kind: &'static str,
    /// Facts collected before the dump; the tool's own facts are merged in.
    pub info: serde_json::Value,
    /// Scrubs the password from the tool's stderr.
    pub login: Login,
    /// Credentials files, removed once the tool has ended.
    pub temp_files: Vec<tempfile::NamedTempFile>,
    /// A marker the dump's last bytes must contain, if the format has one.
    pub trailer: Option<&'static str>,
}

/// Starts `cmd` as the dump tool and wraps its stream: failures are mapped
/// to clear, password-free messages; credentials files live until it ends.
pub(super) fn spawn_dump(
    source_name: &str,
    cmd: Command,
    w: Wrap,
) -> Result<DumpStream, SourceError> {
    let Wrap {
        kind,
        mut info,
        login,
        temp_files,
        trailer,
    } = w;
    let mut stream = match super::spawn_command(source_name, kind, cmd) {
        Ok(s) => s,
        Err(SourceError::Spawn {
            source_name,
            program,
            reason,
        }) => {
            return Err(SourceError::Database {
                source_name,
                what: format!("cannot start dump tool {program:?}"),
                reason: format!("{reason} (set `dump_tool` to override)"),
                stderr: String::new(),
            });
        }
        Err(e) => return Err(e),
    };
    let tail = Arc::new(Mutex::new(Vec::new()));
    let reader: Box<dyn Read + Send> = Box::new(TailReader {
        inner: stream.reader.take().expect("fresh stream"),
        tail: Arc::clone(&tail),
    });
    let inner = stream.finisher.take().expect("fresh stream");
    let name = source_name.to_string();
    let finisher: super::Finisher = Box::new(move || {
        let result = inner();
        drop(temp_files); // the tool has ended: remove the credentials
        match result {
            Ok(tool) => {
                if let Some(marker) = trailer {
                    let t = tail.lock().unwrap();
                    if !String::from_utf8_lossy(&t).contains(marker) {
                        return Err(SourceError::Database {
                            source_name: name,
                            what: "the dump is incomplete".into(),
                            reason: format!(
                                "the tool exited 0 but its output does not end with {marker:?}"
                            ),
                            stderr: String::new(),
                        });
                    }
                }
                if let (Some(obj), serde_json::Value::Object(t)) = (info.as_object_mut(), tool) {
                    obj.extend(t);
                }
                Ok(info)
            }
            Err(SourceError::Failed {
                source_name,
                program,
                status,
                stderr,
            }) => {
                let stderr = login.scrub(&stderr);
                let reason = classify_failure(&stderr)
                    .unwrap_or("see the tool's stderr below")
                    .to_string();
                Err(SourceError::Database {
                    source_name,
                    what: format!("{program:?} failed ({status})"),
                    reason,
                    stderr,
                })
            }
            Err(e) => Err(e),
        }
    });
    Ok(DumpStream {
        source_name: stream.source_name.clone(),
        kind,
        reader: Some(reader),
        finisher: Some(finisher),
        child: stream.child.take(),
        watchdog: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_common_failures() {
        for (stderr, needle) in [
            (
                "pg_dump: error: connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  password authentication failed for user \"bob\"",
                "authentication failed",
            ),
            (
                "mariadb-dump: Got error: 1045: \"Access denied for user 'bob'@'localhost' (using password: YES)\" when trying to connect",
                "authentication failed",
            ),
            (
                "pg_dump: error: connection to server failed: FATAL:  database \"nope\" does not exist",
                "database does not exist",
            ),
            (
                "mariadb-dump: Got error: 1049: \"Unknown database 'nope'\" when selecting the database",
                "database does not exist",
            ),
            (
                "psql: error: connection to server at \"127.0.0.1\", port 1 failed: Connection refused",
                "cannot connect",
            ),
            (
                "pg_dump: error: query failed: ERROR:  permission denied for table t",
                "permission denied",
            ),
        ] {
            assert!(
                classify_failure(stderr).is_some_and(|m| m.contains(needle)),
                "{stderr}"
            );
        }
        assert!(classify_failure("something odd").is_none());
    }

    #[test]
    fn scrub_removes_the_password() {
        let s = Secret::new("hunter2");
        assert_eq!(
            dbtool::scrub("bad hunter2 here hunter2", Some(&s)),
            "bad [password removed] here [password removed]"
        );
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }
}
