//! Stores and constants the test suite opens directly to play an attacker
//! or a crash (read a keystore file, check a backup record, count blocks).
//! Not an API: it changes with the formats.

pub use crate::dispersal::EcStore;
pub use crate::keystore::Keystore;
pub use crate::rmht::BLOCK;
pub use crate::store::{Db, OpenMode};

pub mod custody;
pub mod fuzz;
