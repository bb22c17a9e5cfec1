//! Parallel fetch-and-verify with in-order output and bounded read-ahead.

use std::collections::BTreeMap;
use std::io::Write;
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

/// Progress callbacks for restore.
pub trait RestoreProgress: Sync {
    fn start(&self, _total_bytes: u64) {}
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
            while let Some(data) = pending.remove(&next) {
                hasher.update(&data);
                if let Err(e) = out.write_all(&data) {
                    return stop(RestoreError::Output {
                        path: "output".into(),
                        reason: e.to_string(),
                    });
                }
                written += data.len() as u64;
                progress.written(data.len() as u64);
                next += 1;
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
) -> Result<Vec<u8>, RestoreError> {
    let entry = &manifest.chunks[index];
    let key = format::chunk_key(&entry.id);
    let corrupt = |reason: String| RestoreError::ChunkCorrupt {
        snapshot: snapshot.into(),
        index,
        key: key.clone(),
        reason,
    };
    // Version-aware read: on S3 a delete marker or a new version over the
    // key does not hide the locked original. The checks below repeat.
    let expected = (entry.stored_len, entry.stored_hash);
    let accept = |b: &[u8]| b.len() as u64 == expected.0 && ObjectId::of_stored(b) == expected.1;
    let verified = backend
        .get_verified(&key, MAX_OBJECT_BYTES, &accept)
        .map_err(|e| match e {
            e if e.is_not_found() => RestoreError::ChunkMissing {
                snapshot: snapshot.into(),
                index,
                key: key.clone(),
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
    if stored.len() as u64 != entry.stored_len {
        return Err(corrupt(format!(
            "stored size is {} bytes, the manifest recorded {}",
            stored.len(),
            entry.stored_len
        )));
    }
    if ObjectId::of_stored(&stored) != entry.stored_hash {
        return Err(corrupt(
            "stored bytes differ from those the manifest recorded (BLAKE3 mismatch)".into(),
        ));
    }
    let plain_len = sealed.chunk_lengths[index] as usize;
    let plain = opener
        .open(identities, &stored, plain_len)
        .map_err(|e| match e {
            EnvelopeError::NoMatchingIdentity => RestoreError::WrongIdentity {
                snapshot: snapshot.into(),
                index,
                key: key.clone(),
            },
            other => corrupt(other.to_string()),
        })?;
    if plain.len() != plain_len {
        return Err(corrupt(format!(
            "decrypted to {} bytes, the manifest recorded {plain_len}",
            plain.len()
        )));
    }
    if id_key.id_of(&plain) != entry.id {
        return Err(corrupt(
            "plaintext does not match the chunk id (keyed BLAKE3)".into(),
        ));
    }
    Ok(plain)
}
