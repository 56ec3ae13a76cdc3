//! Any disk size: an image flashed onto a larger disk takes all of it on its first boot.
//!
//! Stage 1, before `/data` is mounted, moves the GPT's backup to the end of the boot disk and
//! extends `data` (the last partition) to it; once `/data` is mounted, it grows the ext4 file
//! system online to fill the partition. Every later boot finds nothing to do.
//!
//! Power-cut safety, step by step:
//! 1. the new backup table is written at the new end and flushed: the old primary (and its old
//!    backup) still describe the disk as it was;
//! 2. the primary's entries are written and flushed, then its header and protective MBR: a cut
//!    between the two leaves a primary whose entries CRC fails, and both firmware and
//!    [`read_gpt`] then take the new backup at the disk's end; the next boot rewrites the
//!    primary from it;
//! 3. the kernel is told the partition's new size;
//! 4. after mounting, ext4's own online resize, which journals each step: a cut leaves a
//!    mountable file system between the old and the new size, and the next boot goes on.

use crate::partitions::{read_gpt, sectors_of, BootDisk};
use crate::{marker, sys};
use anyhow::{Context, Result};
use slate_core::api::Marker;
use slate_core::gpt::{Table, SECTOR};
use slate_core::layout::DATA_LABEL;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Partitions end on 1 MiB boundaries, as partition tools end them.
pub const ALIGN_SECTORS: u64 = 2048;

/// Writes `table` over the disk's primary and backup tables in the order that keeps a valid
/// table at every moment (module docs, steps 1 and 2).
fn write_gpt(disk: &File, table: &Table) -> Result<()> {
    let enc = table.encode().context("encoding the grown GPT")?;
    disk.write_all_at(&enc.backup, enc.backup_offset)
        .context("writing the backup GPT")?;
    disk.sync_data().context("flushing the backup GPT")?;
    crate::hooks::cut_point(slate_core::api::CutPoint::GrowBackupWritten);
    disk.write_all_at(&enc.primary[1024..], 1024)
        .context("writing the primary GPT's entries")?;
    disk.sync_data()
        .context("flushing the primary GPT's entries")?;
    crate::hooks::cut_point(slate_core::api::CutPoint::GrowEntriesWritten);
    disk.write_all_at(&enc.primary[..1024], 0)
        .context("writing the primary GPT's header")?;
    disk.sync_data()
        .context("flushing the primary GPT's header")?;
    Ok(())
}

/// Step 1–3: the boot disk's GPT spans the whole disk and `data` ends at its end. Repairs a
/// primary table left torn by a cut.
pub fn grow_partition(boot: &BootDisk) -> Result<()> {
    let dev = format!("/dev/{}", boot.name);
    let sectors = sectors_of(&Path::new("/sys/block").join(&boot.name))?;
    let disk = File::options()
        .read(true)
        .write(true)
        .open(&dev)
        .with_context(|| format!("opening {dev}"))?;
    let (table, primary_good) = read_gpt(&disk, sectors)?;
    let grown = table.grown(sectors, DATA_LABEL, ALIGN_SECTORS);
    if grown.is_none() && primary_good {
        return Ok(());
    }
    let new = grown.unwrap_or(table);
    write_gpt(&disk, &new)?;
    let (number, data) = new
        .partitions
        .iter()
        .enumerate()
        .find(|(_, p)| p.name == DATA_LABEL)
        .map(|(i, p)| (i as u32 + 1, p))
        .context("the grown table has no data partition")?;
    sys::resize_partition(&disk, number, data.offset(), data.size())?;
    marker::emit(&Marker::DataGrown {
        what: "partition",
        mib: data.size() >> 20,
    });
    Ok(())
}

/// Block count and block size from an ext4 superblock (1024 bytes at byte 1024).
fn ext4_blocks(sb: &[u8]) -> Option<(u64, u64)> {
    if sb.len() < 0x158 || sb[0x38..0x3a] != [0x53, 0xef] {
        return None;
    }
    let u32_at = |o: usize| u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]]);
    let block = 1024u64 << u32_at(24).min(16);
    let lo = u64::from(u32_at(4));
    let is_64bit = u32_at(0x60) & 0x80 != 0;
    let hi = if is_64bit {
        u64::from(u32_at(0x150))
    } else {
        0
    };
    Some(((hi << 32) | lo, block))
}

/// Step 4: grows the ext4 on `dev` (mounted at `mount`) to fill its partition.
pub fn grow_filesystem(dev: &str, mount: &str) -> Result<()> {
    let name = Path::new(dev).file_name().context("device name")?;
    let part_bytes = sectors_of(&Path::new("/sys/class/block").join(name))? * SECTOR;
    grow_filesystem_to(dev, mount, part_bytes)
}

/// Grows the ext4 on `dev` (mounted at `mount`) to `part_bytes`: for a device-mapper
/// device, whose size its table gives.
pub fn grow_filesystem_to(dev: &str, mount: &str, part_bytes: u64) -> Result<()> {
    let mut sb = vec![0u8; 1024];
    File::open(dev)
        .and_then(|f| f.read_exact_at(&mut sb, 1024))
        .with_context(|| format!("reading the superblock of {dev}"))?;
    let (blocks, block) = ext4_blocks(&sb).with_context(|| format!("{dev} holds no ext4"))?;
    let fits = part_bytes / block;
    if fits <= blocks {
        return Ok(());
    }
    let dir = File::open(mount).with_context(|| format!("opening {mount}"))?;
    crate::hooks::cut_point(slate_core::api::CutPoint::GrowFilesystem);
    sys::ext4_resize(&dir, fits)?;
    marker::emit(&Marker::DataGrown {
        what: "filesystem",
        mib: (fits * block) >> 20,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use slate_core::gpt;

    #[test]
    fn a_superblock_gives_blocks_and_block_size() {
        let mut sb = vec![0u8; 1024];
        sb[0x38..0x3a].copy_from_slice(&[0x53, 0xef]);
        sb[4..8].copy_from_slice(&32768u32.to_le_bytes());
        sb[24..28].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(ext4_blocks(&sb), Some((32768, 4096)));
        sb[0x60] = 0x80;
        sb[0x150..0x154].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(ext4_blocks(&sb), Some(((1 << 32) + 32768, 4096)));
        sb[0x38] = 0;
        assert_eq!(ext4_blocks(&sb), None);
    }

    #[test]
    fn a_torn_primary_is_read_from_the_backup() {
        let t = Table {
            disk_guid: slate_core::guid::Guid::derive("t", b"d"),
            total_sectors: 8192,
            partitions: vec![gpt::Partition {
                type_guid: slate_core::guid::Guid::derive("type", b"x"),
                unique_guid: slate_core::guid::Guid::derive("u", b"x"),
                first_lba: 2048,
                last_lba: 4095,
                attributes: gpt::Attributes(0),
                name: DATA_LABEL.into(),
            }],
        };
        let grown = t.grown(16384, DATA_LABEL, ALIGN_SECTORS).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.set_len(16384 * SECTOR).unwrap();
        let old = t.encode().unwrap();
        f.write_all_at(&old.primary, 0).unwrap();
        f.write_all_at(&old.backup, old.backup_offset).unwrap();
        assert_eq!(read_gpt(&f, 16384).unwrap(), (t.clone(), true));
        // A cut after the new backup and the primary's entries, before its header.
        let new = grown.encode().unwrap();
        f.write_all_at(&new.backup, new.backup_offset).unwrap();
        f.write_all_at(&new.primary[1024..], 1024).unwrap();
        assert_eq!(read_gpt(&f, 16384).unwrap(), (grown.clone(), false));
        write_gpt(&f, &grown).unwrap();
        assert_eq!(read_gpt(&f, 16384).unwrap(), (grown, true));
    }
}
