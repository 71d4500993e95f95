//! keystore (being built).
