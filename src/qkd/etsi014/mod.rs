//! ETSI GS QKD 014 V1.1.1: link keys from a key manager (KME) over HTTPS,
//! both sides.
//!
//! - [`Etsi014Source`] (client): a [`KeySource`](crate::qkd::KeySource) for
//!   one end of a link. It calls `enc_keys` for its sending direction and
//!   `dec_keys` with the key IDs named by the peer's frames, authenticated
//!   by a client certificate.
//! - [`serve`] / [`spawn`] (KME): serves any `KeySource` (a key pool file in
//!   `qsfs kme serve`) through the same API to the two SAEs of one link,
//!   each key delivered once to each side.
//! - [`certs`]: a throw-away CA with server and client certificates.
//!
//! Direction mapping. The API knows no directions, only (master SAE, slave
//! SAE) pairs: the SAE that calls `enc_keys` is the master of those keys.
//! With end A's SAE as master, keys flow A -> B; with end B's, B -> A. So
//! the two directions never share a key, as `qkd` requires.
//!
//! A local set-up without QKD hardware:
//!
//! ```text
//! qsfs kme certs --out pki --sae vault --sae node1
//! qsfs kme serve --pool FILE --listen 127.0.0.1:8443 \
//!     --cert pki/kme.pem --key pki/kme-key.pem --ca pki/ca.pem \
//!     --sae vault=A --sae node1=B
//! ```
//!
//! then each end makes an [`Etsi014Source`] with `https://127.0.0.1:8443`,
//! its own SAE ID and certificate (`pki/vault.pem`, `pki/vault-key.pem`),
//! the peer's SAE ID and `pki/ca.pem`.
//!
//! Module map: `types` (the JSON formats), `tls` (PEM -> rustls),
//! `client`, `kme` (the KME's bookkeeping, no I/O), `routes` (HTTP request
//! -> call, no I/O), `server` (TLS + HTTP shell), `certs`, `testkeys`.

pub mod certs;
pub(crate) mod client;
mod kme;
pub(crate) mod routes;
mod server;
#[doc(hidden)]
pub mod testkeys;
pub mod tls;
pub mod types;

pub use client::{DEFAULT_BATCH, DEFAULT_TIMEOUT, Etsi014Config, Etsi014Error, Etsi014Source};
pub use kme::{Call, Caller, Kme, MAX_KEYS_PER_REQUEST, Reply, SaeMap};
pub use server::{DEFAULT_KME_ID, KmeError, KmeHandle, identify, serve, spawn};

use std::path::PathBuf;

/// A KME that hands out the keys of a link (ETSI GS QKD 014).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmeConfig {
    /// `https://host:port` of the KME.
    pub url: String,
    /// This end's SAE ID (its client certificate names it).
    pub sae_id: String,
    /// The node end's SAE ID.
    pub peer_sae_id: String,
    /// Client certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA that signed the KME's certificate (PEM).
    pub ca: PathBuf,
}

impl KmeConfig {
    /// The key source of end `end` of link `link`, with relative paths
    /// taken from `base`.
    pub fn source(
        &self,
        link: &str,
        end: crate::qkd::End,
        base: &std::path::Path,
    ) -> Result<Etsi014Source, Etsi014Error> {
        Etsi014Source::new(Etsi014Config::new(
            link.to_string(),
            end,
            self.url.clone(),
            self.sae_id.clone(),
            self.peer_sae_id.clone(),
            base.join(&self.cert),
            base.join(&self.key),
            base.join(&self.ca),
        ))
    }
}
