//! namespace (being built).
