//! TLS set-up for both sides of the ETSI 014 API: PEM files in, rustls
//! configurations out. Both sides authenticate: the KME shows a server
//! certificate, every SAE a client certificate, both signed by one CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

/// Why certificates or keys could not be loaded or combined.
#[derive(Debug, Error)]
pub enum TlsSetupError {
    /// The file could not be read.
    #[error("{}: cannot read the {what}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Which file it is (client certificate, CA certificate, ...).
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds no usable PEM item of the kind needed.
    #[error("{}: the {what} is not a PEM file or holds no {kind}: {detail}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// Which file it is.
        what: &'static str,
        /// The PEM item looked for (CERTIFICATE, PRIVATE KEY).
        kind: &'static str,
        /// What the parser said.
        detail: String,
    },
    /// rustls refused the combination (a key that does not match its
    /// certificate, an unusable CA).
    #[error("TLS set-up with {what} failed: {detail}")]
    Config {
        /// Which files were combined.
        what: String,
        /// What rustls said.
        detail: String,
    },
}

/// The crypto provider both sides use (ring), named explicitly so no
/// process-wide default has to be installed.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|source| TlsSetupError::Read {
        path: path.to_path_buf(),
        what,
        source,
    })
}

/// Every certificate in a PEM file (a chain: leaf first).
pub fn load_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let bytes = read(path, what)?;
    let pem_err = |detail: String| TlsSetupError::Pem {
        path: path.to_path_buf(),
        what,
        kind: "CERTIFICATE",
        detail,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err("no -----BEGIN CERTIFICATE----- block".into()));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_key(path: &Path, what: &'static str) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let bytes = zeroize::Zeroizing::new(read(path, what)?);
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsSetupError::Pem {
        path: path.to_path_buf(),
        what,
        kind: "PRIVATE KEY",
        detail: e.to_string(),
    })
}

/// A root store holding the CA certificates of a PEM file; fails when none
/// of them is usable as a trust anchor.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let certs = load_certs(path, "CA certificate")?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsSetupError::Config {
            what: format!("CA certificate {}", path.display()),
            detail: "no certificate in it can serve as a trust anchor".into(),
        });
    }
    Ok(roots)
}

/// The KME's server configuration: its certificate chain and key, and a
/// client verifier that requires every client to present a certificate
/// signed by the CA (ETSI 014 authenticates SAEs by certificate).
pub fn server_config(
    cert: &Path,
    key: &Path,
    ca: &Path,
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let chain = load_certs(cert, "server certificate")?;
    let key_der = load_key(key, "server key")?;
    let roots = load_roots(ca)?;
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsSetupError::Config {
            what: format!("CA certificate {}", ca.display()),
            detail: e.to_string(),
        })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Config {
            what: "the protocol versions".into(),
            detail: e.to_string(),
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsSetupError::Config {
            what: format!(
                "server certificate {} and key {}",
                cert.display(),
                key.display()
            ),
            detail: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
