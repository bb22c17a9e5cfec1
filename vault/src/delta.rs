//! Delta chunks at backup time: which full chunk a new chunk is paired with,
//! and where the backup host gets that base's plaintext without an identity.
//!
//! The backup host cannot decrypt what it stored, so it keeps its own copy:
//! the base cache, `state_dir/base-cache/<source>/`, one zstd frame per full
//! chunk (`<chunk id>.zst`, mode 0600, never uploaded) plus `index`, which
//! lists for each chunk position of the source's last successful backup the
//! full chunk that serves as base there (the chunk itself, or its base when
//! it was stored as a delta), the sketch of that position's chunk, and the
//! chunk's id. The ids let the next backup take the sketch of an unchanged
//! chunk from the index instead of computing it again: on a day-2 backup
//! where most chunks are unchanged, sketching was the largest single cost.
//! Each backup builds the next cache beside the current one (hard links for
//! bases carried over, the zstd frame already made for new full chunks) and
//! swaps it in after its manifest is written, so the cache always matches
//! one finished snapshot and costs about one compressed copy of the dump.
//!
//! Pairing: each chunk has a sketch of [`FEATURES`] values: a hash of its
//! first and of its last [`SKETCH_BYTES`] bytes (content-defined boundaries
//! keep most chunk starts and ends) and a bottom-k min-hash of its 64-byte
//! windows (survives a moved boundary or an edit at either end). The
//! previous chunk sharing most sketch values wins; with none shared, the
//! chunk at the same position. Depth 1: a base is always a full chunk, so
//! restore reads at most two objects per chunk.
//!
//! A cache file is only trusted after its plaintext matches the base's
//! keyed id: a damaged cache costs a full chunk, never a wrong delta.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::format::CHUNK_MAX_SIZE;
use crate::ids::{IdKey, ObjectId};

/// Bytes at each end of a chunk that its sketches cover.
pub const SKETCH_BYTES: usize = 256;
/// Min-hash values per sketch (the smallest of all window hashes).
const MIN_HASHES: usize = 8;
/// Values per sketch: head, tail, min-hashes.
pub const FEATURES: usize = 2 + MIN_HASHES;
/// A chunk's similarity sketch: hashes of its first and last [`SKETCH_BYTES`]
/// bytes, then its min-hashes. Two chunks sharing any value are candidates to
/// be each other's delta base.
pub type Sketch = [u64; FEATURES];
/// An unused min-hash slot (a chunk with fewer distinct windows).
const NO_FEATURE: u64 = u64::MAX;
/// zstd level of cache files written for reused chunks (no frame at hand).
const CACHE_LEVEL: i32 = 1;

/// Settings for delta chunks; `None` in the backup options disables them.
#[derive(Debug, Clone)]
pub struct DeltaOptions {
    /// `state_dir/base-cache`.
    pub cache_root: PathBuf,
    /// A delta is kept only if at most this percentage of the chunk's
    /// estimated full stored size.
    pub max_percent: u32,
}

/// A file of the local base cache could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("base cache {path}: {source}")]
pub struct CacheError {
    path: String,
    #[source]
    source: std::io::Error,
}

impl CacheError {
    /// The base cache is local and only an optimisation: operational.
    pub fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Operational
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError {
        path: path.display().to_string(),
        source,
    }
}

/// Random table of the gear rolling hash (splitmix64 of the byte).
const GEAR: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut z = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        t[i] = z ^ (z >> 31);
        i += 1;
    }
    t
};

/// The sketch of a chunk (see the module docs).
pub fn sketches(data: &[u8]) -> Sketch {
    let n = SKETCH_BYTES.min(data.len());
    let h =
        |b: &[u8]| u64::from_le_bytes(blake3::hash(b).as_bytes()[..8].try_into().expect("8 bytes"));
    let mut out = [NO_FEATURE; FEATURES];
    out[0] = h(&data[..n]);
    out[1] = h(&data[data.len() - n..]);
    // Gear hash: each value depends on the last 64 bytes only (its high
    // bits are well mixed, which is all a minimum compares). Keep the
    // smallest distinct values, sorted, in out[2..].
    out[2..].copy_from_slice(&window_mins(data));
    out
}

/// Bytes before a position that its window hash covers besides itself.
const WINDOW: usize = 63;
/// Independent stretches of a chunk hashed at once. One gear chain is
/// latency-bound (shift, add, next byte); since a value depends on the
/// last 64 bytes only, each stretch can start fresh 63 bytes early and give
/// exactly the values one pass would, while the CPU runs four chains side
/// by side. This loop covers every byte backed up: it was ~7 % of a
/// backup's CPU time as one chain.
const LANES: usize = 4;

/// The smallest distinct window hashes of `data`, ascending, padded with
/// [`NO_FEATURE`]: the same set as one pass over every position.
fn window_mins(data: &[u8]) -> [u64; MIN_HASHES] {
    let mut mins = [[NO_FEATURE; MIN_HASHES]; LANES];
    if data.len() <= WINDOW {
        return mins[0];
    }
    let positions = data.len() - WINDOW;
    let per = positions / LANES;
    let mut g = [0u64; LANES];
    let mut worst = [NO_FEATURE; LANES];
    if per > 0 {
        // Lane i gives the values of positions WINDOW + i*per .. + per.
        for (i, g) in g.iter_mut().enumerate() {
            for b in &data[i * per..i * per + WINDOW] {
                *g = (*g << 1).wrapping_add(GEAR[*b as usize]);
            }
        }
        let lane = |i: usize| &data[WINDOW + i * per..WINDOW + (i + 1) * per];
        let (d0, d1, d2, d3) = (lane(0), lane(1), lane(2), lane(3));
        for j in 0..per {
            for (i, b) in [d0[j], d1[j], d2[j], d3[j]].into_iter().enumerate() {
                g[i] = (g[i] << 1).wrapping_add(GEAR[b as usize]);
                if g[i] < worst[i] {
                    worst[i] = insert_min(&mut mins[i], g[i]);
                }
            }
        }
    } else {
        for b in &data[..WINDOW] {
            g[LANES - 1] = (g[LANES - 1] << 1).wrapping_add(GEAR[*b as usize]);
        }
    }
    // The positions left over continue the last lane's chain.
    let last = LANES - 1;
    for b in &data[WINDOW + LANES * per..] {
        g[last] = (g[last] << 1).wrapping_add(GEAR[*b as usize]);
        if g[last] < worst[last] {
            worst[last] = insert_min(&mut mins[last], g[last]);
        }
    }
    let mut all: Vec<u64> = mins.iter().flatten().copied().collect();
    all.sort_unstable();
    all.dedup();
    let mut out = [NO_FEATURE; MIN_HASHES];
    for (o, v) in out.iter_mut().zip(all) {
        *o = v;
    }
    out
}

/// Puts `g` into the sorted distinct `mins` (dropping the largest); returns
/// the new largest. Rare after the first few hundred bytes of a chunk.
#[cold]
fn insert_min(mins: &mut [u64; MIN_HASHES], g: u64) -> u64 {
    if !mins.contains(&g) {
        let at = mins.partition_point(|m| *m < g);
        mins.copy_within(at..MIN_HASHES - 1, at + 1);
        mins[at] = g;
    }
    mins[MIN_HASHES - 1]
}

/// What the next cache records for one chunk position.
#[derive(Debug, Clone, Copy)]
struct Entry {
    chunk: ObjectId,
    base: ObjectId,
    sketch: Sketch,
}

/// The base cache of one source during one backup.
pub struct BaseCache {
    current: PathBuf,
    next: PathBuf,
    by_position: Vec<ObjectId>,
    /// Sketch value → position (in `by_position`) of the first previous
    /// chunk that had it. An index, not an id: this map has ten entries per
    /// chunk and is the bulk of the memory the cache needs.
    by_feature: HashMap<u64, u32>,
    /// The sketch of each chunk of the previous backup, by chunk id.
    sketch_of: HashMap<ObjectId, Sketch>,
    entries: Mutex<Vec<Option<Entry>>>,
    /// A delta is kept only while at most this percentage of the chunk's
    /// estimated full stored size.
    pub max_percent: u32,
    /// A write failed because the file system is full (or over quota).
    full: std::sync::atomic::AtomicBool,
}

impl BaseCache {
    /// Opens the cache of `source`, starting an empty next generation. A
    /// missing or unreadable index just means no bases this time.
    pub fn open(opts: &DeltaOptions, source: &str) -> Result<Self, CacheError> {
        let root = &opts.cache_root;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(io_err(root))?;
        let current = root.join(source);
        let next = root.join(format!("{source}.next"));
        // Left by a backup that failed or was killed.
        if next.exists() {
            fs::remove_dir_all(&next).map_err(io_err(&next))?;
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&next)
            .map_err(io_err(&next))?;
        let mut cache = Self {
            current,
            next,
            by_position: Vec::new(),
            by_feature: HashMap::new(),
            sketch_of: HashMap::new(),
            entries: Mutex::new(Vec::new()),
            max_percent: opts.max_percent,
            full: Default::default(),
        };
        if let Ok(text) = fs::read_to_string(cache.current.join("index")) {
            for line in text.lines() {
                let mut f = line.split(' ');
                let parsed = (|| {
                    let base = ObjectId::from_hex(f.next()?).ok()?;
                    let mut sketch = [0u64; FEATURES];
                    for v in sketch.iter_mut() {
                        *v = u64::from_str_radix(f.next()?, 16).ok()?;
                    }
                    // Indexes written before chunk ids were recorded end here.
                    let chunk = match f.next() {
                        Some(c) => Some(ObjectId::from_hex(c).ok()?),
                        None => None,
                    };
                    f.next().is_none().then_some((base, sketch, chunk))
                })();
                let Some((base, sketch, chunk)) = parsed else {
                    tracing::warn!(cache = %cache.current.display(), "base cache index is damaged; no delta chunks this time");
                    cache.by_position.clear();
                    cache.by_feature.clear();
                    cache.sketch_of.clear();
                    break;
                };
                if let Some(chunk) = chunk {
                    cache.sketch_of.insert(chunk, sketch);
                }
                let at = cache.by_position.len() as u32;
                cache.by_position.push(base);
                for v in sketch.into_iter().filter(|v| *v != NO_FEATURE) {
                    cache.by_feature.entry(v).or_insert(at);
                }
            }
        }
        Ok(cache)
    }

    /// The base to try for chunk `seq` (id `id`): the one most of its
    /// sketch values point to (the earliest value breaks ties), else the
    /// base at the same position.
    pub fn candidate(&self, seq: usize, id: &ObjectId, sketch: &Sketch) -> Option<ObjectId> {
        let mut votes: Vec<(ObjectId, usize)> = Vec::with_capacity(FEATURES);
        for v in sketch.iter().filter(|v| **v != NO_FEATURE) {
            let base = self
                .by_feature
                .get(v)
                .map(|at| &self.by_position[*at as usize]);
            if let Some(b) = base.filter(|b| *b != id) {
                match votes.iter_mut().find(|(x, _)| x == b) {
                    Some((_, n)) => *n += 1,
                    None => votes.push((*b, 1)),
                }
            }
        }
        // max_by_key keeps the last maximum; reversed, the earliest wins.
        let voted = votes.iter().rev().max_by_key(|(_, n)| *n).map(|(b, _)| *b);
        voted.or_else(|| self.by_position.get(seq).filter(|b| *b != id).copied())
    }

    /// The sketch the previous backup recorded for chunk `id`, if it had
    /// that chunk: the same bytes, so the same sketch as computing it anew.
    pub fn sketch_of(&self, id: &ObjectId) -> Option<Sketch> {
        self.sketch_of.get(id).copied()
    }

    fn file(dir: &Path, id: &ObjectId) -> PathBuf {
        dir.join(format!("{}.zst", id.to_hex()))
    }

    /// The verified plaintext of base `id` from the current cache, if held.
    pub fn load(&self, id: &ObjectId, key: &IdKey) -> Option<Vec<u8>> {
        let path = Self::file(&self.current, id);
        let frame = fs::read(&path).ok()?;
        match zstd::bulk::decompress(&frame, CHUNK_MAX_SIZE) {
            Ok(plain) if key.id_of(&plain) == *id => Some(plain),
            _ => {
                tracing::warn!(file = %path.display(), "base cache file is damaged; storing the chunk in full");
                None
            }
        }
    }

    /// Records that position `seq` (chunk `chunk`, sketch `sketch`) has base `base` in
    /// the next cache, and puts that base's file there: `frame` when the
    /// caller has its zstd frame, else a link to the current cache's file,
    /// else `plain` compressed anew. Failing to cache only loses a future
    /// delta, so errors are logged, not returned.
    pub fn keep(
        &self,
        seq: usize,
        chunk: ObjectId,
        sketch: &Sketch,
        base: ObjectId,
        frame: Option<&[u8]>,
        plain: Option<&[u8]>,
    ) {
        let target = Self::file(&self.next, &base);
        let result = (|| -> std::io::Result<()> {
            if target.exists() {
                return Ok(());
            }
            if frame.is_none() && fs::hard_link(Self::file(&self.current, &base), &target).is_ok() {
                return Ok(());
            }
            let owned;
            let bytes = match (frame, plain) {
                (Some(f), _) => f,
                (None, Some(p)) => {
                    owned = zstd::bulk::compress(p, CACHE_LEVEL)?;
                    &owned
                }
                (None, None) => return Ok(()),
            };
            let tmp = self.next.join(format!(".tmp-{}", base.to_hex()));
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(bytes)?;
            drop(f);
            fs::rename(&tmp, &target)
        })();
        if let Err(e) = result {
            if is_disk_full(&e) {
                self.full.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            tracing::warn!(file = %target.display(), error = %e, "could not write the base cache");
        }
        let mut entries = self.entries.lock().unwrap();
        if entries.len() <= seq {
            entries.resize(seq + 1, None);
        }
        entries[seq] = Some(Entry {
            chunk,
            base,
            sketch: *sketch,
        });
    }

    /// Whether a write failed because the disk is full: the backup then
    /// stops before its manifest (the state directory needs room for the
    /// catalog too), naming [`dir`](Self::dir).
    pub fn is_full(&self) -> bool {
        self.full.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The directory the next generation is written to.
    pub fn dir(&self) -> &Path {
        &self.next
    }

    /// After the snapshot is written: the next cache becomes the current one.
    pub fn commit(self) -> Result<(), CacheError> {
        let index = self.next.join("index");
        let mut text = String::new();
        for e in self.entries.into_inner().unwrap().into_iter().flatten() {
            text.push_str(&e.base.to_hex());
            for v in e.sketch {
                text.push_str(&format!(" {v:016x}"));
            }
            text.push(' ');
            text.push_str(&e.chunk.to_hex());
            text.push('\n');
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&index)
            .map_err(io_err(&index))?;
        f.write_all(text.as_bytes()).map_err(io_err(&index))?;
        drop(f);
        let old = self.current.with_extension("old");
        if old.exists() {
            fs::remove_dir_all(&old).map_err(io_err(&old))?;
        }
        if self.current.exists() {
            fs::rename(&self.current, &old).map_err(io_err(&self.current))?;
        }
        fs::rename(&self.next, &self.current).map_err(io_err(&self.next))?;
        if old.exists() {
            fs::remove_dir_all(&old).map_err(io_err(&old))?;
        }
        Ok(())
    }

    /// After a failed backup: drop the next cache, keep the current one.
    pub fn discard(self) {
        let _ = fs::remove_dir_all(&self.next);
    }
}

/// ENOSPC or EDQUOT.
fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-chain definition the lanes must reproduce exactly: cache
    /// indexes written by older versions stay comparable.
    fn window_mins_one_chain(data: &[u8]) -> [u64; MIN_HASHES] {
        let mut mins = [NO_FEATURE; MIN_HASHES];
        let mut g = 0u64;
        let warm = data.len().min(WINDOW);
        for b in &data[..warm] {
            g = (g << 1).wrapping_add(GEAR[*b as usize]);
        }
        for b in &data[warm..] {
            g = (g << 1).wrapping_add(GEAR[*b as usize]);
            if g < mins[MIN_HASHES - 1] {
                insert_min(&mut mins, g);
            }
        }
        mins
    }

    #[test]
    fn lanes_give_the_one_chain_minimums() {
        let random = crate::chunker::tests::pseudo_random(300_001, 11);
        // Few distinct windows: duplicates across lanes must merge.
        let repetitive: Vec<u8> = b"abcdefgh".iter().copied().cycle().take(70_003).collect();
        for data in [&random[..], &repetitive[..]] {
            for len in [
                0,
                1,
                62,
                63,
                64,
                65,
                66,
                67,
                68,
                70,
                200,
                255,
                256,
                257,
                4099,
                data.len(),
            ] {
                let d = &data[..len.min(data.len())];
                assert_eq!(window_mins(d), window_mins_one_chain(d), "length {len}");
            }
        }
    }

    /// A temporary cache root (kept alive by the returned directory), its
    /// options, and a fixed id key.
    fn cache_fixture() -> (tempfile::TempDir, DeltaOptions, IdKey) {
        let dir = tempfile::tempdir().unwrap();
        let opts = DeltaOptions {
            cache_root: dir.path().join("base-cache"),
            max_percent: 50,
        };
        (dir, opts, IdKey::from_bytes([9; 32]))
    }

    /// An index written before chunk ids were recorded still pairs chunks;
    /// it only has no sketches to lend.
    #[test]
    fn index_without_chunk_ids_still_pairs() {
        let (_dir, opts, key) = cache_fixture();
        let a = crate::chunker::tests::pseudo_random(100_000, 1);
        let ida = key.id_of(&a);
        let cache = BaseCache::open(&opts, "src").unwrap();
        cache.keep(0, ida, &sketches(&a), ida, None, Some(&a));
        cache.commit().unwrap();
        let index = opts.cache_root.join("src/index");
        let text = fs::read_to_string(&index).unwrap();
        let old: String = text
            .lines()
            .map(|l| format!("{}\n", l.rsplit_once(' ').unwrap().0))
            .collect();
        fs::write(&index, old).unwrap();

        let cache = BaseCache::open(&opts, "src").unwrap();
        let mut a2 = a.clone();
        a2.extend_from_slice(b"changed tail");
        assert_eq!(
            cache.candidate(3, &key.id_of(&a2), &sketches(&a2)),
            Some(ida)
        );
        assert_eq!(cache.sketch_of(&ida), None);
    }

    #[test]
    fn pairs_by_sketch_then_position_and_survives_a_commit() {
        let (dir, opts, key) = cache_fixture();
        let a = crate::chunker::tests::pseudo_random(100_000, 1);
        let b = crate::chunker::tests::pseudo_random(100_000, 2);
        let (ida, idb) = (key.id_of(&a), key.id_of(&b));
        let cache = BaseCache::open(&opts, "src").unwrap();
        cache.keep(0, ida, &sketches(&a), ida, None, Some(&a));
        let frame = zstd::bulk::compress(&b, 3).unwrap();
        cache.keep(1, idb, &sketches(&b), idb, Some(&frame), None);
        cache.commit().unwrap();

        let cache = BaseCache::open(&opts, "src").unwrap();
        assert_eq!(cache.load(&ida, &key).unwrap(), a);
        assert_eq!(cache.load(&idb, &key).unwrap(), b);
        let mut a2 = a.clone();
        a2.extend_from_slice(b"changed tail");
        let other = key.id_of(&a2);
        // Same start as `a`, whatever the position.
        assert_eq!(cache.candidate(7, &other, &sketches(&a2)), Some(ida));
        // Nothing alike: the same position.
        let c = crate::chunker::tests::pseudo_random(100_000, 3);
        assert_eq!(cache.candidate(1, &key.id_of(&c), &sketches(&c)), Some(idb));
        assert_eq!(cache.candidate(5, &key.id_of(&c), &sketches(&c)), None);
        // Never itself.
        assert_eq!(cache.candidate(0, &ida, &sketches(&a)), None);
        // The previous backup's sketches come back by chunk id.
        assert_eq!(cache.sketch_of(&ida), Some(sketches(&a)));
        assert_eq!(cache.sketch_of(&idb), Some(sketches(&b)));
        assert_eq!(cache.sketch_of(&other), None);

        // A damaged file is not used.
        let path = BaseCache::file(&cache.current, &ida);
        fs::write(&path, zstd::bulk::compress(b"other bytes", 3).unwrap()).unwrap();
        assert!(cache.load(&ida, &key).is_none());
        cache.discard();
        assert!(!dir.path().join("base-cache/src.next").exists());
    }
}
