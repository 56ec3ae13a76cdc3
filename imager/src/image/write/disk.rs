//! Assembles `disk.img`: the partition table plus each partition's image at its offset.
//!
//! The file stays sparse: only the data segments of each partition image are copied (found
//! with `SEEK_DATA`/`SEEK_HOLE`, as bmaptool does), except the root image, which is copied
//! whole because dm-verity covers every one of its blocks. The returned extents are exactly
//! the bytes a flash must write.

use anyhow::{Context, Result};
use rustix::fs::SeekFrom as RSeek;
use slate_core::gpt::Table;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// A partition's content.
pub struct Part<'a> {
    /// Partition label.
    pub label: &'a str,
    /// Image file to copy in.
    pub source: &'a Path,
    /// Copy every byte (true) or only the data segments (false).
    pub whole: bool,
}

/// Data segments (offset, length) of a file.
pub fn data_segments(f: &File) -> Result<Vec<(u64, u64)>> {
    let len = f.metadata()?.len();
    let mut segs = Vec::new();
    let mut pos = 0u64;
    while pos < len {
        let start = match rustix::fs::seek(f, RSeek::Data(pos)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(e).context("SEEK_DATA"),
        };
        let end = rustix::fs::seek(f, RSeek::Hole(start)).context("SEEK_HOLE")?;
        segs.push((start, end - start));
        pos = end;
    }
    Ok(segs)
}

/// Writes the disk image and returns the mapped extents (offset, length) in disk bytes.
pub fn assemble(
    out: &Path,
    table: &Table,
    parts: &[Part<'_>],
    progress: &dyn Fn(u64),
) -> Result<Vec<(u64, u64)>> {
    let enc = table.encode()?;
    let mut disk = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    disk.set_len(table.total_sectors * slate_core::gpt::SECTOR)?;
    let mut mapped = vec![
        (0, enc.primary.len() as u64),
        (enc.backup_offset, enc.backup.len() as u64),
    ];
    disk.write_all(&enc.primary)?;
    disk.seek(SeekFrom::Start(enc.backup_offset))?;
    disk.write_all(&enc.backup)?;

    let mut buf = vec![0u8; 4 << 20];
    let mut done = 0;
    for part in parts {
        let p = table
            .by_name(part.label)
            .with_context(|| format!("no partition {} in the table", part.label))?;
        let mut src = File::open(part.source)
            .with_context(|| format!("opening {}", part.source.display()))?;
        let len = src.metadata()?.len();
        anyhow::ensure!(
            len <= p.size(),
            "{} is {len} bytes but partition {} is {} bytes",
            part.source.display(),
            part.label,
            p.size()
        );
        let segments = if part.whole {
            vec![(0, len)]
        } else {
            data_segments(&src)?
        };
        for (off, seg_len) in segments {
            src.seek(SeekFrom::Start(off))?;
            disk.seek(SeekFrom::Start(p.offset() + off))?;
            let mut left = seg_len;
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                src.read_exact(&mut buf[..n])?;
                disk.write_all(&buf[..n])?;
                left -= n as u64;
                done += n as u64;
                progress(done);
            }
            mapped.push((p.offset() + off, seg_len));
        }
    }
    disk.sync_all()?;
    Ok(mapped)
}
