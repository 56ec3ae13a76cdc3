//! Boards (`boards/<name>.toml`): everything about the hardware an image targets.
//!
//! A board names its architecture, kernel package and modules, console, command-line extras and
//! disk sizes, so one image spec builds for several machines.

use crate::error::{parse_toml, BuildError};
use serde::Deserialize;
use slate_core::config::Watchdog;
use slate_core::layout::{Arch, Sizes};
use std::path::{Path, PathBuf};

/// A board file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// Must equal the file's stem.
    pub name: String,
    /// CPU architecture.
    pub arch: Arch,
    /// Kernel console (`console=` value): /dev/console, where Slate's markers and the debug
    /// shell go.
    pub console: String,
    /// More consoles that get the kernel's messages too (a PC's screen beside its serial
    /// port); none of them is /dev/console.
    #[serde(default)]
    pub also_consoles: Vec<String>,
    /// Debian package providing the kernel and its modules (a metapackage is resolved by
    /// `cargo xtask deps` to the versioned one).
    pub kernel_package: String,
    /// Debian package providing systemd-boot's EFI binary.
    #[serde(default = "default_bootloader_package")]
    pub bootloader_package: String,
    /// Path of the EFI binary inside that package.
    #[serde(default = "default_bootloader_path")]
    pub bootloader_path: String,
    /// Path of systemd's EFI stub inside the boot loader package: what a Secure Boot image's
    /// Unified Kernel Images are made from (`linuxx64.efi.stub`, `linuxaa64.efi.stub`).
    #[serde(default)]
    pub uki_stub_path: Option<String>,
    /// Modules the initramfs loads (their dependencies are added automatically).
    #[serde(default)]
    pub modules: Vec<String>,
    /// Extra kernel command-line words.
    #[serde(default)]
    pub cmdline: Vec<String>,
    /// Hardware watchdog, if any.
    #[serde(default)]
    pub watchdog: Option<Watchdog>,
    /// Disk sizes.
    pub disk: DiskSpec,
    /// How the QEMU harness runs this board (ignored by the imager).
    #[serde(default)]
    pub qemu: Option<toml::Table>,
}

fn default_bootloader_package() -> String {
    "systemd-boot-efi".into()
}

fn default_bootloader_path() -> String {
    "usr/lib/systemd/boot/efi/systemd-bootx64.efi".into()
}

/// Partition sizes in MiB.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// ESP size (FAT32 needs at least 33 MiB with 512-byte clusters).
    pub esp_mib: u64,
    /// Size of each root slot.
    pub slot_mib: u64,
    /// Initial size of the data partition.
    pub data_mib: u64,
}

impl DiskSpec {
    /// As the core layout wants it.
    pub fn sizes(&self) -> Sizes {
        Sizes {
            esp_mib: self.esp_mib,
            slot_mib: self.slot_mib,
            data_mib: self.data_mib,
        }
    }
}

/// A board read from its file, with the bytes for provenance.
#[derive(Debug, Clone)]
pub struct LoadedBoard {
    /// The parsed board.
    pub board: Board,
    /// Its file.
    pub path: PathBuf,
    /// Exact bytes.
    pub bytes: Vec<u8>,
}

impl LoadedBoard {
    /// Loads `<dir>/<name>.toml`; an unknown name lists the boards that exist.
    pub fn load(dir: &Path, name: &str) -> Result<LoadedBoard, BuildError> {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let path = dir.join(format!("{name}.toml"));
        if !valid || !path.is_file() {
            return Err(BuildError::UnknownBoard {
                name: name.to_string(),
                dir: dir.display().to_string(),
                available: available(dir),
            });
        }
        let bytes = std::fs::read(&path).map_err(|e| BuildError::Read {
            path: path.clone(),
            source: e,
        })?;
        let board: Board = parse_toml(&path, &bytes)?;
        let bad = |field: &str, why: String| BuildError::Spec {
            path: path.clone(),
            field: field.into(),
            why,
        };
        if board.name != name {
            return Err(bad(
                "name",
                format!("{:?} differs from the file name {name:?}", board.name),
            ));
        }
        if board.disk.esp_mib < 64 {
            return Err(bad(
                "disk.esp_mib",
                format!(
                    "{} MiB is too small for a FAT32 ESP (at least 64)",
                    board.disk.esp_mib
                ),
            ));
        }
        if board.disk.slot_mib < 8 || board.disk.data_mib < 16 {
            return Err(bad(
                "disk",
                "slot_mib must be at least 8 and data_mib at least 16".into(),
            ));
        }
        Ok(LoadedBoard { board, path, bytes })
    }
}

fn available(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            if p.extension()? != "toml" {
                return None;
            }
            Some(p.file_stem()?.to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
