//! Parallel fetch-and-verify with in-order output and bounded read-ahead.
//!
//! A delta entry reads two objects: its base (a full chunk, verified like
//! any chunk: stored hash, age, keyed id) and the delta, decoded with the
//! base as zstd prefix and verified against its own id.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crossbeam_channel::{bounded, unbounded};
use lockbox_vault::envelope::{EnvelopeError, Opener};
use lockbox_vault::format::{self, MAX_OBJECT_BYTES};
use lockbox_vault::ids::{IdKey, ObjectId};
use lockbox_vault::keys::Identities;
use lockbox_vault::manifest::{Manifest, SealedPart};
use lockbox_vault::repository::SnapshotRef;
use lockbox_vault::storage::{ReadBackend, TamperEvent};
use std::sync::Mutex;

use crate::{RestoreError, RestoreOptions, RestoreReport};

/// The writer hashes and writes each chunk in pieces of this size, so the
/// bytes the stream hash has just read are still in this core's cache when
/// the kernel copies them into the output: written whole, a 2–8 MiB chunk
/// had left the cache by then.
const WRITE_PIECE: usize = 1 << 20;

/// Progress callbacks for restore.
pub trait RestoreProgress: Sync {
    /// The work is about to begin: `total_bytes` to restore (or, for verify, stored bytes to read).
    fn start(&self, _total_bytes: u64) {}
    /// `bytes` more were restored (or, for verify, read and checked).
    fn written(&self, _bytes: u64) {}
}

impl RestoreProgress for () {}

#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    backend: &dyn ReadBackend,
    identities: &Identities,
    id_key: &IdKey,
    snap: &SnapshotRef,
    manifest: &Manifest,
    sealed: &SealedPart,
    out: &mut dyn Write,
    opts: &RestoreOptions,
    progress: &dyn RestoreProgress,
) -> Result<RestoreReport, RestoreError> {
    let clock = Instant::now();
    let snapshot = snap.id.short();
    let total: u64 = sealed.chunk_lengths.iter().sum();
    progress.start(total);
    let n = manifest.chunks.len();
    let abort = AtomicBool::new(false);
    let tampering: Mutex<Vec<TamperEvent>> = Mutex::new(Vec::new());
    let window = opts.read_ahead.max(1);
    let bases = Bases::new(manifest);
    let pool = &BufferPool::new(window + 2 * opts.workers.max(1));

    let mut written = 0u64;
    let mut hasher = id_key.hasher();
    let result = std::thread::scope(|scope| -> Result<(), RestoreError> {
        // Credits bound how far fetching may run ahead of writing.
        let (credit_tx, credit_rx) = bounded::<()>(window);
        for _ in 0..window {
            credit_tx.send(()).expect("room for initial credits");
        }
        let (job_tx, job_rx) = bounded::<usize>(opts.workers);
        let (res_tx, res_rx) = unbounded::<(usize, Result<Vec<u8>, RestoreError>)>();
        let abort = &abort;
        scope.spawn(move || {
            for i in 0..n {
                if credit_rx.recv().is_err() || abort.load(Ordering::Relaxed) {
                    return;
                }
                if job_tx.send(i).is_err() {
                    return;
                }
            }
        });
        for _ in 0..opts.workers.max(1) {
            let (rx, tx) = (job_rx.clone(), res_tx.clone());
            let snapshot = &snapshot;
            let tampering = &tampering;
            let bases = &bases;
            scope.spawn(move || {
                let mut opener = Opener::new();
                let mut found = Vec::new();
                for i in rx.iter() {
                    if abort.load(Ordering::Relaxed) {
                        return;
                    }
                    let r = fetch_verified(
                        backend,
                        identities,
                        id_key,
                        manifest,
                        sealed,
                        i,
                        snapshot,
                        &mut opener,
                        &mut found,
                        bases,
                        pool,
                    );
                    if !found.is_empty() {
                        tampering.lock().unwrap().append(&mut found);
                    }
                    if tx.send((i, r)).is_err() {
                        return;
                    }
                }
            });
        }
        drop((job_rx, res_tx));

        let mut pending: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
        let mut next = 0usize;
        let stop = |e: RestoreError| {
            abort.store(true, Ordering::SeqCst);
            Err(e)
        };
        for (i, r) in res_rx.iter() {
            match r {
                Ok(data) => {
                    pending.insert(i, data);
                }
                Err(e) => return stop(e),
            }
            if let Err(stopped) = lockbox_vault::sys::check_stop() {
                return stop(stopped.into());
            }
            while let Some(data) = pending.remove(&next) {
                for piece in data.chunks(WRITE_PIECE) {
                    hasher.update(piece);
                    if let Err(e) = out.write_all(piece) {
                        return stop(RestoreError::Output {
                            path: "output".into(),
                            reason: e.to_string(),
                        });
                    }
                }
                written += data.len() as u64;
                progress.written(data.len() as u64);
                next += 1;
                pool.give(data);
                let _ = credit_tx.send(());
            }
        }
        if next != n {
            return stop(RestoreError::ChunkCorrupt {
                snapshot: snapshot.clone(),
                index: next,
                key: "(pipeline)".into(),
                reason: "restore ended before every chunk was verified".into(),
            });
        }
        Ok(())
    });
    result?;
    if hasher.finish() != sealed.stream_hash {
        return Err(RestoreError::StreamMismatch { snapshot });
    }
    out.flush().map_err(|e| RestoreError::Output {
        path: "output".into(),
        reason: e.to_string(),
    })?;
    Ok(RestoreReport {
        snapshot: snap.id.to_hex(),
        source: manifest.source.clone(),
        bytes: written,
        chunks: n,
        seconds: clock.elapsed().as_secs_f64(),
        tampering: tampering.into_inner().unwrap(),
    })
}

/// Base plaintexts of delta entries, shared by the workers so a base used
/// by several deltas is fetched once. Each base is dropped after its last
/// use in the manifest, and the cache never holds more than
/// [`BASE_CACHE_BYTES`]: past that a base is used and dropped, and fetched
/// again for a later delta (correct, only slower).
pub(crate) struct Bases {
    inner: Mutex<BasesInner>,
}

struct BasesInner {
    /// Uses left per base, and its plaintext while cached.
    uses: HashMap<ObjectId, BaseUse>,
    held: usize,
}

/// Deltas still to decode against a base, and its plaintext while cached.
type BaseUse = (usize, Option<Arc<Vec<u8>>>);

/// Memory the restore base cache may hold (16 bases of the largest size).
pub(crate) const BASE_CACHE_BYTES: usize = 16 * format::CHUNK_MAX_SIZE;

impl Bases {
    pub(crate) fn new(manifest: &Manifest) -> Self {
        let mut uses: HashMap<ObjectId, BaseUse> = HashMap::new();
        for c in &manifest.chunks {
            if let Some(b) = c.base {
                uses.entry(b).or_default().0 += 1;
            }
        }
        Self {
            inner: Mutex::new(BasesInner { uses, held: 0 }),
        }
    }

    fn cached(&self, id: &ObjectId) -> Option<Arc<Vec<u8>>> {
        let mut inner = self.inner.lock().unwrap();
        let entry = inner.uses.get_mut(id)?;
        let data = entry.1.clone()?;
        entry.0 = entry.0.saturating_sub(1);
        if entry.0 == 0 {
            entry.1 = None;
            inner.held -= data.len();
        }
        Some(data)
    }

    fn store(&self, id: &ObjectId, data: Vec<u8>) -> Arc<Vec<u8>> {
        let data = Arc::new(data);
        let mut inner = self.inner.lock().unwrap();
        let held = inner.held;
        if let Some(entry) = inner.uses.get_mut(id) {
            entry.0 = entry.0.saturating_sub(1);
            if entry.0 > 0 && entry.1.is_none() && held + data.len() <= BASE_CACHE_BYTES {
                entry.1 = Some(data.clone());
                inner.held += data.len();
            }
        }
        data
    }
}

#[allow(clippy::too_many_arguments)]
fn fetch_verified(
    backend: &dyn ReadBackend,
    identities: &Identities,
    id_key: &IdKey,
    manifest: &Manifest,
    sealed: &SealedPart,
    index: usize,
    snapshot: &str,
    opener: &mut Opener,
    tampering: &mut Vec<TamperEvent>,
    bases: &Bases,
    pool: &BufferPool,
) -> Result<Vec<u8>, RestoreError> {
    let entry = &manifest.chunks[index];
    let key = entry.key();
    let plain_len = sealed.chunk_lengths[index] as usize;
    let Some(base) = entry.delta_base() else {
        let stored = fetch_stored(
            backend,
            &key,
            (entry.stored_len, entry.stored_hash),
            index,
            snapshot,
            tampering,
        )?;
        let mut plain = pool.take();
        opener
            .open_into(identities, &stored, plain_len, &mut plain)
            .map_err(|e| open_error(e, snapshot, index, &key))?;
        return check_plain(plain, plain_len, &entry.id, id_key, snapshot, index, &key);
    };
    // The base first, checked like any chunk, so damage to it is named as
    // damage to the base.
    let base_plain = match bases.cached(&base.id) {
        Some(p) => p,
        None => {
            let base_key = format!("{}, the base of {key}", base.key());
            let stored = fetch_stored(
                backend,
                &base.key(),
                (base.stored_len, base.stored_hash),
                index,
                snapshot,
                tampering,
            )
            .map_err(|e| rename_key(e, &base_key))?;
            let mut plain = pool.take();
            opener
                .open_into(identities, &stored, format::CHUNK_MAX_SIZE, &mut plain)
                .map_err(|e| open_error(e, snapshot, index, &base_key))?;
            let len = plain.len();
            let plain = check_plain(plain, len, &base.id, id_key, snapshot, index, &base_key)?;
            bases.store(&base.id, plain)
        }
    };
    let stored = fetch_stored(
        backend,
        &key,
        (entry.stored_len, entry.stored_hash),
        index,
        snapshot,
        tampering,
    )?;
    let mut plain = pool.take();
    let opened = opener
        .open_delta_into(identities, &stored, &base_plain, plain_len, &mut plain)
        .map_err(|e| open_error(e, snapshot, index, &key));
    // The last user of a base hands its buffer back.
    if let Ok(base) = Arc::try_unwrap(base_plain) {
        pool.give(base);
    }
    opened?;
    check_plain(plain, plain_len, &entry.id, id_key, snapshot, index, &key)
}

/// Plaintext buffers, handed back once written (or once a base has served
/// its last delta) and reused by the workers. In this VM a fresh buffer per
/// chunk cost a page fault per 4 KiB of output, about 80,000 per GiB
/// restored. A buffer is only made when the pool is empty, so no more exist
/// than are in flight at once (the read-ahead window, each worker's chunk,
/// cached bases): the pool adds nothing to the memory bound.
struct BufferPool {
    tx: crossbeam_channel::Sender<Vec<u8>>,
    rx: crossbeam_channel::Receiver<Vec<u8>>,
}

impl BufferPool {
    fn new(capacity: usize) -> Self {
        let (tx, rx) = bounded(capacity);
        Self { tx, rx }
    }

    /// A buffer with room for any chunk: reserved at the largest chunk size
    /// so it is never reallocated (only the pages a chunk touches are
    /// resident).
    fn take(&self) -> Vec<u8> {
        self.rx
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(format::CHUNK_MAX_SIZE))
    }

    fn give(&self, buffer: Vec<u8>) {
        let _ = self.tx.try_send(buffer);
    }
}

fn rename_key(e: RestoreError, new_key: &str) -> RestoreError {
    match e {
        RestoreError::ChunkMissing {
            snapshot, index, ..
        } => RestoreError::ChunkMissing {
            snapshot,
            index,
            key: new_key.into(),
        },
        RestoreError::ChunkCorrupt {
            snapshot,
            index,
            reason,
            ..
        } => RestoreError::ChunkCorrupt {
            snapshot,
            index,
            key: new_key.into(),
            reason,
        },
        other => other,
    }
}

fn open_error(e: EnvelopeError, snapshot: &str, index: usize, key: &str) -> RestoreError {
    match e {
        EnvelopeError::NoMatchingIdentity => RestoreError::WrongIdentity {
            snapshot: snapshot.into(),
            index,
            key: key.into(),
        },
        other => RestoreError::ChunkCorrupt {
            snapshot: snapshot.into(),
            index,
            key: key.into(),
            reason: other.to_string(),
        },
    }
}

fn check_plain(
    plain: Vec<u8>,
    plain_len: usize,
    id: &ObjectId,
    id_key: &IdKey,
    snapshot: &str,
    index: usize,
    key: &str,
) -> Result<Vec<u8>, RestoreError> {
    let corrupt = |reason: String| RestoreError::ChunkCorrupt {
        snapshot: snapshot.into(),
        index,
        key: key.into(),
        reason,
    };
    if plain.len() != plain_len {
        return Err(corrupt(format!(
            "decrypted to {} bytes, the manifest recorded {plain_len}",
            plain.len()
        )));
    }
    if id_key.id_of(&plain) != *id {
        return Err(corrupt(
            "plaintext does not match the chunk id (keyed BLAKE3)".into(),
        ));
    }
    Ok(plain)
}

/// Fetches one object and checks its stored bytes against the manifest.
fn fetch_stored(
    backend: &dyn ReadBackend,
    key: &str,
    expected: (u64, ObjectId),
    index: usize,
    snapshot: &str,
    tampering: &mut Vec<TamperEvent>,
) -> Result<impl std::ops::Deref<Target = [u8]> + use<>, RestoreError> {
    let corrupt = |reason: String| RestoreError::ChunkCorrupt {
        snapshot: snapshot.into(),
        index,
        key: key.into(),
        reason,
    };
    // Version-aware read: on S3 a delete marker or a new version over the
    // key does not hide the locked original. The checks below repeat, except
    // that the hash of the very bytes `accept` last saw (same address and
    // length of an immutable buffer) is not computed again: the retry
    // decorator always checks what it returns, so that would be a second
    // BLAKE3 pass over every stored byte.
    let last_check: Cell<Option<(usize, usize, bool)>> = Cell::new(None);
    let accept = |b: &[u8]| {
        let ok = b.len() as u64 == expected.0 && ObjectId::of_stored(b) == expected.1;
        last_check.set(Some((b.as_ptr() as usize, b.len(), ok)));
        ok
    };
    let verified = backend
        .get_verified(key, MAX_OBJECT_BYTES, &accept)
        .map_err(|e| match e {
            e if e.is_not_found() => RestoreError::ChunkMissing {
                snapshot: snapshot.into(),
                index,
                key: key.into(),
            },
            lockbox_vault::storage::StorageError::TooLarge { .. } => {
                corrupt("object is larger than any valid chunk".into())
            }
            source => RestoreError::Storage {
                snapshot: snapshot.into(),
                index,
                source: Box::new(source),
            },
        })?;
    for event in &verified.tampering {
        tracing::warn!(
            snapshot,
            chunk = index,
            "tampering found in the repository: {event}"
        );
    }
    tampering.extend(verified.tampering);
    let stored = verified.data;
    if stored.len() as u64 != expected.0 {
        return Err(corrupt(format!(
            "stored size is {} bytes, the manifest recorded {}",
            stored.len(),
            expected.0
        )));
    }
    let hash_ok = match last_check.get() {
        Some((at, len, ok)) if at == stored.as_ptr() as usize && len == stored.len() => ok,
        _ => ObjectId::of_stored(&stored) == expected.1,
    };
    if !hash_ok {
        return Err(corrupt(
            "stored bytes differ from those the manifest recorded (BLAKE3 mismatch)".into(),
        ));
    }
    Ok(stored)
}
