//! The disk: the ESP (FAT32 through mtools), the data partition (ext4), the GPT with slot A's
//! root image in place, and the block map that `slate flash` and bmaptool copy by.

use super::root::RootImage;
use super::Inputs;
use crate::image::timings::Timings;
use crate::image::write::bmap::Bmap;
use crate::image::write::disk::{self, Part};
use crate::image::write::esp::{self, EspFile};
use crate::image::write::ext4;
use anyhow::{Context, Result};
use slate_core::gpt::Table;
use slate_core::layout::{self, Slot};
use slate_core::Guid;
use std::fs::File;
use std::path::Path;

/// The partition table and what the block map maps.
pub struct Disk {
    /// The GPT written.
    pub table: Table,
    /// Bytes the block map lists.
    pub mapped_bytes: u64,
}

/// The data partition's ext4 (empty, reproducible). Independent of everything else, so the
/// build makes it beside the squashfs.
pub fn data_partition(inp: &Inputs<'_>, table: &Table, out: &Path) -> Result<()> {
    let data_part = table
        .by_name(layout::DATA_LABEL)
        .context("layout has no data partition")?;
    if inp.sealed_data.is_some() {
        // Zeros: no header yet. The device enrols and writes its encrypted file system at
        // its first boot, so the install environment never sees a key.
        let f = File::create(out).with_context(|| format!("creating {}", out.display()))?;
        f.set_len(data_part.size())?;
        return Ok(());
    }
    ext4::build(
        out,
        data_part.size(),
        Guid::derive("slate-data-uuid", &inp.id),
        Guid::derive("slate-data-hash-seed", &inp.id),
        inp.epoch,
    )
}

/// Writes the ESP image, then `disk.img` and `disk.img.bmap`.
pub fn write(
    inp: &Inputs<'_>,
    table: Table,
    root: &RootImage,
    esp_files: &[EspFile],
    data_img: &Path,
    scratch: &Path,
    t: &mut Timings,
) -> Result<Disk> {
    let progress = inp.progress;
    t.stage("ESP (FAT32)");
    let esp_part = table
        .by_name(layout::ESP_LABEL)
        .context("layout has no ESP")?;
    progress.step("ESP (FAT32, mtools)");
    let esp_img = scratch.join("esp.img");
    let serial = u32::from_le_bytes(Guid::derive("slate-esp-serial", &inp.id).0[..4].try_into()?);
    esp::build(
        &esp_img,
        esp_part.size(),
        esp_files,
        serial,
        inp.epoch,
        esp_part.first_lba,
        &scratch.join("esp"),
    )?;
    let data_size = table
        .by_name(layout::DATA_LABEL)
        .context("layout has no data partition")?
        .size();

    t.stage("disk.img");
    let disk_path = inp.dir.join("disk.img");
    let parts = [
        Part {
            label: layout::ESP_LABEL,
            source: &esp_img,
            whole: false,
        },
        Part {
            label: Slot::A.label(),
            source: &root.path,
            whole: true,
        },
        Part {
            label: layout::DATA_LABEL,
            source: data_img,
            whole: false,
        },
    ];
    let bar = progress.bytes(
        esp_part.size() + root.info.image_size() + data_size,
        "writing disk.img",
    );
    let mapped = disk::assemble(&disk_path, &table, &parts, &|n| bar.set_position(n))?;
    bar.finish_and_clear();

    t.stage("block map");
    let mut disk_file = File::open(&disk_path)?;
    let mapped_total: u64 = mapped.iter().map(|m| m.1).sum();
    let bar = progress.bytes(mapped_total, "block map checksums");
    let bmap = Bmap::compute(&mut disk_file, &mapped, &|n| bar.set_position(n))?;
    bar.finish_and_clear();
    std::fs::write(inp.dir.join("disk.img.bmap"), bmap.render())?;
    Ok(Disk {
        mapped_bytes: bmap.mapped_bytes(),
        table,
    })
}
