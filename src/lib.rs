//! qsfs: a quantum-safe, fault-tolerant filesystem engine.
//!
//! A file version is *sealed* ([`envelope`], PROTOCOL.md): AES-256-GCM under
//! fresh random keys from an [`entropy`] source, the key material split with
//! Shamir secret sharing. The sealed object is Reed-Solomon coded
//! ([`erasure`]) and dispersed ([`dispersal`]) as `n` shards over `n`
//! storage [`node`]s, any `k` of which rebuild it. The local key shares live
//! in the [`keystore`], paths and attributes in the [`namespace`]; a
//! [`vault`] ties a folder of configuration and stores together.
//!
//! Nodes are reached through QKD-keyed links ([`qkd::link`]): framed
//! AES-256-GCM under one-time keys named by the [`qkd`] contracts and drawn
//! from a pre-shared key pool file ([`qkd::pool`]) or a key manager
//! ([`qkd::etsi014`]). Scrub, audit, fsck, drain and the other runs that
//! look after a vault live in [`maint`].
//!
//! Data flows one way on a write: plaintext -> envelope (N, B, R1, R2) ->
//! dispersal (stripes -> shards -> nodes, in parallel) -> commit
//! (shards durable -> keystore -> manifest and B -> namespace). A read runs
//! the same path backwards, verifying every chunk before it is decoded.

//!
//! # The public API
//! The modules below are the API: a [`Vault`] to open, put, read and list
//! files; the [`envelope`] to seal and open one object by hand; the
//! [`maint`] runs and their reports; the [`qkd`] key sources and links;
//! [`entropy`] sources; and [`node`] kinds. Everything else (the FUSE
//! mount, the stores, the erasure coder, the control socket) is internal
//! and reached through these or through the `qsfs` command.
//!
//! ```
//! use qsfs::{InitOptions, OpenOptions, PutSource, Vault, VaultPath};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tmp = tempfile::tempdir()?;
//! let root = tmp.path().join("vault");
//! // A 3-of-5 vault with its five node folders inside it.
//! // The vault key is wrapped under a key file (a passphrase works too).
//! let unlock = Some(qsfs::unlock::NewMethod::KeyFile(tmp.path().join("vault.key")));
//! qsfs::vault::init(&root, &InitOptions { direct: true, unlock, ..Default::default() })?;
//! let vault = Vault::open(&root, &OpenOptions::default())?;
//!
//! let src = tmp.path().join("hello.txt");
//! std::fs::write(&src, b"quantum-safe hello")?;
//! let path = VaultPath::parse("/hello.txt")?;
//! vault.put(&PutSource::File(src), &path)?;
//!
//! let mut back = Vec::new();
//! vault.read_file(&path, &mut back, false)?;
//! assert_eq!(back, b"quantum-safe hello");
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod entropy;
pub mod envelope;
pub mod maint;
pub mod node;
pub mod qkd;
pub mod unlock;
pub mod vault;

#[doc(hidden)]
pub mod cli;
#[doc(hidden)]
pub mod internals;

pub(crate) mod cache;
pub(crate) mod codec;
pub(crate) mod control;
pub(crate) mod dispersal;
pub(crate) mod erasure;
pub(crate) mod fs;
pub(crate) mod keystore;
pub(crate) mod logsum;
pub(crate) mod namespace;
pub(crate) mod object_id;
pub(crate) mod perms;
pub(crate) mod rmht;
pub(crate) mod stock;
pub(crate) mod store;
pub(crate) mod wipe;
pub(crate) mod workers;

pub use namespace::{NamespaceError, VaultPath};
pub use object_id::ObjectId;
pub use vault::{InitOptions, OpenOptions, PutSource, ReadOutcome, Vault, VaultError};

/// The syscall wrappers (a crate of their own: the only `unsafe` code).
use qsfs_sys as sys;
