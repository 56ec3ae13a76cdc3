//! Where a delta's bytes go: the compressed units of the new root image (each file's data
//! blocks, each fragment block, each metadata block) that the old image does not hold byte
//! for byte anywhere. A unit that changed in one byte is new bytes from its first to its last
//! (it is compressed as a whole), so this is about what any scheme that fetches bytes of the
//! image as stored must fetch — a little less where a block is stored uncompressed and only
//! part of it changed; only a patch of the files before compression could do much better.
//! The metadata share shows the inode and directory tables rewritten when one file moves
//! every file after it.

use anyhow::{Context, Result};
use backhand::{FilesystemReader, InnerNode, SquashfsFileReader};
use sha2::Digest as _;
use std::collections::HashSet;

/// Where the superblock says the metadata tables start: (inode table, directory table,
/// fragment table's index).
fn tables(image: &[u8]) -> Result<(u64, u64, u64)> {
    let at = |o: usize| -> Result<u64> {
        let b = image.get(o..o + 8).context("a squashfs superblock")?;
        Ok(u64::from_le_bytes(b.try_into()?))
    };
    Ok((at(64)?, at(72)?, at(80)?))
}

/// The compressed units of a squashfs image, as (offset, length).
pub fn units(image: &[u8]) -> Result<Vec<(u64, u64)>> {
    let fs = FilesystemReader::from_reader(std::io::Cursor::new(image))
        .map_err(|e| anyhow::anyhow!("reading the root image's squashfs: {e}"))?;
    let mut out = Vec::new();
    for f in fs.fragments.iter().flatten() {
        out.push((f.start, u64::from(f.size.size())));
    }
    for node in fs.files() {
        let InnerNode::File(file) = &node.inner else {
            continue;
        };
        let (mut at, sizes) = match file {
            SquashfsFileReader::Basic(b) => (u64::from(b.blocks_start), &b.block_sizes),
            SquashfsFileReader::Extended(e) => (e.blocks_start, &e.block_sizes),
        };
        for s in sizes {
            let len = u64::from(s.size());
            if len > 0 {
                out.push((at, len));
            }
            at += len;
        }
    }
    // The inode, directory and fragment tables' metadata, block by block (a 2-byte header,
    // then the block), up to the fragment table's index; the index and the tables after it
    // as one unit.
    let (inodes, _, frags) = tables(image)?;
    let mut at = inodes;
    while at < frags {
        let h = image
            .get(usize::try_from(at)?..usize::try_from(at)? + 2)
            .context("a metadata block header")?;
        let len = 2 + u64::from(u16::from_le_bytes([h[0], h[1]]) & 0x7fff);
        out.push((at, len));
        at += len;
    }
    if at != frags {
        anyhow::bail!(
            "the metadata blocks end at byte {at}, the fragment table's index is at {frags}"
        );
    }
    out.push((frags, image.len() as u64 - frags));
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Bytes of `new`'s units that `old` has no unit of, byte for byte; and how many of them are
/// metadata (after the data blocks).
pub fn new_unit_bytes(old: &[u8], new: &[u8]) -> Result<(u64, u64)> {
    let bytes = |img: &[u8], (at, len): (u64, u64)| -> Result<Vec<u8>> {
        let (a, n) = (usize::try_from(at)?, usize::try_from(len)?);
        Ok(img.get(a..a + n).context("a unit past the image")?.to_vec())
    };
    let have: HashSet<[u8; 32]> = units(old)?
        .into_iter()
        .map(|u| Ok(sha2::Sha256::digest(bytes(old, u)?).into()))
        .collect::<Result<_>>()?;
    let (inodes, _, _) = tables(new)?;
    let (mut missing, mut metadata) = (0, 0);
    for u in units(new)? {
        let key: [u8; 32] = sha2::Sha256::digest(bytes(new, u)?).into();
        if !have.contains(&key) {
            missing += u.1;
            if u.0 >= inodes {
                metadata += u.1;
            }
        }
    }
    Ok((missing, metadata))
}
