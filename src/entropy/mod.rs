//! entropy (being built).
