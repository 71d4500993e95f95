//! erasure (being built).
