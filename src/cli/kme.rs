//! `qsfs kme ...`: a local ETSI GS QKD 014 key manager (KME) for tests and
//! labs without QKD hardware, and the certificates it needs.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use crate::qkd::KeySource;
use crate::qkd::etsi014::{self, SaeMap};

#[derive(Subcommand, Debug)]
pub enum KmeCommand {
    /// Serve a key pool file through the ETSI GS QKD 014 API over HTTPS.
    ///
    /// Clients authenticate with certificates signed by --ca; a client's
    /// certificate CN or SAN must be one of the two --sae IDs (else 401).
    /// The SAE that calls enc_keys is the master of those keys: end A's SAE
    /// draws A->B keys, end B's SAE B->A keys; its peer fetches each key
    /// once with dec_keys. Prints `listening on ADDR` once ready.
    ///
    /// Example: qsfs kme certs --out pki --sae vault --sae node1;
    /// qsfs kme serve --pool node1.kme.pool --listen 127.0.0.1:8443
    /// --cert pki/kme.pem --key pki/kme-key.pem --ca pki/ca.pem
    /// --sae vault=A --sae node1=B
    Serve(ServeArgs),
    /// Make a throw-away CA, a KME server certificate and one client
    /// certificate per SAE (CN and SAN = the SAE ID), as PEM files in DIR:
    /// ca.pem, kme.pem, kme-key.pem, SAE.pem, SAE-key.pem.
    Certs(CertsArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Key pool file to serve (drawn in both directions).
    #[arg(long, value_name = "FILE", required_unless_present = "memory_keys")]
    pool: Option<PathBuf>,
    /// Testing without a pool file: serve N random keys per direction, held
    /// in memory only.
    #[arg(long, value_name = "N", conflicts_with = "pool")]
    memory_keys: Option<usize>,
    /// Address to listen on (port 0: any free port, printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    listen: String,
    /// KME server certificate chain (PEM).
    #[arg(long, value_name = "PEM")]
    cert: PathBuf,
    /// KME server private key (PEM).
    #[arg(long, value_name = "PEM")]
    key: PathBuf,
    /// CA certificate that signs the SAEs' client certificates (PEM).
    #[arg(long, value_name = "PEM")]
    ca: PathBuf,
    /// An SAE of the link and its end: SAE_ID=A (vault side) or SAE_ID=B
    /// (node side). Give both.
    #[arg(long = "sae", value_name = "SAE_ID=END", required = true)]
    saes: Vec<String>,
    /// Link name used in messages.
    #[arg(long, default_value = "kme")]
    link: String,
}

#[derive(Args, Debug)]
pub struct CertsArgs {
    /// Folder for the PEM files (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// An SAE ID to make a client certificate for (repeat).
    #[arg(long = "sae", value_name = "SAE_ID", required = true)]
    saes: Vec<String>,
    /// A name or IP address the KME's server certificate is valid for
    /// (repeat; default 127.0.0.1 and localhost).
    #[arg(long = "server-name", value_name = "NAME")]
    server_names: Vec<String>,
}

pub fn run(c: KmeCommand) -> Result<i32> {
    match c {
        KmeCommand::Serve(a) => serve(a),
        KmeCommand::Certs(a) => certs(a),
    }
}

/// Opens a key pool file for the KME, drawing in both directions.
fn open_pool(path: &Path, link: &str) -> Result<Arc<dyn KeySource>> {
    // The KME hands each key out itself (enc_keys draws it, dec_keys gives
    // the held copy to the other side), so it draws in both directions.
    let pool = crate::qkd::pool::PoolFile::open_both(path)?;
    if !link.is_empty() && KeySource::link(&pool) != link {
        tracing::info!(
            "serving the pool of link {:?} (--link {link:?} is only a label)",
            KeySource::link(&pool)
        );
    }
    Ok(Arc::new(pool))
}

fn serve(a: ServeArgs) -> Result<i32> {
    let saes = SaeMap::parse(&a.saes).map_err(anyhow::Error::msg)?;
    let tls = etsi014::tls::server_config(&a.cert, &a.key, &a.ca)?;
    let source: Arc<dyn KeySource> = match (&a.pool, a.memory_keys) {
        (Some(pool), _) => open_pool(pool, &a.link)?,
        (None, Some(n)) => Arc::new(
            etsi014::testkeys::MemoryKeys::random(&a.link, n)
                .context("the OS random source failed")?,
        ),
        (None, None) => bail!("name the keys to serve: --pool FILE"),
    };
    let listener = TcpListener::bind(&a.listen)
        .with_context(|| format!("KME: cannot listen on {}", a.listen))?;
    let addr = listener
        .local_addr()
        .with_context(|| format!("KME: listening on {}", a.listen))?;
    println!("listening on {addr}");
    std::io::stdout().flush().ok();
    etsi014::serve(source, saes, tls, listener)?;
    Ok(0)
}

fn certs(a: CertsArgs) -> Result<i32> {
    let names = if a.server_names.is_empty() {
        vec!["127.0.0.1".to_string(), "localhost".to_string()]
    } else {
        a.server_names
    };
    for f in etsi014::certs::write_pki(&a.out, &a.saes, &names)? {
        println!("{}", f.display());
    }
    Ok(0)
}
