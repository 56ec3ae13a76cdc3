//! `slate flash`: writes the mapped blocks of a disk image to a device or file, checking every
//! range's sha256 on the way in and again after the write.
//!
//! It refuses a target that is mounted (or has a mounted partition), holds the running system,
//! is used by device-mapper or swap, is the image itself, or is smaller than the image.

use crate::image::write::bmap::Bmap;
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::Instant;

/// What a flash did.
#[derive(Debug)]
pub struct FlashSummary {
    /// Bytes written.
    pub written: u64,
    /// Image size.
    pub image_size: u64,
    /// Seconds taken, write and verify.
    pub seconds: f64,
}

fn dev_major_minor(rdev: u64) -> (u64, u64) {
    let major = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff);
    let minor = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff);
    (major, minor)
}

/// Device numbers ("maj:min") of a block device and its partitions.
fn device_and_partitions(majmin: &str) -> Vec<String> {
    let mut out = vec![majmin.to_string()];
    let sys = Path::new("/sys/dev/block").join(majmin);
    if let Ok(dir) = std::fs::read_dir(&sys) {
        for e in dir.flatten() {
            if e.path().join("partition").exists() {
                if let Ok(dev) = std::fs::read_to_string(e.path().join("dev")) {
                    out.push(dev.trim().to_string());
                }
            }
        }
    }
    out
}

/// Why a block device may not be written.
fn block_device_in_use(target: &Path, rdev: u64) -> Option<String> {
    let (maj, min) = dev_major_minor(rdev);
    let devs = device_and_partitions(&format!("{maj}:{min}"));
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mountinfo.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 4 && devs.iter().any(|d| d == f[2]) {
            if f[4] == "/" {
                return Some(format!(
                    "{} holds the running system (mounted at /)",
                    target.display()
                ));
            }
            return Some(format!(
                "{} (device {}) is mounted at {}; unmount it first",
                target.display(),
                f[2],
                f[4]
            ));
        }
    }
    for d in &devs {
        let holders = Path::new("/sys/dev/block").join(d).join("holders");
        if std::fs::read_dir(holders).is_ok_and(|mut h| h.next().is_some()) {
            return Some(format!("{} (device {d}) is in use by device-mapper (LVM, dm-crypt, dm-verity); release it first", target.display()));
        }
    }
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    let target_str = target.to_string_lossy();
    if swaps.lines().skip(1).any(|l| {
        l.split_whitespace()
            .next()
            .is_some_and(|p| p.starts_with(&*target_str))
    }) {
        return Some(format!("{} is used as swap", target.display()));
    }
    None
}

/// Flashes `image` (with its block map) to `target`.
pub fn flash(
    image: &Path,
    bmap_path: &Path,
    target: &Path,
    progress: Progress,
) -> Result<FlashSummary> {
    let text = std::fs::read_to_string(bmap_path).with_context(|| {
        format!(
            "reading the block map {} (made by `slate build` beside disk.img; or pass --bmap)",
            bmap_path.display()
        )
    })?;
    let bmap = Bmap::parse(&text).with_context(|| format!("{}", bmap_path.display()))?;
    let mut src = File::open(image).with_context(|| format!("opening {}", image.display()))?;
    let src_meta = src.metadata()?;
    if src_meta.len() != bmap.image_size {
        bail!(
            "{} is {} bytes but its block map {} says {}; they do not belong together",
            image.display(),
            src_meta.len(),
            bmap_path.display(),
            bmap.image_size
        );
    }

    let target_meta = std::fs::metadata(target).ok();
    if let Some(m) = &target_meta {
        if m.dev() == src_meta.dev() && m.ino() == src_meta.ino() {
            bail!("{} is the image itself", target.display());
        }
    }
    let mut dst = match &target_meta {
        Some(m) if m.file_type().is_block_device() => {
            if let Some(why) = block_device_in_use(target, m.rdev()) {
                bail!("refusing to flash: {why}");
            }
            let mut f = File::options()
                .read(true)
                .write(true)
                .open(target)
                .with_context(|| format!("opening {}", target.display()))?;
            let size = f.seek(SeekFrom::End(0))?;
            if size < bmap.image_size {
                bail!(
                    "refusing to flash: {} is {size} bytes, smaller than the image ({} bytes)",
                    target.display(),
                    bmap.image_size
                );
            }
            f
        }
        Some(m) if !m.file_type().is_file() => bail!(
            "{} is neither a block device nor a regular file",
            target.display()
        ),
        _ => {
            let f = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(target)
                .with_context(|| format!("creating {}", target.display()))?;
            f.set_len(bmap.image_size)?;
            f
        }
    };

    let started = Instant::now();
    let total = bmap.mapped_bytes();
    let bar = progress.bytes(total, "writing");
    let mut buf = vec![0u8; 4 << 20];
    let mut done = 0;
    for r in &bmap.ranges {
        let (off, len) = r.bytes(bmap.image_size);
        src.seek(SeekFrom::Start(off))?;
        dst.seek(SeekFrom::Start(off))?;
        let mut h = Sha256::new();
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            src.read_exact(&mut buf[..n]).with_context(|| {
                format!("reading {} at byte {}", image.display(), off + len - left)
            })?;
            h.update(&buf[..n]);
            dst.write_all(&buf[..n]).with_context(|| {
                format!("writing {} at byte {}", target.display(), off + len - left)
            })?;
            left -= n as u64;
            done += n as u64;
            bar.set_position(done);
        }
        if hex::encode(h.finalize()) != r.sha256 {
            bail!("{}: blocks {}-{} (bytes {off}..{}) do not match the block map's checksum; the image is damaged, rebuild or re-download it", image.display(), r.first, r.last, off + len);
        }
    }
    dst.sync_all()?;
    bar.finish_and_clear();

    let bar = progress.bytes(total, "verifying");
    let mut done = 0;
    for r in &bmap.ranges {
        let (off, len) = r.bytes(bmap.image_size);
        dst.seek(SeekFrom::Start(off))?;
        let mut h = Sha256::new();
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            dst.read_exact(&mut buf[..n])?;
            h.update(&buf[..n]);
            left -= n as u64;
            done += n as u64;
            bar.set_position(done);
        }
        if hex::encode(h.finalize()) != r.sha256 {
            bail!("{}: blocks {}-{} read back differently from what was written; the target may be failing", target.display(), r.first, r.last);
        }
    }
    bar.finish_and_clear();
    Ok(FlashSummary {
        written: total,
        image_size: bmap.image_size,
        seconds: started.elapsed().as_secs_f64(),
    })
}
