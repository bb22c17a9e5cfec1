//! Content-defined chunking of a dump stream (FastCDC 2020).
//!
//! Boundaries depend only on content, so an insertion early in a dump shifts
//! no later boundary and later chunks deduplicate. The parameters live in
//! `format.rs`; the golden test below pins the boundaries they produce.

use std::io::Read;

use fastcdc::v2020::{Normalization, cut, select_masks};

use crate::format::{CHUNK_AVG_SIZE, CHUNK_MAX_SIZE, CHUNK_MIN_SIZE, CHUNKER_NORMALIZATION};

const NORMALIZATION: Normalization = match CHUNKER_NORMALIZATION {
    1 => Normalization::Level1,
    _ => panic!("format v1 uses FastCDC normalization level 1"),
};

/// The read buffer: a cut needs the next [`CHUNK_MAX_SIZE`] bytes in view,
/// and unconsumed bytes move to the front only when that window would run
/// past the end, so most chunks are cut where they were read. (fastcdc's
/// `StreamCDC`, used before, moved the rest of an 8 MiB buffer after every
/// chunk: about two extra copies of the whole dump.)
const READ_BUFFER: usize = 2 * CHUNK_MAX_SIZE;

/// Iterates over the chunks of a stream; each item is the chunk's bytes.
/// Boundaries are FastCDC 2020's (`fastcdc::v2020::cut`), exactly those of
/// `StreamCDC` with the same parameters; the golden test pins them.
pub struct Chunker<R: Read> {
    reader: R,
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    eof: bool,
    masks: (u64, u64),
}

impl<R: Read> Chunker<R> {
    /// Chunks `reader` with the format's fixed parameters ([`CHUNK_MIN_SIZE`]
    /// to [`CHUNK_MAX_SIZE`] bytes); allocates a 16 MiB read buffer.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            buf: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
            eof: false,
            masks: select_masks(CHUNK_AVG_SIZE, NORMALIZATION),
        }
    }

    /// Reads until a whole maximum-size window is in view, or the stream ends.
    fn fill(&mut self) -> std::io::Result<()> {
        while !self.eof && self.end - self.start < CHUNK_MAX_SIZE {
            if self.start + CHUNK_MAX_SIZE > self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            // Only what the window needs: bytes are cut soon after they
            // are read, while still in the CPU's caches.
            let want = self.start + CHUNK_MAX_SIZE;
            match self.reader.read(&mut self.buf[self.end..want]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl<R: Read> Chunker<R> {
    /// The next chunk, copied into `buf` (cleared first) so callers can
    /// recycle chunk buffers; `None` at the end of the stream.
    pub fn next_into(&mut self, buf: Vec<u8>) -> Option<std::io::Result<Vec<u8>>> {
        self.next_into_with(buf, |_| {})
    }

    /// Like [`Chunker::next_into`], handing the chunk to `piece` in 256 KiB
    /// pieces as they are copied: a second pass over the chunk (the stream
    /// hash) then reads bytes still in this core's cache instead of reading
    /// a 2–8 MiB chunk again from memory.
    pub fn next_into_with(
        &mut self,
        mut buf: Vec<u8>,
        mut piece: impl FnMut(&[u8]),
    ) -> Option<std::io::Result<Vec<u8>>> {
        if let Err(e) = self.fill() {
            return Some(Err(e));
        }
        if self.start == self.end {
            return None;
        }
        let (mask_s, mask_l) = self.masks;
        let (_, len) = cut(
            &self.buf[self.start..self.end],
            CHUNK_MIN_SIZE,
            CHUNK_AVG_SIZE,
            CHUNK_MAX_SIZE,
            mask_s,
            mask_l,
            mask_s << 1,
            mask_l << 1,
        );
        buf.clear();
        buf.reserve(len);
        for p in self.buf[self.start..self.start + len].chunks(256 << 10) {
            buf.extend_from_slice(p);
            piece(p);
        }
        self.start += len;
        Some(Ok(buf))
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_into(Vec::new())
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

    /// A reader that hands out few bytes at a time, like a pipe.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            self.1 = self.1 % 65_521 + 4_093; // varying read sizes
            Ok(n)
        }
    }

    #[test]
    fn same_boundaries_as_fastcdc_stream_whatever_the_read_sizes() {
        use fastcdc::v2020::StreamCDC;
        // Random bytes cut anywhere; the zeros force maximum-size chunks.
        let mut data = pseudo_random(30 * 1024 * 1024 + 12_345, 99);
        data.extend(std::iter::repeat_n(0u8, 19 * 1024 * 1024 + 3));
        data.extend(pseudo_random(5 * 1024 * 1024, 5));
        let reference: Vec<usize> = StreamCDC::with_level(
            &data[..],
            CHUNK_MIN_SIZE,
            CHUNK_AVG_SIZE,
            CHUNK_MAX_SIZE,
            NORMALIZATION,
        )
        .map(|c| c.unwrap().length)
        .collect();
        let got: Vec<usize> = Chunker::new(Trickle(&data, 1))
            .map(|c| c.unwrap().len())
            .collect();
        assert_eq!(got, reference);
        let joined: Vec<u8> = Chunker::new(Trickle(&data, 7))
            .flat_map(Result::unwrap)
            .collect();
        assert!(joined == data, "chunks do not add up to the input");
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
