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
                "hash_seed={hash_seed},root_owner=0:0,lazy_itable_init=1,nodiscard"
            ))
            .arg(out),
        "making the data partition (mkfs.ext4)",
    )?;
    Ok(())
}
