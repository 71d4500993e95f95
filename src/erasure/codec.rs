//! Reed-Solomon codec with a SIMD backend and a pure-Rust fallback.
//!
//! reed-solomon-erasure's `simd-accel` C kernels are compiled with
//! `-march=haswell` and would die with SIGILL on an x86_64 CPU without AVX2,
//! so the SIMD build (v6) is only used after a run-time CPU check; otherwise
//! the pure-Rust build (v5, same field, same Vandermonde-derived matrix, so
//! the same parity bytes; a test holds them to it) does the work.

use super::{ErasureError, MAX_SHARDS};

/// Which implementation does the arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// C kernels with AVX2 (x86_64) or NEON (aarch64).
    Simd,
    /// Portable Rust.
    Pure,
}

impl Backend {
    /// The fastest backend this CPU can run. `QSFS_RS_BACKEND=pure` forces
    /// the fallback (for tests and for diagnosing a suspected SIMD fault).
    pub fn detect() -> Backend {
        if std::env::var("QSFS_RS_BACKEND").is_ok_and(|v| v == "pure") {
            return Backend::Pure;
        }
        if simd_available() {
            Backend::Simd
        } else {
            Backend::Pure
        }
    }

    /// Name for status output.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Simd => "simd",
            Backend::Pure => "pure-rust",
        }
    }
}

#[cfg(all(feature = "simd", target_arch = "x86_64"))]
fn simd_available() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("ssse3")
}

#[cfg(all(feature = "simd", target_arch = "aarch64"))]
fn simd_available() -> bool {
    true
}

#[cfg(not(all(feature = "simd", any(target_arch = "x86_64", target_arch = "aarch64"))))]
fn simd_available() -> bool {
    false
}

enum Engine {
    #[cfg(feature = "simd")]
    Simd(reed_solomon_erasure::galois_8::ReedSolomon),
    Pure(rse_pure::galois_8::ReedSolomon),
}

/// A Reed-Solomon code with `k` data and `n - k` parity chunks per stripe.
pub struct Codec {
    k: usize,
    n: usize,
    engine: Engine,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Codec({}/{}, {})", self.k, self.n, self.backend().name())
    }
}

impl Codec {
    /// A codec on the fastest backend available.
    pub fn new(k: usize, n: usize) -> Result<Codec, ErasureError> {
        Self::with_backend(k, n, Backend::detect())
    }

    /// A codec on a chosen backend (`Simd` falls back to `Pure` when the
    /// CPU or the build lacks it).
    pub fn with_backend(k: usize, n: usize, backend: Backend) -> Result<Codec, ErasureError> {
        if k == 0 || k >= n || n > MAX_SHARDS {
            return Err(ErasureError::Params { k, n });
        }
        let engine = match backend {
            #[cfg(feature = "simd")]
            Backend::Simd if simd_available() => Engine::Simd(
                reed_solomon_erasure::galois_8::ReedSolomon::new(k, n - k)
                    .map_err(|_| ErasureError::Params { k, n })?,
            ),
            _ => Engine::Pure(
                rse_pure::galois_8::ReedSolomon::new(k, n - k)
                    .map_err(|_| ErasureError::Params { k, n })?,
            ),
        };
        Ok(Codec { k, n, engine })
    }

    /// Data chunks per stripe.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Chunks per stripe.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        match self.engine {
            #[cfg(feature = "simd")]
            Engine::Simd(_) => Backend::Simd,
            Engine::Pure(_) => Backend::Pure,
        }
    }

    fn shape(
        &self,
        data: usize,
        parity: usize,
        lens: impl Iterator<Item = usize>,
    ) -> Result<(), ErasureError> {
        if data != self.k || parity != self.n - self.k {
            return Err(ErasureError::Shape(format!(
                "got {data} data and {parity} parity chunks for a {}/{} code",
                self.k, self.n
            )));
        }
        let mut lens = lens;
        if let Some(first) = lens.next()
            && lens.any(|l| l != first)
        {
            return Err(ErasureError::Shape(
                "chunks of one stripe differ in length".into(),
            ));
        }
        Ok(())
    }

    /// Computes the parity chunks of one stripe.
    pub fn encode(&self, data: &[&[u8]], parity: &mut [&mut [u8]]) -> Result<(), ErasureError> {
        self.shape(
            data.len(),
            parity.len(),
            data.iter()
                .map(|c| c.len())
                .chain(parity.iter().map(|c| c.len())),
        )?;
        match &self.engine {
            #[cfg(feature = "simd")]
            Engine::Simd(rs) => rs
                .encode_sep(data, parity)
                .map_err(|e| ErasureError::Shape(format!("{e:?}"))),
            Engine::Pure(rs) => rs
                .encode_sep(data, parity)
                .map_err(|e| ErasureError::Shape(format!("{e:?}"))),
        }
    }

    /// Rebuilds the missing chunks of a stripe in place. `chunks` holds all
    /// `n` chunk buffers of equal length; `present[i]` says which hold valid
    /// data. With `data_only`, parity chunks are left untouched (a read needs
    /// only the data; a repair needs everything).
    pub fn reconstruct(
        &self,
        chunks: &mut [&mut [u8]],
        present: &[bool],
        data_only: bool,
    ) -> Result<(), ErasureError> {
        if chunks.len() != self.n || present.len() != self.n {
            return Err(ErasureError::Shape(format!(
                "need {} chunks, got {}",
                self.n,
                chunks.len()
            )));
        }
        let have = present.iter().filter(|p| **p).count();
        if have < self.k {
            return Err(ErasureError::TooFewChunks { have, k: self.k });
        }
        self.shape(self.k, self.n - self.k, chunks.iter().map(|c| c.len()))?;
        let mut pairs: Vec<(&mut [u8], bool)> = chunks
            .iter_mut()
            .zip(present)
            .map(|(c, p)| (&mut **c, *p))
            .collect();
        match (&self.engine, data_only) {
            #[cfg(feature = "simd")]
            (Engine::Simd(rs), true) => rs
                .reconstruct_data(&mut pairs)
                .map_err(|e| ErasureError::Shape(format!("{e:?}"))),
            #[cfg(feature = "simd")]
            (Engine::Simd(rs), false) => rs
                .reconstruct(&mut pairs)
                .map_err(|e| ErasureError::Shape(format!("{e:?}"))),
            (Engine::Pure(rs), true) => rs
                .reconstruct_data(&mut pairs)
                .map_err(|e| ErasureError::Shape(format!("{e:?}"))),
            (Engine::Pure(rs), false) => rs
                .reconstruct(&mut pairs)
                .map_err(|e| ErasureError::Shape(format!("{e:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripe(k: usize, len: usize, seed: u8) -> Vec<Vec<u8>> {
        (0..k)
            .map(|i| {
                (0..len)
                    .map(|j| (j as u8).wrapping_mul(31).wrapping_add(seed ^ i as u8))
                    .collect()
            })
            .collect()
    }

    fn encode_with(codec: &Codec, data: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let len = data[0].len();
        let mut parity = vec![vec![0u8; len]; codec.n() - codec.k()];
        let d: Vec<&[u8]> = data.iter().map(std::vec::Vec::as_slice).collect();
        let mut p: Vec<&mut [u8]> = parity.iter_mut().map(std::vec::Vec::as_mut_slice).collect();
        codec.encode(&d, &mut p).unwrap();
        parity
    }

    #[test]
    fn params_are_checked() {
        for (k, n) in [(0, 3), (3, 3), (4, 3), (3, 33)] {
            assert_eq!(Codec::new(k, n).unwrap_err(), ErasureError::Params { k, n });
        }
        for (k, n) in [(1, 2), (2, 3), (3, 5), (4, 6), (31, 32)] {
            Codec::new(k, n).unwrap();
        }
    }

    #[test]
    fn simd_and_pure_backends_agree() {
        for (k, n) in [(2, 3), (3, 5), (4, 6), (10, 14)] {
            let simd = Codec::with_backend(k, n, Backend::Simd).unwrap();
            let pure = Codec::with_backend(k, n, Backend::Pure).unwrap();
            assert_eq!(pure.backend(), Backend::Pure);
            let data = stripe(k, 4099, 7);
            assert_eq!(
                encode_with(&simd, &data),
                encode_with(&pure, &data),
                "k={k} n={n}"
            );
        }
    }

    #[test]
    fn any_k_chunks_rebuild_the_stripe() {
        for backend in [Backend::Simd, Backend::Pure] {
            let codec = Codec::with_backend(3, 5, backend).unwrap();
            let data = stripe(3, 1000, 3);
            let parity = encode_with(&codec, &data);
            let all: Vec<Vec<u8>> = data.iter().chain(parity.iter()).cloned().collect();
            for lost_a in 0..5 {
                for lost_b in lost_a + 1..5 {
                    let mut bufs = all.clone();
                    bufs[lost_a].fill(0xAA);
                    bufs[lost_b].fill(0x55);
                    let present: Vec<bool> = (0..5).map(|i| i != lost_a && i != lost_b).collect();
                    let mut refs: Vec<&mut [u8]> =
                        bufs.iter_mut().map(std::vec::Vec::as_mut_slice).collect();
                    codec.reconstruct(&mut refs, &present, false).unwrap();
                    assert_eq!(bufs, all);
                }
            }
            let mut bufs = all.clone();
            let mut refs: Vec<&mut [u8]> =
                bufs.iter_mut().map(std::vec::Vec::as_mut_slice).collect();
            let err = codec
                .reconstruct(&mut refs, &[true, false, false, false, true], true)
                .unwrap_err();
            assert_eq!(err, ErasureError::TooFewChunks { have: 2, k: 3 });
        }
    }
}
