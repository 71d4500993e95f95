//! Key records at rest: R1, R2 and B sealed under an epoch key. Pure.
//!
//! Record format 2 (format 1, a version byte then the share in clear, is
//! what vaults made before the sealed keystore hold):
//!
//! ```text
//! 0x02 || epoch (u32 le) || nonce (12) || AES-256-GCM(payload) || tag (16)
//! aad = "qsfs key record v2\0" || vault_id || "\0" || kind || object id (16)
//! ```
//!
//! `kind` is `'1'` (R1), `'2'` (R2) or `'b'` (B): a record cannot be moved
//! to another object or role. Destroying an epoch key turns every record
//! of that epoch, including the stale copies a log-structured store keeps,
//! into noise.

use zeroize::Zeroizing;

use crate::ObjectId;
use crate::unlock::wrap;

/// Format byte of a sealed record.
pub const SEALED: u8 = 2;
/// Format byte of a clear record (vaults made before the sealed keystore).
pub const CLEAR: u8 = 1;
const HEADER: usize = 1 + 4;

/// The role of a key record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The first local share.
    R1,
    /// The second local share.
    R2,
    /// The backup record B (R4 and its checks).
    Backup,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::R1 => b'1',
            Kind::R2 => b'2',
            Kind::Backup => b'b',
        }
    }
}

fn aad(vault_id: &str, kind: Kind, id: &ObjectId) -> Vec<u8> {
    let mut a = b"qsfs key record v2\0".to_vec();
    a.extend_from_slice(vault_id.as_bytes());
    a.push(0);
    a.push(kind.byte());
    a.extend_from_slice(id.as_bytes());
    a
}

/// Seals `payload` as record `kind` of object `id` under epoch `epoch`.
pub fn seal(
    epoch: u32,
    key: &[u8; 32],
    vault_id: &str,
    kind: Kind,
    id: &ObjectId,
    payload: &[u8],
) -> Result<Vec<u8>, getrandom::Error> {
    let mut out = Vec::with_capacity(HEADER + wrap::OVERHEAD + payload.len());
    out.push(SEALED);
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(&wrap::wrap(key, &aad(vault_id, kind, id), payload)?);
    Ok(out)
}

/// The epoch of a sealed record (`None` for any other bytes).
pub fn epoch_of(record: &[u8]) -> Option<u32> {
    if record.len() < HEADER + wrap::OVERHEAD || record[0] != SEALED {
        return None;
    }
    Some(u32::from_le_bytes(record[1..HEADER].try_into().ok()?))
}

/// Opens a sealed record with its epoch's key; `None` if it is not
/// record `kind` of `id` under that key.
pub fn open(
    key: &[u8; 32],
    vault_id: &str,
    kind: Kind,
    id: &ObjectId,
    record: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    epoch_of(record)?;
    wrap::unwrap(key, &aad(vault_id, kind, id), &record[HEADER..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_opens_only_as_itself() {
        let key = [5u8; 32];
        let id = ObjectId([1; 16]);
        let r = seal(7, &key, "v", Kind::R1, &id, &[9u8; 33]).unwrap();
        assert_eq!(r.len(), 5 + 28 + 33);
        assert_eq!(epoch_of(&r), Some(7));
        assert_eq!(&open(&key, "v", Kind::R1, &id, &r).unwrap()[..], &[9u8; 33]);
        assert!(open(&key, "v", Kind::R2, &id, &r).is_none());
        assert!(open(&key, "v", Kind::R1, &ObjectId([2; 16]), &r).is_none());
        assert!(open(&key, "w", Kind::R1, &id, &r).is_none());
        assert!(open(&[6u8; 32], "v", Kind::R1, &id, &r).is_none());
        assert_eq!(epoch_of(&[CLEAR; 34]), None);
        // The payload is nowhere in the record.
        assert!(!r.windows(33).any(|w| w == [9u8; 33]));
    }
}
