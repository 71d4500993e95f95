//! `Etsi014Source`: link keys from a KME over the ETSI GS QKD 014 API.
//!
//! One source serves one end of one link. The KME API has no direction
//! field: it keeps keys per (master SAE, slave SAE) pair, and the SAE that
//! calls `enc_keys` is the master of those keys. So each end of a qsfs link
//! calls `enc_keys` (naming the peer as slave) for the direction it sends
//! in, and `dec_keys` (naming the peer as master) with the key IDs it finds
//! in received frames. `End` and `Direction` only check that the caller
//! asks for its own sending or receiving direction.
//!
//! `next_key` fetches a small batch (default 8) per request and hands the
//! keys out one at a time; unused keys live only in memory, zeroized on
//! drop, and are lost (never reused) if the process ends.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

use super::tls::{self, TlsSetupError};
use super::types::{ErrorBody, KeyContainer, KeyIdItem, KeyIds, KeyRequest, Status};
use crate::qkd::{Direction, End, KEY_LEN, KeyCounts, KeyError, KeyId, KeySource, LinkKey};

/// Keys fetched per `enc_keys` request unless configured otherwise.
pub const DEFAULT_BATCH: u32 = 8;
/// Request timeout unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body accepted from a KME.
const MAX_BODY: u64 = 4 << 20;

/// Where and as whom one end of a link talks to its KME.
#[derive(Debug, Clone)]
pub struct Etsi014Config {
    /// Link name (for messages).
    pub link: String,
    /// Which end of the link this process is.
    pub end: End,
    /// The KME's base URL, `https://host:port`.
    pub kme_url: String,
    /// This end's SAE ID (what its client certificate names).
    pub own_sae: String,
    /// The other end's SAE ID.
    pub peer_sae: String,
    /// Client certificate chain (PEM).
    pub cert: PathBuf,
    /// Client private key (PEM).
    pub key: PathBuf,
    /// CA certificate that signed the KME's server certificate (PEM).
    pub ca: PathBuf,
    /// Per-request timeout (connect, TLS and answer).
    pub timeout: Duration,
    /// Keys fetched per `enc_keys` request.
    pub batch: u32,
}

impl Etsi014Config {
    /// A configuration with the default timeout and batch size.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        link: impl Into<String>,
        end: End,
        kme_url: impl Into<String>,
        own_sae: impl Into<String>,
        peer_sae: impl Into<String>,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        ca: impl Into<PathBuf>,
    ) -> Etsi014Config {
        Etsi014Config {
            link: link.into(),
            end,
            kme_url: kme_url.into(),
            own_sae: own_sae.into(),
            peer_sae: peer_sae.into(),
            cert: cert.into(),
            key: key.into(),
            ca: ca.into(),
            timeout: DEFAULT_TIMEOUT,
            batch: DEFAULT_BATCH,
        }
    }
}

/// Why an `Etsi014Source` could not be set up.
#[derive(Debug, Error)]
pub enum Etsi014Error {
    /// A certificate, key or CA file is unusable.
    #[error("link {link}: KME client set-up: {source}")]
    Tls {
        /// Link name.
        link: String,
        /// What failed.
        source: TlsSetupError,
    },
    /// The configuration is inconsistent.
    #[error("link {link}: KME client set-up: {detail}")]
    Config {
        /// Link name.
        link: String,
        /// What is wrong and how to fix it.
        detail: String,
    },
}

/// One end of a link, getting its keys from a KME.
pub struct Etsi014Source {
    config: Etsi014Config,
    base: String,
    agent: ureq::Agent,
    buffer: Mutex<VecDeque<LinkKey>>,
    used: AtomicU64,
}

impl std::fmt::Debug for Etsi014Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Etsi014Source({})", self.describe())
    }
}

fn arrow(dir: Direction) -> &'static str {
    match dir {
        Direction::AToB => "A -> B",
        Direction::BToA => "B -> A",
    }
}

/// Percent-encodes an SAE ID for a URL path segment.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Etsi014Source {
    /// Loads the certificates and prepares the HTTPS client; contacts no
    /// KME yet (the first key or status request does).
    pub fn new(config: Etsi014Config) -> Result<Etsi014Source, Etsi014Error> {
        let link = config.link.clone();
        let cfg_err = |detail: String| Etsi014Error::Config {
            link: link.clone(),
            detail,
        };
        let base = config.kme_url.trim_end_matches('/').to_string();
        let Some(rest) = base.strip_prefix("https://") else {
            return Err(cfg_err(format!(
                "KME URL {:?} must start with https:// (ETSI 014 runs over TLS)",
                config.kme_url
            )));
        };
        if rest.is_empty() || rest.contains('/') {
            return Err(cfg_err(format!(
                "KME URL {:?} must be https://host:port without a path \
                 (qsfs adds /api/v1/keys/...)",
                config.kme_url
            )));
        }
        if config.own_sae.is_empty()
            || config.peer_sae.is_empty()
            || config.own_sae == config.peer_sae
        {
            return Err(cfg_err(format!(
                "own SAE ID {:?} and peer SAE ID {:?} must be set and differ",
                config.own_sae, config.peer_sae
            )));
        }
        if config.batch == 0 {
            return Err(cfg_err("batch must be at least 1 key".into()));
        }
        let tls_err = |source| Etsi014Error::Tls {
            link: link.clone(),
            source,
        };
        let chain = tls::load_certs(&config.cert, "client certificate").map_err(tls_err)?;
        let key = tls::load_key(&config.key, "client key").map_err(tls_err)?;
        // Validate the CA here: ureq silently skips unusable roots.
        tls::load_roots(&config.ca).map_err(tls_err)?;
        let ca = tls::load_certs(&config.ca, "CA certificate").map_err(tls_err)?;

        let chain: Vec<ureq::tls::Certificate<'static>> = chain
            .iter()
            .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        drop(key);
        // ureq takes the key as PEM; the file was just checked by load_key.
        let key_pem = Zeroizing::new(std::fs::read(&config.key).map_err(|source| {
            tls_err(TlsSetupError::Read {
                path: config.key.clone(),
                what: "client key",
                source,
            })
        })?);
        let key = ureq::tls::PrivateKey::from_pem(&key_pem).map_err(|e| {
            tls_err(TlsSetupError::Pem {
                path: config.key.clone(),
                what: "client key",
                kind: "PRIVATE KEY",
                detail: e.to_string(),
            })
        })?;
        let roots: Vec<ureq::tls::Certificate<'static>> = ca
            .iter()
            .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        let tls_config = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(tls::provider())
            .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
            .client_cert(Some(ureq::tls::ClientCert::new_with_certs(&chain, key)))
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls_config)
            .http_status_as_error(false)
            .timeout_global(Some(config.timeout))
            .max_redirects(0)
            .build()
            .into();
        Ok(Etsi014Source {
            base,
            config,
            agent,
            buffer: Mutex::new(VecDeque::new()),
            used: AtomicU64::new(0),
        })
    }

    /// The configuration this source was made from.
    pub fn config(&self) -> &Etsi014Config {
        &self.config
    }

    fn url(&self, master_or_slave: &str, op: &str) -> String {
        format!(
            "{}/api/v1/keys/{}/{op}",
            self.base,
            path_segment(master_or_slave)
        )
    }

    fn source_err(&self, detail: String) -> KeyError {
        KeyError::Source {
            link: self.config.link.clone(),
            source_name: format!("KME {}", self.base),
            detail,
        }
    }

    /// Sends one request; returns the status and the body (wiped on drop:
    /// it may hold key material).
    fn request(
        &self,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Zeroizing<Vec<u8>>), KeyError> {
        let result = match body {
            Some(body) => {
                let body = Zeroizing::new(body);
                self.agent
                    .post(url)
                    .header("Content-Type", "application/json")
                    .send(&body[..])
            }
            None => self.agent.get(url).call(),
        };
        let mut response = result.map_err(|e| self.transport_error(url, e))?;
        let status = response.status().as_u16();
        let reader = response.body_mut().with_config().limit(MAX_BODY).reader();
        let bytes = read_wiped(reader).map_err(|e| self.transport_error(url, e.into()))?;
        Ok((status, bytes))
    }

    /// Turns a transport failure into a message that says what to check.
    fn transport_error(&self, url: &str, e: ureq::Error) -> KeyError {
        let detail = match e {
            ureq::Error::Rustls(ref t) => self.tls_message(t),
            ureq::Error::Io(ref io) => {
                match io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    Some(t) => self.tls_message(t),
                    None => format!(
                        "KME unreachable at {url}: {io}; check that the KME runs and \
                         the URL {} is right",
                        self.base
                    ),
                }
            }
            ureq::Error::Timeout(t) => format!(
                "KME at {url} did not answer within {:?} ({t}); check that it runs \
                 and is reachable",
                self.config.timeout
            ),
            ureq::Error::HostNotFound => {
                format!("KME host not found: {}; check the KME URL", self.base)
            }
            ureq::Error::ConnectionFailed => format!(
                "cannot connect to the KME at {}; check that it runs and the URL is right",
                self.base
            ),
            other => format!("request {url} failed: {other}"),
        };
        self.source_err(detail)
    }

    fn tls_message(&self, e: &rustls::Error) -> String {
        use rustls::AlertDescription as A;
        match e {
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            ) => format!(
                "TLS: the KME's server certificate does not name the host of {} ({e}); \
                 use the host name or address the certificate was made for",
                self.base
            ),
            rustls::Error::InvalidCertificate(_) => format!(
                "TLS: the KME's server certificate is not trusted ({e}); it must be \
                 signed by the CA in {}",
                self.config.ca.display()
            ),
            rustls::Error::AlertReceived(
                A::CertificateRequired
                | A::UnknownCA
                | A::BadCertificate
                | A::CertificateUnknown
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::UnsupportedCertificate
                | A::AccessDenied
                | A::DecryptError
                | A::HandshakeFailure,
            ) => format!(
                "TLS: the KME refused the client certificate {} ({e}); it must be \
                 signed by a CA the KME trusts",
                self.config.cert.display()
            ),
            other => format!("TLS with the KME at {} failed: {other}", self.base),
        }
    }

    /// The KME's message from an ETSI error body, or the raw text.
    fn kme_message(body: &[u8]) -> String {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(e) if e.details.is_empty() => e.message,
            Ok(e) => format!("{} ({})", e.message, serde_json::Value::Array(e.details)),
            Err(_) => String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
        }
    }

    fn exhausted(&self, message: &str) -> KeyError {
        KeyError::Exhausted {
            link: self.config.link.clone(),
            detail: format!(
                "KME {}, SAE {} -> {}: {message}",
                self.base, self.config.own_sae, self.config.peer_sae
            ),
            remedy: format!(
                "the QKD link behind the KME must deliver more key (qsfs never \
                 refills a KME); see {}",
                self.url(&self.config.peer_sae, "status")
            ),
        }
    }

    /// A non-200 answer that is no special case.
    fn http_error(&self, url: &str, status: u16, body: &[u8]) -> KeyError {
        let message = Self::kme_message(body);
        if status == 401 {
            return self.source_err(format!(
                "the KME refused SAE {} (401 Unauthorized: {message}); the client \
                 certificate {} must name that SAE ID in its CN or SAN, and the KME must \
                 know both SAE IDs",
                self.config.own_sae,
                self.config.cert.display()
            ));
        }
        self.source_err(format!("{url} answered HTTP {status}: {message}"))
    }

    fn check_direction(&self, dir: Direction, sending: bool) -> Result<(), KeyError> {
        let ours = if sending {
            self.config.end.sends()
        } else {
            self.config.end.sends().reverse()
        };
        if dir == ours {
            return Ok(());
        }
        let (verb, call) = if sending {
            ("send", "enc_keys")
        } else {
            ("receive", "dec_keys")
        };
        Err(self.source_err(format!(
            "asked for a key to {verb} {}, but this is end {:?} of the link ({}), \
             which {verb}s {}: an SAE calls {call} only for its own direction",
            arrow(dir),
            self.config.end,
            self.config.own_sae,
            arrow(ours)
        )))
    }

    /// Decodes a key container into link keys.
    fn decode(&self, body: &[u8]) -> Result<Vec<LinkKey>, KeyError> {
        decode_keys(body).map_err(|detail| self.source_err(detail))
    }

    /// Asks the KME for a batch of keys with the peer as slave.
    fn fetch_batch(&self) -> Result<Vec<LinkKey>, KeyError> {
        let url = self.url(&self.config.peer_sae, "enc_keys");
        let request = KeyRequest {
            number: Some(u64::from(self.config.batch)),
            size: Some((KEY_LEN * 8) as u64),
            ..KeyRequest::default()
        };
        let body = serde_json::to_vec(&request)
            .map_err(|e| self.source_err(format!("encoding the key request: {e}")))?;
        let (status, body) = self.request(&url, Some(body))?;
        match status {
            200 => {}
            503 => return Err(self.exhausted(&Self::kme_message(&body))),
            400 => {
                let message = Self::kme_message(&body);
                let lower = message.to_lowercase();
                if ["exhaust", "not enough", "insufficient", "no more", "no key"]
                    .iter()
                    .any(|w| lower.contains(w))
                {
                    return Err(self.exhausted(&message));
                }
                return Err(self.http_error(&url, status, &body));
            }
            _ => return Err(self.http_error(&url, status, &body)),
        }
        let keys = self.decode(&body)?;
        if keys.is_empty() {
            return Err(self.exhausted("it answered with no keys"));
        }
        Ok(keys)
    }
}

impl KeySource for Etsi014Source {
    fn link(&self) -> &str {
        &self.config.link
    }

    fn describe(&self) -> String {
        format!(
            "KME {} (SAE {} with peer {})",
            self.base, self.config.own_sae, self.config.peer_sae
        )
    }

    fn next_key(&self, dir: Direction) -> Result<LinkKey, KeyError> {
        self.check_direction(dir, true)?;
        let mut buffer = self
            .buffer
            .lock()
            .map_err(|_| self.source_err("key buffer lock poisoned".into()))?;
        if buffer.is_empty() {
            buffer.extend(self.fetch_batch()?);
        }
        let key = buffer
            .pop_front()
            .ok_or_else(|| self.exhausted("it answered with no keys"))?;
        self.used.fetch_add(1, Ordering::Relaxed);
        Ok(key)
    }

    fn take_key(&self, dir: Direction, id: &KeyId) -> Result<LinkKey, KeyError> {
        self.check_direction(dir, false)?;
        let url = self.url(&self.config.peer_sae, "dec_keys");
        let request = KeyIds {
            key_ids: vec![KeyIdItem {
                key_id: id.to_uuid_string(),
                key_id_extension: None,
            }],
            key_ids_extension: None,
        };
        let body = serde_json::to_vec(&request)
            .map_err(|e| self.source_err(format!("encoding the key ID request: {e}")))?;
        let (status, body) = self.request(&url, Some(body))?;
        if status == 400 {
            let lower = Self::kme_message(&body).to_lowercase();
            let link = self.config.link.clone();
            if lower.contains("already") {
                return Err(KeyError::Used { link, id: *id });
            }
            if lower.contains("unknown") {
                return Err(KeyError::Unknown { link, id: *id });
            }
        }
        if status != 200 {
            return Err(self.http_error(&url, status, &body));
        }
        let mut keys = self.decode(&body)?;
        match keys.iter().position(|k| k.id == *id) {
            Some(i) if keys.len() == 1 => {
                self.used.fetch_add(1, Ordering::Relaxed);
                Ok(keys.swap_remove(i))
            }
            _ => Err(self.source_err(format!(
                "asked for key {id}, the KME answered with {} other key(s)",
                keys.len()
            ))),
        }
    }

    fn counts(&self) -> Result<KeyCounts, KeyError> {
        let url = self.url(&self.config.peer_sae, "status");
        let (status, body) = self.request(&url, None)?;
        if status != 200 {
            return Err(self.http_error(&url, status, &body));
        }
        let buffered = self.buffer.lock().map(|b| b.len() as u64).unwrap_or(0);
        let used = self.used.load(Ordering::Relaxed);
        key_counts(&body, buffered, used).map_err(|e| self.source_err(format!("{url}: {e}")))
    }

    fn refills(&self) -> bool {
        false
    }
}

/// Reads a whole body into a buffer that leaves no copy of it behind.
///
/// A body of `enc_keys` or `dec_keys` holds keys as base64 text.
/// `read_to_end` grows its `Vec` by reallocating, and every buffer it
/// outgrows is freed with those keys still in it; here each larger buffer
/// is a fresh [`Zeroizing`] one and the outgrown one is wiped as it drops.
fn read_wiped(mut body: impl std::io::Read) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(vec![0u8; 16 << 10]);
    let mut len = 0;
    loop {
        if len == buf.len() {
            let mut bigger = Zeroizing::new(vec![0u8; buf.len() * 2]);
            bigger[..len].copy_from_slice(&buf[..len]);
            buf = bigger;
        }
        match body.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    // Shrinking in place (truncate) moves nothing: the tail is wiped first.
    buf[len..].zeroize();
    buf.truncate(len);
    Ok(buf)
}

/// Decodes a KME's key container (the body of `enc_keys`/`dec_keys`) into
/// link keys. The error says what is wrong with the body; the caller adds
/// which KME and link it came from.
pub(crate) fn decode_keys(body: &[u8]) -> Result<Vec<LinkKey>, String> {
    let container: KeyContainer =
        serde_json::from_slice(body).map_err(|e| format!("the KME sent no key container: {e}"))?;
    let mut keys = Vec::with_capacity(container.keys.len());
    for item in &container.keys {
        let id = KeyId::parse(&item.key_id)
            .ok_or_else(|| format!("the KME named a key {:?}, which is not a UUID", item.key_id))?;
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(item.key.as_bytes())
                // Not the decoder's message: it can quote a symbol of the key.
                .map_err(|_| format!("key {id}: its text is not valid base64"))?,
        );
        if bytes.len() != KEY_LEN {
            return Err(format!(
                "key {id} has {} bits; qsfs needs {}-bit keys (size {})",
                bytes.len() * 8,
                KEY_LEN * 8,
                KEY_LEN * 8
            ));
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&bytes);
        keys.push(LinkKey { id, key });
    }
    Ok(keys)
}

/// The key counts from a KME's status body, with `buffered` keys fetched
/// but not yet handed out and `used` keys handed out by this process.
/// The KME's count is a peer's number: the sums saturate instead of
/// overflowing (a panic in checked builds, a wrong count otherwise).
pub(crate) fn key_counts(body: &[u8], buffered: u64, used: u64) -> Result<KeyCounts, String> {
    let s: Status =
        serde_json::from_slice(body).map_err(|e| format!("not an ETSI 014 status: {e}"))?;
    let left = s.stored_key_count.saturating_add(buffered);
    Ok(KeyCounts {
        left,
        used,
        total: left.saturating_add(used),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::{key_counts, path_segment, read_wiped};
    use crate::qkd::etsi014::types::{KeyContainer, KeyItem};
    use zeroize::{ZeroizeOnDrop, Zeroizing};

    /// The types that hold a KME's keys as text or bytes wipe them when
    /// dropped (checked when this compiles).
    #[test]
    fn key_text_and_bytes_are_wiped_on_drop() {
        fn wiped<T: ZeroizeOnDrop>() {}
        wiped::<KeyItem>();
        wiped::<Zeroizing<Vec<u8>>>();
        wiped::<crate::qkd::LinkKey>();
        // A container's keys are wiped one by one as it drops.
        let _: fn(KeyContainer) -> Vec<KeyItem> = |c| c.keys;
    }

    /// A body read in small pieces comes back whole, however many times
    /// the buffer grew, and the limit still applies.
    #[test]
    fn bodies_read_whole_through_growing_buffers() {
        struct Drip<'a>(&'a [u8]);
        impl std::io::Read for Drip<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(1000);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        for len in [0usize, 1, 16 << 10, (16 << 10) + 1, 100_000] {
            let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let got = read_wiped(Drip(&body)).unwrap();
            assert_eq!(&got[..], &body[..]);
        }
        let mut failing = std::io::Read::chain(&b"abc"[..], FailingRead);
        assert!(read_wiped(&mut failing).is_err());
    }

    struct FailingRead;
    impl std::io::Read for FailingRead {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("cut"))
        }
    }

    #[test]
    fn sae_ids_are_escaped_in_paths() {
        assert_eq!(path_segment("sae-A_1.x~"), "sae-A_1.x~");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }

    /// A KME's `stored_key_count` is a peer's number: near `u64::MAX` it
    /// must not overflow the sums (a panic with overflow checks, a count
    /// of nearly zero keys left without).
    #[test]
    fn huge_stored_key_count_saturates() {
        let body = r#"{"source_KME_ID":"a","target_KME_ID":"b","master_SAE_ID":"x","slave_SAE_ID":"y","key_size":256,"stored_key_count":18446744073709551615,"max_key_count":1,"max_key_per_request":1,"max_key_size":256,"min_key_size":256,"max_SAE_ID_count":0}"#;
        let c = key_counts(body.as_bytes(), 3, 5).unwrap();
        assert_eq!(c.left, u64::MAX);
        assert_eq!(c.used, 5);
        assert_eq!(c.total, u64::MAX);
        let small = body.replace("18446744073709551615", "7");
        let c = key_counts(small.as_bytes(), 3, 5).unwrap();
        assert_eq!((c.left, c.used, c.total), (10, 5, 15));
        assert!(key_counts(b"not json", 0, 0).is_err());
    }
}
