//! `build.toml`: what a build made and from what. Written last, so a folder with a report is a
//! finished build; read by `slate bundle`, `slate inspect` and the tests.

use super::REPORT_MAGIC;
use crate::error::BuildError;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use slate_core::{verity, Digest32, Version};
use std::path::Path;

/// `build.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// What was built.
    pub image: ImageReport,
    /// The slot image's dm-verity parameters.
    pub verity: VerityReport,
    /// Boot parameters shared by both slots.
    pub boot: BootReport,
    /// Disk layout.
    pub disk: DiskReport,
    /// Every output file.
    #[serde(rename = "output")]
    pub outputs: Vec<OutputReport>,
    /// Every input.
    pub provenance: toml::Table,
}

/// Identity of the image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageReport {
    /// Product name.
    pub name: String,
    /// Version.
    pub version: Version,
    /// Board.
    pub board: String,
    /// Kernel release.
    pub kernel_release: String,
    /// Security epoch (anti-rollback); `slate bundle` puts it in the manifest.
    #[serde(default)]
    pub security_epoch: u64,
}

/// dm-verity parameters: the typed [`verity::VerityInfo`] the manifest and the boot entries
/// carry (`root_hash`, `salt`, `data_blocks`, `hash_offset`), and the superblock's UUID.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerityReport {
    /// What the kernel needs to map the slot.
    #[serde(flatten)]
    pub info: verity::VerityInfo,
    /// UUID in the verity superblock.
    pub uuid: String,
}

/// Kernel command line parts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootReport {
    /// Options every entry carries besides `slate.slot=` and `slate.verity=`.
    pub options: String,
}

/// Disk layout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiskReport {
    /// Disk size in bytes.
    pub size: u64,
    /// Disk GUID.
    pub guid: String,
    /// ESP size, MiB.
    pub esp_mib: u64,
    /// Slot size, MiB.
    pub slot_mib: u64,
    /// Data size, MiB.
    pub data_mib: u64,
    /// Bytes the bmap maps.
    pub mapped_bytes: u64,
}

/// One output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputReport {
    /// File name in the output folder.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the file.
    pub sha256: Digest32,
}

impl Report {
    /// Reads `build.toml` from an output folder.
    pub fn load(dir: &Path) -> Result<Report> {
        let path = dir.join("build.toml");
        let bytes = std::fs::read(&path).map_err(|e| BuildError::Read {
            path: path.clone(),
            source: e,
        })?;
        Ok(crate::error::parse_toml(&path, &bytes)?)
    }

    /// The build made signed UKIs (a Secure Boot image): its bundles carry them.
    pub fn has_ukis(&self) -> bool {
        UKI_OUTPUTS
            .iter()
            .all(|name| self.outputs.iter().any(|o| o.name == *name))
    }
}

/// The outputs `build.toml` lists with their sizes and sha256, in this order.
pub const OUTPUTS: [&str; 5] = [
    "rootfs.img",
    "vmlinuz",
    "initrd.img",
    "disk.img",
    "disk.img.bmap",
];

/// The outputs of a Secure Boot build besides [`OUTPUTS`]: the signed Unified Kernel Image
/// of each slot (the slot is in its signed command line), what its bundles carry instead of
/// `vmlinuz` and `initrd.img` (named as in the bundle, [`slate_core::manifest::uki_artifact`]).
pub const UKI_OUTPUTS: [&str; 2] = [
    slate_core::manifest::UKI_ARTIFACTS[0],
    slate_core::manifest::UKI_ARTIFACTS[1],
];

/// Hashes the outputs in `dir`, one thread per file (disk.img, the largest, sets the pace).
pub fn hash_outputs(dir: &Path) -> Result<Vec<OutputReport>> {
    let ukis = UKI_OUTPUTS.into_iter().filter(|n| dir.join(n).is_file());
    let names: Vec<&str> = OUTPUTS.iter().copied().chain(ukis).collect();
    std::thread::scope(|s| {
        let jobs: Vec<_> = names
            .iter()
            .map(|name| s.spawn(move || crate::image::hashing::hash_file(&dir.join(name))))
            .collect();
        names
            .iter()
            .zip(jobs)
            .map(|(name, job)| {
                let (size, sha256) = job
                    .join()
                    .map_err(|_| anyhow::anyhow!("hashing {name}: the thread panicked"))??;
                Ok(OutputReport {
                    name: (*name).into(),
                    size,
                    sha256,
                })
            })
            .collect()
    })
}

/// Writes `build.toml` into `dir`.
pub fn write(dir: &Path, report: &Report) -> Result<()> {
    let text = format!(
        "{REPORT_MAGIC}: written by `slate build`; read by `slate inspect` and the tools that follow.\n{}",
        toml::to_string(report).context("serialising build.toml")?
    );
    std::fs::write(dir.join("build.toml"), text)
        .with_context(|| format!("writing {}", dir.join("build.toml").display()))
}
