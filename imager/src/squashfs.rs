//! Writes a tree as a squashfs 4.0 image (zstd), padded to 4 KiB so the dm-verity data area
//! ends on a block boundary.
//!
//! `backhand` writes deterministically given the same nodes in the same order; the tree gives
//! sorted paths and fixed timestamps, so the same tree makes the same bytes.

use crate::tree::{Content, Kind, Tree};
use anyhow::{anyhow, Result};
use backhand::compression::Compressor;
use backhand::{FilesystemCompressor, FilesystemWriter, NodeHeader};
use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;

/// Bytes shared with backhand without copying.
struct Shared(Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Writes `tree` to `out` (at its current position 0) and returns the padded size in bytes.
pub fn write<W: Write + Seek>(tree: &Tree, mtime: u32, level: u32, mut out: W) -> Result<u64> {
    let mut fs = FilesystemWriter::default();
    fs.set_time(mtime);
    let options = backhand::compression::CompressionOptions::Zstd(backhand::compression::Zstd {
        compression_level: level,
    });
    let compressor = FilesystemCompressor::new(Compressor::Zstd, Some(options))
        .map_err(|e| anyhow!("squashfs compressor: {e}"))?;
    fs.set_compressor(compressor);
    fs.set_no_padding();
    let root = tree
        .get("")
        .map(|n| (n.mode, n.uid, n.gid))
        .unwrap_or((0o755, 0, 0));
    fs.set_root_mode(root.0);
    fs.set_root_uid(root.1);
    fs.set_root_gid(root.2);
    for (path, node) in tree.iter() {
        if path.is_empty() {
            continue;
        }
        let header = NodeHeader::new(node.mode, node.uid, node.gid, mtime);
        let r = match &node.kind {
            Kind::Dir => fs.push_dir(path, header),
            Kind::File(Content::Bytes(b)) => {
                fs.push_file(std::io::Cursor::new(Shared(b.clone())), path, header)
            }
            Kind::File(Content::Host(p)) => fs.push_file_from_path(p.clone(), path, header),
            Kind::Symlink(t) => fs.push_symlink(t.clone(), path, header),
            Kind::CharDev { major, minor } => {
                fs.push_char_device((major << 8) | minor, path, header)
            }
        };
        r.map_err(|e| anyhow!("adding /{path} to the squashfs: {e}"))?;
    }
    let (_, written) = fs
        .write(&mut out)
        .map_err(|e| anyhow!("writing the squashfs: {e}"))?;
    let padded = written.div_ceil(4096) * 4096;
    if padded > written {
        out.seek(SeekFrom::Start(padded - 1))?;
        out.write_all(&[0])?;
    }
    out.flush()?;
    Ok(padded)
}
