//! node (being built).
