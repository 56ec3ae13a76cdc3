//! The device's trust file (`/etc/slate/trust.toml`): the public keys it accepts and how
//! many of them must sign.

use super::error::ManifestError;
use super::signatures::key_id;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

/// One trusted key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKey {
    /// Key id ([`key_id`]).
    pub id: String,
    /// Public key (hex of 32 bytes).
    pub public_key: String,
}

/// The trust file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    /// Valid signatures needed.
    pub threshold: usize,
    /// Trusted keys.
    #[serde(rename = "key")]
    pub keys: Vec<TrustedKey>,
}

impl Trust {
    /// Parses and checks a trust file: ids match keys, no id twice, no weak key, threshold
    /// within 1..=keys. A key listed twice would let one signer count twice toward the
    /// threshold in a file that was edited by hand; a weak (small-order) key would accept one
    /// fixed signature for every manifest.
    pub fn parse(text: &str) -> Result<Trust, ManifestError> {
        let t: Trust = toml::from_str(text).map_err(|e| ManifestError::Parse {
            file: "trust.toml",
            why: e.message().to_string(),
        })?;
        if t.threshold == 0 || t.threshold > t.keys.len() {
            return Err(ManifestError::Trust(format!(
                "threshold {} with {} key(s)",
                t.threshold,
                t.keys.len()
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for k in &t.keys {
            if !seen.insert(k.id.as_str()) {
                return Err(ManifestError::Trust(format!(
                    "key id {} is listed twice; each key may appear once",
                    k.id
                )));
            }
            let key = decode_key(&k.public_key).map_err(ManifestError::Trust)?;
            if key_id(&key) != k.id {
                return Err(ManifestError::Trust(format!(
                    "key id {} does not match its public key",
                    k.id
                )));
            }
        }
        Ok(t)
    }
}

/// Decodes a trusted public key, refusing a weak one (a point of small order, such as the
/// identity): with such a key, one fixed signature verifies for every message.
pub(super) fn decode_key(hex_key: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = hex::decode(hex_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("public key {hex_key:?} is not 32 bytes of hex"))?;
    let key =
        VerifyingKey::from_bytes(&bytes).map_err(|e| format!("public key {hex_key:?}: {e}"))?;
    if key.is_weak() {
        return Err(format!(
            "public key {hex_key:?} is a weak (small-order) key, which any forger can satisfy; make a new key with `slate keygen`"
        ));
    }
    Ok(key)
}
