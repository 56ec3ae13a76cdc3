//! The slot image: the root tree as squashfs (blocks compressed on every core), padded to 4 KiB,
//! then the dm-verity superblock and hash tree appended.

use super::Inputs;
use crate::error::BuildError;
use crate::image::timings::Timings;
use crate::image::write::squashfs;
use anyhow::Result;
use sha2::{Digest, Sha256};
use slate_core::verity::{self, VerityInfo};
use slate_core::Guid;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;

/// The written slot image.
pub struct RootImage {
    /// `rootfs.img` in the output folder.
    pub path: PathBuf,
    /// What the kernel needs to map it.
    pub info: VerityInfo,
    /// UUID in its verity superblock.
    pub uuid: Guid,
}

/// Writes `rootfs.img` and refuses one that does not fit the board's slot.
pub fn write(inp: &Inputs<'_>, t: &mut Timings) -> Result<RootImage> {
    let (spec, b, progress) = (&inp.spec.spec, &inp.board.board, inp.progress);
    t.stage("squashfs");
    let tree_bytes = inp.root.file_bytes()?;
    progress.step(format!(
        "squashfs (zstd {}) of {} entries, {:.1} MiB of files",
        spec.squashfs.compression_level,
        inp.root.len(),
        tree_bytes as f64 / 1048576.0
    ));
    let spinner = progress.spinner("compressing");
    let path = inp.dir.join("rootfs.img");
    let mut rootfs = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let data_len = squashfs::write(
        inp.root,
        inp.mtime,
        spec.squashfs.compression_level,
        threads,
        inp.cache.map(|c| c.join("squashfs")).as_deref(),
        &mut rootfs,
    )?;
    spinner.finish_and_clear();

    t.stage("dm-verity");
    let salt = Sha256::new()
        .chain_update(b"slate-verity-salt\0")
        .chain_update(&inp.id)
        .finalize()
        .to_vec();
    let uuid = Guid::derive("slate-verity-uuid", &inp.id);
    rootfs.seek(SeekFrom::Start(0))?;
    let bar = progress.bytes(data_len, "dm-verity hash tree");
    let tree = verity::build(
        std::io::BufReader::new(&rootfs),
        data_len,
        &salt,
        uuid,
        threads,
        &mut |n| bar.set_position(n),
    )?;
    bar.finish_and_clear();
    rootfs.seek(SeekFrom::Start(tree.info.hash_offset))?;
    rootfs.write_all(&tree.area)?;
    rootfs.sync_all()?;
    drop(rootfs);
    let image_bytes = tree.info.image_size();
    let slot_bytes = b.disk.slot_mib << 20;
    if image_bytes > slot_bytes {
        return Err(BuildError::RootTooLarge {
            image_bytes,
            image_mib: image_bytes as f64 / 1048576.0,
            slot_bytes,
            slot_mib: b.disk.slot_mib,
            board: b.name.clone(),
        }
        .into());
    }
    progress.step(format!(
        "root image {:.1} MiB, root hash {}",
        image_bytes as f64 / 1048576.0,
        tree.info.root_hash
    ));
    Ok(RootImage {
        path,
        info: tree.info,
        uuid,
    })
}
