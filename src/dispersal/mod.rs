//! dispersal (being built).
