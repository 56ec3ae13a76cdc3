//! The EFI System Partition: FAT32 written rootlessly with mtools.
//!
//! The `fatfs` crate (0.3.6) writes FAT32 that `fsck.fat -n` rejects (DESIGN §10), so Slate uses
//! `mformat`/`mmd`/`mcopy` on a plain file. They honour `SOURCE_DATE_EPOCH` for the times they
//! stamp, `mcopy -m` keeps the (fixed) times of the staged files, and `mformat -N` fixes the
//! volume serial, so the bytes depend only on the inputs.

use crate::image::tools;
use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

/// One file on the ESP.
#[derive(Debug, Clone)]
pub struct EspFile {
    /// Path on the ESP without a leading `/` (`EFI/BOOT/BOOTX64.EFI`).
    pub path: String,
    /// Contents.
    pub bytes: Vec<u8>,
}

fn mtools(tool: &str, epoch: i64) -> Result<Command> {
    let mut c = Command::new(tools::find(tool, "mtools")?);
    c.env("SOURCE_DATE_EPOCH", epoch.to_string())
        .env("TZ", "UTC")
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("MTOOLSRC", "/dev/null");
    Ok(c)
}

/// Writes a FAT32 file system of `size` bytes to `out` holding `files`.
/// `stage` is a scratch folder; `hidden_sectors` is the partition's first LBA.
pub fn build(
    out: &Path,
    size: u64,
    files: &[EspFile],
    serial: u32,
    epoch: i64,
    hidden_sectors: u64,
    stage: &Path,
) -> Result<()> {
    let f = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    f.set_len(size)?;
    drop(f);
    let img = out.to_string_lossy().into_owned();
    tools::run(
        mtools("mformat", epoch)?
            .args(["-i", &img, "-F", "-v", "ESP"])
            .args(["-N", &format!("{serial:08x}")])
            .args(["-H", &hidden_sectors.to_string()])
            .arg("::"),
        "formatting the ESP",
    )?;

    let mut dirs = BTreeSet::new();
    for f in files {
        let mut acc = String::new();
        let parts: Vec<&str> = f.path.split('/').collect();
        for p in &parts[..parts.len() - 1] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(p);
            dirs.insert(acc.clone());
        }
    }
    if !dirs.is_empty() {
        // BTreeSet order puts every parent before its children.
        let mut mmd = mtools("mmd", epoch)?;
        mmd.args(["-i", &img]);
        for d in &dirs {
            mmd.arg(format!("::/{d}"));
        }
        tools::run(&mut mmd, "creating ESP folders")?;
    }

    std::fs::create_dir_all(stage)?;
    let mtime = UNIX_EPOCH + Duration::from_secs(epoch.max(0) as u64);
    for (i, f) in files.iter().enumerate() {
        let staged = stage.join(format!("{i}"));
        std::fs::write(&staged, &f.bytes)?;
        File::options()
            .write(true)
            .open(&staged)?
            .set_modified(mtime)?;
        tools::run(
            mtools("mcopy", epoch)?
                .args(["-m", "-i", &img])
                .arg(&staged)
                .arg(format!("::/{}", f.path)),
            &format!("copying {} to the ESP", f.path),
        )?;
    }
    Ok(())
}
