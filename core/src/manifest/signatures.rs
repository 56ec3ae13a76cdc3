//! `manifest.sig`: ed25519 signatures over the exact bytes of `manifest.toml`, each with the
//! id of the key that made it.

use super::error::ManifestError;
use super::format::MAX_SIGNATURES;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Identifier of a public key: first 8 bytes of sha256 of its 32 bytes, in hex.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// One signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureEntry {
    /// Signer's key id.
    pub key_id: String,
    /// ed25519 signature (hex).
    pub signature: String,
}

/// `manifest.sig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signatures {
    /// All signatures.
    #[serde(default, rename = "signature")]
    pub signatures: Vec<SignatureEntry>,
}

impl Signatures {
    /// Parses signature file bytes.
    pub fn parse(bytes: &[u8]) -> Result<Signatures, ManifestError> {
        if bytes.len() as u64 > MAX_SIGNATURES {
            return Err(ManifestError::TooLarge {
                file: "manifest.sig",
                size: bytes.len() as u64,
                max: MAX_SIGNATURES,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|_| ManifestError::Parse {
            file: "manifest.sig",
            why: "not UTF-8".into(),
        })?;
        toml::from_str(text).map_err(|e| ManifestError::Parse {
            file: "manifest.sig",
            why: e.message().to_string(),
        })
    }

    /// The TOML text.
    pub fn to_bytes(&self) -> Vec<u8> {
        toml::to_string(self).unwrap_or_default().into_bytes()
    }
}
