//! `manifest.toml`: what a bundle carries, parsed and checked for structure before anything
//! else of the bundle is read.

use super::error::ManifestError;
use super::{FORMAT, FORMAT_UKI};
use crate::digest::Digest32;
use crate::verity::VerityInfo;
use crate::version::Version;
use serde::{Deserialize, Serialize};

/// Largest manifest accepted.
pub const MAX_MANIFEST: u64 = 64 * 1024;
/// Largest signature file accepted.
pub const MAX_SIGNATURES: u64 = 16 * 1024;
/// The artifacts a format-1 bundle carries, in bundle order after the manifest and its
/// signatures.
pub const ARTIFACTS: [&str; 3] = ["rootfs.img", "vmlinuz", "initrd.img"];
/// The artifacts a format-2 bundle carries. The UKIs come first: a device stages and checks
/// them (signature, command line) before it writes a byte of the root image, so a bundle its
/// firmware would refuse leaves the idle slot as it was.
pub const UKI_ARTIFACTS: [&str; 3] = ["uki-a.efi", "uki-b.efi", "rootfs.img"];
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
        let expected = match head.format {
            FORMAT => ARTIFACTS,
            FORMAT_UKI => UKI_ARTIFACTS,
            other => return Err(ManifestError::Format(other)),
        };
        let m: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            file: "manifest.toml",
            why: e.message().to_string(),
        })?;
        let names: Vec<&str> = m.artifacts.iter().map(|a| a.name.as_str()).collect();
        let verity_only_on_root = m
            .artifacts
            .iter()
            .all(|a| a.verity.is_some() == (a.name == ROOTFS));
        if names != expected || !verity_only_on_root {
            return Err(ManifestError::Artifacts {
                format: m.format,
                expected,
                why: format!("got {names:?}"),
            });
        }
        if let Some((root, info)) = m.rootfs().and_then(|r| Some((r, r.verity.as_ref()?))) {
            if info.image_size() != root.size {
                return Err(ManifestError::Artifacts {
                    format: m.format,
                    expected,
                    why: format!(
                        "rootfs.img size {} does not match its verity layout ({} bytes)",
                        root.size,
                        info.image_size()
                    ),
                });
            }
        }
        for a in m.boot_artifacts() {
            if a.size > MAX_BOOT_ARTIFACT {
                return Err(ManifestError::Artifacts {
                    format: m.format,
                    expected,
                    why: format!(
                        "{} is {} bytes, over the {MAX_BOOT_ARTIFACT} limit",
                        a.name, a.size
                    ),
                });
            }
        }
        if crate::cmdline::sets_slate_params(&m.options) || m.options.contains('\n') {
            return Err(ManifestError::Artifacts {
                format: m.format,
                expected,
                why: "options must not set slate.slot or slate.verity".into(),
            });
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

    /// The root image ([`Manifest::parse`] guarantees exactly one, with verity parameters;
    /// None only for a manifest made by hand).
    pub fn rootfs(&self) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.name == ROOTFS)
    }

    /// Every artifact besides the root image, in bundle order: what the ESP gets.
    pub fn boot_artifacts(&self) -> impl Iterator<Item = &Artifact> {
        self.artifacts.iter().filter(|a| a.name != ROOTFS)
    }

    /// The bundle carries UKIs (format 2, for Secure Boot and measured-boot images) rather
    /// than a kernel and an initramfs.
    pub fn carries_ukis(&self) -> bool {
        self.format == FORMAT_UKI
    }
}

/// The root image's name in a bundle.
pub const ROOTFS: &str = "rootfs.img";

/// The name, in a bundle and in a build folder, of the UKI that boots `slot`.
pub fn uki_artifact(slot: crate::layout::Slot) -> &'static str {
    match slot {
        crate::layout::Slot::A => UKI_ARTIFACTS[0],
        crate::layout::Slot::B => UKI_ARTIFACTS[1],
    }
}
