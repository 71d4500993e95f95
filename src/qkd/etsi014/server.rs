//! The KME's HTTPS shell: TLS with required client certificates (rustls),
//! HTTP/1.1 (hyper on a small tokio runtime), and the caller's SAE ID taken
//! from its certificate. Everything else is in `kme` and `routes`.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;
use thiserror::Error;
use tokio::sync::oneshot;

use super::kme::{Caller, Kme, Reply, SaeMap};
use super::routes;
use crate::qkd::KeySource;

/// Largest request body accepted.
const MAX_REQUEST: usize = 1 << 20;
/// Time a client gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The KME ID reported in `status` unless one is given.
pub const DEFAULT_KME_ID: &str = "qsfs-kme";

/// Why the KME server could not run.
#[derive(Debug, Error)]
pub enum KmeError {
    /// Setting up the listener or the runtime failed.
    #[error("KME server on {addr}: {what}: {source}")]
    Io {
        /// The listen address (or "?" when unknown).
        addr: String,
        /// What was being done.
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The names a client certificate shows: CN and SAN (DNS, URI, e-mail).
fn cert_names(der: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            use x509_parser::extensions::GeneralName as G;
            match name {
                G::DNSName(s) | G::URI(s) | G::RFC822Name(s) => names.push((*s).to_string()),
                _ => {}
            }
        }
    }
    let mut unique = Vec::with_capacity(names.len());
    for n in names {
        if !unique.contains(&n) {
            unique.push(n);
        }
    }
    unique
}

/// Which configured SAE a verified client certificate belongs to.
pub fn identify(saes: &SaeMap, certs: Option<&[CertificateDer<'_>]>) -> Caller {
    let names = certs
        .and_then(|c| c.first())
        .map(cert_names)
        .unwrap_or_default();
    let mut matched: Vec<&String> = names.iter().filter(|n| saes.end_of(n).is_some()).collect();
    matched.dedup();
    match matched.as_slice() {
        [one] => Caller::Sae((*one).clone()),
        [] => Caller::Unknown(if names.is_empty() {
            "no CN or SAN".into()
        } else {
            format!("names {}", names.join(", "))
        }),
        _ => Caller::Unknown(format!(
            "names both SAEs ({}), which is ambiguous",
            names.join(", ")
        )),
    }
}

fn response(reply: Reply) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(reply.body.to_vec())));
    *r.status_mut() = hyper::StatusCode::from_u16(reply.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn handle(
    kme: Arc<Kme>,
    caller: Caller,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let body = match Limited::new(req.into_body(), MAX_REQUEST).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return Ok(response(Reply::error(
                400,
                format!("reading the request body failed (limit {MAX_REQUEST} bytes): {e}"),
            )));
        }
    };
    // The key source may touch the disk: keep it off the async thread.
    let reply = tokio::task::spawn_blocking(move || {
        match routes::parse(&method, &path, query.as_deref(), &body) {
            Ok(call) => {
                let reply = kme.handle(&caller, call);
                tracing::info!("KME: {caller:?} {method} {path} -> {}", reply.status);
                reply
            }
            Err(reply) => reply,
        }
    })
    .await
    .unwrap_or_else(|e| Reply::error(503, format!("KME request handler failed: {e}")));
    Ok(response(reply))
}

async fn run(
    kme: Arc<Kme>,
    tls: Arc<ServerConfig>,
    listener: TcpListener,
    mut shutdown: oneshot::Receiver<()>,
) -> Result<(), KmeError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let io_err = |what, source| KmeError::Io {
        addr: addr.clone(),
        what,
        source,
    };
    listener
        .set_nonblocking(true)
        .map_err(|e| io_err("making the listener non-blocking", e))?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| io_err("registering the listener", e))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: wait, do not spin.
                    tracing::warn!("KME on {addr}: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let kme = kme.clone();
        tokio::spawn(async move {
            let handshake = acceptor.accept(tcp).into_fallible();
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(s)) => s,
                Ok(Err((e, tcp))) => {
                    tracing::warn!("KME: TLS handshake with {peer} refused: {e}");
                    linger(tcp).await;
                    return;
                }
                Err(_) => {
                    tracing::warn!("KME: TLS handshake with {peer} timed out");
                    return;
                }
            };
            let caller = identify(kme.saes(), tls.get_ref().1.peer_certificates());
            if let Caller::Unknown(names) = &caller {
                tracing::warn!("KME: client {peer} is no configured SAE: its certificate {names}");
            }
            let service =
                hyper::service::service_fn(move |req| handle(kme.clone(), caller.clone(), req));
            // The timer enables hyper's 30 s limit on reading a request head.
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await
            {
                tracing::debug!("KME: connection with {peer} ended: {e}");
            }
        });
    }
}

/// After a refused handshake (the alert is already sent): stop writing
/// and read what the client still sends, so the socket is not reset. In
/// TLS 1.3 the client sends its request right after its certificate; were
/// the socket closed at once, the reset would destroy the alert and the
/// client could only report a broken pipe instead of "certificate refused".
async fn linger(mut tcp: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp.shutdown().await;
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

fn runtime(addr: &str) -> Result<tokio::runtime::Runtime, KmeError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| KmeError::Io {
            addr: addr.to_string(),
            what: "starting the async runtime",
            source,
        })
}

/// Serves `source` through the ETSI 014 API on `listener` until the
/// process ends. `tls` must require client certificates
/// (`tls::server_config` does).
pub fn serve(
    source: Arc<dyn KeySource>,
    saes: SaeMap,
    tls: Arc<ServerConfig>,
    listener: TcpListener,
) -> Result<(), KmeError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let kme = Arc::new(Kme::new(source, saes, DEFAULT_KME_ID));
    let (_keep, rx) = oneshot::channel();
    runtime(&addr)?.block_on(run(kme, tls, listener, rx))
}

/// A KME server running on its own thread; stopped by `shutdown` or drop.
pub struct KmeHandle {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), KmeError>>>,
}

impl KmeHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL clients use: `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Stops accepting, drops open connections and waits for the thread.
    pub fn shutdown(mut self) -> Result<(), KmeError> {
        self.stop_now()
    }

    fn stop_now(&mut self) -> Result<(), KmeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(KmeError::Io {
                addr: self.addr.to_string(),
                what: "the server thread",
                source: std::io::Error::other("panicked"),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for KmeHandle {
    fn drop(&mut self) {
        let _ = self.stop_now();
    }
}

/// Starts a KME server on a background thread (tests, in-process use).
pub fn spawn(
    source: Arc<dyn KeySource>,
    saes: SaeMap,
    tls: Arc<ServerConfig>,
    listener: TcpListener,
) -> Result<KmeHandle, KmeError> {
    let addr = listener.local_addr().map_err(|source| KmeError::Io {
        addr: "?".into(),
        what: "reading the listen address",
        source,
    })?;
    let rt = runtime(&addr.to_string())?;
    let kme = Arc::new(Kme::new(source, saes, DEFAULT_KME_ID));
    let (tx, rx) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("qsfs-kme".into())
        .spawn(move || {
            let result = rt.block_on(run(kme, tls, listener, rx));
            rt.shutdown_timeout(Duration::from_secs(1));
            result
        })
        .map_err(|source| KmeError::Io {
            addr: addr.to_string(),
            what: "starting the server thread",
            source,
        })?;
    Ok(KmeHandle {
        addr,
        stop: Some(tx),
        thread: Some(thread),
    })
}
