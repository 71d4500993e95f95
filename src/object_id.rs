//! Object identifiers: 16 random bytes naming one sealed file version.

use std::fmt;

/// Identifies one sealed object (one version of one file extent) across the
/// keystore, the manifests and the shard files on the nodes.
///
/// Drawn from the OS RNG: it only has to be unique, not secret, and keeping
/// it off the configured (possibly finite, quantum) key source saves that
/// source for keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(pub [u8; 16]);

impl ObjectId {
    /// A fresh random id.
    pub fn random() -> std::io::Result<ObjectId> {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).map_err(std::io::Error::other)?;
        Ok(ObjectId(b))
    }

    /// Parses 32 hex digits.
    pub fn from_hex(s: &str) -> Option<ObjectId> {
        let mut b = [0u8; 16];
        hex::decode_to_slice(s, &mut b).ok()?;
        Some(ObjectId(b))
    }

    /// 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = ObjectId::random().unwrap();
        assert_eq!(ObjectId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(ObjectId::from_hex("zz"), None);
        assert_ne!(id, ObjectId::random().unwrap());
    }
}
