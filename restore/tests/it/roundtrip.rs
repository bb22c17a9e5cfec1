//! Property tests: any byte stream, chunked, sealed and stored in a local
//! repository, restores byte for byte, and storage holds each distinct
//! chunk exactly once (within a backup and across backups, full or delta).
//!
//! Inputs cover empty and tiny streams, multi-chunk random data, repeated
//! blocks (dedup inside one stream) and runs of one byte (max-size chunks).
//! Case counts are small: each case is a real backup and restore.

use std::collections::BTreeSet;
use std::sync::Arc;

use lockbox_restore::{RestoreOptions, restore_to_writer};
use lockbox_vault::backup::{self, BackupOptions, BackupSummary, NoProgress};
use lockbox_vault::catalog::Catalog;
use lockbox_vault::delta::DeltaOptions;
use lockbox_vault::ids::IdKey;
use lockbox_vault::keys::{Identities, Recipients, generate_identity};
use lockbox_vault::repository::{self, WriteRepo};
use lockbox_vault::source::DumpStream;
use lockbox_vault::storage::LocalBackend;
use proptest::prelude::*;

use crate::support::local;

struct Repo {
    dir: tempfile::TempDir,
    backend: Arc<LocalBackend>,
    repo: WriteRepo,
    id_key: IdKey,
    identities: Identities,
    catalog: Catalog,
}

impl Repo {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(LocalBackend::open(dir.path().join("repo")).unwrap());
        let (identity, rcpt) = generate_identity();
        let recipients = Recipients::parse(&[rcpt]).unwrap();
        let until = time::OffsetDateTime::now_utc() + time::Duration::days(2);
        let (config, id_key) = repository::init(backend.as_ref(), &recipients, until).unwrap();
        let repo = WriteRepo::open(backend.clone(), id_key.clone()).unwrap();
        let catalog = Catalog::open(&dir.path().join("catalog.sqlite"), &config.id).unwrap();
        Self {
            dir,
            backend,
            repo,
            id_key,
            identities: Identities::from_x25519(vec![identity]),
            catalog,
        }
    }

    fn backup(&mut self, data: &[u8], delta: bool) -> BackupSummary {
        let opts = BackupOptions {
            lock_days: 1,
            lock_slack_days: 0,
            workers: 2,
            max_in_flight: 2,
            delta: delta.then(|| DeltaOptions {
                cache_root: self.dir.path().join("base-cache"),
                max_percent: 50,
            }),
        };
        let stream = DumpStream::from_reader(
            "prop",
            "stdin",
            Box::new(std::io::Cursor::new(data.to_vec())),
        );
        backup::run(&self.repo, &mut self.catalog, stream, &opts, &NoProgress).unwrap()
    }

    /// The snapshot with manifest id `id`, restored, and its chunk ids.
    fn restore(&self, id: &str) -> (Vec<u8>, Vec<String>) {
        let snap = repository::find_snapshot(self.backend.as_ref(), Some("prop"), id).unwrap();
        let manifest =
            repository::read_manifest(self.backend.as_ref(), &self.id_key, &snap).unwrap();
        let mut out = Vec::new();
        let opts = RestoreOptions {
            workers: 2,
            read_ahead: 4,
        };
        restore_to_writer(
            self.backend.as_ref(),
            &self.identities,
            &snap,
            &mut out,
            &opts,
            &(),
        )
        .unwrap();
        (out, manifest.chunks.iter().map(|c| c.key()).collect())
    }

    /// Every object under `chunks/`.
    fn stored_chunks(&self) -> BTreeSet<String> {
        let root = self.dir.path().join("repo");
        local::objects(&root, "chunks")
            .iter()
            .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
            .collect()
    }
}

/// xorshift bytes: incompressible, reproducible from the seed proptest shrinks.
fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    seed |= 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

const MIB: usize = 1024 * 1024;

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => Just(Vec::new()),
        3 => prop::collection::vec(any::<u8>(), 1..4096),
        3 => (any::<u64>(), 1usize..5 * MIB).prop_map(|(seed, len)| pseudo_random(len, seed)),
        // Repeated blocks: identical chunks inside one stream.
        2 => (any::<u64>(), 1usize..MIB, 2usize..5)
            .prop_map(|(seed, block, n)| pseudo_random(block, seed).repeat(n)),
        // One byte repeated: max-size chunks, all the same.
        1 => (any::<u8>(), 1usize..18 * MIB).prop_map(|(b, len)| vec![b; len]),
    ]
}

/// An edit of `data`: some bytes changed, a run inserted, the tail cut.
fn edited(data: &[u8], seed: u64) -> Vec<u8> {
    let mut out = data.to_vec();
    let noise = pseudo_random(64, seed);
    if !out.is_empty() {
        for (i, b) in noise.iter().enumerate().take(8) {
            let at = (seed as usize).wrapping_add(i * 4099) % out.len();
            out[at] ^= b | 1;
        }
        let at = (seed as usize >> 8) % out.len();
        out.splice(at..at, noise.iter().copied());
        let cut = out.len() - (seed as usize >> 16) % (out.len() / 8 + 1);
        out.truncate(cut);
    } else {
        out.extend_from_slice(&noise);
    }
    out
}

fn distinct(keys: &[String]) -> BTreeSet<String> {
    keys.iter().cloned().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 14, max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn backup_then_restore_is_identity_and_dedups(data in input(), seed in any::<u64>(), delta in any::<bool>()) {
        let mut r = Repo::new();
        let first = r.backup(&data, delta);
        prop_assert_eq!(first.input_bytes, data.len() as u64);
        let (back, keys) = r.restore(&first.snapshot);
        prop_assert!(back == data, "restored {} bytes differ from the {} backed up", back.len(), data.len());
        prop_assert_eq!(keys.len(), first.chunks);
        if data.is_empty() {
            prop_assert_eq!(first.chunks, 0);
        }
        // Each distinct chunk is stored once; repeats inside the stream reuse it.
        let stored = r.stored_chunks();
        prop_assert_eq!(&stored, &distinct(&keys));
        prop_assert_eq!(first.new_chunks, stored.len());

        // The same bytes again: nothing new written, same chunk list.
        let again = r.backup(&data, delta);
        prop_assert_eq!(again.new_chunks, 0);
        prop_assert_eq!(again.added_bytes, 0);
        let (back2, keys2) = r.restore(&again.snapshot);
        prop_assert!(back2 == data);
        prop_assert_eq!(&keys2, &keys);
        prop_assert_eq!(r.stored_chunks(), stored.clone());

        // An edited version: restores exactly; storage grows only by the
        // chunks (full or delta) the new manifest names that were not there.
        let changed = edited(&data, seed);
        let third = r.backup(&changed, delta);
        let (back3, keys3) = r.restore(&third.snapshot);
        prop_assert!(back3 == changed, "edited stream restored wrong ({} vs {} bytes)", back3.len(), changed.len());
        let all = r.stored_chunks();
        let mut expected = stored.clone();
        expected.extend(keys3.iter().cloned());
        // A delta object keeps its base alive: the base is a stored chunk too.
        prop_assert!(all.is_superset(&expected) && all.len() == expected.len(),
            "stored {:?} vs expected {:?}", all, expected);
        // The older snapshots still restore after the new one was written.
        let (old, _) = r.restore(&first.snapshot);
        prop_assert!(old == data);
    }
}
