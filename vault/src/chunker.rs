//! Content-defined chunking of a dump stream (FastCDC 2020).
//!
//! Boundaries depend only on content, so an insertion early in a dump shifts
//! no later boundary and later chunks deduplicate. The parameters live in
//! `format.rs`; the golden test below pins the boundaries they produce.

use std::io::Read;

use fastcdc::v2020::{Normalization, StreamCDC};

use crate::format::{CHUNK_AVG_SIZE, CHUNK_MAX_SIZE, CHUNK_MIN_SIZE, CHUNKER_NORMALIZATION};

const NORMALIZATION: Normalization = match CHUNKER_NORMALIZATION {
    1 => Normalization::Level1,
    _ => panic!("format v1 uses FastCDC normalization level 1"),
};

/// Iterates over the chunks of a stream; each item is the chunk's bytes.
pub struct Chunker<R: Read> {
    inner: StreamCDC<R>,
}

impl<R: Read> Chunker<R> {
    pub fn new(reader: R) -> Self {
        Self {
            inner: StreamCDC::with_level(
                reader,
                CHUNK_MIN_SIZE,
                CHUNK_AVG_SIZE,
                CHUNK_MAX_SIZE,
                NORMALIZATION,
            ),
        }
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner
            .next()
            .map(|r| r.map(|c| c.data).map_err(std::io::Error::from))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Deterministic pseudo-random bytes (xorshift), independent of any crate
    /// whose output could change between versions.
    pub(crate) fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            out.extend_from_slice(&seed.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn boundaries(data: &[u8]) -> Vec<(usize, String)> {
        Chunker::new(data)
            .map(|c| {
                let c = c.unwrap();
                (c.len(), blake3::hash(&c).to_hex()[..16].to_string())
            })
            .collect()
    }

    /// Golden boundaries: if this fails, chunking changed and new backups
    /// would stop deduplicating against existing repositories.
    #[test]
    fn golden_boundaries_are_stable() {
        let data = pseudo_random(24 * 1024 * 1024, 0x5eed);
        let got = boundaries(&data);
        let lens: Vec<usize> = got.iter().map(|(l, _)| *l).collect();
        assert_eq!(lens.iter().sum::<usize>(), data.len());
        let expected = include_str!("../tests/data/chunker_golden.txt");
        let rendered: String = got.iter().map(|(l, h)| format!("{l} {h}\n")).collect();
        if std::env::var_os("LOCKBOX_BLESS").is_some() {
            std::fs::write(
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/chunker_golden.txt"),
                &rendered,
            )
            .unwrap();
        }
        assert_eq!(rendered, expected, "chunk boundaries drifted");
    }

    #[test]
    fn sizes_respect_bounds_and_small_inputs_are_one_chunk() {
        let data = pseudo_random(40 * 1024 * 1024, 42);
        let chunks: Vec<Vec<u8>> = Chunker::new(&data[..]).map(Result::unwrap).collect();
        let (last, body) = chunks.split_last().unwrap();
        assert!(
            body.iter()
                .all(|c| c.len() >= CHUNK_MIN_SIZE && c.len() <= CHUNK_MAX_SIZE)
        );
        assert!(last.len() <= CHUNK_MAX_SIZE);
        assert_eq!(Chunker::new(&b"x"[..]).count(), 1);
        assert_eq!(Chunker::new(&b""[..]).count(), 0);
    }

    #[test]
    fn insertion_changes_only_nearby_chunks() {
        let data = pseudo_random(32 * 1024 * 1024, 7);
        let mut edited = data.clone();
        edited.splice(
            16 * 1024 * 1024..16 * 1024 * 1024,
            b"inserted row".iter().copied(),
        );
        let a: std::collections::HashSet<_> = boundaries(&data).into_iter().collect();
        let b = boundaries(&edited);
        let new = b.iter().filter(|c| !a.contains(*c)).count();
        assert!(new <= 2, "{new} chunks changed for one insertion");
    }
}
