//! The local catalog: a SQLite cache of the repository in the state
//! directory, so dedup and listings need no storage round trip.
//!
//! It is only a cache. Every snapshot and chunk row can be rebuilt from the
//! repository (`rebuild`). A catalog of another repository is wiped; one
//! that is unreadable (corrupt, not a database) or of another schema version
//! is moved aside and started afresh, and the caller refills it (see
//! `catalog/repair.rs`). Run history is the one thing only the catalog holds.
//!
//! Trust rule for dedup: a chunk row means "this object was durable and
//! locked until `retain_until`". A row is written only after the backend's
//! `flush`, and backup trusts it without a round trip only while
//! `retain_until` is in the future — a locked object cannot have been pruned.
//!
//! Delta objects (`chunks/<hh>/<id>.<base>`) have their own table keyed by
//! (id, base) under the same trust rule; their bases are ordinary chunk rows.
//!
//! Tamper events (delete markers and bad versions that version-aware reads
//! passed over, see `storage::TamperEvent`) are kept too; like run history,
//! only the catalog holds them, and a rebuild keeps them.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use time::OffsetDateTime;

use crate::attestation::AttestationError;
use crate::error::ErrorClass;
use crate::ids::{IdKey, ObjectId};
use crate::manifest::Manifest;
use crate::repository::{self, RepoError};
use crate::rfc3339;
use crate::storage::{ReadBackend, TamperEvent};

mod notifications;
mod repair;
mod verifications;
pub use repair::Rebuilt;
pub use verifications::{VerificationKind, VerificationRow};

/// The layout of the tables below. A catalog of another version is moved
/// aside and rebuilt from the repository by `open` (see `catalog/repair.rs`).
const SCHEMA_VERSION: i64 = 1;

/// The error of a run closed because its process is gone.
pub const PROCESS_GONE: &str = "interrupted (process gone): the run's process ended without \
     recording an outcome (killed, crashed, or the host lost power)";

/// Why the catalog could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// An SQLite call failed (other than damage, see [`CatalogError::Unreadable`]), e.g. the
    /// database is locked or the disk full.
    #[error("catalog {path}: {source}")]
    Sqlite {
        /// The catalog file.
        path: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The catalog file could not be created (mode 0600) before SQLite opened it.
    #[error("catalog {path}: {source}")]
    Io {
        /// The catalog file.
        path: String,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// SQLite reports the file damaged (SQLITE_CORRUPT, SQLITE_NOTADB) or
    /// its integrity check fails. `Catalog::open` moves such a file aside.
    #[error(
        "the catalog at {path} is unreadable ({reason}): the next backup rebuilds it from the \
         repository, or run `lockbox catalog rebuild`"
    )]
    Unreadable {
        /// The catalog file.
        path: String,
        /// SQLite's or the integrity check's finding.
        reason: String,
    },
    /// Written by a Lockbox with another catalog layout.
    #[error(
        "the catalog at {path} has schema version {found}, this lockbox uses {SCHEMA_VERSION}: \
         the next backup rebuilds it from the repository, or run `lockbox catalog rebuild`"
    )]
    OtherSchema {
        /// The catalog file.
        path: String,
        /// The schema version it records.
        found: i64,
    },
    /// Rebuilding from the repository failed while listing or reading snapshots.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// Rebuilding from the repository failed while reading attestations.
    #[error(transparent)]
    Attestation(#[from] AttestationError),
}

impl CatalogError {
    /// The catalog is a cache: its own failures, an unreadable file
    /// included, are operational; what it read from the repository answers
    /// for itself.
    pub fn class(&self) -> ErrorClass {
        match self {
            CatalogError::Repo(e) => e.class(),
            CatalogError::Attestation(e) => e.class(),
            CatalogError::Sqlite { .. }
            | CatalogError::Io { .. }
            | CatalogError::Unreadable { .. }
            | CatalogError::OtherSchema { .. } => ErrorClass::Operational,
        }
    }
}

/// The source name of a run that concerns the whole repository (a
/// `verify` without `--source`); health applies it to every source.
pub const REPOSITORY_WIDE: &str = "*";

/// A due run the daemon could not start yet (every slot busy).
#[derive(Debug, Clone)]
pub struct Waiting {
    /// When the run became due and found no free slot (UTC).
    pub since: OffsetDateTime,
    /// The source's schedule period: waiting longer than this is WARN.
    pub period: Duration,
}

/// An open catalog (`state_dir/catalog.sqlite`) of one repository.
pub struct Catalog {
    conn: Connection,
    path: String,
}

/// What the catalog knows about a stored chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownChunk {
    /// Size of the stored object, in bytes.
    pub stored_len: u64,
    /// Unkeyed BLAKE3 of the stored object's bytes.
    pub stored_hash: ObjectId,
    /// The object is known to be durable and locked until this (Unix seconds, UTC).
    pub retain_until: i64,
}

/// One snapshot as listed by `lockbox snapshots --json`. Fields may be added;
/// existing ones keep their meaning.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SnapshotRow {
    /// The manifest id (64 hex).
    pub id: String,
    /// Its first 8 hex digits.
    pub short_id: String,
    /// The source it belongs to.
    pub source: String,
    /// How the stream was produced (the manifest's `kind`, e.g. `postgres`, `stdin`).
    pub kind: String,
    /// When the backup started (UTC): the point in time of the data.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When the manifest was made (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    /// The snapshot is locked until this (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub retain_until: OffsetDateTime,
    /// Manifest id of the previous snapshot of the source, if any.
    pub previous: Option<String>,
    /// Length of the dump stream, in bytes.
    pub input_bytes: u64,
    /// Stored bytes of the distinct objects it references.
    pub stored_bytes: u64,
    /// Stored bytes its backup newly wrote.
    pub added_bytes: u64,
    /// Entries in its manifest's chunk list.
    pub chunks: u64,
    /// The manifest's object key.
    pub key: String,
}

/// A time column, converted once when read. The text stays as
/// [`rfc3339::format`] wrote it: other versions read the same catalog.
fn time_column(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<OffsetDateTime> {
    let text: String = r.get(i)?;
    rfc3339::parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("{text:?} is not an RFC 3339 time").into(),
        )
    })
}

impl SnapshotRow {
    /// The row for a manifest read from `key` whose id is `id`.
    pub fn from_manifest(id: &ObjectId, key: &str, m: &Manifest) -> Self {
        Self {
            id: id.to_hex(),
            short_id: id.short(),
            source: m.source.clone(),
            kind: m.kind.clone(),
            started_at: m.started_at,
            finished_at: m.finished_at,
            retain_until: m.retain_until,
            previous: m.previous.map(|p| p.to_hex()),
            input_bytes: m.input_bytes,
            stored_bytes: m.stored_bytes,
            added_bytes: m.added_bytes,
            chunks: m.chunks.len() as u64,
            key: key.to_string(),
        }
    }
}

/// One recorded run (backup, drill or verify) of the catalog's run history.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    /// The run's number in this catalog, increasing.
    pub id: i64,
    /// What ran: `backup`, `drill` or `verify`.
    pub kind: String,
    /// The source it concerned, or [`REPOSITORY_WIDE`].
    pub source: String,
    /// When it started (RFC 3339, UTC).
    pub started_at: String,
    /// When it ended; `None` while it is running.
    pub finished_at: Option<String>,
    /// `running`, or a [`RunOutcome`] as a string.
    pub outcome: String,
    /// The snapshot it wrote (backup) or checked (drill, verify), as manifest id.
    pub snapshot: Option<String>,
    /// Why it did not succeed, if it did not.
    pub error: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    /// It did what it set out to do.
    Success,
    /// It stopped with an error.
    Failed,
    /// Stopped by a signal, or its process is gone (killed, power loss).
    Interrupted,
    /// Ran past its `timeout` and was stopped.
    TimedOut,
    /// Stopped on purpose (daemon shutdown after its grace period).
    Aborted,
}

impl RunOutcome {
    /// The name stored in the catalog and shown (`success`, `timed_out`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Success => "success",
            RunOutcome::Failed => "failed",
            RunOutcome::Interrupted => "interrupted",
            RunOutcome::TimedOut => "timed_out",
            RunOutcome::Aborted => "aborted",
        }
    }

    /// Outcomes that make a source's health CRIT until a later run succeeds.
    pub fn is_failure_str(outcome: &str) -> bool {
        matches!(outcome, "failed" | "interrupted" | "timed_out")
    }
}

/// What a run row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// A backup of a source.
    Backup,
    /// A restore drill into a scratch database.
    Drill,
    /// A `lockbox verify` run.
    Verify,
}

impl RunKind {
    /// The name stored in the catalog and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Backup => "backup",
            RunKind::Drill => "drill",
            RunKind::Verify => "verify",
        }
    }
}

/// What a sync of the catalog with the repository changed.
#[derive(Debug, Default, Clone, Copy)]
pub struct SyncReport {
    /// Snapshots found in the repository that the catalog did not list.
    pub added: usize,
    /// Snapshot rows dropped because the repository no longer has them (pruned).
    pub removed: usize,
    /// Attestations read into `verifications` that it did not hold yet.
    pub attestations: usize,
}

/// Maps an SQLite error to the catalog's, naming the file; damage is
/// `Unreadable`, so it says what to do. A free function so it can be used
/// while a transaction borrows the connection.
fn sqlite_err(path: &str) -> impl Fn(rusqlite::Error) -> CatalogError + '_ {
    move |source| match repair::damage(&source) {
        Some(reason) => CatalogError::Unreadable {
            path: path.to_string(),
            reason,
        },
        None => CatalogError::Sqlite {
            path: path.to_string(),
            source,
        },
    }
}

impl Catalog {
    /// Opens (creating if needed) the catalog for `repository_id`. A catalog
    /// of another repository is wiped: it is only a cache. One that is
    /// unreadable or of another schema version is moved aside and replaced
    /// by an empty one that records why ([`Catalog::rebuilt`]); the caller
    /// refills it ([`Catalog::refill_if_rebuilt`]).
    pub fn open(path: &Path, repository_id: &str) -> Result<Self, CatalogError> {
        match Self::open_as_is(path, repository_id) {
            Err(e) if repair::needs_replacing(&e) => repair::replace(path, repository_id),
            r => r,
        }
    }

    /// `open` without the repair: damage is an error.
    fn open_as_is(path: &Path, repository_id: &str) -> Result<Self, CatalogError> {
        let shown = path.display().to_string();
        // Create it private before SQLite does (its -wal/-shm files copy the mode).
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(|source| CatalogError::Io {
                    path: shown.clone(),
                    source,
                })?;
        }
        let conn = Connection::open(path).map_err(sqlite_err(&shown))?;
        let mut cat = Self { conn, path: shown };
        cat.setup(repository_id)?;
        Ok(cat)
    }

    fn err(&self, source: rusqlite::Error) -> CatalogError {
        sqlite_err(&self.path)(source)
    }

    fn setup(&mut self, repository_id: &str) -> Result<(), CatalogError> {
        self.conn
            .busy_timeout(Duration::from_secs(30))
            .map_err(|e| self.err(e))?;
        // Before anything is written: damage found here moves the file aside.
        self.check_integrity()?;
        self.conn
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;
                 CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
            )
            .map_err(|e| self.err(e))?;
        let version: Option<i64> = self.meta("schema_version")?.and_then(|v| v.parse().ok());
        let repo = self.meta("repository_id")?;
        // Our repository in another layout: moved aside (it holds run
        // history) and rebuilt, never read or migrated in place.
        if let Some(found) = version.filter(|v| *v != SCHEMA_VERSION)
            && repo.as_deref() == Some(repository_id)
        {
            return Err(CatalogError::OtherSchema {
                path: self.path.clone(),
                found,
            });
        }
        // A catalog opened before the repository could be reached (to record
        // a run) has no repository id yet: the first real one adopts it.
        let adoptable = repo.as_deref() == Some("") || repository_id.is_empty();
        if version != Some(SCHEMA_VERSION) || (repo.as_deref() != Some(repository_id) && !adoptable)
        {
            if version.is_some() {
                tracing::warn!(catalog = %self.path, "catalog belongs to another repository; rebuilding it");
            }
            self.conn
                .execute_batch(
                    "DROP TABLE IF EXISTS snapshots; DROP TABLE IF EXISTS chunks; DROP TABLE IF EXISTS deltas;
                     DROP TABLE IF EXISTS runs; DROP TABLE IF EXISTS tamper_events;
                     DROP TABLE IF EXISTS verifications;
                     DELETE FROM meta;",
                )
                .map_err(|e| self.err(e))?;
        }
        self.conn
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS snapshots (
                    id TEXT PRIMARY KEY, key TEXT NOT NULL UNIQUE, source TEXT NOT NULL,
                    kind TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT NOT NULL,
                    retain_until TEXT NOT NULL, previous TEXT, input_bytes INTEGER NOT NULL,
                    stored_bytes INTEGER NOT NULL, added_bytes INTEGER NOT NULL,
                    chunk_count INTEGER NOT NULL);
                 CREATE INDEX IF NOT EXISTS snapshots_by_source ON snapshots(source, key);
                 CREATE TABLE IF NOT EXISTS chunks (
                    id BLOB PRIMARY KEY, stored_len INTEGER NOT NULL,
                    stored_hash BLOB NOT NULL, retain_until INTEGER NOT NULL) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS deltas (
                    id BLOB NOT NULL, base BLOB NOT NULL, stored_len INTEGER NOT NULL,
                    stored_hash BLOB NOT NULL, retain_until INTEGER NOT NULL,
                    PRIMARY KEY (id, base)) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS runs (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL,
                    started_at TEXT NOT NULL, finished_at TEXT, outcome TEXT NOT NULL,
                    snapshot TEXT, input_bytes INTEGER, added_bytes INTEGER, error TEXT);
                 CREATE TABLE IF NOT EXISTS tamper_events (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, first_seen TEXT NOT NULL,
                    key TEXT NOT NULL, version TEXT NOT NULL, what TEXT NOT NULL,
                    UNIQUE (key, version, what));",
            )
            .map_err(|e| self.err(e))?;
        self.migrate_runs()?;
        self.conn
            .execute_batch(&[verifications::SCHEMA, notifications::SCHEMA].concat())
            .map_err(|e| self.err(e))?;
        self.set_meta("schema_version", &SCHEMA_VERSION.to_string())?;
        if !repository_id.is_empty() || self.meta("repository_id")?.is_none() {
            self.set_meta("repository_id", repository_id)?;
        }
        Ok(())
    }

    /// A value of the catalog's key-value table (`meta`), if set.
    pub fn meta(&self, key: &str) -> Result<Option<String>, CatalogError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Sets a value of the `meta` table, replacing any earlier one.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), CatalogError> {
        self.conn
            .execute(
                "INSERT INTO meta(key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// What the catalog knows about full chunk `id`, if anything. Trust it without a
    /// round trip only while its `retain_until` is in the future (module doc).
    pub fn chunk(&self, id: &ObjectId) -> Result<Option<KnownChunk>, CatalogError> {
        self.conn
            .query_row(
                "SELECT stored_len, stored_hash, retain_until FROM chunks WHERE id = ?1",
                [&id.as_bytes()[..]],
                |r| {
                    let hash: Vec<u8> = r.get(1)?;
                    Ok((r.get::<_, i64>(0)?, hash, r.get::<_, i64>(2)?))
                },
            )
            .optional()
            .map_err(|e| self.err(e))
            .map(|row| {
                row.and_then(|(len, hash, until)| {
                    let hash: [u8; 32] = hash.try_into().ok()?;
                    Some(KnownChunk {
                        stored_len: len as u64,
                        stored_hash: ObjectId::from_bytes(hash),
                        retain_until: until,
                    })
                })
            })
    }

    /// A delta object stored for chunk `id`, if the catalog knows one; the
    /// one locked longest when there are several (against different bases).
    pub fn delta(&self, id: &ObjectId) -> Result<Option<(ObjectId, KnownChunk)>, CatalogError> {
        self.conn
            .query_row(
                "SELECT base, stored_len, stored_hash, retain_until FROM deltas WHERE id = ?1
                 ORDER BY retain_until DESC LIMIT 1",
                [&id.as_bytes()[..]],
                |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))
            .map(|row| {
                row.and_then(|(base, len, hash, until)| {
                    Some((
                        ObjectId::from_bytes(base.try_into().ok()?),
                        KnownChunk {
                            stored_len: len as u64,
                            stored_hash: ObjectId::from_bytes(hash.try_into().ok()?),
                            retain_until: until,
                        },
                    ))
                })
            })
    }

    /// Records delta objects `(id, base)` known durable and locked.
    pub fn record_deltas(
        &mut self,
        deltas: &[(ObjectId, ObjectId, KnownChunk)],
    ) -> Result<(), CatalogError> {
        let tx = self.conn.transaction().map_err(sqlite_err(&self.path))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO deltas(id, base, stored_len, stored_hash, retain_until)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(id, base) DO UPDATE SET
                        retain_until = max(retain_until, excluded.retain_until),
                        stored_len = excluded.stored_len, stored_hash = excluded.stored_hash",
                )
                .map_err(sqlite_err(&self.path))?;
            for (id, base, c) in deltas {
                stmt.execute(params![
                    &id.as_bytes()[..],
                    &base.as_bytes()[..],
                    c.stored_len as i64,
                    &c.stored_hash.as_bytes()[..],
                    c.retain_until
                ])
                .map_err(sqlite_err(&self.path))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Records chunks known durable and locked; a retention only ever grows.
    pub fn record_chunks(&mut self, chunks: &[(ObjectId, KnownChunk)]) -> Result<(), CatalogError> {
        let tx = self.conn.transaction().map_err(sqlite_err(&self.path))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO chunks(id, stored_len, stored_hash, retain_until) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(id) DO UPDATE SET
                        retain_until = max(retain_until, excluded.retain_until),
                        stored_len = excluded.stored_len, stored_hash = excluded.stored_hash",
                )
                .map_err(sqlite_err(&self.path))?;
            for (id, c) in chunks {
                stmt.execute(params![
                    &id.as_bytes()[..],
                    c.stored_len as i64,
                    &c.stored_hash.as_bytes()[..],
                    c.retain_until
                ])
                .map_err(sqlite_err(&self.path))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Records a snapshot and its chunks (and delta bases) as locked until its
    /// `retain_until`. Call only after the backend's flush made them durable.
    pub fn record_snapshot(
        &mut self,
        id: &ObjectId,
        key: &str,
        m: &Manifest,
    ) -> Result<(), CatalogError> {
        let until = m.retain_until.unix_timestamp();
        let mut chunks: Vec<(ObjectId, KnownChunk)> = Vec::with_capacity(m.chunks.len());
        let mut deltas: Vec<(ObjectId, ObjectId, KnownChunk)> = Vec::new();
        for c in &m.chunks {
            let known = KnownChunk {
                stored_len: c.stored_len,
                stored_hash: c.stored_hash,
                retain_until: until,
            };
            match c.delta_base() {
                None => chunks.push((c.id, known)),
                Some(b) => {
                    deltas.push((c.id, b.id, known));
                    // A base is referenced, and locked, like any chunk.
                    chunks.push((
                        b.id,
                        KnownChunk {
                            stored_len: b.stored_len,
                            stored_hash: b.stored_hash,
                            retain_until: until,
                        },
                    ));
                }
            }
        }
        self.record_chunks(&chunks)?;
        self.record_deltas(&deltas)?;
        let r = SnapshotRow::from_manifest(id, key, m);
        self.conn
            .execute(
                "INSERT OR REPLACE INTO snapshots(id, key, source, kind, started_at, finished_at,
                    retain_until, previous, input_bytes, stored_bytes, added_bytes, chunk_count)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    r.id,
                    r.key,
                    r.source,
                    r.kind,
                    rfc3339::format(r.started_at),
                    rfc3339::format(r.finished_at),
                    rfc3339::format(r.retain_until),
                    r.previous,
                    r.input_bytes as i64,
                    r.stored_bytes as i64,
                    r.added_bytes as i64,
                    r.chunks as i64
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The snapshots of one source or all, by source, then oldest first.
    pub fn snapshots(&self, source: Option<&str>) -> Result<Vec<SnapshotRow>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, source, kind, started_at, finished_at, retain_until, previous,
                        input_bytes, stored_bytes, added_bytes, chunk_count, key
                 FROM snapshots WHERE (?1 IS NULL OR source = ?1) ORDER BY source, key",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([source], |r| {
                let id: String = r.get(0)?;
                Ok(SnapshotRow {
                    short_id: id[..8.min(id.len())].to_string(),
                    id,
                    source: r.get(1)?,
                    kind: r.get(2)?,
                    started_at: time_column(r, 3)?,
                    finished_at: time_column(r, 4)?,
                    retain_until: time_column(r, 5)?,
                    previous: r.get(6)?,
                    input_bytes: r.get::<_, i64>(7)? as u64,
                    stored_bytes: r.get::<_, i64>(8)? as u64,
                    added_bytes: r.get::<_, i64>(9)? as u64,
                    chunks: r.get::<_, i64>(10)? as u64,
                    key: r.get(11)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Run history is the one table a rebuild cannot restore, so it gains
    /// columns in place instead of being dropped by a schema change.
    fn migrate_runs(&self) -> Result<(), CatalogError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM pragma_table_info('runs')")
            .map_err(|e| self.err(e))?;
        let have: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        for (column, decl) in [
            ("kind", "TEXT NOT NULL DEFAULT 'backup'"),
            ("pid", "INTEGER"),
            ("pid_start", "INTEGER"),
        ] {
            if !have.iter().any(|h| h == column) {
                self.conn
                    .execute_batch(&format!("ALTER TABLE runs ADD COLUMN {column} {decl}"))
                    .map_err(|e| self.err(e))?;
            }
        }
        Ok(())
    }

    /// Opens a run row (`running`) for this process: its pid and start time
    /// let any later reader tell a live run from one whose process is gone.
    pub fn begin_run(&self, kind: RunKind, source: &str) -> Result<i64, CatalogError> {
        let pid = std::process::id();
        let start = crate::sys::process_start_ticks(pid);
        self.conn
            .execute(
                "INSERT INTO runs(kind, source, started_at, outcome, pid, pid_start)
                 VALUES (?1, ?2, ?3, 'running', ?4, ?5)",
                params![
                    kind.as_str(),
                    source,
                    rfc3339::format(OffsetDateTime::now_utc()),
                    pid,
                    start.map(|s| s as i64)
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Marks every `running` row whose process is gone as interrupted
    /// (`process gone`): a SIGKILL, a crash or a power loss leaves such
    /// rows, and nothing else would ever close them. Returns how many.
    pub fn resolve_dead_runs(&self) -> Result<usize, CatalogError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, pid, pid_start FROM runs WHERE outcome = 'running'")
            .map_err(|e| self.err(e))?;
        let rows: Vec<(i64, Option<i64>, Option<i64>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        let mut resolved = 0;
        for (id, pid, start) in rows {
            let gone = match (pid, start) {
                (Some(pid), Some(start)) => {
                    crate::sys::process_alive(pid as u32, start as u64) == Some(false)
                }
                // Rows from before pids were recorded: nobody can still run them.
                _ => true,
            };
            if gone {
                resolved += self
                    .conn
                    .execute(
                        "UPDATE runs SET outcome = 'interrupted', finished_at = ?2,
                            error = coalesce(error, ?3)
                         WHERE id = ?1 AND outcome = 'running'",
                        params![id, rfc3339::format(OffsetDateTime::now_utc()), PROCESS_GONE],
                    )
                    .map_err(|e| self.err(e))?;
            }
        }
        Ok(resolved)
    }

    /// Closes run `run` with its outcome, snapshot, byte counts and error, stamped now.
    pub fn finish_run(
        &self,
        run: i64,
        outcome: RunOutcome,
        snapshot: Option<&ObjectId>,
        input_bytes: u64,
        added_bytes: u64,
        error: Option<&str>,
    ) -> Result<(), CatalogError> {
        self.conn
            .execute(
                "UPDATE runs SET finished_at = ?2, outcome = ?3, snapshot = ?4, input_bytes = ?5,
                    added_bytes = ?6, error = ?7 WHERE id = ?1",
                params![
                    run,
                    rfc3339::format(OffsetDateTime::now_utc()),
                    outcome.as_str(),
                    snapshot.map(|s| s.to_hex()),
                    input_bytes as i64,
                    added_bytes as i64,
                    error
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Closes the runs process `pid` left `running` (the daemon killed it)
    /// with `outcome` and `reason`. Returns how many rows it closed.
    pub fn end_running(
        &self,
        pid: u32,
        outcome: RunOutcome,
        reason: &str,
    ) -> Result<usize, CatalogError> {
        self.conn
            .execute(
                "UPDATE runs SET outcome = ?2, error = ?3, finished_at = ?4
                 WHERE pid = ?1 AND outcome = 'running'",
                params![
                    pid,
                    outcome.as_str(),
                    reason,
                    rfc3339::format(OffsetDateTime::now_utc())
                ],
            )
            .map_err(|e| self.err(e))
    }

    /// Records that the daemon holds a due run of `source` for a free slot
    /// since `since` (kept until [`Catalog::clear_waiting`]).
    pub fn set_waiting(
        &self,
        source: &str,
        since: OffsetDateTime,
        period: Duration,
    ) -> Result<(), CatalogError> {
        self.set_meta(
            &format!("waiting:{source}"),
            &format!("{} {}", since.unix_timestamp(), period.as_secs()),
        )
    }

    /// Forgets that the daemon is waiting for a slot for `source` (all sources: `None`).
    pub fn clear_waiting(&self, source: Option<&str>) -> Result<(), CatalogError> {
        let pattern = match source {
            Some(s) => format!("waiting:{s}"),
            None => "waiting:%".to_string(),
        };
        self.conn
            .execute("DELETE FROM meta WHERE key LIKE ?1", [pattern])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Sources the daemon holds for a free slot.
    pub fn waiting(&self) -> Result<std::collections::BTreeMap<String, Waiting>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, value FROM meta WHERE key LIKE 'waiting:%'")
            .map_err(|e| self.err(e))?;
        let rows: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(k, v)| {
                let (since, period) = v.split_once(' ')?;
                Some((
                    k.strip_prefix("waiting:")?.to_string(),
                    Waiting {
                        since: OffsetDateTime::from_unix_timestamp(since.parse().ok()?).ok()?,
                        period: Duration::from_secs(period.parse().ok()?),
                    },
                ))
            })
            .collect())
    }

    /// The recorded runs of one source or all, oldest first.
    pub fn runs(&self, source: Option<&str>) -> Result<Vec<RunRow>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, kind, source, started_at, finished_at, outcome, snapshot, error FROM runs
                 WHERE (?1 IS NULL OR source = ?1) ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([source], |r| {
                Ok(RunRow {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    source: r.get(2)?,
                    started_at: r.get(3)?,
                    finished_at: r.get(4)?,
                    outcome: r.get(5)?,
                    snapshot: r.get(6)?,
                    error: r.get(7)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Records tamper events; one already recorded is not repeated. Returns
    /// how many were new.
    pub fn record_tampering(&mut self, events: &[TamperEvent]) -> Result<usize, CatalogError> {
        let now = rfc3339::format(OffsetDateTime::now_utc());
        let tx = self.conn.transaction().map_err(sqlite_err(&self.path))?;
        let mut new = 0;
        for e in events {
            new += tx
                .execute(
                    "INSERT OR IGNORE INTO tamper_events (first_seen, key, version, what)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![now, e.key, e.version.as_deref().unwrap_or(""), e.what],
                )
                .map_err(sqlite_err(&self.path))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(new)
    }

    /// Every recorded tamper event, oldest first: (first seen, event).
    pub fn tampering(&self) -> Result<Vec<(String, TamperEvent)>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare("SELECT first_seen, key, version, what FROM tamper_events ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                let version: String = r.get(2)?;
                Ok((
                    r.get(0)?,
                    TamperEvent {
                        key: r.get(1)?,
                        version: (!version.is_empty()).then_some(version),
                        what: r.get(3)?,
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Brings the snapshot rows in line with the repository: fetches (and
    /// name-checks) manifests it does not know, drops rows whose manifest is
    /// gone. One LIST plus one GET per new snapshot; the same for
    /// attestations, which become `verifications` rows.
    pub fn sync(
        &mut self,
        backend: &dyn ReadBackend,
        id_key: &IdKey,
    ) -> Result<SyncReport, CatalogError> {
        let listed = repository::list_snapshots(backend, None)?;
        let known: std::collections::HashSet<String> =
            self.snapshots(None)?.into_iter().map(|s| s.key).collect();
        let mut report = SyncReport::default();
        let listed_keys: std::collections::HashSet<&str> =
            listed.iter().map(|s| s.key.as_str()).collect();
        for key in known.iter().filter(|k| !listed_keys.contains(k.as_str())) {
            tracing::warn!(key = %key, "snapshot in catalog is gone from the repository");
            self.conn
                .execute("DELETE FROM snapshots WHERE key = ?1", [key])
                .map_err(|e| self.err(e))?;
            report.removed += 1;
        }
        for snap in listed.iter().filter(|s| !known.contains(&s.key)) {
            let m = repository::read_manifest(backend, id_key, snap)?;
            self.record_snapshot(&snap.id, &snap.key, &m)?;
            report.added += 1;
        }
        report.attestations = self.sync_attestations(backend, id_key)?;
        self.sync_last_prune(backend)?;
        self.mark_refilled()?;
        Ok(report)
    }

    /// Caches the newest prune audit record's summary (meta `last_prune`)
    /// for `status`; one LIST, and one GET when a newer record appeared.
    fn sync_last_prune(&self, backend: &dyn ReadBackend) -> Result<(), CatalogError> {
        use crate::prune::audit;
        let keys = audit::list(backend).map_err(RepoError::from)?;
        let Some(newest) = keys.iter().rev().find(|k| k.ends_with(".done")) else {
            return Ok(());
        };
        if self.last_prune()?.is_some_and(|p| &p.key == newest) {
            return Ok(());
        }
        match audit::read(backend, newest) {
            Ok(r) => self.set_last_prune(&r.summary(newest)),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring unreadable prune audit record");
                Ok(())
            }
        }
    }

    /// The last prune this catalog knows of.
    pub fn last_prune(&self) -> Result<Option<crate::prune::audit::LastPrune>, CatalogError> {
        Ok(self
            .meta("last_prune")?
            .and_then(|v| serde_json::from_str(&v).ok()))
    }

    /// Caches the newest prune `.done` record's summary, for `status`.
    pub fn set_last_prune(&self, p: &crate::prune::audit::LastPrune) -> Result<(), CatalogError> {
        self.set_meta(
            "last_prune",
            &serde_json::to_string(p).expect("summary serializes"),
        )
    }

    /// Forgets every cached snapshot and chunk and reads them back from the
    /// repository. Run history is kept.
    pub fn rebuild(
        &mut self,
        backend: &dyn ReadBackend,
        id_key: &IdKey,
    ) -> Result<SyncReport, CatalogError> {
        self.conn
            .execute_batch("DELETE FROM snapshots; DELETE FROM chunks; DELETE FROM deltas; DELETE FROM meta WHERE key LIKE 'retain:%';")
            .map_err(|e| self.err(e))?;
        self.sync(backend, id_key)
    }

    /// Path shown in messages.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Runs SQLite's integrity check (used by tests and `doctor`).
    pub fn integrity_ok(&self) -> Result<bool, CatalogError> {
        let r: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        Ok(r == "ok")
    }
}
