//! The JSON data formats of ETSI GS QKD 014 V1.1.1, section 6.
//!
//! Field names follow the specification exactly (`key_ID`, `master_SAE_ID`,
//! ...), so these types talk to any conforming KME or SAE. Extension fields
//! are carried as opaque JSON; qsfs sends none and refuses mandatory ones.
//!
//! ```text
//! Status        {source_KME_ID, target_KME_ID, master_SAE_ID, slave_SAE_ID,
//!                key_size, stored_key_count, max_key_count,
//!                max_key_per_request, max_key_size, min_key_size,
//!                max_SAE_ID_count, status_extension?}
//! Key request   {number?, size?, additional_slave_SAE_IDs?,
//!                extension_mandatory?, extension_optional?}
//! Key container {keys: [{key_ID, key_ID_extension?, key (base64),
//!                key_extension?}], key_container_extension?}
//! Key IDs       {key_IDs: [{key_ID, key_ID_extension?}], key_IDs_extension?}
//! Error         {message, details?: [object]}
//! ```

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// Status data format (6.1): what a KME can deliver to one SAE pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// KME the master SAE talks to.
    #[serde(rename = "source_KME_ID")]
    pub source_kme_id: String,
    /// KME the slave SAE talks to.
    #[serde(rename = "target_KME_ID")]
    pub target_kme_id: String,
    /// The calling (master) SAE.
    #[serde(rename = "master_SAE_ID")]
    pub master_sae_id: String,
    /// The slave SAE named in the URL.
    #[serde(rename = "slave_SAE_ID")]
    pub slave_sae_id: String,
    /// Default key size in bits.
    pub key_size: u64,
    /// Keys the KME holds for this pair now.
    pub stored_key_count: u64,
    /// Keys the KME can hold for this pair.
    pub max_key_count: u64,
    /// Most keys one request may ask for.
    pub max_key_per_request: u64,
    /// Largest key size in bits.
    pub max_key_size: u64,
    /// Smallest key size in bits.
    pub min_key_size: u64,
    /// Most additional slave SAEs a request may name (0: none).
    #[serde(rename = "max_SAE_ID_count")]
    pub max_sae_id_count: u64,
    /// Vendor extension, opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_extension: Option<serde_json::Value>,
}

/// Key request data format (6.2), the body of `POST .../enc_keys`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyRequest {
    /// How many keys (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
    /// Key size in bits (default: the KME's `key_size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Further slaves to share the keys with (multicast).
    #[serde(
        rename = "additional_slave_SAE_IDs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub additional_slave_sae_ids: Vec<String>,
    /// Extensions the KME must understand or refuse the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension_mandatory: Vec<serde_json::Value>,
    /// Extensions the KME may ignore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension_optional: Vec<serde_json::Value>,
}

/// One key in a key container. The base64 text is wiped when dropped.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyItem {
    /// The key's UUID.
    #[serde(rename = "key_ID")]
    pub key_id: String,
    /// Vendor extension, opaque.
    #[serde(
        rename = "key_ID_extension",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub key_id_extension: Option<serde_json::Value>,
    /// The key bytes, standard base64 with padding.
    pub key: String,
    /// Vendor extension, opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_extension: Option<serde_json::Value>,
}

impl Drop for KeyItem {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

/// The key text is wiped on drop (the `Drop` above).
impl zeroize::ZeroizeOnDrop for KeyItem {}

impl std::fmt::Debug for KeyItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyItem({}, <secret>)", self.key_id)
    }
}

/// Key container data format (6.3): the answer to enc_keys and dec_keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyContainer {
    /// The keys.
    pub keys: Vec<KeyItem>,
    /// Vendor extension, opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_container_extension: Option<serde_json::Value>,
}

/// One key ID in a key IDs request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyIdItem {
    /// The key's UUID.
    #[serde(rename = "key_ID")]
    pub key_id: String,
    /// Vendor extension, opaque.
    #[serde(
        rename = "key_ID_extension",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub key_id_extension: Option<serde_json::Value>,
}

/// Key IDs data format (6.4), the body of `POST .../dec_keys`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyIds {
    /// The keys asked for.
    #[serde(rename = "key_IDs")]
    pub key_ids: Vec<KeyIdItem>,
    /// Vendor extension, opaque.
    #[serde(
        rename = "key_IDs_extension",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub key_ids_extension: Option<serde_json::Value>,
}

/// Error data format (6.5): the body of every 400, 401 and 503 answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub message: String,
    /// Further detail objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<serde_json::Value>,
}

impl ErrorBody {
    /// An error with only a message.
    pub fn new(message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            message: message.into(),
            details: Vec::new(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;

    #[test]
    fn field_names_follow_the_spec() {
        let s = Status {
            source_kme_id: "K1".into(),
            target_kme_id: "K2".into(),
            master_sae_id: "A".into(),
            slave_sae_id: "B".into(),
            key_size: 256,
            stored_key_count: 5,
            max_key_count: 10,
            max_key_per_request: 8,
            max_key_size: 256,
            min_key_size: 256,
            max_sae_id_count: 0,
            status_extension: None,
        };
        let v = serde_json::to_value(&s).unwrap();
        for f in [
            "source_KME_ID",
            "target_KME_ID",
            "master_SAE_ID",
            "slave_SAE_ID",
            "key_size",
            "stored_key_count",
            "max_key_count",
            "max_key_per_request",
            "max_key_size",
            "min_key_size",
            "max_SAE_ID_count",
        ] {
            assert!(v.get(f).is_some(), "{f}");
        }
        let ids: KeyIds = serde_json::from_str(r#"{"key_IDs":[{"key_ID":"x"}]}"#).unwrap();
        assert_eq!(ids.key_ids[0].key_id, "x");
        let c: KeyContainer =
            serde_json::from_str(r#"{"keys":[{"key_ID":"x","key":"AAAA"}]}"#).unwrap();
        assert_eq!(c.keys[0].key, "AAAA");
        let r: KeyRequest = serde_json::from_str(r#"{"number":2,"size":256}"#).unwrap();
        assert_eq!((r.number, r.size), (Some(2), Some(256)));
        assert_eq!(
            serde_json::to_string(&ErrorBody::new("no")).unwrap(),
            r#"{"message":"no"}"#
        );
    }
}
