//! envelope (being built).
