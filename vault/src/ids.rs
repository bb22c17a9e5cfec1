//! Object identities: the keyed BLAKE3 that names chunks, manifests and
//! whole streams, and the 32-byte ID key behind it.
//!
//! The ID key is a MAC key, not an encryption key: holding it lets a host
//! name and deduplicate chunks, but not read them. That is why the backup
//! host may keep it while never holding an age identity.

use std::fmt;

use rand::RngCore;

/// Keyed-BLAKE3 input whose hash, `id_key_check` in the config, lets a host
/// check that an ID key file belongs to a repository.
pub const ID_KEY_CHECK_INPUT: &[u8] = b"lockbox id-key check v1";

/// A 32-byte identifier, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; 32]);

/// A string that is not exactly 64 lowercase hex digits (holds its first 80 characters).
#[derive(Debug, thiserror::Error)]
#[error("not a 64-digit hex object id: {0:?}")]
pub struct BadObjectId(pub String);

impl BadObjectId {
    /// Object ids come from object names and manifests: one that does not
    /// parse is damage.
    pub fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Integrity
    }
}

impl ObjectId {
    /// Wraps 32 raw bytes (a BLAKE3 output).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// The 64 lowercase hex digits used in object keys and JSON.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// The 8-digit prefix shown to people, like a short git commit id.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
    /// Parses 64 hex digits; uppercase is refused, as FORMAT.md requires of readers.
    pub fn from_hex(s: &str) -> Result<Self, BadObjectId> {
        let mut out = [0u8; 32];
        if s.len() != 64
            || hex::decode_to_slice(s, &mut out).is_err()
            || s.bytes().any(|b| b.is_ascii_uppercase())
        {
            return Err(BadObjectId(s.chars().take(80).collect()));
        }
        Ok(Self(out))
    }
    /// Unkeyed BLAKE3 of stored bytes: lets a host without any key check
    /// that an object is the one a manifest recorded.
    pub fn of_stored(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.short())
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl serde::Serialize for ObjectId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for ObjectId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ObjectId::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// The repository's secret 32-byte key for keyed BLAKE3.
#[derive(Clone)]
pub struct IdKey([u8; 32]);

impl IdKey {
    /// A fresh random key, as `init` makes for a new repository.
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        Self(k)
    }
    /// Wraps a key read from the ID key file or unsealed from the config.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    /// The secret key bytes; handle as a secret (for sealing it or writing the key file).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// `K(data)`: the keyed BLAKE3 id of `data` (a chunk's plaintext, or a
    /// manifest's or attestation's bytes).
    pub fn id_of(&self, data: &[u8]) -> ObjectId {
        ObjectId(*blake3::keyed_hash(&self.0, data).as_bytes())
    }
    /// A keyed hasher for data that arrives in pieces (the stream hash).
    pub fn hasher(&self) -> StreamHasher {
        StreamHasher(blake3::Hasher::new_keyed(&self.0))
    }
    /// A public fingerprint of the key, stored in the repository config so a
    /// host can tell that its key file belongs to this repository without
    /// being able to decrypt anything.
    pub fn check_value(&self) -> ObjectId {
        self.id_of(ID_KEY_CHECK_INPUT)
    }
}

impl fmt::Debug for IdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdKey(<redacted>)")
    }
}

/// Incremental keyed BLAKE3 over a whole dump stream.
pub struct StreamHasher(blake3::Hasher);

impl StreamHasher {
    /// Feeds the next bytes of the stream.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// The keyed hash of everything fed so far; the hasher can keep going.
    pub fn finish(&self) -> ObjectId {
        ObjectId(*self.0.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_ids_depend_on_key_and_data() {
        let k1 = IdKey::from_bytes([1; 32]);
        let k2 = IdKey::from_bytes([2; 32]);
        assert_ne!(k1.id_of(b"abc"), k2.id_of(b"abc"));
        assert_ne!(k1.id_of(b"abc"), k1.id_of(b"abd"));
        let mut h = k1.hasher();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), k1.id_of(b"abc"));
    }

    #[test]
    fn hex_is_strict() {
        let id = ObjectId::from_bytes([0xab; 32]);
        assert_eq!(ObjectId::from_hex(&id.to_hex()).unwrap(), id);
        assert!(ObjectId::from_hex(&id.to_hex().to_uppercase()).is_err());
        assert!(ObjectId::from_hex("abcd").is_err());
        assert!(format!("{:?}", IdKey::from_bytes([9; 32])).contains("redacted"));
    }
}
