//! The KME's bookkeeping, without HTTP: which SAE is which end of the
//! link, which delivered keys the slave still has to fetch, and the answer
//! (status code and JSON body) to each ETSI 014 call.
//!
//! Delivery rule: `enc_keys` from master M for slave S draws the next
//! unused keys of direction M -> S from the key source and keeps a copy as
//! owed to S. `dec_keys` from S naming M hands each owed key over once and
//! forgets it. Asking twice, asking for an unknown ID, or the wrong SAE
//! asking gets 400 with an ETSI error body. Owed keys live only in memory:
//! a KME restart loses them (the source has already counted them used, so
//! a key is lost, never delivered twice).
//!
//! One deviation from the letter of the spec, on purpose: when the source
//! runs dry in the middle of an `enc_keys` batch, the keys already drawn
//! are returned (fewer than asked) instead of being thrown away; with none
//! drawn the answer is 503.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use base64::Engine;
use zeroize::Zeroizing;

use super::types::{ErrorBody, KeyContainer, KeyIds, KeyItem, KeyRequest, Status};
use crate::qkd::{End, KEY_LEN, KeyError, KeyId, KeySource, LinkKey};

/// Most keys one request may ask for or name.
pub const MAX_KEYS_PER_REQUEST: u64 = 128;
/// Most keys delivered to masters and not yet fetched by their slaves.
pub const MAX_OWED: usize = 1 << 20;
/// Most delivered key IDs remembered to answer "already delivered". The
/// set would otherwise grow by one ID per key for as long as the KME runs;
/// past the cap the oldest IDs are forgotten and, asked again, answer
/// "unknown key" (still a 400 and still no key: a delivered key is gone
/// from the ledger either way).
pub const MAX_DELIVERED_REMEMBERED: usize = 1 << 16;
/// Key size in bits; the only size served.
pub const KEY_BITS: u64 = (KEY_LEN * 8) as u64;

/// The two SAEs of the one link a KME serves, and which end each is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaeMap {
    a: String,
    b: String,
}

impl SaeMap {
    /// SAE `a` is end A (the vault side), `b` end B (the node side).
    pub fn new(a: impl Into<String>, b: impl Into<String>) -> Result<SaeMap, String> {
        let (a, b) = (a.into(), b.into());
        if a.is_empty() || b.is_empty() || a == b {
            return Err(format!(
                "the two SAE IDs must be set and differ (got {a:?} and {b:?})"
            ));
        }
        Ok(SaeMap { a, b })
    }

    /// Parses `ID=A` and `ID=B` specs (`A`, `end-A`, `a` all accepted).
    pub fn parse(specs: &[String]) -> Result<SaeMap, String> {
        let (mut a, mut b) = (None, None);
        for spec in specs {
            let Some((id, end)) = spec.rsplit_once('=') else {
                return Err(format!("--sae {spec:?}: expected SAE_ID=A or SAE_ID=B"));
            };
            let slot = match end.trim().to_ascii_lowercase().trim_start_matches("end-") {
                "a" => &mut a,
                "b" => &mut b,
                _ => return Err(format!("--sae {spec:?}: the end must be A or B")),
            };
            if slot.replace(id.to_string()).is_some() {
                return Err(format!("--sae {spec:?}: end {end} is named twice"));
            }
        }
        match (a, b) {
            (Some(a), Some(b)) => SaeMap::new(a, b),
            _ => Err("name both SAEs of the link: --sae ID=A --sae ID=B".into()),
        }
    }

    /// Which end an SAE ID is.
    pub fn end_of(&self, sae: &str) -> Option<End> {
        if sae == self.a {
            Some(End::A)
        } else if sae == self.b {
            Some(End::B)
        } else {
            None
        }
    }

    /// The SAE ID of an end.
    pub fn sae_of(&self, end: End) -> &str {
        match end {
            End::A => &self.a,
            End::B => &self.b,
        }
    }
}

/// One HTTP answer: status code and JSON body (wiped on drop: key
/// containers carry key material).
#[derive(Debug)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// JSON body.
    pub body: Zeroizing<Vec<u8>>,
}

impl Reply {
    fn json<T: serde::Serialize>(status: u16, value: &T) -> Reply {
        match serde_json::to_vec(value) {
            Ok(body) => Reply {
                status,
                body: Zeroizing::new(body),
            },
            Err(e) => Reply::error(503, format!("encoding the answer failed: {e}")),
        }
    }

    /// An ETSI error body with `message`.
    pub fn error(status: u16, message: impl Into<String>) -> Reply {
        let body = serde_json::to_vec(&ErrorBody::new(message))
            .unwrap_or_else(|_| br#"{"message":"error"}"#.to_vec());
        Reply {
            status,
            body: Zeroizing::new(body),
        }
    }
}

/// Who is calling, from the client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A configured SAE.
    Sae(String),
    /// Not a configured SAE; the names its certificate shows.
    Unknown(String),
}

/// One parsed API call.
#[derive(Debug)]
pub enum Call {
    /// `GET .../{slave}/status`.
    Status {
        /// The slave SAE in the URL.
        slave: String,
    },
    /// `.../{slave}/enc_keys`.
    EncKeys {
        /// The slave SAE in the URL.
        slave: String,
        /// The request.
        request: KeyRequest,
    },
    /// `.../{master}/dec_keys`.
    DecKeys {
        /// The master SAE in the URL.
        master: String,
        /// The key IDs asked for.
        request: KeyIds,
    },
}

struct Owed {
    /// The end whose SAE called enc_keys.
    master: End,
    key: LinkKey,
}

struct Ledger {
    owed: HashMap<KeyId, Owed>,
    /// Keys handed to their slave: asked again they are "already
    /// delivered", not "unknown". At most `delivered_cap` of them, the
    /// oldest forgotten first (`delivered_order`).
    delivered: HashSet<KeyId>,
    delivered_order: VecDeque<KeyId>,
    delivered_cap: usize,
}

impl Ledger {
    fn new(delivered_cap: usize) -> Ledger {
        Ledger {
            owed: HashMap::new(),
            delivered: HashSet::new(),
            delivered_order: VecDeque::new(),
            delivered_cap: delivered_cap.max(1),
        }
    }

    /// Remembers `id` as delivered, forgetting the oldest past the cap.
    fn remember_delivered(&mut self, id: KeyId) {
        if self.delivered.insert(id) {
            self.delivered_order.push_back(id);
        }
        while self.delivered_order.len() > self.delivered_cap {
            if let Some(old) = self.delivered_order.pop_front() {
                self.delivered.remove(&old);
            }
        }
    }
}

/// The KME's state for one link.
pub struct Kme {
    source: Arc<dyn KeySource>,
    saes: SaeMap,
    kme_id: String,
    ledger: Mutex<Ledger>,
}

impl Kme {
    /// A KME serving `source` to the two SAEs of `saes`; `kme_id` is
    /// reported as both source and target KME (one KME serves both ends).
    pub fn new(source: Arc<dyn KeySource>, saes: SaeMap, kme_id: impl Into<String>) -> Kme {
        Kme {
            source,
            saes,
            kme_id: kme_id.into(),
            ledger: Mutex::new(Ledger::new(MAX_DELIVERED_REMEMBERED)),
        }
    }

    /// Remembers at most `cap` delivered key IDs (default
    /// [`MAX_DELIVERED_REMEMBERED`]).
    pub fn remember_delivered(self, cap: usize) -> Kme {
        if let Ok(mut l) = self.ledger.lock() {
            l.delivered_cap = cap.max(1);
        }
        self
    }

    /// The SAEs this KME serves.
    pub fn saes(&self) -> &SaeMap {
        &self.saes
    }

    /// Answers one call from `caller`.
    pub fn handle(&self, caller: &Caller, call: Call) -> Reply {
        let master = match caller {
            Caller::Sae(id) => id.as_str(),
            Caller::Unknown(names) => {
                return Reply::error(
                    401,
                    format!(
                        "the client certificate ({names}) names no SAE this KME serves \
                         ({} and {})",
                        self.saes.a, self.saes.b
                    ),
                );
            }
        };
        let Some(caller_end) = self.saes.end_of(master) else {
            return Reply::error(401, format!("SAE {master} is not served by this KME"));
        };
        let (peer, kind) = match &call {
            Call::Status { slave } => (slave.as_str(), "slave"),
            Call::EncKeys { slave, .. } => (slave.as_str(), "slave"),
            Call::DecKeys { master, .. } => (master.as_str(), "master"),
        };
        if self.saes.end_of(peer) != Some(caller_end.other()) {
            return Reply::error(
                400,
                format!(
                    "unknown {kind} SAE {peer:?}: SAE {master} shares keys only with {}",
                    self.saes.sae_of(caller_end.other())
                ),
            );
        }
        match call {
            Call::Status { slave } => self.status(master, &slave),
            Call::EncKeys { slave, request } => self.enc_keys(caller_end, master, &slave, &request),
            Call::DecKeys { master: m, request } => self.dec_keys(caller_end, master, &m, &request),
        }
    }

    fn status(&self, master: &str, slave: &str) -> Reply {
        match self.source.counts() {
            Ok(c) => Reply::json(
                200,
                &Status {
                    source_kme_id: self.kme_id.clone(),
                    target_kme_id: self.kme_id.clone(),
                    master_sae_id: master.to_string(),
                    slave_sae_id: slave.to_string(),
                    key_size: KEY_BITS,
                    stored_key_count: c.left,
                    max_key_count: c.total,
                    max_key_per_request: MAX_KEYS_PER_REQUEST,
                    max_key_size: KEY_BITS,
                    min_key_size: KEY_BITS,
                    max_sae_id_count: 0,
                    status_extension: None,
                },
            ),
            Err(e) => Reply::error(503, format!("the key source failed: {e}")),
        }
    }

    fn enc_keys(&self, master_end: End, master: &str, slave: &str, req: &KeyRequest) -> Reply {
        let number = req.number.unwrap_or(1);
        if number == 0 || number > MAX_KEYS_PER_REQUEST {
            return Reply::error(
                400,
                format!("number {number} out of range: ask for 1 to {MAX_KEYS_PER_REQUEST} keys"),
            );
        }
        let size = req.size.unwrap_or(KEY_BITS);
        if size != KEY_BITS {
            return Reply::error(
                400,
                format!("size {size} not supported: this KME delivers {KEY_BITS}-bit keys only"),
            );
        }
        if !req.additional_slave_sae_ids.is_empty() {
            return Reply::error(
                400,
                "additional_slave_SAE_IDs not supported: max_SAE_ID_count is 0",
            );
        }
        if !req.extension_mandatory.is_empty() {
            return Reply::error(400, "extension_mandatory not supported by this KME");
        }
        let Ok(mut ledger) = self.ledger.lock() else {
            return Reply::error(503, "KME state lock poisoned; restart the KME");
        };
        if ledger.owed.len() + number as usize > MAX_OWED {
            return Reply::error(
                503,
                format!(
                    "{} keys are waiting for their slave SAE to fetch them; fetch those \
                     (dec_keys) before asking for more",
                    ledger.owed.len()
                ),
            );
        }
        let dir = master_end.sends();
        let mut keys = Vec::new();
        for _ in 0..number {
            match self.source.next_key(dir) {
                Ok(k) => keys.push(k),
                Err(KeyError::Exhausted { .. }) if keys.is_empty() => {
                    return Reply::error(
                        503,
                        format!(
                            "key pool exhausted: no key left for SAE {master} -> {slave} ({})",
                            self.source.describe()
                        ),
                    );
                }
                Err(KeyError::Exhausted { .. }) => break,
                Err(e) if keys.is_empty() => {
                    return Reply::error(503, format!("the key source failed: {e}"));
                }
                Err(e) => {
                    tracing::warn!(
                        "KME: key source failed mid-batch, returning {} keys: {e}",
                        keys.len()
                    );
                    break;
                }
            }
        }
        let container = KeyContainer {
            keys: keys.iter().map(key_item).collect(),
            key_container_extension: None,
        };
        for key in keys {
            ledger.owed.insert(
                key.id,
                Owed {
                    master: master_end,
                    key,
                },
            );
        }
        Reply::json(200, &container)
    }

    fn dec_keys(&self, slave_end: End, slave: &str, master: &str, req: &KeyIds) -> Reply {
        let n = req.key_ids.len() as u64;
        if n == 0 || n > MAX_KEYS_PER_REQUEST {
            return Reply::error(
                400,
                format!("{n} key_IDs: name 1 to {MAX_KEYS_PER_REQUEST} keys"),
            );
        }
        let mut ids = Vec::with_capacity(req.key_ids.len());
        for item in &req.key_ids {
            let Some(id) = KeyId::parse(&item.key_id) else {
                return Reply::error(400, format!("key_ID {:?} is not a UUID", item.key_id));
            };
            if ids.contains(&id) {
                return Reply::error(400, format!("key_ID {id} is named twice"));
            }
            ids.push(id);
        }
        let Ok(mut ledger) = self.ledger.lock() else {
            return Reply::error(503, "KME state lock poisoned; restart the KME");
        };
        // All or nothing: check every ID before handing any over.
        for id in &ids {
            match ledger.owed.get(id) {
                Some(o) if o.master == slave_end.other() => {}
                Some(_) => {
                    return Reply::error(
                        400,
                        format!(
                            "key {id} was requested by SAE {slave} itself, not by {master}; \
                             only its slave may fetch it"
                        ),
                    );
                }
                None if ledger.delivered.contains(id) => {
                    return Reply::error(400, format!("key {id} was already delivered"));
                }
                None => {
                    return Reply::error(
                        400,
                        format!("unknown key {id}: SAE {master} never received it from this KME"),
                    );
                }
            }
        }
        let mut keys = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(o) = ledger.owed.remove(&id) {
                ledger.remember_delivered(id);
                keys.push(o.key);
            }
        }
        drop(ledger);
        let container = KeyContainer {
            keys: keys.iter().map(key_item).collect(),
            key_container_extension: None,
        };
        Reply::json(200, &container)
    }
}

fn key_item(k: &LinkKey) -> KeyItem {
    KeyItem {
        key_id: k.id.to_uuid_string(),
        key_id_extension: None,
        key: base64::engine::general_purpose::STANDARD.encode(&k.key[..]),
        key_extension: None,
    }
}

/// End helpers the KME needs.
trait EndExt {
    fn other(self) -> End;
}

impl EndExt for End {
    fn other(self) -> End {
        match self {
            End::A => End::B,
            End::B => End::A,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;
    use crate::qkd::etsi014::testkeys::MemoryKeys;
    use crate::qkd::etsi014::types::KeyIdItem;

    fn kme(n: usize) -> Kme {
        Kme::new(
            Arc::new(MemoryKeys::random("t", n).unwrap()),
            SaeMap::new("a", "b").unwrap(),
            "K",
        )
    }

    fn sae(s: &str) -> Caller {
        Caller::Sae(s.into())
    }

    fn enc(k: &Kme, caller: &str, slave: &str, number: u64) -> Reply {
        k.handle(
            &sae(caller),
            Call::EncKeys {
                slave: slave.into(),
                request: KeyRequest {
                    number: Some(number),
                    ..KeyRequest::default()
                },
            },
        )
    }

    fn dec(k: &Kme, caller: &str, master: &str, ids: &[&str]) -> Reply {
        k.handle(
            &sae(caller),
            Call::DecKeys {
                master: master.into(),
                request: KeyIds {
                    key_ids: ids
                        .iter()
                        .map(|i| KeyIdItem {
                            key_id: (*i).into(),
                            key_id_extension: None,
                        })
                        .collect(),
                    key_ids_extension: None,
                },
            },
        )
    }

    fn ids(r: &Reply) -> Vec<String> {
        let c: KeyContainer = serde_json::from_slice(&r.body).unwrap();
        c.keys.iter().map(|k| k.key_id.clone()).collect()
    }

    fn message(r: &Reply) -> String {
        serde_json::from_slice::<ErrorBody>(&r.body)
            .unwrap()
            .message
    }

    #[test]
    fn sae_specs_parse() {
        let m = SaeMap::parse(&["x=A".into(), "y=end-b".into()]).unwrap();
        assert_eq!(
            (m.end_of("x"), m.end_of("y"), m.end_of("z")),
            (Some(End::A), Some(End::B), None)
        );
        assert!(SaeMap::parse(&["x=A".into()]).is_err());
        assert!(SaeMap::parse(&["x=A".into(), "y=A".into()]).is_err());
        assert!(SaeMap::parse(&["x=A".into(), "x=B".into()]).is_err());
        assert!(SaeMap::parse(&["x=C".into(), "y=B".into()]).is_err());
    }

    #[test]
    fn dec_keys_is_all_or_nothing() {
        let k = kme(10);
        let r = enc(&k, "a", "b", 2);
        assert_eq!(r.status, 200);
        let got = ids(&r);
        let unknown = "00000000-0000-4000-8000-000000000000";
        // One bad ID: nothing is handed over.
        let r = dec(&k, "b", "a", &[&got[0], unknown]);
        assert_eq!(r.status, 400);
        assert!(message(&r).contains("unknown"), "{}", message(&r));
        let r = dec(&k, "b", "a", &[&got[0], &got[1]]);
        assert_eq!((r.status, ids(&r)), (200, got.clone()));
        let r = dec(&k, "b", "a", &[&got[0]]);
        assert!(message(&r).contains("already"));
        assert_eq!(dec(&k, "b", "a", &[&got[0], &got[0]]).status, 400);
        assert_eq!(dec(&k, "b", "a", &["not-a-uuid"]).status, 400);
        assert_eq!(dec(&k, "b", "a", &[]).status, 400);
    }

    #[test]
    fn the_delivered_set_is_capped_and_forgets_the_oldest() {
        let k = kme(10).remember_delivered(4);
        let got = ids(&enc(&k, "a", "b", 7));
        for id in &got {
            assert_eq!(dec(&k, "b", "a", &[id]).status, 200);
        }
        let l = k.ledger.lock().unwrap();
        assert_eq!((l.delivered.len(), l.delivered_order.len()), (4, 4));
        drop(l);
        // The three oldest are forgotten: unknown, never a key again.
        for id in &got[..3] {
            let r = dec(&k, "b", "a", &[id]);
            assert_eq!(r.status, 400);
            assert!(message(&r).contains("unknown"), "{}", message(&r));
        }
        for id in &got[3..] {
            let r = dec(&k, "b", "a", &[id]);
            assert_eq!(r.status, 400);
            assert!(message(&r).contains("already"), "{}", message(&r));
        }
    }

    #[test]
    fn callers_and_peers_are_checked() {
        let k = kme(4);
        let r = k.handle(
            &Caller::Unknown("names z".into()),
            Call::Status { slave: "b".into() },
        );
        assert_eq!(r.status, 401);
        assert_eq!(enc(&k, "a", "a", 1).status, 400);
        assert_eq!(enc(&k, "a", "q", 1).status, 400);
        assert_eq!(enc(&k, "a", "b", 0).status, 400);
        assert_eq!(enc(&k, "a", "b", MAX_KEYS_PER_REQUEST + 1).status, 400);
        // B's own keys (B -> A) are fetched by A only.
        let got = ids(&enc(&k, "b", "a", 1));
        assert!(message(&dec(&k, "b", "a", &[&got[0]])).contains("itself"));
        assert_eq!(dec(&k, "a", "b", &[&got[0]]).status, 200);
    }

    #[test]
    fn a_partial_batch_is_returned_then_503() {
        let k = kme(3);
        let r = enc(&k, "a", "b", 8);
        assert_eq!((r.status, ids(&r).len()), (200, 3));
        let r = enc(&k, "a", "b", 1);
        assert_eq!(r.status, 503);
        assert!(message(&r).contains("exhausted"));
        // The other direction is untouched.
        assert_eq!(ids(&enc(&k, "b", "a", 8)).len(), 3);
        let s: Status =
            serde_json::from_slice(&k.handle(&sae("a"), Call::Status { slave: "b".into() }).body)
                .unwrap();
        assert_eq!((s.stored_key_count, s.max_key_count), (0, 6));
    }
}
