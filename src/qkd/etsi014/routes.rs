//! HTTP request -> ETSI 014 call, without I/O.
//!
//! ```text
//! GET       /api/v1/keys/{slave_SAE_ID}/status
//! GET|POST  /api/v1/keys/{slave_SAE_ID}/enc_keys   (GET: ?number=&size=, POST: Key request)
//! GET|POST  /api/v1/keys/{master_SAE_ID}/dec_keys  (GET: ?key_ID=, POST: Key IDs)
//! ```

use super::kme::{Call, Reply};
use super::types::{KeyIdItem, KeyIds, KeyRequest};

const PREFIX: &str = "/api/v1/keys/";

/// Decodes `%XX` escapes (and nothing else) in a path segment or query value.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, Reply> {
    let mut pairs = Vec::new();
    for part in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        match (percent_decode(k), percent_decode(&v.replace('+', " "))) {
            (Some(k), Some(v)) => pairs.push((k, v)),
            _ => return Err(Reply::error(400, format!("bad query parameter {part:?}"))),
        }
    }
    Ok(pairs)
}

fn number(name: &str, value: &str) -> Result<u64, Reply> {
    value
        .parse()
        .map_err(|_| Reply::error(400, format!("{name}={value:?} is not a number")))
}

/// Parses one request into a call, or the error answer.
pub fn parse(method: &str, path: &str, query: Option<&str>, body: &[u8]) -> Result<Call, Reply> {
    let not_found = || {
        Reply::error(
            404,
            format!(
                "no such resource {path}: use {PREFIX}{{SAE_ID}}/status, /enc_keys or /dec_keys"
            ),
        )
    };
    let rest = path.strip_prefix(PREFIX).ok_or_else(not_found)?;
    let (sae, op) = rest.split_once('/').ok_or_else(not_found)?;
    let sae = percent_decode(sae)
        .filter(|s| !s.is_empty())
        .ok_or_else(not_found)?;
    let is_post = match method {
        "GET" => false,
        "POST" if op != "status" => true,
        _ => {
            return Err(Reply::error(405, format!("{method} not allowed on {path}")));
        }
    };
    let json_body = |what: &str| -> Result<serde_json::Value, Reply> {
        let text = if body.iter().all(u8::is_ascii_whitespace) {
            &b"{}"[..]
        } else {
            body
        };
        serde_json::from_slice(text)
            .map_err(|e| Reply::error(400, format!("the body is no {what} JSON: {e}")))
    };
    match op {
        "status" => Ok(Call::Status { slave: sae }),
        "enc_keys" => {
            let request = if is_post {
                serde_json::from_value(json_body("Key request")?)
                    .map_err(|e| Reply::error(400, format!("bad Key request: {e}")))?
            } else {
                let mut r = KeyRequest::default();
                for (k, v) in query_pairs(query)? {
                    match k.as_str() {
                        "number" => r.number = Some(number("number", &v)?),
                        "size" => r.size = Some(number("size", &v)?),
                        "additional_slave_SAE_ID" => r.additional_slave_sae_ids.push(v),
                        _ => {}
                    }
                }
                r
            };
            Ok(Call::EncKeys {
                slave: sae,
                request,
            })
        }
        "dec_keys" => {
            let request = if is_post {
                serde_json::from_value(json_body("Key IDs")?)
                    .map_err(|e| Reply::error(400, format!("bad Key IDs: {e}")))?
            } else {
                let key_ids = query_pairs(query)?
                    .into_iter()
                    .filter(|(k, _)| k == "key_ID")
                    .map(|(_, v)| KeyIdItem {
                        key_id: v,
                        key_id_extension: None,
                    })
                    .collect();
                KeyIds {
                    key_ids,
                    key_ids_extension: None,
                }
            };
            Ok(Call::DecKeys {
                master: sae,
                request,
            })
        }
        _ => Err(not_found()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;

    fn status_of(r: Result<Call, Reply>) -> u16 {
        match r {
            Ok(_) => 200,
            Err(r) => r.status,
        }
    }

    #[test]
    fn routes() {
        assert!(matches!(
            parse("GET", "/api/v1/keys/sae%2Db/status", None, b""),
            Ok(Call::Status { slave }) if slave == "sae-b"
        ));
        assert!(matches!(
            parse("GET", "/api/v1/keys/B/enc_keys", Some("number=3&size=256"), b""),
            Ok(Call::EncKeys { request, .. }) if request.number == Some(3)
        ));
        assert!(matches!(
            parse("POST", "/api/v1/keys/B/enc_keys", None, b""),
            Ok(Call::EncKeys { request, .. }) if request.number.is_none()
        ));
        assert!(matches!(
            parse("GET", "/api/v1/keys/A/dec_keys", Some("key_ID=x"), b""),
            Ok(Call::DecKeys { request, .. }) if request.key_ids[0].key_id == "x"
        ));
        assert_eq!(
            status_of(parse("POST", "/api/v1/keys/A/status", None, b"")),
            405
        );
        assert_eq!(
            status_of(parse("GET", "/api/v2/keys/A/status", None, b"")),
            404
        );
        assert_eq!(
            status_of(parse("GET", "/api/v1/keys/A/other", None, b"")),
            404
        );
        assert_eq!(
            status_of(parse("POST", "/api/v1/keys/A/dec_keys", None, b"{nope")),
            400
        );
        assert_eq!(
            status_of(parse(
                "GET",
                "/api/v1/keys/B/enc_keys",
                Some("number=x"),
                b""
            )),
            400
        );
    }
}
