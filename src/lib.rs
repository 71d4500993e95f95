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
//! Nodes are reached through QKD-keyed links ([`link`]): framed
//! AES-256-GCM under one-time keys named by the [`qkd`] contracts and drawn
//! from a pre-shared key pool file ([`keypool`]) or a key manager.
//!
//! Data flows one way on a write: plaintext -> envelope (N, B, R1, R2) ->
//! dispersal (stripes -> shards -> nodes, in parallel) -> commit
//! (shards durable -> keystore -> manifest and B -> namespace). A read runs
//! the same path backwards, verifying every chunk before it is decoded.

#![forbid(unsafe_code)]

pub mod cache;
pub mod codec;
pub mod control;
pub mod dispersal;
pub mod entropy;
pub mod envelope;
pub mod erasure;
pub mod fs;
pub mod keystore;
pub mod logsum;
pub mod maint;
pub mod namespace;
pub mod node;
pub mod object_id;
pub mod qkd;
pub mod rmht;
pub mod stock;
pub mod store;
pub mod vault;

pub use object_id::ObjectId;

/// The syscall wrappers (a crate of their own: the only `unsafe` code).
use qsfs_sys as sys;
