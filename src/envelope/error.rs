//! The envelope's error type: every way sealing or opening can fail.

use thiserror::Error;

/// Why a seal or open failed.
///
/// Each message says what happened, where, and what to do next. Variants that
/// mean "the object or its key material was altered" are grouped by
/// [`EnvelopeError::is_integrity`], so a caller can tell tampering (or keys
/// that belong to another object) apart from missing input.
#[derive(Debug, Error)]
pub enum EnvelopeError {
    /// `N` is shorter than the smallest possible sealed object.
    #[error(
        "sealed object is truncated: {len} bytes, a v1 sealed object has at least {min}; \
         fetch it again or repair it from its shards"
    )]
    Truncated {
        /// Length that was found.
        len: u64,
        /// Smallest valid length (`MIN_SEALED_LEN`).
        min: u64,
    },

    /// A key share does not have the 33-byte `x || y` form.
    #[error(
        "key share {what} is malformed: {detail}; a v1 share is 33 bytes (x, then 32 value bytes)"
    )]
    ShareEncoding {
        /// Which share (R1, R2, R3, R4 or "share").
        what: &'static str,
        /// What was wrong.
        detail: String,
    },

    /// A share has an `x` other than the one its role requires.
    #[error(
        "key share {role} has x = {found}, expected x = {expected}: the share is corrupt or \
         belongs to another role or object; it was not used for recovery"
    )]
    WrongShareRole {
        /// Role of the share (R1, R2, R3 or R4).
        role: &'static str,
        /// The `x` the role requires.
        expected: u8,
        /// The `x` that was found.
        found: u8,
    },

    /// Sealing input keys and shares do not fit together.
    #[error("seal keys are inconsistent: {detail}; draw K, R and the shares again")]
    InconsistentKeys {
        /// What did not fit.
        detail: String,
    },

    /// `M` over `E''` did not match.
    #[error(
        "sealed object failed its integrity check (M): it was modified or the keys do not belong \
         to it; nothing was decrypted"
    )]
    MacMismatch,

    /// One segment's GCM tag did not verify.
    #[error(
        "segment {index} of the sealed object failed authentication (GCM tag): the object was \
         modified or the key does not belong to it; the segment's plaintext was not released"
    )]
    SegmentAuth {
        /// Index of the failing segment (from 0).
        index: u64,
    },

    /// Lengths or positions that no v1 sealed object can have.
    #[error("sealed object layout is invalid: {detail}")]
    Layout {
        /// What was wrong.
        detail: String,
    },

    /// The backup record `B` could not be parsed.
    #[error(
        "backup record B is malformed: {detail}; restore B from the erasure-coding side's store"
    )]
    BackupMalformed {
        /// What was wrong.
        detail: String,
    },

    /// The MAC of `B` for a local share did not verify.
    #[error(
        "backup record B does not verify with {share} (check {check}): B or the share is corrupt"
    )]
    BackupRejected {
        /// The share that was checked (R1 or R2).
        share: &'static str,
        /// The MAC in `B` that failed (M14 or M24).
        check: &'static str,
    },

    /// `R1`, `R2` and `B` disagree on where `R3` sits.
    #[error(
        "R1 and R2 place R3 at a different position than backup record B: B belongs to another \
         object or was altered; open with R1 and R2 alone"
    )]
    PositionMismatch,

    /// Too few shares to recover `R`.
    #[error(
        "not enough key shares to open the object: {detail}; need R1 and R2, or one of them plus the backup record B"
    )]
    NotEnoughShares {
        /// What was present.
        detail: String,
    },

    /// The plaintext needs more than 2^32 segments.
    #[error(
        "file of {plain_len} bytes is too large for envelope v1 (at most 2^32 segments of 65,536 \
         bytes, 256 TiB)"
    )]
    TooLarge {
        /// Requested plaintext length.
        plain_len: u64,
    },

    /// Reading the sealed object for key recovery failed.
    #[error("reading {len} bytes of the sealed object at offset {offset} failed: {source}")]
    Read {
        /// Offset in `N`.
        offset: u64,
        /// Bytes requested.
        len: usize,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl EnvelopeError {
    /// True when the error means the object or its key material was altered
    /// (or the keys belong to another object), as opposed to missing input.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            EnvelopeError::MacMismatch
                | EnvelopeError::SegmentAuth { .. }
                | EnvelopeError::WrongShareRole { .. }
                | EnvelopeError::PositionMismatch
                | EnvelopeError::BackupRejected { .. }
                | EnvelopeError::Layout { .. }
                | EnvelopeError::Truncated { .. }
        )
    }

    /// True when the error names the backup record `B`.
    pub fn names_backup(&self) -> bool {
        matches!(
            self,
            EnvelopeError::BackupMalformed { .. }
                | EnvelopeError::BackupRejected { .. }
                | EnvelopeError::PositionMismatch
        )
    }
}
