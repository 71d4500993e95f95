//! Where each byte of a sealed object lives: stripes, chunks, shard offsets.
//!
//! The chunk size adapts to the object so nothing is wasted on padding: an
//! object of `len` bytes gets the fewest stripes whose chunks fit the
//! vault's maximum, and then the smallest chunk that holds it, so padding is
//! under `k` bytes per stripe. A 1 KiB file costs about `n/k` times its
//! sealed size plus the shard headers, not `n` full chunks, and a 5 MB file
//! is not rounded up to whole 3 MiB stripes.

use super::ErasureError;

/// The stripe geometry of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StripeLayout {
    /// Data chunks per stripe.
    pub k: usize,
    /// Chunks per stripe.
    pub n: usize,
    /// Bytes per chunk.
    pub chunk: u32,
    /// Length of the object (`N`) in bytes.
    pub object_len: u64,
    /// Number of stripes (at least one, even for an empty object).
    pub stripes: u64,
}

impl StripeLayout {
    /// Plans the stripes of an object of `object_len` bytes with chunks of
    /// at most `max_chunk` bytes.
    pub fn plan(
        k: usize,
        n: usize,
        object_len: u64,
        max_chunk: u32,
    ) -> Result<StripeLayout, ErasureError> {
        if k == 0 || k >= n || n > super::MAX_SHARDS {
            return Err(ErasureError::Params { k, n });
        }
        let k64 = k as u64;
        let stripes = object_len
            .div_ceil(k64 * u64::from(max_chunk.max(1)))
            .max(1);
        let chunk = object_len.div_ceil(k64 * stripes).max(1) as u32;
        Ok(StripeLayout {
            k,
            n,
            chunk,
            object_len,
            stripes,
        })
    }

    /// Object bytes carried by one full stripe.
    pub fn stripe_bytes(&self) -> u64 {
        self.chunk as u64 * self.k as u64
    }

    /// Payload bytes of each shard (all shards are the same size).
    pub fn shard_len(&self) -> u64 {
        self.stripes * self.chunk as u64
    }

    /// The object range `[start, end)` held by stripe `s` (the last stripe
    /// is zero-padded past `object_len`).
    pub fn stripe_range(&self, s: u64) -> (u64, u64) {
        let start = s * self.stripe_bytes();
        (start, (start + self.stripe_bytes()).min(self.object_len))
    }

    /// Where object byte `pos` lives: (stripe, data chunk index, offset in chunk).
    pub fn locate(&self, pos: u64) -> (u64, usize, u32) {
        let stripe = pos / self.stripe_bytes();
        let within = pos % self.stripe_bytes();
        (
            stripe,
            (within / self.chunk as u64) as usize,
            (within % self.chunk as u64) as u32,
        )
    }

    /// Offset of chunk `stripe` inside a shard's payload.
    pub fn chunk_offset(&self, stripe: u64) -> u64 {
        stripe * self.chunk as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_objects_get_small_chunks() {
        let l = StripeLayout::plan(3, 5, 1137, 1 << 20).unwrap();
        assert_eq!((l.chunk, l.stripes), (379, 1));
        assert_eq!(l.shard_len() * 5, 1895);
        let empty = StripeLayout::plan(3, 5, 0, 1 << 20).unwrap();
        assert_eq!((empty.chunk, empty.stripes), (1, 1));
    }

    #[test]
    fn large_objects_use_full_chunks_and_locate_bytes() {
        let l = StripeLayout::plan(3, 5, 12 << 20, 1 << 20).unwrap();
        assert_eq!((l.chunk, l.stripes), (1 << 20, 4));
        assert_eq!(l.stripe_range(3), (9 << 20, 12 << 20));
        assert_eq!(l.locate(0), (0, 0, 0));
        assert_eq!(l.locate((1 << 20) + 7), (0, 1, 7));
        assert_eq!(l.locate(3 << 20), (1, 0, 0));
        assert_eq!(l.chunk_offset(2), 2 << 20);
    }

    #[test]
    fn padding_stays_below_k_bytes_per_stripe() {
        for len in [5_000_000u64, (3 << 20) + 1, 100_000_000, 1 << 30] {
            let l = StripeLayout::plan(3, 5, len, 1 << 20).unwrap();
            assert!(l.chunk <= 1 << 20);
            let padding = l.stripes * l.stripe_bytes() - len;
            assert!(padding < 3 * l.stripes, "len {len}: padding {padding}");
        }
    }

    #[test]
    fn every_byte_is_covered_exactly_once() {
        for len in [1u64, 2, 3, 100, 4095, 4096, 12289] {
            let l = StripeLayout::plan(4, 6, len, 1024).unwrap();
            let covered: u64 = (0..l.stripes)
                .map(|s| {
                    let (a, b) = l.stripe_range(s);
                    b - a
                })
                .sum();
            assert_eq!(covered, len);
        }
    }
}
