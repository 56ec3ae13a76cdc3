//! The Slate disk: four GPT partitions, fixed after flashing (DESIGN §3).
//!
//! ```text
//! 0        1 MiB       +esp          +slot          +slot          +data        end
//! | GPT    | esp (FAT32) | root-a       | root-b       | data (ext4)  | backup GPT |
//!            ESP type     root-x86-64    root-x86-64    linux data
//!                         ro + no-auto   ro + no-auto
//! ```
//! All partitions start on 1 MiB boundaries. GUIDs are derived from a seed (the image spec), so
//! the same inputs give the same table.

use crate::gpt::{self, Attributes, Partition, Table};
use crate::guid::Guid;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// EFI System Partition type.
pub const ESP_TYPE: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
/// Discoverable Partitions: root partition, x86-64.
pub const ROOT_X86_64_TYPE: &str = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";
/// Discoverable Partitions: root partition, arm64.
pub const ROOT_ARM64_TYPE: &str = "b921b045-1df0-41c3-af44-4c6f280d3fae";
/// Linux filesystem data.
pub const LINUX_DATA_TYPE: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";

/// Partition labels, which the device uses to find its partitions (`PARTNAME=`).
pub const ESP_LABEL: &str = "esp";
/// Label of the persistent data partition.
pub const DATA_LABEL: &str = "data";

const MIB: u64 = 1 << 20;

/// One of the two root slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// Slot a (partition 2).
    A,
    /// Slot b (partition 3).
    B,
}

impl Slot {
    /// The slot an update would go into while this one runs.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// GPT label of the slot's partition.
    pub fn label(self) -> &'static str {
        match self {
            Slot::A => "root-a",
            Slot::B => "root-b",
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Slot::A => "a",
            Slot::B => "b",
        })
    }
}

/// Why a slot name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid slot {text:?}: expected \"a\" or \"b\"")]
pub struct SlotError {
    /// The text given.
    pub text: String,
}

impl FromStr for Slot {
    type Err = SlotError;

    fn from_str(s: &str) -> Result<Slot, SlotError> {
        match s {
            "a" => Ok(Slot::A),
            "b" => Ok(Slot::B),
            _ => Err(SlotError { text: s.into() }),
        }
    }
}

/// CPU architecture of a board; decides the root partition type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// x86-64 (UEFI, `BOOTX64.EFI`).
    X86_64,
    /// arm64 (UEFI, `BOOTAA64.EFI`).
    Arm64,
}

impl Arch {
    /// The Discoverable Partitions root type for this architecture.
    pub fn root_type(self) -> Guid {
        let t = match self {
            Arch::X86_64 => ROOT_X86_64_TYPE,
            Arch::Arm64 => ROOT_ARM64_TYPE,
        };
        parse_const(t)
    }

    /// Debian's name for the architecture (packages, lists, `image.lock`).
    pub fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// File name UEFI firmware boots by default from `\EFI\BOOT\`.
    pub fn default_efi_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "BOOTX64.EFI",
            Arch::Arm64 => "BOOTAA64.EFI",
        }
    }
}

fn parse_const(s: &str) -> Guid {
    match s.parse() {
        Ok(g) => g,
        Err(_) => Guid::NIL,
    }
}

/// Partition sizes, in MiB, from the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// ESP size.
    pub esp_mib: u64,
    /// Size of each root slot.
    pub slot_mib: u64,
    /// Initial data partition size (grown to the disk's end on first boot).
    pub data_mib: u64,
}

impl Sizes {
    /// Total disk size: 1 MiB for the primary GPT, the partitions, 1 MiB for the backup GPT.
    pub fn disk_bytes(&self) -> u64 {
        (1 + self.esp_mib + 2 * self.slot_mib + self.data_mib + 1) * MIB
    }
}

/// Builds the Slate partition table. `seed` makes the GUIDs (use the spec's identity).
pub fn table(arch: Arch, sizes: Sizes, seed: &[u8]) -> Table {
    let mut next = MIB / gpt::SECTOR;
    let mut part = |label: &str, type_guid: Guid, mib: u64, attributes: u64| {
        let first_lba = next;
        next += mib * MIB / gpt::SECTOR;
        Partition {
            type_guid,
            unique_guid: Guid::derive(&format!("slate-partition-{label}"), seed),
            first_lba,
            last_lba: next - 1,
            attributes: Attributes(attributes),
            name: label.to_string(),
        }
    };
    let ro = Attributes::READ_ONLY | Attributes::NO_AUTO;
    let partitions = vec![
        part(ESP_LABEL, parse_const(ESP_TYPE), sizes.esp_mib, 0),
        part(Slot::A.label(), arch.root_type(), sizes.slot_mib, ro),
        part(Slot::B.label(), arch.root_type(), sizes.slot_mib, ro),
        part(DATA_LABEL, parse_const(LINUX_DATA_TYPE), sizes.data_mib, 0),
    ];
    Table {
        disk_guid: Guid::derive("slate-disk", seed),
        total_sectors: sizes.disk_bytes() / gpt::SECTOR,
        partitions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_aligned_and_encodes() {
        let t = table(
            Arch::X86_64,
            Sizes {
                esp_mib: 64,
                slot_mib: 256,
                data_mib: 128,
            },
            b"seed",
        );
        for p in &t.partitions {
            assert_eq!(p.offset() % MIB, 0, "{} not aligned", p.name);
        }
        assert_eq!(t.by_name("root-b").unwrap().size(), 256 * MIB);
        assert!(t.by_name("root-a").unwrap().attributes.read_only());
        assert!(t.encode().is_ok());
        assert_eq!(t.partitions[1].type_guid.to_string(), ROOT_X86_64_TYPE);
    }

    #[test]
    fn slots_pair_up() {
        assert_eq!(Slot::A.other(), Slot::B);
        assert_eq!("b".parse::<Slot>().unwrap().label(), "root-b");
        assert!("c".parse::<Slot>().is_err());
    }
}
