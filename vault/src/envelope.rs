//! The object envelope: a standard age v1 file (X25519 recipients) whose
//! plaintext is exactly one zstd frame.
//!
//! There is deliberately no Lockbox-specific framing, so that
//! `age -d -i key.txt obj | zstd -d` recovers any chunk without Lockbox.
//! A delta object's frame is compressed with its base chunk's plaintext as
//! zstd's referenced prefix, so `zstd -d --patch-from=<base>` decodes it.

use std::io::{Read, Write};

use crate::error::ErrorClass;
use crate::format::{DELTA_WINDOW_LOG, DELTA_ZSTD_LEVEL, ZSTD_LEVEL};
use crate::keys::{Identities, Recipients};

/// Why an object could not be sealed or opened. `NoMatchingIdentity` means the
/// wrong identity; `Decrypt` and `Decompress` mean altered or damaged bytes.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// None of the given identities is a recipient of the object: the wrong identity.
    #[error("no identity given matches any recipient of this object")]
    NoMatchingIdentity,
    /// The bytes are not a valid age file, or its MAC fails (altered or damaged). Holds age's
    /// reason.
    #[error("not a valid age file or the ciphertext was altered: {0}")]
    Decrypt(String),
    /// The decrypted bytes are not a valid zstd frame (damage). Holds zstd's reason.
    #[error("zstd frame is corrupt: {0}")]
    Decompress(String),
    /// The plaintext is longer than the caller's limit (the size recorded for it); decompression
    /// stopped there (damage, or a decompression bomb).
    #[error("plaintext is larger than the {limit} bytes recorded for it")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// age or zstd failed while sealing (not expected in practice). Holds the reason.
    #[error("encryption failed: {0}")]
    Encrypt(String),
}

impl EnvelopeError {
    /// A wrong identity is [`ErrorClass::Identity`]; an envelope that does
    /// not open or decompress is damage ([`ErrorClass::Integrity`]).
    pub fn class(&self) -> ErrorClass {
        match self {
            EnvelopeError::NoMatchingIdentity => ErrorClass::Identity,
            EnvelopeError::Decrypt(_)
            | EnvelopeError::Decompress(_)
            | EnvelopeError::TooLarge { .. } => ErrorClass::Integrity,
            EnvelopeError::Encrypt(_) => ErrorClass::Operational,
        }
    }
}

/// Per-thread compression state; zstd contexts are expensive to create, so
/// each pipeline worker keeps one.
pub struct Sealer {
    compressor: zstd::bulk::Compressor<'static>,
    recipients: Recipients,
}

impl Sealer {
    /// A sealer encrypting to `recipients`, compressing at [`ZSTD_LEVEL`].
    pub fn new(recipients: Recipients) -> Self {
        let compressor =
            zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("zstd level 3 is always valid");
        Self {
            compressor,
            recipients,
        }
    }

    /// Compresses then encrypts `plaintext` into a complete age file.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let frame = self.compress(plaintext)?;
        self.seal_frame(&frame)
    }

    /// The zstd frame a full chunk object holds (before encryption).
    pub fn compress(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        self.compressor
            .compress(plaintext)
            .map_err(|e| EnvelopeError::Encrypt(format!("zstd: {e}")))
    }

    /// Encrypts an already compressed frame into a complete age file.
    pub fn seal_frame(&self, frame: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        encrypt(&self.recipients, frame)
    }
}

/// The zstd frame of a delta object: `plaintext` compressed with `base` as
/// referenced prefix, what `zstd --patch-from=base` makes.
pub fn compress_delta(base: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    use zstd::zstd_safe::{CCtx, CParameter};
    let zerr =
        |e: usize| EnvelopeError::Encrypt(format!("zstd: {}", zstd::zstd_safe::get_error_name(e)));
    // The window must reach from the end of the chunk back to the start of
    // the base, or matches into the base are lost.
    let span = (base.len() + plaintext.len()).max(1024);
    let window_log = (usize::BITS - (span - 1).leading_zeros()).min(DELTA_WINDOW_LOG);
    let mut cctx = CCtx::create();
    cctx.set_parameter(CParameter::CompressionLevel(DELTA_ZSTD_LEVEL))
        .map_err(zerr)?;
    cctx.set_parameter(CParameter::WindowLog(window_log))
        .map_err(zerr)?;
    cctx.set_parameter(CParameter::ContentSizeFlag(true))
        .map_err(zerr)?;
    // Level 3's hash tables are sized for a 2 MiB window: most of a 2–8 MiB
    // base would be forgotten. Long-distance matching indexes the whole
    // window cheaply, as `zstd --patch-from` does for large inputs.
    cctx.set_parameter(CParameter::EnableLongDistanceMatching(true))
        .map_err(zerr)?;
    cctx.ref_prefix(base).map_err(zerr)?;
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(plaintext.len()));
    cctx.compress2(&mut out, plaintext).map_err(zerr)?;
    Ok(out)
}

/// age-encrypts bytes to the recipients (no compression).
pub fn encrypt(recipients: &Recipients, data: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let encryptor = age::Encryptor::with_recipients(recipients.iter())
        .map_err(|e| EnvelopeError::Encrypt(e.to_string()))?;
    // age adds a ~200-byte header and 16 bytes per 64 KiB segment.
    let mut out = Vec::with_capacity(data.len() + data.len() / 4096 + 512);
    let mut w = encryptor
        .wrap_output(&mut out)
        .map_err(|e| EnvelopeError::Encrypt(e.to_string()))?;
    w.write_all(data)
        .and_then(|_| w.finish().map(|_| ()))
        .map_err(|e| EnvelopeError::Encrypt(e.to_string()))?;
    Ok(out)
}

/// Decrypts an age file, reading at most `limit` plaintext bytes.
pub fn decrypt(
    identities: &Identities,
    stored: &[u8],
    limit: usize,
) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::new();
    let n = decrypt_into(identities, stored, limit, &mut out)?;
    out.truncate(n);
    Ok(out)
}

/// Decrypts an age file into `buf`, returning the plaintext's length (the
/// plaintext is `buf[..n]`; bytes past it are left over from earlier use).
///
/// `buf` is kept initialised and only ever grows, so a caller that reuses
/// one buffer pays neither `read_to_end`'s zero-fill of spare capacity nor a
/// page fault per 4 KiB of fresh allocation on every object. An age payload
/// is never longer than its ciphertext, which bounds the buffer.
fn decrypt_into(
    identities: &Identities,
    stored: &[u8],
    limit: usize,
    buf: &mut Vec<u8>,
) -> Result<usize, EnvelopeError> {
    let decryptor =
        age::Decryptor::new_buffered(stored).map_err(|e| EnvelopeError::Decrypt(e.to_string()))?;
    let mut reader = decryptor.decrypt(identities.iter()).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => EnvelopeError::NoMatchingIdentity,
        other => EnvelopeError::Decrypt(other.to_string()),
    })?;
    // One byte more than may be returned, so an overlong payload is seen.
    let want = stored.len().min(limit) + 1;
    if buf.len() < want {
        buf.resize(want, 0);
    }
    let mut n = 0;
    while n < want {
        match reader.read(&mut buf[n..want]) {
            Ok(0) => return Ok(n),
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(EnvelopeError::Decrypt(e.to_string())),
        }
    }
    if want > limit {
        Err(EnvelopeError::TooLarge { limit })
    } else {
        Err(EnvelopeError::Decrypt(
            "payload longer than its ciphertext".into(),
        ))
    }
}

/// Per-thread decompression state for restore workers: a zstd context and the
/// buffer each object is decrypted into, reused from object to object.
pub struct Opener {
    decompressor: zstd::bulk::Decompressor<'static>,
    frame: Vec<u8>,
}

impl Default for Opener {
    fn default() -> Self {
        Self::new()
    }
}

fn zstd_error(e: usize) -> EnvelopeError {
    EnvelopeError::Decompress(zstd::zstd_safe::get_error_name(e).to_string())
}

/// A zstd decoder may stop at the output's capacity, which for a recycled
/// buffer can exceed the recorded length: the bound is checked here too.
fn check_bound(out: &[u8], limit: usize) -> Result<(), EnvelopeError> {
    if out.len() > limit {
        return Err(EnvelopeError::TooLarge { limit });
    }
    Ok(())
}

impl Opener {
    /// A fresh opener with its own zstd decompression context.
    pub fn new() -> Self {
        Self {
            decompressor: zstd::bulk::Decompressor::new().expect("zstd context"),
            frame: Vec::new(),
        }
    }

    /// Decrypts and decompresses one object whose plaintext must be at most
    /// `plain_len` bytes. The bound also defuses decompression bombs.
    pub fn open(
        &mut self,
        identities: &Identities,
        stored: &[u8],
        plain_len: usize,
    ) -> Result<Vec<u8>, EnvelopeError> {
        let mut out = Vec::new();
        self.open_into(identities, stored, plain_len, &mut out)?;
        Ok(out)
    }

    /// Decrypts an object into the reused frame buffer; the frame is
    /// `self.frame[..n]`.
    fn decrypt_frame(
        &mut self,
        identities: &Identities,
        stored: &[u8],
    ) -> Result<usize, EnvelopeError> {
        let limit = crate::format::MAX_OBJECT_BYTES as usize;
        decrypt_into(identities, stored, limit, &mut self.frame)
    }

    /// Like [`Opener::open`], decompressing into `out` (cleared first), so a
    /// caller can reuse one buffer per chunk instead of faulting in fresh
    /// pages for every plaintext.
    pub fn open_into(
        &mut self,
        identities: &Identities,
        stored: &[u8],
        plain_len: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), EnvelopeError> {
        let n = self.decrypt_frame(identities, stored)?;
        out.clear();
        out.reserve(plain_len);
        self.decompressor
            .decompress_to_buffer(&self.frame[..n], out)
            .map_err(|e| EnvelopeError::Decompress(e.to_string()))?;
        check_bound(out, plain_len)
    }

    /// Like [`Opener::open_into`] for a delta object whose base plaintext is
    /// `base`.
    pub fn open_delta_into(
        &mut self,
        identities: &Identities,
        stored: &[u8],
        base: &[u8],
        plain_len: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), EnvelopeError> {
        let n = self.decrypt_frame(identities, stored)?;
        decompress_delta_into(base, &self.frame[..n], plain_len, out)
    }
}

/// Decodes a delta frame against its base, producing at most `limit` bytes.
pub fn decompress_delta(base: &[u8], frame: &[u8], limit: usize) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::new();
    decompress_delta_into(base, frame, limit, &mut out)?;
    Ok(out)
}

/// Like [`decompress_delta`], into `out` (cleared first).
fn decompress_delta_into(
    base: &[u8],
    frame: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    // A context per delta: a prefix must outlive the context it is
    // referenced by, and deltas are few next to full chunks.
    let mut dctx = zstd::zstd_safe::DCtx::create();
    dctx.ref_prefix(base).map_err(zstd_error)?;
    out.clear();
    out.reserve(limit);
    dctx.decompress(out, frame).map_err(zstd_error)?;
    check_bound(out, limit)
}

/// Binary sealed data as age's ASCII armor, for the JSON objects (config,
/// manifest, attestation) that carry a sealed part.
pub fn armor(binary: &[u8]) -> Result<String, EnvelopeError> {
    use age::armor::{ArmoredWriter, Format};
    let mut out = Vec::new();
    let mut w = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor)
        .map_err(|e| EnvelopeError::Encrypt(e.to_string()))?;
    w.write_all(binary)
        .and_then(|_| w.finish().map(|_| ()))
        .map_err(|e| EnvelopeError::Encrypt(e.to_string()))?;
    String::from_utf8(out).map_err(|e| EnvelopeError::Encrypt(e.to_string()))
}

/// The binary behind [`armor`].
pub fn dearmor(text: &str) -> Result<Vec<u8>, EnvelopeError> {
    let mut r = age::armor::ArmoredReader::new(text.as_bytes());
    let mut out = Vec::new();
    r.read_to_end(&mut out)
        .map_err(|e| EnvelopeError::Decrypt(format!("bad ASCII armor: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate_identity;

    #[test]
    fn seal_open_round_trip_and_wrong_key() {
        let (id, rcpt) = generate_identity();
        let recipients = Recipients::parse(&[rcpt]).unwrap();
        let identities = Identities::from_x25519(vec![id]);
        let data = b"hello hello hello hello".repeat(1000);
        let sealed = Sealer::new(recipients).seal(&data).unwrap();
        assert!(sealed.starts_with(b"age-encryption.org/v1\n"));
        assert!(sealed.len() < data.len());
        let back = Opener::new()
            .open(&identities, &sealed, data.len())
            .unwrap();
        assert_eq!(back, data);

        // A shorter recorded length must not be exceeded silently.
        assert!(
            Opener::new()
                .open(&identities, &sealed, data.len() - 1)
                .is_err()
        );

        let (other, _) = generate_identity();
        let err = Opener::new()
            .open(&Identities::from_x25519(vec![other]), &sealed, data.len())
            .unwrap_err();
        assert!(matches!(err, EnvelopeError::NoMatchingIdentity), "{err}");

        let mut flipped = sealed.clone();
        let n = flipped.len();
        flipped[n - 20] ^= 1;
        let err = Opener::new()
            .open(&identities, &flipped, data.len())
            .unwrap_err();
        assert!(matches!(err, EnvelopeError::Decrypt(_)), "{err}");
    }

    /// One Opener and one output buffer reused across objects of different
    /// sizes: each result is exactly its own plaintext (nothing left over from
    /// a larger earlier object), and a recycled buffer's spare capacity does
    /// not let a plaintext past its recorded length.
    #[test]
    fn reused_opener_and_buffer_give_exact_results_and_keep_the_bound() {
        let (id, rcpt) = generate_identity();
        let mut sealer = Sealer::new(Recipients::parse(&[rcpt]).unwrap());
        let identities = Identities::from_x25519(vec![id]);
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let small = b"tiny".repeat(10);
        let mut opener = Opener::new();
        let mut out = Vec::new();
        for data in [&big[..], &small[..], &big[..1_000_000], &small[..3]] {
            let sealed = sealer.seal(data).unwrap();
            opener
                .open_into(&identities, &sealed, data.len(), &mut out)
                .unwrap();
            assert!(out == data, "{} bytes came back wrong", data.len());
        }
        // `out` now has room for 3 MB; the recorded length still binds.
        let sealed = sealer.seal(&big[..5000]).unwrap();
        let err = opener
            .open_into(&identities, &sealed, 4999, &mut out)
            .unwrap_err();
        assert!(
            matches!(err, EnvelopeError::TooLarge { limit: 4999 }),
            "{err}"
        );
        // A delta through the same opener and buffer.
        let mut changed = big.clone();
        changed[1_234_567] ^= 0xff;
        let frame = compress_delta(&big, &changed).unwrap();
        let sealed = sealer.seal_frame(&frame).unwrap();
        opener
            .open_delta_into(&identities, &sealed, &big, changed.len(), &mut out)
            .unwrap();
        assert!(out == changed);
        let err = opener
            .open_delta_into(&identities, &sealed, &big, changed.len() - 1, &mut out)
            .unwrap_err();
        assert!(
            matches!(
                err,
                EnvelopeError::TooLarge { .. } | EnvelopeError::Decompress(_)
            ),
            "{err}"
        );
    }

    #[test]
    fn delta_frames_are_small_and_decode_only_with_their_base() {
        let mut seed = 0x1234_5678_9abc_def1u64;
        let base: Vec<u8> = (0..6 * 1024 * 1024)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let mut changed = base.clone();
        for i in (1000..changed.len()).step_by(64 * 1024) {
            changed[i] ^= 0x55;
        }
        let frame = compress_delta(&base, &changed).unwrap();
        assert!(
            frame.len() < changed.len() / 50,
            "delta of {} bytes for {} changed bytes",
            frame.len(),
            changed.len() / (64 * 1024)
        );
        assert_eq!(
            decompress_delta(&base, &frame, changed.len()).unwrap(),
            changed
        );
        // Without the right base, decoding fails or gives other bytes.
        let other = vec![0u8; base.len()];
        assert!(decompress_delta(&other, &frame, changed.len()).map_or(true, |d| d != changed));
        // Never more than the recorded length.
        assert!(decompress_delta(&base, &frame, changed.len() - 1).is_err());
    }
}
