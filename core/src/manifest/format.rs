//! `manifest.toml`: what a bundle carries, parsed and checked for structure before anything
//! else of the bundle is read.

use super::error::ManifestError;
use crate::digest::Digest32;
use crate::verity::VerityInfo;
use crate::version::Version;
use serde::{Deserialize, Serialize};

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
