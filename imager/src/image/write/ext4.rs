//! The data partition: an empty ext4 made by the host's `mkfs.ext4` on a plain file.
//!
//! UUID and directory hash seed are derived from the spec and `E2FSPROGS_FAKE_TIME` pins the
//! timestamps, so two builds give the same bytes. No mount, no root.

use crate::image::tools;
use anyhow::{Context, Result};
use slate_core::Guid;
use std::fs::File;
use std::path::Path;
use std::process::Command;

/// Writes an empty ext4 of `size` bytes labelled `data` to `out`.
pub fn build(out: &Path, size: u64, uuid: Guid, hash_seed: Guid, epoch: i64) -> Result<()> {
    mkfs(out, size, uuid, hash_seed, epoch, &[], "")
}

/// The empty file system a sealed `/data` starts from ([`slate_core::tpm::header::TEMPLATE_BYTES`], sparse-encoded):
/// room in its reserved GDT blocks to grow on line to any disk, and as many inodes per block
/// group as the plain data partition has (one per 16 KiB of a full group), because the
/// groups a grow adds get the first group's count.
pub fn template(scratch: &Path, uuid: Guid, hash_seed: Guid, epoch: i64) -> Result<Vec<u8>> {
    let out = scratch.join("data-template.ext4");
    mkfs(
        &out,
        slate_core::tpm::header::TEMPLATE_BYTES,
        uuid,
        hash_seed,
        epoch,
        &["-N", "8192"],
        ",resize=4294967295",
    )?;
    let bytes = std::fs::read(&out).with_context(|| format!("reading {}", out.display()))?;
    let _ = std::fs::remove_file(&out);
    Ok(slate_core::sparse::encode(&bytes))
}

fn mkfs(
    out: &Path,
    size: u64,
    uuid: Guid,
    hash_seed: Guid,
    epoch: i64,
    extra: &[&str],
    extended: &str,
) -> Result<()> {
    let f = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    f.set_len(size)?;
    drop(f);
    tools::run(
        Command::new(tools::find("mkfs.ext4", "e2fsprogs")?)
            .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
            .env("MKE2FS_DEVICE_SECTSIZE", "512")
            .args([
                "-q",
                "-F",
                "-L",
                "data",
                "-T",
                "default",
                "-U",
                &uuid.to_string(),
            ])
            .arg("-E")
            .arg(format!(
                "hash_seed={hash_seed},root_owner=0:0,lazy_itable_init=1,nodiscard{extended}"
            ))
            .args(extra)
            .arg(out),
        "making the data partition (mkfs.ext4)",
    )?;
    Ok(())
}
