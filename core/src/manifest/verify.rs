//! Judging a bundle's manifest on a device: signatures against the trust file first, then
//! the rules (compatibility, version, epoch, expiry), in the numbered steps of
//! [`Verifier::verify`].

use super::error::ManifestError;
use super::format::Manifest;
use super::signatures::Signatures;
use super::trust::{decode_key, Trust};
use crate::version::Version;
use ed25519_dalek::Signature;

/// What the device knows when it judges a bundle.
#[derive(Debug, Clone)]
pub struct DeviceFacts {
    /// Product name of the running image.
    pub product: String,
    /// Board.
    pub board: String,
    /// Running version.
    pub version: Version,
    /// Highest security epoch installed so far.
    pub security_epoch: u64,
    /// Versions that failed before.
    pub failed_versions: Vec<Version>,
    /// Now, in unix seconds (passed in, never read here).
    pub now: i64,
}

/// Checks bundles against a trust file and the device's facts.
pub struct Verifier<'a> {
    /// Trusted keys and threshold.
    pub trust: &'a Trust,
}

impl Verifier<'_> {
    /// Step 1: at least `threshold` distinct trusted keys signed these exact manifest bytes.
    pub fn check_signatures(
        &self,
        manifest: &[u8],
        sigs: &Signatures,
    ) -> Result<usize, ManifestError> {
        let mut good = std::collections::BTreeSet::new();
        let mut notes = Vec::new();
        for s in &sigs.signatures {
            let Some(k) = self.trust.keys.iter().find(|k| k.id == s.key_id) else {
                notes.push(format!("key {} is not trusted", s.key_id));
                continue;
            };
            let key = decode_key(&k.public_key).map_err(ManifestError::Trust)?;
            let sig = hex::decode(&s.signature)
                .ok()
                .and_then(|b| <[u8; 64]>::try_from(b).ok())
                .map(|b| Signature::from_bytes(&b));
            match sig {
                // Strict: refuses non-canonical and small-order R, which the plain check accepts.
                Some(sig) if key.verify_strict(manifest, &sig).is_ok() => {
                    good.insert(k.id.clone());
                }
                _ => notes.push(format!("signature by {} does not verify", s.key_id)),
            }
        }
        if good.len() < self.trust.threshold {
            if sigs.signatures.is_empty() {
                notes.push("no signatures".into());
            }
            return Err(ManifestError::Threshold {
                good: good.len(),
                threshold: self.trust.threshold,
                detail: notes.join("; "),
            });
        }
        Ok(good.len())
    }

    /// The whole check, in order: 1 signatures, 2 parse, 3 product, 4 board, 5 expiry,
    /// 6 version newer, 7 security epoch, 8 not a known-bad version (unless `force`).
    pub fn verify(
        &self,
        manifest_bytes: &[u8],
        sigs: &Signatures,
        device: &DeviceFacts,
        force: bool,
    ) -> Result<Manifest, ManifestError> {
        self.check_signatures(manifest_bytes, sigs)?;
        let m = Manifest::parse(manifest_bytes)?;
        if m.product != device.product {
            return Err(ManifestError::Incompatible {
                what: "product",
                bundle: m.product,
                device: device.product.clone(),
            });
        }
        if m.board != device.board {
            return Err(ManifestError::Incompatible {
                what: "board",
                bundle: m.board,
                device: device.board.clone(),
            });
        }
        if let Some(expires) = m.expires {
            if device.now >= expires {
                return Err(ManifestError::Expired {
                    expires,
                    now: device.now,
                });
            }
        }
        if m.version <= device.version && !force {
            return Err(ManifestError::NotNewer {
                bundle: m.version,
                running: device.version.clone(),
            });
        }
        if m.security_epoch < device.security_epoch {
            return Err(ManifestError::Epoch {
                bundle: m.security_epoch,
                device: device.security_epoch,
            });
        }
        if !force && device.failed_versions.contains(&m.version) {
            return Err(ManifestError::PreviouslyFailed(m.version));
        }
        Ok(m)
    }
}
