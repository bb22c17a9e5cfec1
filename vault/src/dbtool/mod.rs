//! Running database client tools, for every part of Lockbox that does:
//! dump sources (`source`), `restore --into` and drills (the `restore`
//! crate) and `doctor`. It owns
//!
//! * the password type [`Secret`], which is never shown by `Debug` and has no
//!   `Display`;
//! * the [`Login`] a tool runs with: the password and the private directory
//!   (`state_dir/tmp`, 0700) its credential files (0600, removed on drop)
//!   are written to — never the system temp directory, where another user
//!   could watch them appear;
//! * the child environment: no password variable of Lockbox's reaches a tool
//!   ([`scrub_child_env`]);
//! * running a tool to completion in its own process group ([`run`]), with
//!   its stderr scrubbed of the password and cut to a tail;
//! * server URLs ([`Server::parse`]) and the same-server / same-database
//!   tests that keep restores and drills off a source's own database;
//! * the per-engine file formats and environment: [`postgres`], [`mariadb`].

pub mod mariadb;
pub mod postgres;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crate::config::{DatabaseSource, DbFlavor};

/// The environment variable `restore --into` and drills read a target
/// database's password from; removed from every tool's environment.
pub const PASSWORD_ENV: &str = "LOCKBOX_RESTORE_PASSWORD";

/// Bytes of a failing tool's stderr kept for an error message.
pub const STDERR_TAIL: usize = 4096;

/// A database password. `Debug` shows `Secret(***)`; there is no `Display`,
/// so it cannot slip into a message by formatting.
pub struct Secret(String);

impl Secret {
    /// Wraps a password read elsewhere (e.g. from the environment).
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The password itself, for writing it into a private credential file; never log or
    /// format it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first line of `path` (a password file), which must not be empty.
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let line = text.lines().next().unwrap_or("");
        if line.is_empty() {
            return Err(SecretError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Secret(line.to_string()))
    }

    /// The value of the environment variable `var`, if set and not empty.
    pub fn from_env(var: &str) -> Option<Self> {
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Secret)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A password file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The password file.
        path: PathBuf,
        /// The I/O failure.
        source: io::Error,
    },
    /// The file's first line is empty.
    #[error("{} is empty", path.display())]
    Empty {
        /// The password file.
        path: PathBuf,
    },
}

/// What a tool needs to log in: the password, if any, and the private
/// directory its credential files go to.
#[derive(Debug)]
pub struct Login {
    secret: Option<Secret>,
    private_tmp: PathBuf,
}

impl Login {
    /// `private_tmp` must be the state directory's `tmp`
    /// (`Config::tmp_dir`); it is created 0700 if missing.
    pub fn new(secret: Option<Secret>, private_tmp: impl Into<PathBuf>) -> Self {
        Login {
            secret,
            private_tmp: private_tmp.into(),
        }
    }

    /// The password, if one was given.
    pub fn secret(&self) -> Option<&Secret> {
        self.secret.as_ref()
    }

    /// Where credential files (and other private temporary files of a
    /// database operation, such as a verified dump) are written.
    pub fn private_tmp(&self) -> &Path {
        &self.private_tmp
    }

    /// A credential file holding the password in a tool's own syntax
    /// (`render`), or `None` without a password. The file is 0600 in the
    /// private directory and removed when the returned value is dropped:
    /// keep it alive until the tool has ended.
    pub fn credential_file(
        &self,
        prefix: &str,
        render: fn(&Secret) -> String,
    ) -> io::Result<Option<tempfile::NamedTempFile>> {
        let Some(secret) = &self.secret else {
            return Ok(None);
        };
        let mut f = crate::state::private_temp_file(&self.private_tmp, prefix).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "temporary credentials file in {}: {e}",
                    self.private_tmp.display()
                ),
            )
        })?;
        f.write_all(render(secret).as_bytes())
            .and_then(|_| f.flush())
            .map_err(|e| {
                io::Error::new(e.kind(), format!("writing temporary credentials file: {e}"))
            })?;
        Ok(Some(f))
    }

    /// `text` with the password replaced.
    pub fn scrub(&self, text: &str) -> String {
        scrub(text, self.secret.as_ref())
    }
}

/// Replaces every occurrence of the password in `text`.
pub fn scrub(text: &str, secret: Option<&Secret>) -> String {
    match secret {
        Some(p) if !p.expose().is_empty() => text.replace(p.expose(), "[password removed]"),
        _ => text.to_string(),
    }
}

/// The last `max` bytes of `s` (at a character boundary).
pub fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

/// "exit status N" or "killed by signal N".
pub fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    }
}

/// What a tool run by [`run`] left.
#[derive(Debug)]
pub struct ToolOutput {
    /// How the tool ended.
    pub status: ExitStatus,
    /// Its standard output, whole (lossily decoded as UTF-8).
    pub stdout: String,
    /// Scrubbed of the password; the whole of it (see [`tail`]).
    pub stderr: String,
}

/// Runs `cmd` to completion in its own process group (a stop signal or
/// Lockbox's death reaches the whole tool), stdin from `stdin`. Errors only
/// when the tool cannot be started; the caller judges the exit status.
pub fn run(mut cmd: Command, stdin: Stdio, login: &Login) -> io::Result<ToolOutput> {
    cmd.stdin(stdin);
    let out = crate::sys::output_in_group(&mut cmd)?;
    Ok(ToolOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: login.scrub(&String::from_utf8_lossy(&out.stderr)),
    })
}

/// Removes [`PASSWORD_ENV`] and every registered password variable from a
/// database tool's environment: the password reaches it through a
/// credential file only.
pub fn scrub_child_env(cmd: &mut Command) {
    cmd.env_remove(PASSWORD_ENV);
    crate::sys::scrub_secret_env(cmd);
}

/// A database server and one database on it, as named by a
/// `postgresql://` / `mysql://` / `mariadb://` URL or a source's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The URL scheme as given (`postgresql`, `postgres`, `mysql`,
    /// `mariadb`), or the source kind.
    pub scheme: String,
    /// Host name or address (`localhost` when the URL names none).
    pub host: String,
    /// Port (the engine's default when the URL names none).
    pub port: u16,
    /// The account; `None` leaves it to the tool (the login user).
    pub user: Option<String>,
    /// The database, never empty.
    pub database: String,
}

/// A server URL that cannot be used; the message never holds a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url}: {reason}")]
pub struct UrlError {
    /// The URL with any password or query replaced.
    pub url: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Server {
    /// Parses `postgresql://user@host:port/db`, `postgres://…`, `mysql://…`
    /// or `mariadb://…`. A URL carrying a password or query parameters is
    /// refused: it would show in the process list and shell history.
    pub fn parse(url: &str) -> Result<Server, UrlError> {
        let bad = |reason: &str| UrlError {
            url: redact_url(url),
            reason: reason.into(),
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            bad("expected postgresql://user@host:port/db, mysql://… or mariadb://…")
        })?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = default_port(&scheme)
            .ok_or_else(|| bad("unknown scheme; use postgresql://, mysql:// or mariadb://"))?;
        if rest.contains('?') || rest.contains('#') {
            return Err(bad(
                "query parameters are not supported (a password never goes in the URL; \
                 use --password-file)",
            ));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if userinfo.is_some_and(|u| u.contains(':')) {
            return Err(bad(&format!(
                "the URL must not contain a password (it would show in the process list and \
                 shell history); use --password-file or {PASSWORD_ENV}"
            )));
        }
        let user = match userinfo {
            Some(u) if !u.is_empty() => Some(percent_decode(u).map_err(|e| bad(&e))?),
            _ => None,
        };
        let (host, port) = split_host_port(hostport).map_err(|e| bad(&e))?;
        let database = percent_decode(path).map_err(|e| bad(&e))?;
        if database.is_empty() {
            return Err(bad("name the database: …://user@host:port/DATABASE"));
        }
        check_name(&database).map_err(|e| bad(&e))?;
        if let Some(u) = &user {
            check_name(u).map_err(|e| bad(&format!("user: {e}")))?;
        }
        Ok(Server {
            scheme,
            host: if host.is_empty() {
                "localhost".into()
            } else {
                host
            },
            port: port.unwrap_or(default_port),
            user,
            database,
        })
    }

    /// The server and database a database source dumps (its `url`, or
    /// `host`/`port`/`user`/`database` with the engine's defaults). `None`
    /// without a database name or for a URL that cannot be parsed.
    pub fn of_source(db: &DatabaseSource) -> Option<Server> {
        if let Some(url) = &db.url {
            // Parameters (sslmode=…) do not change which database it is.
            return Server::parse(url.split('?').next().unwrap_or(url)).ok();
        }
        let postgres = db.flavor == DbFlavor::Postgres;
        Some(Server {
            scheme: db.flavor.kind_name().into(),
            host: db.host.clone().unwrap_or_else(|| "localhost".into()),
            port: db.port.unwrap_or(if postgres { 5432 } else { 3306 }),
            user: db.user.clone(),
            database: db.database.clone()?,
        })
    }

    /// True for PostgreSQL, false for MariaDB/MySQL.
    pub fn is_postgres(&self) -> bool {
        default_port(&self.scheme) == Some(5432)
    }

    /// Same engine, host (local spellings count as equal) and port.
    pub fn same_server(&self, other: &Server) -> bool {
        self.is_postgres() == other.is_postgres()
            && same_host(&self.host, &other.host)
            && self.port == other.port
    }

    /// The same database on the same server.
    pub fn same_database(&self, other: &Server) -> bool {
        self.same_server(other) && self.database == other.database
    }
}

impl std::fmt::Display for Server {
    /// The URL (there is never a password in it).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}{}:{}/{}",
            self.scheme,
            self.user
                .as_deref()
                .map(|u| format!("{u}@"))
                .unwrap_or_default(),
            self.host,
            self.port,
            self.database
        )
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "postgresql" | "postgres" => Some(5432),
        "mysql" | "mariadb" => Some(3306),
        _ => None,
    }
}

/// Host names for the local machine count as one.
fn same_host(a: &str, b: &str) -> bool {
    fn norm(h: &str) -> String {
        let h = h.to_ascii_lowercase();
        match h.as_str() {
            "localhost" | "127.0.0.1" | "::1" | "[::1]" | "" => "localhost".into(),
            _ => h,
        }
    }
    norm(a) == norm(b)
}

fn split_host_port(hostport: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("unclosed [ in the host")?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.starts_with('-') {
        return Err("the host must not start with '-'".into());
    }
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("bad port {p:?}"))?,
        ),
    };
    Ok((host, port))
}

/// Names reach tools as separate arguments; refuse those a tool would read
/// as an option or (libpq) as a connection string.
fn check_name(name: &str) -> Result<(), String> {
    if name.starts_with('-') {
        return Err(format!("{name:?} must not start with '-'"));
    }
    if name.contains('=') || name.contains('\0') || name.contains('\n') {
        return Err(format!("{name:?} must not contain '=', NUL or newlines"));
    }
    Ok(())
}

/// Decodes `%XX` escapes (of a URL's user, database or path).
pub fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("truncated %-escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad %-escape %{hex}"))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 after %-decoding".into())
}

/// The URL with any user-info password and query replaced, for messages.
pub fn redact_url(url: &str) -> String {
    fn redact_query(tail: &str) -> String {
        match tail.split_once('?') {
            Some((path, _)) => format!("{path}?***"),
            None => tail.to_string(),
        }
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, tail) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:***@{host}{}", redact_query(tail));
        }
        return format!("{scheme}://{authority}{}", redact_query(tail));
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn secret_is_not_shown_by_debug() {
        let login = Login::new(Some(Secret::new("hunter2")), "/nonexistent");
        assert!(!format!("{login:?}").contains("hunter2"));
        assert_eq!(
            login.scrub("FATAL: hunter2 rejected"),
            "FATAL: [password removed] rejected"
        );
    }

    #[test]
    fn credential_file_is_private_and_removed_on_drop() {
        let state = tempfile::tempdir().unwrap();
        let tmp = state.path().join("tmp");
        let login = Login::new(Some(Secret::new("s3cret")), &tmp);
        let f = login
            .credential_file("pgpass-", postgres::passfile_line)
            .unwrap()
            .expect("a password gives a file");
        let path = f.path().to_path_buf();
        assert_eq!(path.parent(), Some(tmp.as_path()));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&tmp), 0o700);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "*:*:*:*:s3cret\n");
        drop(f);
        assert!(!path.exists());
        let none = Login::new(None, &tmp);
        assert!(
            none.credential_file("x-", postgres::passfile_line)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn parses_server_urls() {
        let s = Server::parse("postgresql://backup@db.example:6543/orders").unwrap();
        assert_eq!(
            s,
            Server {
                scheme: "postgresql".into(),
                host: "db.example".into(),
                port: 6543,
                user: Some("backup".into()),
                database: "orders".into(),
            }
        );
        assert_eq!(s.to_string(), "postgresql://backup@db.example:6543/orders");
        let m = Server::parse("mariadb://root@127.0.0.1/shop").unwrap();
        assert_eq!((m.port, m.database.as_str()), (3306, "shop"));
        assert!(Server::parse("mysql://[::1]:3307/a").is_ok());
        for url in [
            "postgresql://u:hunter2@h/db",
            "postgresql://u@h/db?password=hunter2",
            "mysql://u@h/",
            "ftp://h/x",
            "postgresql://u@h/a=b",
        ] {
            let e = Server::parse(url).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn same_server_ignores_local_host_spelling_and_user() {
        let a = Server::parse("postgresql://a@localhost/x").unwrap();
        let b = Server::parse("postgres://b@127.0.0.1:5432/y").unwrap();
        assert!(a.same_server(&b));
        assert!(!a.same_database(&b));
        let c = Server::parse("mysql://a@localhost:5432/x").unwrap();
        assert!(!a.same_server(&c));
    }

    #[test]
    fn tail_keeps_the_end_at_a_char_boundary() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("aé", 1), "");
        assert_eq!(tail("ab", 5), "ab");
    }
}
