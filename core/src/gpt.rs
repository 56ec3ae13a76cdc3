//! GUID Partition Table (UEFI 2.x, chapter 5), written and read without any other crate.
//!
//! ```text
//! LBA 0            protective MBR (one 0xEE partition covering the disk)
//! LBA 1            primary header   "EFI PART", rev 1.0, 92 bytes, CRC32 of header + entries
//! LBA 2..=33       128 partition entries x 128 bytes
//! ...              partitions (first usable LBA 34, Slate starts at 1 MiB)
//! LBA last-32..-2  backup entries (same bytes as the primary ones)
//! LBA last         backup header (my/alternate LBAs swapped, entries at last-32)
//! ```
//! Sector size is 512. Slate never rewrites the table on a device except the one-time grow of
//! `data`, so the writer here runs on the build host and the reader serves `slate inspect`
//! and the agent.

use crate::guid::Guid;
use crate::le::{u32_at, u64_at};
use std::fmt;

/// Logical sector size Slate images use.
pub const SECTOR: u64 = 512;
/// Number of partition entries in the array (the UEFI minimum array size of 16 KiB).
pub const ENTRY_COUNT: u32 = 128;
/// Size of one partition entry.
pub const ENTRY_SIZE: u32 = 128;
/// Sectors taken by the entry array.
const ENTRY_SECTORS: u64 = (ENTRY_COUNT as u64 * ENTRY_SIZE as u64) / SECTOR;
const HEADER_SIZE: u32 = 92;
/// [`SECTOR`] and [`HEADER_SIZE`] as buffer lengths.
const SECTOR_BYTES: usize = 512;
const HEADER_BYTES: usize = 92;
const _: () = assert!(SECTOR_BYTES as u64 == SECTOR && HEADER_BYTES as u64 == HEADER_SIZE as u64);
/// Bytes of the protective MBR, the header sector and the entry array: what [`Table::decode`]
/// reads from the start of a disk.
pub const PRIMARY_BYTES: usize =
    (2 + ENTRY_COUNT as usize * ENTRY_SIZE as usize / SECTOR_BYTES) * SECTOR_BYTES;
const SIGNATURE: &[u8; 8] = b"EFI PART";
const REVISION: u32 = 0x0001_0000;

/// The GPT partition attribute field: a packed u64 of which Slate uses the
/// Discoverable Partitions bits.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Attributes(pub u64);

impl Attributes {
    /// Bit 0: the firmware must not touch this partition.
    pub const REQUIRED: u64 = 1 << 0;
    /// Bit 60: mount read-only (root slots are dm-verity protected).
    pub const READ_ONLY: u64 = 1 << 60;
    /// Bit 62: hidden from automatic discovery.
    pub const HIDDEN: u64 = 1 << 62;
    /// Bit 63: do not auto-mount (systemd-gpt-auto-generator must not pick a slot itself).
    pub const NO_AUTO: u64 = 1 << 63;

    /// True when the read-only bit is set.
    pub fn read_only(self) -> bool {
        self.0 & Self::READ_ONLY != 0
    }

    /// True when the no-auto bit is set.
    pub fn no_auto(self) -> bool {
        self.0 & Self::NO_AUTO != 0
    }
}

impl fmt::Display for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = Vec::new();
        if self.0 & Self::REQUIRED != 0 {
            names.push("required");
        }
        if self.read_only() {
            names.push("read-only");
        }
        if self.0 & Self::HIDDEN != 0 {
            names.push("hidden");
        }
        if self.no_auto() {
            names.push("no-auto");
        }
        if names.is_empty() {
            write!(f, "-")
        } else {
            write!(f, "{}", names.join(","))
        }
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#018x} ({})", self.0, self)
    }
}

/// One partition of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// What the partition holds (ESP, root-x86-64, linux data, ...).
    pub type_guid: Guid,
    /// This partition's own GUID.
    pub unique_guid: Guid,
    /// First sector (inclusive).
    pub first_lba: u64,
    /// Last sector (inclusive), as GPT stores it.
    pub last_lba: u64,
    /// Attribute bits.
    pub attributes: Attributes,
    /// Label (up to 36 UTF-16 code units); Slate finds slots by it (`PARTNAME=root-a`).
    pub name: String,
}

impl Partition {
    /// Byte offset of the partition on the disk.
    pub fn offset(&self) -> u64 {
        self.first_lba.saturating_mul(SECTOR)
    }

    /// Size of the partition in bytes.
    pub fn size(&self) -> u64 {
        // Saturating: a table read from a damaged disk may have last < first.
        self.last_lba
            .saturating_add(1)
            .saturating_sub(self.first_lba)
            .saturating_mul(SECTOR)
    }
}

/// A whole partition table for a disk of a given size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The disk's GUID.
    pub disk_guid: Guid,
    /// Disk size in sectors.
    pub total_sectors: u64,
    /// Partitions in entry order (entry 1 is index 0).
    pub partitions: Vec<Partition>,
}

/// Why a table could not be written or read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GptError {
    /// The disk is too small to hold both tables and one usable sector.
    #[error("disk of {sectors} sectors is too small for a GPT")]
    DiskTooSmall {
        /// Sectors the disk has.
        sectors: u64,
    },
    /// A partition lies outside the usable area or overlaps another.
    #[error("partition {index} ({name}) spans sectors {first}..={last}, outside the usable area {usable_first}..={usable_last} or overlapping another partition")]
    BadExtent {
        /// 1-based partition number.
        index: usize,
        /// Its label.
        name: String,
        /// First sector.
        first: u64,
        /// Last sector.
        last: u64,
        /// First usable sector of the disk.
        usable_first: u64,
        /// Last usable sector of the disk.
        usable_last: u64,
    },
    /// More partitions than entries.
    #[error("{count} partitions do not fit the {ENTRY_COUNT}-entry array")]
    TooManyPartitions {
        /// Partitions asked for.
        count: usize,
    },
    /// A label is longer than the 36 UTF-16 units an entry holds.
    #[error("partition label {name:?} is longer than 36 UTF-16 code units")]
    LabelTooLong {
        /// The label.
        name: String,
    },
    /// Too few bytes were given to read a table from.
    #[error("need {needed} bytes to read the GPT, got {got}")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    /// No "EFI PART" signature at LBA 1.
    #[error("no GPT header at byte 512 (signature is {found:?}, expected \"EFI PART\")")]
    NoSignature {
        /// What was found instead.
        found: String,
    },
    /// Header fields Slate does not support.
    #[error("unsupported GPT header: {what}")]
    Unsupported {
        /// Which field and value.
        what: String,
    },
    /// A CRC did not match.
    #[error("GPT {which} CRC32 mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc {
        /// "header" or "partition entries".
        which: &'static str,
        /// Value on disk.
        stored: u32,
        /// Value computed.
        computed: u32,
    },
}

/// The encoded table: bytes for the start of the disk and for its end.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// Protective MBR, primary header and entries: write at byte 0.
    pub primary: Vec<u8>,
    /// Backup entries and backup header: write at `backup_offset`.
    pub backup: Vec<u8>,
    /// Byte offset where `backup` goes.
    pub backup_offset: u64,
}

impl Table {
    /// First sector a partition may use.
    pub fn first_usable(&self) -> u64 {
        2 + ENTRY_SECTORS
    }

    /// Last sector a partition may use.
    pub fn last_usable(&self) -> u64 {
        self.total_sectors - 2 - ENTRY_SECTORS
    }

    /// Finds a partition by label.
    pub fn by_name(&self, name: &str) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.name == name)
    }

    /// Checks extents, then encodes protective MBR, both headers and both entry arrays.
    pub fn encode(&self) -> Result<Encoded, GptError> {
        if self.total_sectors < 2 * (2 + ENTRY_SECTORS) + 1 {
            return Err(GptError::DiskTooSmall {
                sectors: self.total_sectors,
            });
        }
        if self.partitions.len() > ENTRY_COUNT as usize {
            return Err(GptError::TooManyPartitions {
                count: self.partitions.len(),
            });
        }
        self.check_extents()?;

        let mut entries = vec![0u8; (ENTRY_COUNT * ENTRY_SIZE) as usize];
        for (i, p) in self.partitions.iter().enumerate() {
            let e = &mut entries[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
            e[0..16].copy_from_slice(&p.type_guid.to_gpt_bytes());
            e[16..32].copy_from_slice(&p.unique_guid.to_gpt_bytes());
            e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
            e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
            e[48..56].copy_from_slice(&p.attributes.0.to_le_bytes());
            let units: Vec<u16> = p.name.encode_utf16().collect();
            if units.len() > 36 {
                return Err(GptError::LabelTooLong {
                    name: p.name.clone(),
                });
            }
            for (j, u) in units.iter().enumerate() {
                e[56 + 2 * j..58 + 2 * j].copy_from_slice(&u.to_le_bytes());
            }
        }
        let entries_crc = crc32fast::hash(&entries);
        let last = self.total_sectors - 1;
        let backup_entries_lba = last - ENTRY_SECTORS;

        let mut primary = vec![0u8; PRIMARY_BYTES];
        write_protective_mbr(&mut primary[..SECTOR_BYTES], self.total_sectors);
        let header = self.header(1, last, 2, entries_crc);
        primary[SECTOR_BYTES..SECTOR_BYTES + header.len()].copy_from_slice(&header);
        primary[2 * SECTOR_BYTES..].copy_from_slice(&entries);

        let mut backup = vec![0u8; PRIMARY_BYTES - SECTOR_BYTES];
        backup[..entries.len()].copy_from_slice(&entries);
        let header = self.header(last, 1, backup_entries_lba, entries_crc);
        backup[entries.len()..entries.len() + header.len()].copy_from_slice(&header);

        Ok(Encoded {
            primary,
            backup,
            backup_offset: backup_entries_lba * SECTOR,
        })
    }

    fn check_extents(&self) -> Result<(), GptError> {
        let (lo, hi) = (self.first_usable(), self.last_usable());
        for (i, p) in self.partitions.iter().enumerate() {
            let overlaps = self
                .partitions
                .iter()
                .enumerate()
                .any(|(j, q)| j != i && p.first_lba <= q.last_lba && q.first_lba <= p.last_lba);
            if p.first_lba < lo || p.last_lba > hi || p.last_lba < p.first_lba || overlaps {
                return Err(GptError::BadExtent {
                    index: i + 1,
                    name: p.name.clone(),
                    first: p.first_lba,
                    last: p.last_lba,
                    usable_first: lo,
                    usable_last: hi,
                });
            }
        }
        Ok(())
    }

    fn header(
        &self,
        my_lba: u64,
        alternate_lba: u64,
        entries_lba: u64,
        entries_crc: u32,
    ) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_SIZE as usize];
        h[0..8].copy_from_slice(SIGNATURE);
        h[8..12].copy_from_slice(&REVISION.to_le_bytes());
        h[12..16].copy_from_slice(&HEADER_SIZE.to_le_bytes());
        h[24..32].copy_from_slice(&my_lba.to_le_bytes());
        h[32..40].copy_from_slice(&alternate_lba.to_le_bytes());
        h[40..48].copy_from_slice(&self.first_usable().to_le_bytes());
        h[48..56].copy_from_slice(&self.last_usable().to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid.to_gpt_bytes());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&ENTRY_COUNT.to_le_bytes());
        h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Reads the primary table from the first 34 sectors of a disk, checking both CRCs.
    /// `total_sectors` is taken from the header's alternate LBA.
    pub fn decode(primary: &[u8]) -> Result<Table, GptError> {
        let needed = PRIMARY_BYTES;
        if primary.len() < needed {
            return Err(GptError::Truncated {
                needed,
                got: primary.len(),
            });
        }
        let h = &primary[SECTOR_BYTES..SECTOR_BYTES + HEADER_BYTES];
        let entries = &primary[2 * SECTOR_BYTES..needed];
        let table = Table::from_parts(h, entries, 2)?;
        Ok(Table {
            total_sectors: u64_at(h, 32).saturating_add(1),
            ..table
        })
    }

    /// Reads the backup table from the last 33 sectors of a disk of `total_sectors` (its
    /// entries, then its header in the very last sector), checking both CRCs: what firmware
    /// falls back to when the primary table is damaged.
    pub fn decode_backup(tail: &[u8], total_sectors: u64) -> Result<Table, GptError> {
        let needed = PRIMARY_BYTES - SECTOR_BYTES;
        if tail.len() < needed || total_sectors < 2 * (2 + ENTRY_SECTORS) + 1 {
            return Err(GptError::Truncated {
                needed,
                got: tail.len(),
            });
        }
        let entries_bytes = PRIMARY_BYTES - 2 * SECTOR_BYTES;
        let h = &tail[entries_bytes..entries_bytes + HEADER_BYTES];
        let last = total_sectors - 1;
        if u64_at(h, 24) != last {
            return Err(GptError::Unsupported {
                what: format!(
                    "backup header says it is at LBA {}, not the last ({last})",
                    u64_at(h, 24)
                ),
            });
        }
        let table = Table::from_parts(h, &tail[..entries_bytes], last - ENTRY_SECTORS)?;
        Ok(Table {
            total_sectors,
            ..table
        })
    }

    /// The table for the same disk grown to `sectors`: the backup at the new end and the
    /// partition `label` extended to the new last usable sector (rounded down to a multiple of
    /// `align` sectors, so it ends where a partition tool would end it). None when there is
    /// nothing to grow: the disk is not larger, `label` is missing or not the last partition,
    /// or it would not get bigger.
    pub fn grown(&self, sectors: u64, label: &str, align: u64) -> Option<Table> {
        if sectors <= self.total_sectors {
            return None;
        }
        let i = self.partitions.iter().position(|p| p.name == label)?;
        let last_end = self.partitions.iter().map(|p| p.last_lba).max()?;
        if self.partitions[i].last_lba != last_end {
            return None;
        }
        let mut t = self.clone();
        t.total_sectors = sectors;
        let usable_end = t.last_usable() + 1;
        let end = usable_end - usable_end % align.max(1);
        if end <= self.partitions[i].last_lba + 1 {
            return None;
        }
        t.partitions[i].last_lba = end - 1;
        Some(t)
    }

    /// The disk GUID and partitions from one header and its entry array, both CRCs checked;
    /// `entries_lba` is where that header must say its entries are.
    fn from_parts(h: &[u8], entries: &[u8], entries_lba_expected: u64) -> Result<Table, GptError> {
        if &h[0..8] != SIGNATURE {
            return Err(GptError::NoSignature {
                found: String::from_utf8_lossy(&h[0..8]).into_owned(),
            });
        }
        let header_size = u32_at(h, 12);
        let entry_count = u32_at(h, 80);
        let entry_size = u32_at(h, 84);
        let entries_lba = u64_at(h, 72);
        if header_size != HEADER_SIZE
            || entry_size != ENTRY_SIZE
            || entry_count != ENTRY_COUNT
            || entries_lba != entries_lba_expected
        {
            return Err(GptError::Unsupported {
                what: format!(
                    "header size {header_size}, {entry_count} entries of {entry_size} bytes at LBA {entries_lba} (Slate reads 92, 128 x 128 at LBA {entries_lba_expected})"
                ),
            });
        }
        let mut copy = h.to_vec();
        copy[16..20].fill(0);
        let stored = u32_at(h, 16);
        let computed = crc32fast::hash(&copy);
        if stored != computed {
            return Err(GptError::BadCrc {
                which: "header",
                stored,
                computed,
            });
        }
        let stored = u32_at(h, 88);
        let computed = crc32fast::hash(entries);
        if stored != computed {
            return Err(GptError::BadCrc {
                which: "partition entries",
                stored,
                computed,
            });
        }
        let mut partitions = Vec::new();
        for e in entries.chunks(ENTRY_SIZE as usize) {
            let type_guid = Guid::from_gpt_bytes(array16(&e[0..16]));
            if type_guid == Guid::NIL {
                continue;
            }
            let units: Vec<u16> = e[56..128]
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .take_while(|&u| u != 0)
                .collect();
            partitions.push(Partition {
                type_guid,
                unique_guid: Guid::from_gpt_bytes(array16(&e[16..32])),
                first_lba: u64_at(e, 32),
                last_lba: u64_at(e, 40),
                attributes: Attributes(u64_at(e, 48)),
                name: String::from_utf16_lossy(&units),
            });
        }
        Ok(Table {
            disk_guid: Guid::from_gpt_bytes(array16(&h[56..72])),
            total_sectors: 0,
            partitions,
        })
    }
}

fn write_protective_mbr(mbr: &mut [u8], total_sectors: u64) {
    let p = &mut mbr[446..462];
    p[0] = 0x00; // not bootable
    p[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    p[4] = 0xEE; // GPT protective
    p[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    p[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(total_sectors - 1).unwrap_or(u32::MAX);
    p[12..16].copy_from_slice(&size.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
}

fn array16(b: &[u8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(b);
    a
}

#[cfg(test)]
mod tests;
