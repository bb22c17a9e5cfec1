//! Object identities: the keyed BLAKE3 that names chunks, manifests and
//! whole streams, and the 32-byte ID key behind it.
//!
//! The ID key is a MAC key, not an encryption key: holding it lets a host
//! name and deduplicate chunks, but not read them. That is why the backup
//! host may keep it while never holding an age identity.

use std::fmt;

use rand::RngCore;

/// A 32-byte identifier, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; 32]);

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
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// The 8-digit prefix shown to people, like a short git commit id.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
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
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        Self(k)
    }
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    pub fn id_of(&self, data: &[u8]) -> ObjectId {
        ObjectId(*blake3::keyed_hash(&self.0, data).as_bytes())
    }
    pub fn hasher(&self) -> StreamHasher {
        StreamHasher(blake3::Hasher::new_keyed(&self.0))
    }
    /// A public fingerprint of the key, stored in the repository config so a
    /// host can tell that its key file belongs to this repository without
    /// being able to decrypt anything.
    pub fn check_value(&self) -> ObjectId {
        self.id_of(crate::format::ID_KEY_CHECK_INPUT)
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
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
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
