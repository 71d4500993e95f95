//! The operating system's RNG (getrandom(2) on Linux), the default source.

use super::{EntropyError, EntropySource, SourceStatus};

/// Draws from the kernel RNG; never runs out and needs no state.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsSource;

impl OsSource {
    /// The OS RNG source.
    pub fn new() -> Self {
        Self
    }
}

impl EntropySource for OsSource {
    fn fill(&self, buf: &mut [u8]) -> Result<(), EntropyError> {
        getrandom::fill(buf).map_err(|source| EntropyError::Os { source })
    }

    fn describe(&self) -> SourceStatus {
        SourceStatus {
            kind: "os".into(),
            path: None,
            remaining: None,
            total: None,
            note: Some("operating system RNG (getrandom)".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_distinct_buffers() {
        let src = OsSource::new();
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        src.fill(&mut a).expect("os rng");
        src.fill(&mut b).expect("os rng");
        assert_ne!(a, b);
        assert_eq!(src.describe().kind, "os");
    }
}
