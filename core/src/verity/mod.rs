//! dm-verity hash tree in cryptsetup's on-disk format (`veritysetup format`, version 1).
//!
//! ```text
//! slot image:  [ data: squashfs, padded to 4 KiB ][ superblock block ][ top level ] ... [ level 0 ]
//!                ^0                                ^hash_offset        ^hash_offset + 4096
//!
//! superblock (512 bytes, little-endian, rest of its 4 KiB block zero):
//!   0  "verity\0\0"   8  version u32 = 1   12 hash_type u32 = 1 (normal)
//!  16  uuid [16]      32  algorithm [32] = "sha256"
//!  64  data_block_size u32 = 4096   68 hash_block_size u32 = 4096
//!  72  data_blocks u64              80 salt_size u16 (<= 256)   82 pad [6]
//!  88  salt [256]                  344 pad [168]
//! ```
//! Level 0 holds `sha256(salt || data block)` for every data block, 128 digests per 4 KiB hash
//! block, zero-padded; level n+1 hashes the blocks of level n; levels are stored top first.
//! The root hash is `sha256(salt || top block)` (or of the only data block when there is one).
//! This matches cryptsetup's `lib/verity/verity_hash.c` byte for byte, which is what the
//! kernel's dm-verity target reads; a test compares with `veritysetup format` itself.

use crate::digest::Digest32;
use crate::guid::Guid;
use crate::num::usize_of;
use sha2::{Digest, Sha256};
use std::io::{self, Read};

mod levels;
mod params;
pub use levels::LevelsBuilder;
pub use params::{DmTarget, VerityInfo};

/// Data and hash block size Slate uses (the kernel page size; the format allows others).
pub const BLOCK: u64 = 4096;
/// [`BLOCK`] as a buffer length and as the superblock's 32-bit field.
const BLOCK_BYTES: usize = 4096;
const BLOCK_U32: u32 = 4096;
const _: () = assert!(BLOCK_BYTES as u64 == BLOCK && BLOCK_U32 as u64 == BLOCK);
/// Size of one digest (sha256) and of its slot in a hash block.
pub const DIGEST: usize = 32;
/// Digests per hash block.
const FANOUT: u64 = BLOCK / DIGEST as u64;
/// Largest data size (in blocks) accepted from outside: 4 PiB.
pub const MAX_DATA_BLOCKS: u64 = 1 << 40;
/// Size of the encoded superblock.
pub const SUPERBLOCK_SIZE: usize = 512;
const SIGNATURE: &[u8; 8] = b"verity\0\0";
/// The longest salt the format takes.
pub const MAX_SALT: usize = 256;

/// Why verity parameters or a superblock were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerityError {
    /// `slate.verity=` value did not have four fields of the right form.
    #[error("invalid verity parameters {text:?}: {why} (expected <root hex64>:<salt hex>:<data blocks>:<hash offset>)")]
    BadParams {
        /// The text given.
        text: String,
        /// What was wrong.
        why: String,
    },
    /// The superblock did not start with "verity\0\0".
    #[error("no verity superblock (signature {found:?})")]
    NoSuperblock {
        /// Bytes found instead.
        found: String,
    },
    /// A superblock field Slate does not support.
    #[error("unsupported verity superblock: {what}")]
    Unsupported {
        /// Which field.
        what: String,
    },
    /// The data size is not a whole number of blocks or is empty.
    #[error("verity data size {size} is not a positive multiple of {BLOCK}")]
    BadDataSize {
        /// Size given.
        size: u64,
    },
}

/// The verity superblock fields Slate writes and reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// UUID of the hash device (reproducible: derived from the spec).
    pub uuid: Guid,
    /// Data blocks covered.
    pub data_blocks: u64,
    /// Salt.
    pub salt: Vec<u8>,
}

impl Superblock {
    /// Encodes the 512-byte superblock.
    pub fn encode(&self) -> [u8; SUPERBLOCK_SIZE] {
        let mut b = [0u8; SUPERBLOCK_SIZE];
        b[0..8].copy_from_slice(SIGNATURE);
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        b[12..16].copy_from_slice(&1u32.to_le_bytes());
        b[16..32].copy_from_slice(&self.uuid.0);
        b[32..38].copy_from_slice(b"sha256");
        b[64..68].copy_from_slice(&BLOCK_U32.to_le_bytes());
        b[68..72].copy_from_slice(&BLOCK_U32.to_le_bytes());
        b[72..80].copy_from_slice(&self.data_blocks.to_le_bytes());
        let n = self.salt.len().min(MAX_SALT);
        let n16 = u16::try_from(n).unwrap_or(u16::MAX); // n ≤ MAX_SALT = 256
        b[80..82].copy_from_slice(&n16.to_le_bytes());
        b[88..88 + n].copy_from_slice(&self.salt[..n]);
        b
    }

    /// Decodes a superblock, refusing anything but version 1 / sha256 / 4 KiB blocks.
    pub fn decode(b: &[u8]) -> Result<Superblock, VerityError> {
        if b.len() < SUPERBLOCK_SIZE || &b[0..8] != SIGNATURE {
            return Err(VerityError::NoSuperblock {
                found: String::from_utf8_lossy(&b[..b.len().min(8)]).into_owned(),
            });
        }
        let u32_at = |at: usize| crate::le::u32_at(b, at);
        let alg_end = b[32..64].iter().position(|&c| c == 0).unwrap_or(32);
        let alg = String::from_utf8_lossy(&b[32..32 + alg_end]).into_owned();
        if u32_at(8) != 1 || u32_at(12) != 1 || alg != "sha256" {
            return Err(VerityError::Unsupported {
                what: format!(
                    "version {}, hash type {}, algorithm {alg:?} (Slate reads 1, 1, sha256)",
                    u32_at(8),
                    u32_at(12)
                ),
            });
        }
        if u32_at(64) != BLOCK_U32 || u32_at(68) != BLOCK_U32 {
            return Err(VerityError::Unsupported {
                what: format!(
                    "block sizes {}/{} (Slate reads 4096/4096)",
                    u32_at(64),
                    u32_at(68)
                ),
            });
        }
        let salt_size = crate::le::u16_at(b, 80) as usize;
        if salt_size > MAX_SALT {
            return Err(VerityError::Unsupported {
                what: format!("salt size {salt_size} > 256"),
            });
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[16..32]);
        Ok(Superblock {
            uuid: Guid(uuid),
            data_blocks: crate::le::u64_at(b, 72),
            salt: b[88..88 + salt_size].to_vec(),
        })
    }
}

/// Number of blocks in each level, level 0 (hashes of the data) first.
pub fn level_sizes(data_blocks: u64) -> Vec<u64> {
    let mut sizes = Vec::new();
    let mut n = data_blocks;
    while n > 1 {
        n = n.div_ceil(FANOUT);
        sizes.push(n);
    }
    sizes
}

/// Hash blocks after the superblock.
pub fn tree_blocks(data_blocks: u64) -> u64 {
    level_sizes(data_blocks).iter().sum()
}

/// A computed tree: the bytes to append after the data, and what the kernel needs.
#[derive(Debug, Clone)]
pub struct Tree {
    /// Root hash, salt, sizes.
    pub info: VerityInfo,
    /// Superblock block followed by the hash levels (top first): append at `info.hash_offset`.
    pub area: Vec<u8>,
}

pub(crate) fn digest(salt: &[u8], block: &[u8]) -> [u8; DIGEST] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}

/// Hashes `data` block by block into `out` (DIGEST bytes per block) on up to `threads` threads.
/// Blocks are independent, so the lowest (and by far the largest) level parallelises.
fn hash_blocks(salt: &[u8], data: &[u8], out: &mut [u8], threads: usize) {
    let blocks = data.len() / BLOCK_BYTES;
    let per_thread = blocks.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        for (d, o) in data
            .chunks(per_thread * BLOCK_BYTES)
            .zip(out.chunks_mut(per_thread * DIGEST))
        {
            s.spawn(move || {
                for (block, slot) in d.chunks(BLOCK_BYTES).zip(o.chunks_mut(DIGEST)) {
                    slot.copy_from_slice(&digest(salt, block));
                }
            });
        }
    });
}

/// Builds the tree of `data_len` bytes read from `data` (a positive multiple of 4 KiB),
/// streaming in batches so memory stays at one batch plus the tree (~1/127 of the data).
/// `progress` is told how many data bytes were hashed so far.
pub fn build<R: Read>(
    mut data: R,
    data_len: u64,
    salt: &[u8],
    uuid: Guid,
    threads: usize,
    progress: &mut dyn FnMut(u64),
) -> io::Result<Tree> {
    if data_len == 0 || !data_len.is_multiple_of(BLOCK) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            VerityError::BadDataSize { size: data_len },
        ));
    }
    let data_blocks = data_len / BLOCK;
    let sizes = level_sizes(data_blocks);

    // Level 0 (or, with one block, the root) from the data stream.
    const BATCH: usize = 16 << 20;
    let mut level0 = vec![0u8; usize_of(data_blocks) * DIGEST];
    let mut buf = vec![0u8; BATCH];
    let mut done: u64 = 0;
    while done < data_len {
        let n = usize_of((data_len - done).min(BATCH as u64));
        data.read_exact(&mut buf[..n])?;
        let first = usize_of(done / BLOCK);
        let out = &mut level0[first * DIGEST..(first + n / BLOCK_BYTES) * DIGEST];
        hash_blocks(salt, &buf[..n], out, threads);
        done += n as u64;
        progress(done);
    }

    let (root_hash, levels) = levels_of(level0, &sizes, salt, threads)?;
    let uuid_sb = Superblock {
        uuid,
        data_blocks,
        salt: salt.to_vec(),
    };
    let mut area = vec![0u8; BLOCK_BYTES];
    area[..SUPERBLOCK_SIZE].copy_from_slice(&uuid_sb.encode());
    area.extend_from_slice(&levels);
    Ok(Tree {
        info: VerityInfo {
            root_hash,
            salt: salt.to_vec(),
            data_blocks,
            hash_offset: data_len,
        },
        area,
    })
}

/// The root hash and the hash levels above `level0` (the data blocks' digests), as the area
/// after the superblock holds them: top level first, each padded to whole blocks.
pub(crate) fn levels_of(
    level0: Vec<u8>,
    sizes: &[u64],
    salt: &[u8],
    threads: usize,
) -> io::Result<(Digest32, Vec<u8>)> {
    if sizes.is_empty() {
        let root = level0
            .get(..DIGEST)
            .ok_or_else(|| io::Error::other("no data"))?;
        return Ok((
            Digest32(root.try_into().map_err(io::Error::other)?),
            Vec::new(),
        ));
    }
    let mut levels: Vec<Vec<u8>> = Vec::new();
    let mut below = level0;
    for &blocks in sizes {
        let mut level = vec![0u8; usize_of(blocks * BLOCK)];
        level[..below.len()].copy_from_slice(&below);
        let mut next = vec![0u8; usize_of(blocks) * DIGEST];
        hash_blocks(salt, &level, &mut next, threads);
        levels.push(level);
        below = next;
    }
    let root = Digest32(below[..DIGEST].try_into().map_err(io::Error::other)?);
    Ok((root, levels.into_iter().rev().flatten().collect()))
}

/// Recomputes the tree of an image (data followed by its hash area, as Slate writes slots) and
/// checks it against `info`: the data's root hash, and the stored hash blocks byte for byte.
/// `Ok(Err(why))` means the image is wrong; `Err` means it could not be read.
pub fn check_image<R: Read + std::io::Seek>(
    image: &mut R,
    info: &VerityInfo,
    threads: usize,
) -> io::Result<Result<(), String>> {
    use std::io::SeekFrom;
    image.seek(SeekFrom::Start(0))?;
    let tree = build(
        io::BufReader::new(&mut *image).take(info.hash_offset),
        info.hash_offset,
        &info.salt,
        Guid::NIL,
        threads,
        &mut |_| {},
    )?;
    if tree.info.root_hash != info.root_hash {
        return Ok(Err(format!(
            "the data's verity root hash is {}, expected {}",
            tree.info.root_hash, info.root_hash
        )));
    }
    image.seek(SeekFrom::Start(info.hash_offset + BLOCK))?;
    let mut stored = vec![0u8; tree.area.len() - BLOCK_BYTES];
    image.read_exact(&mut stored)?;
    if stored != tree.area[BLOCK_BYTES..] {
        return Ok(Err(format!(
            "the hash tree stored after byte {} does not match the data",
            info.hash_offset
        )));
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tree_of(data: &[u8], threads: usize) -> Tree {
        build(
            data,
            data.len() as u64,
            b"salt",
            Guid::NIL,
            threads,
            &mut |_| {},
        )
        .unwrap()
    }

    #[test]
    fn check_image_accepts_a_sealed_image_and_names_damage() {
        let data: Vec<u8> = (0..300 * 4096).map(|i| (i % 251) as u8).collect();
        let t = tree_of(&data, 2);
        let mut image = data.clone();
        image.extend_from_slice(&t.area);
        assert_eq!(
            check_image(&mut std::io::Cursor::new(&image), &t.info, 2).unwrap(),
            Ok(())
        );
        let mut bad = image.clone();
        bad[5] ^= 1;
        assert!(check_image(&mut std::io::Cursor::new(&bad), &t.info, 2)
            .unwrap()
            .unwrap_err()
            .contains("root hash"));
        let mut bad = image.clone();
        let last = bad.len() - 1;
        bad[last - 4000] ^= 1;
        assert!(check_image(&mut std::io::Cursor::new(&bad), &t.info, 2)
            .unwrap()
            .unwrap_err()
            .contains("hash tree"));
    }

    #[test]
    fn level_sizes_follow_fanout_of_128() {
        assert_eq!(level_sizes(1), Vec::<u64>::new());
        assert_eq!(level_sizes(2), vec![1]);
        assert_eq!(level_sizes(128), vec![1]);
        assert_eq!(level_sizes(129), vec![2, 1]);
        assert_eq!(level_sizes(128 * 128 + 1), vec![129, 2, 1]);
    }

    #[test]
    fn single_block_root_is_the_salted_block_digest() {
        let data = vec![7u8; 4096];
        let t = tree_of(&data, 1);
        assert_eq!(t.info.root_hash.0, digest(b"salt", &data));
        assert_eq!(t.area.len(), 4096);
    }

    #[test]
    fn two_blocks_make_one_level() {
        let mut data = vec![0u8; 8192];
        data[4096] = 1;
        let t = tree_of(&data, 2);
        let mut level = vec![0u8; 4096];
        level[..32].copy_from_slice(&digest(b"salt", &data[..4096]));
        level[32..64].copy_from_slice(&digest(b"salt", &data[4096..]));
        assert_eq!(&t.area[4096..], &level[..]);
        assert_eq!(t.info.root_hash.0, digest(b"salt", &level));
    }

    #[test]
    fn unaligned_data_is_refused() {
        assert!(build(&[0u8; 100][..], 100, b"", Guid::NIL, 1, &mut |_| {}).is_err());
    }

    #[test]
    fn superblock_round_trips_and_has_cryptsetup_fields() {
        let sb = Superblock {
            uuid: Guid::derive("t", b"u"),
            data_blocks: 12345,
            salt: vec![0xab; 32],
        };
        let b = sb.encode();
        assert_eq!(&b[0..8], b"verity\0\0");
        assert_eq!(u16::from_le_bytes([b[80], b[81]]), 32);
        assert_eq!(Superblock::decode(&b).unwrap(), sb);
    }

    #[test]
    fn cmdline_form_round_trips_and_rejects_garbage() {
        let info = VerityInfo {
            root_hash: Digest32([3; 32]),
            salt: vec![1, 2],
            data_blocks: 10,
            hash_offset: 40960,
        };
        assert_eq!(info.to_string().parse::<VerityInfo>().unwrap(), info);
        assert!("abc:00:1:4096".parse::<VerityInfo>().is_err());
        assert!(format!("{}:00:10:4096", "0".repeat(64))
            .parse::<VerityInfo>()
            .is_err());
    }

    #[test]
    fn dm_target_skips_the_superblock() {
        let info = VerityInfo {
            root_hash: Digest32([0; 32]),
            salt: vec![0xaa],
            data_blocks: 10,
            hash_offset: 40960,
        };
        assert_eq!(
            info.dm_target("/dev/vda2", &["restart_on_corruption"]).to_string(),
            format!("0 80 verity 1 /dev/vda2 /dev/vda2 4096 4096 10 11 sha256 {} aa 1 restart_on_corruption", "00".repeat(32))
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn thread_count_does_not_change_the_tree(blocks in 1usize..300, seed in any::<u8>(), threads in 1usize..5) {
            let data: Vec<u8> = (0..blocks * 4096).map(|i| (i as u8).wrapping_mul(seed)).collect();
            let a = tree_of(&data, 1);
            let b = tree_of(&data, threads);
            prop_assert_eq!(a.area, b.area);
            prop_assert_eq!(a.info, b.info);
        }
    }
}
