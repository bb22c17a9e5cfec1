//! The backup pipeline: read → chunk → hash/compress/encrypt → store, with
//! bounded queues between stages so memory does not grow with dump size.
//!
//! Threads: one chunker (also computes the whole-stream hash), `workers`
//! sealers (chunk id, dedup decision, zstd + age), `max_in_flight`
//! uploaders, and the calling thread collecting results in order.
//!
//! Delta chunks ([`crate::delta`]): a chunk that is not an exact duplicate
//! may be stored as a zstd patch against a similar full chunk (its base) of
//! the source's previous backup. The base is referenced like a reused chunk
//! (durable, locked until the lock target) before the manifest is written.
//!
//! Ordering rules (invariant 3): every chunk is durable and locked until at
//! least the snapshot's retain-until before the manifest is put; the
//! manifest is the last object written, so a backup that fails or is killed
//! at any point leaves no visible snapshot — only chunks a later backup reuses.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::catalog::{Catalog, CatalogError, KnownChunk};
use crate::chunker::Chunker;
use crate::delta::{BaseCache, CacheError, DeltaOptions, Sketch, sketches};
use crate::envelope::{self, EnvelopeError, Sealer};
use crate::error::ErrorClass;
use crate::format::{
    self, MANIFEST_TAG, MANIFEST_VERSION, MANIFEST_VERSION_FULL, MAX_OBJECT_BYTES,
};
use crate::ids::ObjectId;
use crate::manifest::{ChunkRef, DeltaBase, Manifest, SealedPart};
use crate::repository::{self, RepoError, WriteRepo};
use crate::source::{DumpStream, SourceError};
use crate::storage::{PutOutcome, StorageError};

/// Chunks recorded in the catalog per flush during a long backup, so a
/// killed run's chunks are reused by the next one without a round trip.
const RECORD_BATCH: usize = 256;

/// Free space the state directory must have when a backup starts and again
/// just before its manifest is written: room for the catalog's records of
/// the run and the snapshot (SQLite's WAL grows by whole pages). Below it the
/// backup stops with [`BackupError::StateFull`] rather than write a snapshot
/// the catalog then fails to record.
pub const STATE_MIN_FREE: u64 = 1 << 20;

/// Fails with [`BackupError::StateFull`] if the directory holding the
/// catalog has less than [`STATE_MIN_FREE`] bytes free.
fn check_state_space(catalog: &Catalog) -> Result<(), BackupError> {
    let path = std::path::Path::new(catalog.path());
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    match crate::sys::free_bytes(dir) {
        Some(free) if free < STATE_MIN_FREE => Err(BackupError::StateFull {
            dir: dir.display().to_string(),
            free,
            need: STATE_MIN_FREE,
        }),
        _ => Ok(()),
    }
}

/// Why a backup wrote no snapshot. Whatever it had stored stays, locked, for a
/// later backup to reuse.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The source could not start, or failed or timed out (reported when its dump finishes).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Reading the dump stream failed (e.g. the pipe broke).
    #[error("reading the dump of source {source_name}: {source}")]
    Read {
        /// The source whose dump was being read.
        source_name: String,
        /// The read failure.
        #[source]
        source: std::io::Error,
    },
    /// The source's `timeout` expired while its dump was being read.
    #[error("reading the dump of source {source_name}: {source}")]
    TimedOut {
        /// The source whose dump was being read.
        source_name: String,
        /// The read failure the watchdog caused.
        #[source]
        source: std::io::Error,
    },
    /// The backend failed to store or lock an object; what was stored stays.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The repository could not be opened or its previous snapshot read.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The catalog could not be read or updated.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A chunk could not be compressed or encrypted to the recipients.
    #[error("sealing a chunk: {0}")]
    Envelope(#[from] EnvelopeError),
    /// A file of the local delta base cache could not be read or written.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A stop signal arrived; no manifest was written.
    #[error(transparent)]
    Interrupted(#[from] crate::sys::Interrupted),
    /// The state directory has less free space than a backup needs for the catalog and the
    /// base cache: checked before the dump is read, and again when a write there fails.
    #[error(
        "state directory {dir} is full ({free} bytes free; a backup needs at least {need} there \
         for the catalog and the base cache): free space in it and run the backup again"
    )]
    StateFull {
        /// The state directory.
        dir: String,
        /// Its free space, in bytes.
        free: u64,
        /// The least a backup needs there, in bytes.
        need: u64,
    },
    /// A stage stopped because another one failed; never returned to callers
    /// (the first real error is).
    #[doc(hidden)]
    #[error("backup pipeline stopped")]
    Stopped,
}

impl BackupError {
    /// Wrapped errors answer for themselves; reading the dump, a full state
    /// directory and a stopped pipeline are operational.
    pub fn class(&self) -> ErrorClass {
        match self {
            BackupError::Source(e) => e.class(),
            BackupError::Storage(e) => e.class(),
            BackupError::Repo(e) => e.class(),
            BackupError::Catalog(e) => e.class(),
            BackupError::Envelope(e) => e.class(),
            BackupError::Cache(e) => e.class(),
            BackupError::Interrupted(e) => e.class(),
            BackupError::Read { .. }
            | BackupError::TimedOut { .. }
            | BackupError::StateFull { .. }
            | BackupError::Stopped => ErrorClass::Operational,
        }
    }
}

/// How a backup locks and how much it runs in parallel.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The snapshot is locked this many days from its start (see
    /// [`Manifest::retain_until`]).
    pub lock_days: u32,
    /// Extra days on the chunks' locks beyond the snapshot's retain-until (the lock
    /// target), so the next backups can reuse them without extending every lock.
    pub lock_slack_days: u32,
    /// Sealing threads (hash, compress, encrypt); also bounds the chunks queued for them.
    pub workers: usize,
    /// Uploads in flight at once; with `workers` it bounds the memory a run pins.
    pub max_in_flight: usize,
    /// Delta chunks and their base cache; `None` stores every chunk full.
    pub delta: Option<DeltaOptions>,
}

impl BackupOptions {
    /// The options the configuration asks for; `workers` defaults to the
    /// number of CPUs.
    pub fn from_config(config: &crate::config::Config) -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            lock_days: config.repository.lock_days,
            lock_slack_days: config.repository.lock_slack_days,
            workers: config.repository.workers.unwrap_or(cpus),
            max_in_flight: config.repository.effective_max_in_flight(),
            delta: (config.repository.delta_max_percent > 0).then(|| DeltaOptions {
                cache_root: config.base_cache_dir(),
                max_percent: config.repository.delta_max_percent,
            }),
        }
    }
}

/// Progress callbacks; the CLI draws bars, the daemon logs.
pub trait Progress: Sync {
    /// `bytes` more of the dump stream were read.
    fn read(&self, _bytes: u64) {}
    /// One chunk was handled: `new` if this run stored it (`stored_bytes` written),
    /// else it was already stored.
    fn chunk(&self, _new: bool, _stored_bytes: u64) {}
}

/// Progress that reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// What a successful backup wrote; the CLI prints it (JSON fields may be added).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BackupSummary {
    /// The source backed up.
    pub source: String,
    /// The new snapshot's manifest id (64 hex).
    pub snapshot: String,
    /// Its first 8 hex digits, as shown to people.
    pub short_id: String,
    /// The manifest's object key.
    pub key: String,
    /// Length of the dump stream, in bytes.
    pub input_bytes: u64,
    /// Stored bytes of the distinct objects the snapshot references.
    pub stored_bytes: u64,
    /// Stored bytes this backup newly wrote (what it cost).
    pub added_bytes: u64,
    /// Entries in the manifest (a repeated chunk counts each time).
    pub chunks: usize,
    /// Entries for which this backup stored a new object.
    pub new_chunks: usize,
    /// Entries that reused an object already stored.
    pub reused_chunks: usize,
    /// Entries stored as deltas (new or reused).
    pub delta_chunks: usize,
    /// The snapshot's retain-until (RFC 3339, UTC).
    pub retain_until: String,
    /// Wall time of the backup, in seconds.
    pub seconds: f64,
}

enum Decision {
    /// Cached as durable and locked long enough: reference it as is.
    Known(KnownChunk),
    /// Cached, but its lock ends too early: extend before referencing.
    Extend(KnownChunk),
    /// Stored as a delta whose object and base are both locked long enough.
    KnownDelta(DeltaBase, KnownChunk),
    /// Stored as a delta, but the delta or its base needs a longer lock.
    ExtendDelta(DeltaBase, KnownChunk),
    /// Another chunk of this run with the same id is being handled.
    Claimed,
    New,
}

struct Done {
    seq: usize,
    id: ObjectId,
    len: u64,
    /// `None` when another entry of this run resolves the same id.
    info: Option<KnownChunk>,
    /// The base when `info` describes a delta object.
    base: Option<DeltaBase>,
    /// Stored bytes this entry newly wrote.
    added: u64,
    /// The catalog must learn (or update) this chunk after the next flush.
    record: bool,
    /// A base whose lock this entry extended, for the catalog.
    base_record: Option<(ObjectId, KnownChunk)>,
}

struct Upload {
    seq: usize,
    id: ObjectId,
    len: u64,
    sealed: Vec<u8>,
    base: Option<DeltaBase>,
    base_record: Option<(ObjectId, KnownChunk)>,
}

struct Shared<'a> {
    repo: &'a WriteRepo,
    catalog: Mutex<&'a mut Catalog>,
    claims: Mutex<std::collections::HashSet<ObjectId>>,
    need: i64,
    lock_target: OffsetDateTime,
    abort: AtomicBool,
    error: Mutex<Option<BackupError>>,
    progress: &'a dyn Progress,
    cache: Option<BaseCache>,
}

impl Shared<'_> {
    fn fail(&self, e: BackupError) {
        self.abort.store(true, Ordering::SeqCst);
        let mut slot = self.error.lock().unwrap();
        if slot.is_none() {
            *slot = Some(e);
        }
    }
    fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    fn decide(&self, id: &ObjectId) -> Result<Decision, BackupError> {
        if !self.claims.lock().unwrap().insert(*id) {
            return Ok(Decision::Claimed);
        }
        let catalog = self.catalog.lock().unwrap();
        Ok(match catalog.chunk(id)? {
            Some(k) if k.retain_until >= self.need => Decision::Known(k),
            Some(k) => Decision::Extend(k),
            // A delta is reused only where deltas are written: a source with
            // deltas off keeps writing manifests older readers understand.
            None if self.cache.is_some() => match catalog.delta(id)? {
                Some((base_id, delta)) => match catalog.chunk(&base_id)? {
                    Some(b) => {
                        let base = DeltaBase {
                            id: base_id,
                            stored_len: b.stored_len,
                            stored_hash: b.stored_hash,
                        };
                        if delta.retain_until >= self.need && b.retain_until >= self.need {
                            Decision::KnownDelta(base, delta)
                        } else {
                            Decision::ExtendDelta(base, delta)
                        }
                    }
                    None => Decision::New,
                },
                None => Decision::New,
            },
            None => Decision::New,
        })
    }

    /// A full chunk usable as a base now: known to the catalog as a full
    /// object (so never a delta itself) and locked until the lock target,
    /// extending it if needed (the second value is then the catalog update).
    #[allow(clippy::type_complexity)]
    fn lock_base(
        &self,
        base: &ObjectId,
        known: KnownChunk,
    ) -> Result<Option<(KnownChunk, Option<(ObjectId, KnownChunk)>)>, BackupError> {
        if known.retain_until >= self.need {
            return Ok(Some((known, None)));
        }
        match self
            .repo
            .backend
            .extend_retention(&format::chunk_key(base), self.lock_target)
        {
            Ok(()) => {
                let k = KnownChunk {
                    retain_until: self.lock_target.unix_timestamp(),
                    ..known
                };
                Ok(Some((k, Some((*base, k)))))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Handles a key that already holds an object we know nothing certain
    /// about (e.g. left by a killed backup): learn its size and stored hash,
    /// and make sure it is locked long enough. The key says what the object
    /// is (a full chunk, or a delta against a named base).
    fn adopt_existing(&self, key: &str) -> Result<KnownChunk, BackupError> {
        let key = key.to_string();
        let backend = &self.repo.backend;
        backend.extend_retention(&key, self.lock_target)?;
        let bytes = backend.get(&key, MAX_OBJECT_BYTES)?;
        Ok(KnownChunk {
            stored_len: bytes.len() as u64,
            stored_hash: ObjectId::of_stored(&bytes),
            retain_until: self.lock_target.unix_timestamp(),
        })
    }
}

/// Runs one backup of `stream`. The caller records the run
/// ([`crate::run::RunGuard`]): it is opened before the source is, so a
/// source that fails to start is recorded too.
pub fn run(
    repo: &WriteRepo,
    catalog: &mut Catalog,
    stream: DumpStream,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupSummary, BackupError> {
    // Before the dump is read: a full state directory is named at once.
    check_state_space(catalog)?;
    backup(repo, catalog, stream, opts, progress)
}

fn backup(
    repo: &WriteRepo,
    catalog: &mut Catalog,
    mut stream: DumpStream,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupSummary, BackupError> {
    let clock = Instant::now();
    let started_at = now_micros();
    // Whole seconds, rounded up: storage keeps retention at 1 s resolution and
    // must never hold a lock that ends before the manifest says.
    let retain_until = started_at.replace_nanosecond(0).expect("0 is valid")
        + Duration::days(i64::from(opts.lock_days))
        + Duration::seconds(1);
    let lock_target = retain_until + Duration::days(i64::from(opts.lock_slack_days));
    let source = stream.source_name.clone();
    let backend = &repo.backend;

    // The chain link comes from the repository, not the catalog: another
    // host may have written this source since we last looked.
    let previous = repository::list_snapshots(backend.as_ref(), Some(&source))?
        .last()
        .map(|s| s.id);

    // The config object must outlive every snapshot that needs it.
    let config_lock: Option<i64> = catalog.meta("retain:config")?.and_then(|v| v.parse().ok());
    if config_lock.is_none_or(|t| t < retain_until.unix_timestamp()) {
        backend.extend_retention(format::CONFIG_KEY, lock_target)?;
        catalog.set_meta("retain:config", &lock_target.unix_timestamp().to_string())?;
    }

    let cache = match &opts.delta {
        Some(d) => Some(BaseCache::open(d, &source)?),
        None => None,
    };
    let reader = stream.take_reader();
    let mut shared = Shared {
        repo,
        catalog: Mutex::new(catalog),
        claims: Mutex::new(Default::default()),
        need: retain_until.unix_timestamp(),
        lock_target,
        abort: AtomicBool::new(false),
        error: Mutex::new(None),
        progress,
        cache,
    };

    let mut order: Vec<Option<(ObjectId, u64)>> = Vec::new();
    let mut infos: HashMap<ObjectId, (KnownChunk, Option<DeltaBase>)> = HashMap::new();
    let mut added_bytes = 0u64;
    let mut new_chunks = 0usize;
    let mut stream_hash = None;
    let mut input_bytes = 0u64;

    std::thread::scope(|scope| {
        let (job_tx, job_rx) = bounded::<(usize, Vec<u8>)>(opts.workers);
        let (up_tx, up_rx) = bounded::<Upload>(opts.max_in_flight);
        let (done_tx, done_rx) = unbounded::<Done>();
        // Chunk buffers go back to the chunker once sealed: a fresh buffer
        // per chunk costs a page fault per 4 KiB of input.
        let (pool_tx, pool_rx) = bounded::<Vec<u8>>(opts.workers);

        let chunker = scope.spawn(|| chunk_stream(&shared, &source, reader, job_tx, pool_rx));
        for _ in 0..opts.workers {
            let (rx, up, done, pool) = (
                job_rx.clone(),
                up_tx.clone(),
                done_tx.clone(),
                pool_tx.clone(),
            );
            let shared = &shared;
            scope.spawn(move || seal_worker(shared, rx, up, done, pool));
        }
        drop(pool_tx);
        for _ in 0..opts.max_in_flight {
            let (rx, done) = (up_rx.clone(), done_tx.clone());
            let shared = &shared;
            scope.spawn(move || upload_worker(shared, rx, done));
        }
        drop((job_rx, up_tx, up_rx, done_tx));

        let mut to_record = Pending::default();
        for d in done_rx.iter() {
            if order.len() <= d.seq {
                order.resize(d.seq + 1, None);
            }
            order[d.seq] = Some((d.id, d.len));
            added_bytes += d.added;
            if d.added > 0 {
                new_chunks += 1;
            }
            if let Some(info) = d.info {
                infos.insert(d.id, (info, d.base));
                if d.record {
                    match d.base {
                        None => to_record.chunks.push((d.id, info)),
                        Some(b) => to_record.deltas.push((d.id, b.id, info)),
                    }
                }
            }
            if let Some(b) = d.base_record {
                to_record.chunks.push(b);
            }
            if to_record.len() >= RECORD_BATCH
                && !shared.aborted()
                && let Err(e) = record(&shared, &mut to_record)
            {
                shared.fail(e);
            }
        }
        match chunker.join().expect("chunker thread panicked") {
            Some((hash, n)) => {
                stream_hash = Some(hash);
                input_bytes = n;
            }
            None => debug_assert!(shared.aborted()),
        }
        // Even a failed backup leaves its landed chunks to the next run.
        if let Err(e) = record(&shared, &mut to_record) {
            shared.fail(e);
        }
    });

    let cache = shared.cache.take();
    if let Some(e) = shared.error.lock().unwrap().take() {
        drop(stream); // kills a still-running dump tool
        if let Some(c) = cache {
            c.discard();
        }
        return Err(e);
    }
    let kind = stream.kind;
    let source_info = match stream.finish() {
        Ok(info) => info,
        Err(e) => {
            if let Some(c) = cache {
                c.discard();
            }
            return Err(e.into());
        }
    };
    let stream_hash = stream_hash.expect("chunker finished without error");
    // The last moment to refuse: past the manifest put, the snapshot exists.
    let full = match &cache {
        _ if crate::sys::stop_signal().is_some() => {
            crate::sys::check_stop().err().map(BackupError::from)
        }
        Some(c) if c.is_full() => Some(BackupError::StateFull {
            dir: c.dir().display().to_string(),
            free: c
                .dir()
                .parent()
                .and_then(crate::sys::free_bytes)
                .unwrap_or(0),
            need: STATE_MIN_FREE,
        }),
        _ => check_state_space(&shared.catalog.lock().unwrap()).err(),
    };
    if let Some(e) = full {
        if let Some(c) = cache {
            c.discard();
        }
        return Err(e);
    }

    let mut chunks = Vec::with_capacity(order.len());
    let mut lengths = Vec::with_capacity(order.len());
    let mut distinct = std::collections::HashSet::new();
    let mut stored_bytes = 0u64;
    let mut delta_chunks = 0usize;
    for entry in order {
        let (id, len) = entry.expect("every chunk sequence number was resolved");
        let (info, base) = infos[&id];
        let chunk = match base {
            None => ChunkRef::full(id, info.stored_len, info.stored_hash),
            Some(b) => {
                delta_chunks += 1;
                if distinct.insert(b.key()) {
                    stored_bytes += b.stored_len;
                }
                ChunkRef::delta(id, b, info.stored_len, info.stored_hash)
            }
        };
        if distinct.insert(chunk.key()) {
            stored_bytes += info.stored_len;
        }
        chunks.push(chunk);
        lengths.push(len);
    }
    let sealed = Manifest::seal(
        &repo.recipients,
        &SealedPart {
            stream_hash,
            chunk_lengths: lengths,
            source_info,
        },
    )?;
    let manifest = Manifest {
        format: MANIFEST_TAG.into(),
        // Older readers can still restore a snapshot without deltas.
        version: if delta_chunks > 0 {
            MANIFEST_VERSION
        } else {
            MANIFEST_VERSION_FULL
        },
        repository: repo.config.id.clone(),
        source: source.clone(),
        kind: kind.into(),
        started_at,
        finished_at: now_micros(),
        retain_until,
        previous,
        input_bytes,
        stored_bytes,
        added_bytes,
        lockbox_version: env!("CARGO_PKG_VERSION").into(),
        chunks,
        sealed,
    };
    let (bytes, id) = manifest.encode(&repo.id_key);
    let key = format::snapshot_key(&source, started_at, &id);
    // Every chunk was flushed by `record`; the manifest goes last.
    let written = backend
        .put(&key, Bytes::from(bytes), retain_until)
        .and_then(|_| backend.flush());
    if let Err(e) = written {
        if let Some(c) = cache {
            c.discard();
        }
        return Err(e.into());
    }
    // The bases of the next backup are this snapshot's chunks.
    if let Some(c) = cache
        && let Err(e) = c.commit()
    {
        tracing::warn!(error = %e, "could not update the base cache; the next backup stores changed chunks in full");
    }
    let catalog = shared.catalog.into_inner().unwrap();
    catalog.record_snapshot(&id, &key, &manifest)?;
    let n = manifest.chunks.len();
    Ok(BackupSummary {
        source,
        snapshot: id.to_hex(),
        short_id: id.short(),
        key,
        input_bytes,
        stored_bytes,
        added_bytes,
        chunks: n,
        new_chunks,
        reused_chunks: n - new_chunks,
        delta_chunks,
        retain_until: crate::rfc3339::format(retain_until),
        seconds: clock.elapsed().as_secs_f64(),
    })
}

/// Now, at the microsecond resolution snapshot keys carry.
fn now_micros() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.microsecond() * 1000)
        .expect("whole microseconds are valid")
}

/// Catalog updates waiting for the next flush.
#[derive(Default)]
struct Pending {
    chunks: Vec<(ObjectId, KnownChunk)>,
    deltas: Vec<(ObjectId, ObjectId, KnownChunk)>,
}

impl Pending {
    fn len(&self) -> usize {
        self.chunks.len() + self.deltas.len()
    }
}

/// Makes pending puts durable, then tells the catalog about them.
fn record(shared: &Shared, pending: &mut Pending) -> Result<(), BackupError> {
    if pending.len() == 0 {
        return Ok(());
    }
    shared.repo.backend.flush()?;
    let mut catalog = shared.catalog.lock().unwrap();
    catalog.record_chunks(&pending.chunks)?;
    catalog.record_deltas(&pending.deltas)?;
    pending.chunks.clear();
    pending.deltas.clear();
    Ok(())
}

/// Returns the stream hash and byte count, or `None` if the run failed.
fn chunk_stream(
    shared: &Shared,
    source: &str,
    reader: Box<dyn Read + Send>,
    jobs: Sender<(usize, Vec<u8>)>,
    pool: Receiver<Vec<u8>>,
) -> Option<(ObjectId, u64)> {
    let mut hasher = shared.repo.id_key.hasher();
    let mut total = 0u64;
    let mut chunker = Chunker::new(reader);
    for seq in 0.. {
        // Pool buffers are reserved at the largest chunk size, so a buffer
        // is never reallocated as chunk sizes vary (only touched pages are
        // resident).
        let buf = pool
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(crate::format::CHUNK_MAX_SIZE));
        let Some(chunk) = chunker.next_into_with(buf, |p| hasher.update(p)) else {
            break;
        };
        if shared.aborted() {
            return None;
        }
        if let Err(stop) = crate::sys::check_stop() {
            shared.fail(stop.into());
            return None;
        }
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                shared.fail(BackupError::TimedOut {
                    source_name: source.to_string(),
                    source: e,
                });
                return None;
            }
            Err(e) => {
                shared.fail(BackupError::Read {
                    source_name: source.to_string(),
                    source: e,
                });
                return None;
            }
        };
        total += chunk.len() as u64;
        shared.progress.read(chunk.len() as u64);
        if jobs.send((seq, chunk)).is_err() {
            return None;
        }
    }
    Some((hasher.finish(), total))
}

fn seal_worker(
    shared: &Shared,
    jobs: Receiver<(usize, Vec<u8>)>,
    uploads: Sender<Upload>,
    done: Sender<Done>,
    pool: Sender<Vec<u8>>,
) {
    let mut sealer = Sealer::new(shared.repo.recipients.clone());
    for (seq, data) in jobs.iter() {
        if shared.aborted() {
            return;
        }
        let result = seal_one(shared, &mut sealer, seq, &data, &uploads);
        let _ = pool.try_send(data);
        match result {
            Ok(Some(d)) => {
                shared.progress.chunk(false, 0);
                if done.send(d).is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(BackupError::Stopped) => return, // uploaders stopped: an error is recorded
            Err(e) => {
                shared.fail(e);
                return;
            }
        }
    }
}

/// Resolves one chunk: reuse (`Some`), or hand an upload on (`None`).
fn seal_one(
    shared: &Shared,
    sealer: &mut Sealer,
    seq: usize,
    data: &[u8],
    uploads: &Sender<Upload>,
) -> Result<Option<Done>, BackupError> {
    let id = shared.repo.id_key.id_of(data);
    let len = data.len() as u64;
    // Computed on first use: an unchanged chunk's sketch usually comes from
    // the previous backup's cache index instead.
    let computed = std::cell::OnceCell::new();
    let sketch = || -> Option<&Sketch> {
        let cache = shared.cache.as_ref()?;
        Some(computed.get_or_init(|| cache.sketch_of(&id).unwrap_or_else(|| sketches(data))))
    };
    // What the next backup's base cache holds for this position.
    let keep = |base: ObjectId, frame: Option<&[u8]>, plain: Option<&[u8]>| {
        if let (Some(cache), Some(sketch)) = (&shared.cache, sketch()) {
            cache.keep(seq, id, sketch, base, frame, plain);
        }
    };
    let reply = |info, base, record, base_record| Done {
        seq,
        id,
        len,
        info,
        base,
        added: 0,
        record,
        base_record,
    };
    let backend = &shared.repo.backend;
    let extend = |key: &str| match backend.extend_retention(key, shared.lock_target) {
        Ok(()) => Ok(true),
        // Gone although cached (expired and pruned): store it again.
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(BackupError::from(e)),
    };
    let locked = |k: KnownChunk| KnownChunk {
        retain_until: shared.lock_target.unix_timestamp(),
        ..k
    };
    match shared.decide(&id)? {
        Decision::Known(k) => {
            keep(id, None, Some(data));
            return Ok(Some(reply(Some(k), None, false, None)));
        }
        Decision::Claimed => {
            keep(id, None, None);
            return Ok(Some(reply(None, None, false, None)));
        }
        Decision::Extend(k) => {
            if extend(&format::chunk_key(&id))? {
                keep(id, None, Some(data));
                return Ok(Some(reply(Some(locked(k)), None, true, None)));
            }
        }
        Decision::KnownDelta(base, k) => {
            keep(base.id, None, None);
            return Ok(Some(reply(Some(k), Some(base), false, None)));
        }
        Decision::ExtendDelta(base, k) => {
            // The base first: a delta must never outlive its base's lock.
            if extend(&base.key())? && extend(&format::delta_key(&id, &base.id))? {
                keep(base.id, None, None);
                let base_known = KnownChunk {
                    stored_len: base.stored_len,
                    stored_hash: base.stored_hash,
                    retain_until: shared.lock_target.unix_timestamp(),
                };
                return Ok(Some(reply(
                    Some(locked(k)),
                    Some(base),
                    true,
                    Some((base.id, base_known)),
                )));
            }
        }
        Decision::New => {}
    }
    let (sealed, base, base_record) = match try_delta(shared, seq, &id, data, sketch())? {
        Some((frame, base, base_record, base_plain)) => {
            keep(base.id, None, Some(&base_plain));
            (sealer.seal_frame(&frame)?, Some(base), base_record)
        }
        None => {
            let frame = sealer.compress(data)?;
            keep(id, Some(&frame), None);
            (sealer.seal_frame(&frame)?, None, None)
        }
    };
    uploads
        .send(Upload {
            seq,
            id,
            len,
            sealed,
            base,
            base_record,
        })
        .map_err(|_| BackupError::Stopped)?;
    Ok(None)
}

/// The delta frame for a new chunk, when a base is at hand and the delta is
/// small enough: (frame, base, catalog update for the base, base plaintext).
#[allow(clippy::type_complexity)]
fn try_delta(
    shared: &Shared,
    seq: usize,
    id: &ObjectId,
    data: &[u8],
    sketch: Option<&Sketch>,
) -> Result<Option<(Vec<u8>, DeltaBase, Option<(ObjectId, KnownChunk)>, Vec<u8>)>, BackupError> {
    let (Some(cache), Some(sketch)) = (&shared.cache, sketch) else {
        return Ok(None);
    };
    let Some(base_id) = cache.candidate(seq, id, sketch) else {
        tracing::debug!(chunk = seq, "no similar chunk in the previous backup");
        return Ok(None);
    };
    // Only a chunk the catalog knows as a full object can be a base.
    let Some(known) = shared.catalog.lock().unwrap().chunk(&base_id)? else {
        tracing::debug!(chunk = seq, base = %base_id.short(), "candidate base unknown to the catalog");
        return Ok(None);
    };
    let Some(base_plain) = cache.load(&base_id, &shared.repo.id_key) else {
        tracing::debug!(chunk = seq, base = %base_id.short(), "candidate base not in the base cache");
        return Ok(None);
    };
    let frame = envelope::compress_delta(&base_plain, data)?;
    // The full size is estimated from the base's (no second compression):
    // similar plaintexts compress alike.
    let full_estimate = known.stored_len as u128 * data.len() as u128 / base_plain.len() as u128;
    if frame.len() as u128 * 100 > full_estimate * u128::from(cache.max_percent) {
        tracing::debug!(
            chunk = seq,
            base = %base_id.short(),
            delta = frame.len(),
            full_estimate = full_estimate as u64,
            "delta too large; storing the chunk in full"
        );
        return Ok(None);
    }
    let Some((known, base_record)) = shared.lock_base(&base_id, known)? else {
        return Ok(None);
    };
    let base = DeltaBase {
        id: base_id,
        stored_len: known.stored_len,
        stored_hash: known.stored_hash,
    };
    Ok(Some((frame, base, base_record, base_plain)))
}

fn upload_worker(shared: &Shared, uploads: Receiver<Upload>, done: Sender<Done>) {
    for u in uploads.iter() {
        if shared.aborted() {
            return;
        }
        let key = match &u.base {
            None => format::chunk_key(&u.id),
            Some(b) => format::delta_key(&u.id, &b.id),
        };
        let stored_len = u.sealed.len() as u64;
        let stored_hash = ObjectId::of_stored(&u.sealed);
        let result = shared
            .repo
            .backend
            .put(&key, Bytes::from(u.sealed), shared.lock_target)
            .map_err(BackupError::from)
            .and_then(|outcome| match outcome {
                PutOutcome::Created => Ok((
                    KnownChunk {
                        stored_len,
                        stored_hash,
                        retain_until: shared.lock_target.unix_timestamp(),
                    },
                    stored_len,
                )),
                PutOutcome::AlreadyExists => shared.adopt_existing(&key).map(|k| (k, 0)),
            });
        match result {
            Ok((info, added)) => {
                shared.progress.chunk(added > 0, added);
                let d = Done {
                    seq: u.seq,
                    id: u.id,
                    len: u.len,
                    info: Some(info),
                    base: u.base,
                    added,
                    record: true,
                    base_record: u.base_record,
                };
                if done.send(d).is_err() {
                    return;
                }
            }
            Err(e) => {
                shared.fail(e);
                return;
            }
        }
    }
}
