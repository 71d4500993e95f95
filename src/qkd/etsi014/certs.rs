//! A throw-away PKI for a local KME: one CA, a server certificate for the
//! KME, and a client certificate per SAE (CN and SAN = the SAE ID), made
//! with rcgen so tests and the README's local set-up need no openssl.
//!
//! Files written by [`write_pki`]:
//! ```text
//! DIR/ca.pem                 CA certificate (give to the KME and to every SAE)
//! DIR/kme.pem, kme-key.pem   KME server certificate and key
//! DIR/SAE.pem, SAE-key.pem   one client certificate and key per SAE ID
//! ```
//! The CA key is not kept: to add an SAE, make a new set.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use thiserror::Error;

/// Why the certificates could not be made or written.
#[derive(Debug, Error)]
pub enum CertError {
    /// rcgen refused (a name it cannot encode, ...).
    #[error("making the {what}: {detail}")]
    Make {
        /// Which certificate.
        what: String,
        /// What rcgen said.
        detail: String,
    },
    /// A file could not be written.
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An SAE ID that cannot be a file name.
    #[error(
        "SAE ID {0:?}: use letters, digits, '.', '_' and '-' only, not ca, kme or *-key (it names the certificate files)"
    )]
    BadSaeId(String),
}

/// One certificate and its private key, PEM.
pub struct Issued {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key (PKCS#8), PEM.
    pub key_pem: String,
}

/// A CA with a server certificate and client certificates.
pub struct TestPki {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The KME's server certificate.
    pub server: Issued,
    /// (SAE ID, client certificate) pairs.
    pub clients: Vec<(String, Issued)>,
}

fn make_err(what: &str) -> impl Fn(rcgen::Error) -> CertError + '_ {
    move |e| CertError::Make {
        what: what.to_string(),
        detail: e.to_string(),
    }
}

/// Makes a CA, a server certificate for `server_names` (IP addresses or
/// host names) and a client certificate per SAE ID.
pub fn make_pki(saes: &[String], server_names: &[String]) -> Result<TestPki, CertError> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(make_err("CA"))?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "qsfs KME test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(make_err("CA key"))?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(make_err("CA"))?;
    let issuer = Issuer::new(ca_params, ca_key);

    let issue = |names: Vec<String>, cn: &str, eku: ExtendedKeyUsagePurpose, what: &str| {
        let mut params = CertificateParams::new(names).map_err(make_err(what))?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![eku];
        let key = KeyPair::generate().map_err(make_err(what))?;
        let cert = params.signed_by(&key, &issuer).map_err(make_err(what))?;
        Ok::<_, CertError>(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    };
    let server = issue(
        server_names.to_vec(),
        "qsfs KME",
        ExtendedKeyUsagePurpose::ServerAuth,
        "KME server certificate",
    )?;
    let mut clients = Vec::new();
    for sae in saes {
        let what = format!("client certificate of SAE {sae}");
        clients.push((
            sae.clone(),
            issue(
                vec![sae.clone()],
                sae,
                ExtendedKeyUsagePurpose::ClientAuth,
                &what,
            )?,
        ));
    }
    Ok(TestPki {
        ca_pem: ca_cert.pem(),
        server,
        clients,
    })
}

fn write(path: PathBuf, text: &str, secret: bool) -> Result<PathBuf, CertError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let _ = secret;
    opts.open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|source| CertError::Write {
            path: path.clone(),
            source,
        })?;
    Ok(path)
}

/// Makes the PKI and writes it into `dir` (created if missing); returns
/// the files written.
pub fn write_pki(
    dir: &Path,
    saes: &[String],
    server_names: &[String],
) -> Result<Vec<PathBuf>, CertError> {
    for sae in saes {
        let ok = !sae.is_empty()
            && !sae.starts_with('.')
            && sae != "ca"
            && sae != "kme"
            && !sae.ends_with("-key")
            && sae
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !ok {
            return Err(CertError::BadSaeId(sae.clone()));
        }
    }
    let pki = make_pki(saes, server_names)?;
    std::fs::create_dir_all(dir).map_err(|source| CertError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files = vec![
        write(dir.join("ca.pem"), &pki.ca_pem, false)?,
        write(dir.join("kme.pem"), &pki.server.cert_pem, false)?,
        write(dir.join("kme-key.pem"), &pki.server.key_pem, true)?,
    ];
    for (sae, issued) in &pki.clients {
        files.push(write(
            dir.join(format!("{sae}.pem")),
            &issued.cert_pem,
            false,
        )?);
        files.push(write(
            dir.join(format!("{sae}-key.pem")),
            &issued.key_pem,
            true,
        )?);
    }
    Ok(files)
}
