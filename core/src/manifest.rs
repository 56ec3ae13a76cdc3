//! Update manifests (`manifest.toml`), their signatures (`manifest.sig`) and the device's trust
//! file (`/etc/slate/trust.toml`) (DESIGN §7).
//!
//! ```text
//! manifest.toml   format = 1, product, board, version, security_epoch, created, [expires],
//!                 options (kernel command line), [[artifact]] name size sha256 [verity]
//! manifest.sig    [[signature]] key_id (16 hex), signature (128 hex: ed25519 over the exact
//!                 bytes of manifest.toml)
//! trust.toml      threshold = k, [[key]] id, public_key (64 hex)
//! ```
//! Limits: a manifest is at most 64 KiB and a signature file 16 KiB; both are read whole and
//! only after the signature is checked does anything else of a bundle get read.
//! Verification follows the numbered steps of [`Verifier::verify`].

use crate::digest::Digest32;
use crate::verity::VerityInfo;
use crate::version::Version;
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The only manifest format this code reads.
pub const FORMAT: u32 = 1;
/// Largest manifest accepted.
pub const MAX_MANIFEST: u64 = 64 * 1024;
/// Largest signature file accepted.
pub const MAX_SIGNATURES: u64 = 16 * 1024;
/// The artifacts a bundle carries, in bundle order after the manifest and its signatures.
pub const ARTIFACTS: [&str; 3] = ["rootfs.img", "vmlinuz", "initrd.img"];
/// Largest kernel or initrd accepted (the ESP holds two of each).
pub const MAX_BOOT_ARTIFACT: u64 = 64 << 20;

/// One artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// File name in the bundle.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the file (64 lower-case hex digits in the TOML).
    pub sha256: Digest32,
    /// For `rootfs.img`: the verity parameters its boot entry carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verity: Option<VerityInfo>,
}

/// The manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version ([`FORMAT`]).
    pub format: u32,
    /// Product name; must equal the device's.
    pub product: String,
    /// Board; must equal the device's.
    pub board: String,
    /// Version of the image.
    pub version: Version,
    /// Anti-rollback epoch: a device refuses bundles below the highest it installed.
    #[serde(default)]
    pub security_epoch: u64,
    /// Unix seconds when made.
    pub created: i64,
    /// Unix seconds after which devices refuse it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    /// Kernel command line options besides slot and verity.
    pub options: String,
    /// Artifacts in bundle order.
    #[serde(rename = "artifact")]
    pub artifacts: Vec<Artifact>,
}

/// Why a manifest, signature file or trust file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// Not valid TOML of the expected shape.
    #[error("{file}: {why}")]
    Parse {
        /// Which file.
        file: &'static str,
        /// Parser message (names the field).
        why: String,
    },
    /// Too large.
    #[error("{file} is {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// Which file.
        file: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A format this code does not know.
    #[error("manifest format {0} is not supported (this agent reads format {FORMAT})")]
    Format(u32),
    /// Artifact list is not the expected one.
    #[error("manifest artifacts must be exactly {ARTIFACTS:?} in that order, with verity parameters on rootfs.img: {0}")]
    Artifacts(String),
    /// Too few good signatures from trusted keys.
    #[error("{good} valid signature(s) from trusted keys, {threshold} required ({detail})")]
    Threshold {
        /// Valid trusted signatures.
        good: usize,
        /// Needed.
        threshold: usize,
        /// What was seen.
        detail: String,
    },
    /// The trust file is unusable.
    #[error("trust file: {0}")]
    Trust(String),
    /// Product or board differ.
    #[error("bundle is for {what} {bundle:?}, this device is {device:?}")]
    Incompatible {
        /// "product" or "board".
        what: &'static str,
        /// Bundle's value.
        bundle: String,
        /// Device's value.
        device: String,
    },
    /// Not newer than what runs.
    #[error("bundle version {bundle} is not newer than the running {running} (downgrades and reinstalls are refused)")]
    NotNewer {
        /// Bundle's version.
        bundle: Version,
        /// Running version.
        running: Version,
    },
    /// Below the stored epoch.
    #[error("bundle security epoch {bundle} is below the device's {device} (rollback protection)")]
    Epoch {
        /// Bundle's epoch.
        bundle: u64,
        /// Device's epoch.
        device: u64,
    },
    /// Past its expiry.
    #[error("bundle expired at {expires} (unix seconds); now is {now}")]
    Expired {
        /// Expiry.
        expires: i64,
        /// Now.
        now: i64,
    },
    /// The version failed before and is not retried automatically.
    #[error("version {0} failed its health checks before on this device; it is not installed again unless forced")]
    PreviouslyFailed(Version),
}

impl Manifest {
    /// Parses and checks the structure of manifest bytes (not the signatures).
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() as u64 > MAX_MANIFEST {
            return Err(ManifestError::TooLarge {
                file: "manifest.toml",
                size: bytes.len() as u64,
                max: MAX_MANIFEST,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|e| ManifestError::Parse {
            file: "manifest.toml",
            why: format!("not UTF-8 at byte {}", e.valid_up_to()),
        })?;
        // The format is checked before the rest so a future format gets a clear refusal.
        #[derive(Deserialize)]
        struct Head {
            format: u32,
        }
        let head: Head = toml::from_str(text).map_err(|e| ManifestError::Parse {
            file: "manifest.toml",
            why: e.message().to_string(),
        })?;
        if head.format != FORMAT {
            return Err(ManifestError::Format(head.format));
        }
        let m: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            file: "manifest.toml",
            why: e.message().to_string(),
        })?;
        let names: Vec<&str> = m.artifacts.iter().map(|a| a.name.as_str()).collect();
        if names != ARTIFACTS
            || m.artifacts[0].verity.is_none()
            || m.artifacts[1..].iter().any(|a| a.verity.is_some())
        {
            return Err(ManifestError::Artifacts(format!("got {names:?}")));
        }
        if let Some(info) = &m.artifacts[0].verity {
            if info.image_size() != m.artifacts[0].size {
                return Err(ManifestError::Artifacts(format!(
                    "rootfs.img size {} does not match its verity layout ({} bytes)",
                    m.artifacts[0].size,
                    info.image_size()
                )));
            }
        }
        for a in &m.artifacts {
            if a.name != "rootfs.img" && a.size > MAX_BOOT_ARTIFACT {
                return Err(ManifestError::Artifacts(format!(
                    "{} is {} bytes, over the {MAX_BOOT_ARTIFACT} limit",
                    a.name, a.size
                )));
            }
        }
        if crate::cmdline::sets_slate_params(&m.options) || m.options.contains('\n') {
            return Err(ManifestError::Artifacts(
                "options must not set slate.slot or slate.verity".into(),
            ));
        }
        Ok(m)
    }

    /// The TOML text (what gets signed).
    pub fn to_bytes(&self) -> Vec<u8> {
        toml::to_string(self).unwrap_or_default().into_bytes()
    }

    /// The artifact of that name.
    pub fn artifact(&self, name: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.name == name)
    }
}

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
    /// Parses and checks a trust file: ids match keys, threshold within 1..=keys.
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
        for k in &t.keys {
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

fn decode_key(hex_key: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = hex::decode(hex_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("public key {hex_key:?} is not 32 bytes of hex"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("public key {hex_key:?}: {e}"))
}

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
                Some(sig) if key.verify(manifest, &sig).is_ok() => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn trust(keys: &[&SigningKey], threshold: usize) -> Trust {
        Trust {
            threshold,
            keys: keys
                .iter()
                .map(|k| TrustedKey {
                    id: key_id(&k.verifying_key()),
                    public_key: hex::encode(k.verifying_key().as_bytes()),
                })
                .collect(),
        }
    }

    fn manifest(version: &str) -> Manifest {
        let verity = VerityInfo::new(Digest32([0xab; 32]), vec![0; 32], 10, 40960).unwrap();
        let size = verity.image_size();
        Manifest {
            format: FORMAT,
            product: "p".into(),
            board: "b".into(),
            version: version.parse().unwrap(),
            security_epoch: 1,
            created: 100,
            expires: Some(1000),
            options: "console=ttyS0".into(),
            artifacts: vec![
                Artifact {
                    name: "rootfs.img".into(),
                    size,
                    sha256: Digest32([0x00; 32]),
                    verity: Some(verity),
                },
                Artifact {
                    name: "vmlinuz".into(),
                    size: 1,
                    sha256: Digest32([0xcd; 32]),
                    verity: None,
                },
                Artifact {
                    name: "initrd.img".into(),
                    size: 1,
                    sha256: Digest32([0x22; 32]),
                    verity: None,
                },
            ],
        }
    }

    fn sign(bytes: &[u8], keys: &[&SigningKey]) -> Signatures {
        Signatures {
            signatures: keys
                .iter()
                .map(|k| SignatureEntry {
                    key_id: key_id(&k.verifying_key()),
                    signature: hex::encode(k.sign(bytes).to_bytes()),
                })
                .collect(),
        }
    }

    fn device() -> DeviceFacts {
        DeviceFacts {
            product: "p".into(),
            board: "b".into(),
            version: "1.0.0".parse().unwrap(),
            security_epoch: 1,
            failed_versions: vec![],
            now: 500,
        }
    }

    #[test]
    fn manifest_round_trips() {
        let m = manifest("1.1.0");
        assert_eq!(Manifest::parse(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn good_bundle_passes_and_each_rule_refuses() {
        let (a, b, c) = (key(1), key(2), key(3));
        let t = trust(&[&a, &b], 2);
        let v = Verifier { trust: &t };
        let bytes = manifest("1.1.0").to_bytes();
        assert!(v
            .verify(&bytes, &sign(&bytes, &[&a, &b]), &device(), false)
            .is_ok());
        // Too few, unknown key, same key twice.
        assert!(matches!(
            v.verify(&bytes, &sign(&bytes, &[&a]), &device(), false),
            Err(ManifestError::Threshold { good: 1, .. })
        ));
        assert!(matches!(
            v.verify(&bytes, &sign(&bytes, &[&a, &c]), &device(), false),
            Err(ManifestError::Threshold { .. })
        ));
        assert!(matches!(
            v.verify(&bytes, &sign(&bytes, &[&a, &a]), &device(), false),
            Err(ManifestError::Threshold { good: 1, .. })
        ));
        // One flipped byte in the signed manifest.
        let mut bad = bytes.clone();
        bad[10] ^= 1;
        assert!(matches!(
            v.verify(&bad, &sign(&bytes, &[&a, &b]), &device(), false),
            Err(ManifestError::Threshold { good: 0, .. })
        ));
        let check = |m: Manifest, d: DeviceFacts| {
            let bytes = m.to_bytes();
            v.verify(&bytes, &sign(&bytes, &[&a, &b]), &d, false)
        };
        let mut m = manifest("1.1.0");
        m.product = "other".into();
        assert!(matches!(
            check(m, device()),
            Err(ManifestError::Incompatible {
                what: "product",
                ..
            })
        ));
        let mut m = manifest("1.1.0");
        m.board = "other".into();
        assert!(matches!(
            check(m, device()),
            Err(ManifestError::Incompatible { what: "board", .. })
        ));
        assert!(matches!(
            check(manifest("1.0.0"), device()),
            Err(ManifestError::NotNewer { .. })
        ));
        let mut d = device();
        d.security_epoch = 2;
        assert!(matches!(
            check(manifest("1.1.0"), d),
            Err(ManifestError::Epoch { .. })
        ));
        let mut d = device();
        d.now = 1000;
        assert!(matches!(
            check(manifest("1.1.0"), d),
            Err(ManifestError::Expired { .. })
        ));
        let mut d = device();
        d.failed_versions = vec!["1.1.0".parse().unwrap()];
        assert!(matches!(
            check(manifest("1.1.0"), d),
            Err(ManifestError::PreviouslyFailed(_))
        ));
    }

    #[test]
    fn malformed_manifests_are_refused() {
        assert!(matches!(
            Manifest::parse(b"format = 2\n"),
            Err(ManifestError::Format(2))
        ));
        assert!(matches!(
            Manifest::parse(b"format = \"one\"\n"),
            Err(ManifestError::Parse { .. })
        ));
        assert!(matches!(
            Manifest::parse(&[0xff, 0xfe]),
            Err(ManifestError::Parse { .. })
        ));
        assert!(matches!(
            Manifest::parse(&vec![b'#'; 70_000]),
            Err(ManifestError::TooLarge { .. })
        ));
        let mut m = manifest("1.1.0");
        m.artifacts.swap(1, 2);
        assert!(matches!(
            Manifest::parse(&m.to_bytes()),
            Err(ManifestError::Artifacts(_))
        ));
        let mut m = manifest("1.1.0");
        m.artifacts[0].size += 4096;
        assert!(matches!(
            Manifest::parse(&m.to_bytes()),
            Err(ManifestError::Artifacts(_))
        ));
        let mut m = manifest("1.1.0");
        m.options = "slate.slot=a".into();
        assert!(matches!(
            Manifest::parse(&m.to_bytes()),
            Err(ManifestError::Artifacts(_))
        ));
    }

    /// Digests are parsed while the manifest is read, so a bad one is refused before a device
    /// writes anything (an upper-case sha256 used to pass here and fail after the slot was
    /// written).
    #[test]
    fn upper_case_or_malformed_digests_are_refused_at_parse_time() {
        let text = String::from_utf8(manifest("1.1.0").to_bytes()).unwrap();
        let good = "cd".repeat(32);
        assert!(text.contains(&good));
        for bad in [
            good.to_uppercase(),
            "cd".repeat(31),
            format!("{}zz", "cd".repeat(31)),
        ] {
            let err = Manifest::parse(text.replace(&good, &bad).as_bytes()).unwrap_err();
            assert!(
                matches!(&err, ManifestError::Parse { why, .. } if why.contains("hex") || why.contains("64")),
                "{bad}: {err}"
            );
        }
        let root = "ab".repeat(32);
        assert!(text.contains(&root));
        let err = Manifest::parse(text.replace(&root, &root.to_uppercase()).as_bytes());
        assert!(matches!(err, Err(ManifestError::Parse { .. })), "{err:?}");
    }

    #[test]
    fn trust_files_are_checked() {
        let a = key(1);
        let mut t = trust(&[&a], 1);
        assert!(Trust::parse(&toml::to_string(&t).unwrap()).is_ok());
        t.threshold = 2;
        assert!(Trust::parse(&toml::to_string(&t).unwrap()).is_err());
        t.threshold = 1;
        t.keys[0].id = "0000000000000000".into();
        assert!(Trust::parse(&toml::to_string(&t).unwrap()).is_err());
    }
}
