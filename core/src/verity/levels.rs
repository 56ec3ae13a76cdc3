//! The verity levels of data that arrives a piece at a time (a delta download), without the
//! whole image in hand: level 0 is hashed as the data passes, the levels above it at the end.

use super::{
    digest, level_sizes, levels_of, VerityError, BLOCK, BLOCK_BYTES, DIGEST, MAX_DATA_BLOCKS,
};
use crate::digest::Digest32;
use crate::num::usize_of;

/// The hash levels of data fed in order, a piece at a time: what lets a delta download give
/// a root image's verity tree from the data it has assembled instead of fetching it (the
/// superblock in front of the levels, with its UUID, is fetched).
#[derive(Debug)]
pub struct LevelsBuilder {
    salt: Vec<u8>,
    data_len: u64,
    fed: u64,
    partial: Vec<u8>,
    level0: Vec<u8>,
}

impl LevelsBuilder {
    /// For `data_len` bytes of data (a positive multiple of 4 KiB) hashed with `salt`.
    pub fn new(data_len: u64, salt: &[u8]) -> Result<LevelsBuilder, VerityError> {
        if data_len == 0 || !data_len.is_multiple_of(BLOCK) || data_len / BLOCK > MAX_DATA_BLOCKS {
            return Err(VerityError::BadDataSize { size: data_len });
        }
        Ok(LevelsBuilder {
            salt: salt.to_vec(),
            data_len,
            fed: 0,
            partial: Vec::with_capacity(BLOCK_BYTES),
            level0: Vec::with_capacity(usize_of(data_len / BLOCK) * DIGEST),
        })
    }

    /// Takes the next data bytes (beyond `data_len` they are ignored).
    pub fn update(&mut self, mut bytes: &[u8]) {
        let room = usize_of(self.data_len - self.fed);
        bytes = &bytes[..bytes.len().min(room)];
        self.fed += bytes.len() as u64;
        if !self.partial.is_empty() {
            let take = (BLOCK_BYTES - self.partial.len()).min(bytes.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.partial.len() == BLOCK_BYTES {
                let d = digest(&self.salt, &self.partial);
                self.level0.extend_from_slice(&d);
                self.partial.clear();
            }
        }
        let whole = bytes.len() / BLOCK_BYTES * BLOCK_BYTES;
        for block in bytes[..whole].chunks(BLOCK_BYTES) {
            let d = digest(&self.salt, block);
            self.level0.extend_from_slice(&d);
        }
        self.partial.extend_from_slice(&bytes[whole..]);
    }

    /// The data bytes taken so far.
    pub fn fed(&self) -> u64 {
        self.fed
    }

    /// The root hash and the levels (what follows the superblock block in the hash area),
    /// once all `data_len` bytes were fed; None before.
    pub fn finish(self) -> Option<(Digest32, Vec<u8>)> {
        if self.fed != self.data_len {
            return None;
        }
        let sizes = level_sizes(self.data_len / BLOCK);
        levels_of(self.level0, &sizes, &self.salt, 1).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{build, Tree};
    use super::*;
    use crate::guid::Guid;
    use proptest::prelude::*;

    fn tree_of(data: &[u8]) -> Tree {
        build(data, data.len() as u64, b"salt", Guid::NIL, 2, &mut |_| {}).unwrap()
    }

    proptest! {
        /// Fed in any pieces, the levels are the area `build` writes after its superblock
        /// block, with the same root hash; a short feed gives nothing.
        #[test]
        fn levels_fed_in_pieces_are_the_tree_build_makes(
            blocks in 1usize..300,
            cuts in prop::collection::vec(0usize..1_300_000, 0..8),
        ) {
            let data: Vec<u8> = (0..blocks * 4096).map(|i| (i * 7 % 253) as u8).collect();
            let t = tree_of(&data);
            let mut b = LevelsBuilder::new(data.len() as u64, b"salt").unwrap();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
            cuts.sort_unstable();
            let mut at = 0;
            for c in cuts.into_iter().chain([data.len()]) {
                b.update(&data[at..c]);
                at = c;
            }
            b.update(b"beyond the data: ignored");
            let (root, levels) = b.finish().unwrap();
            prop_assert_eq!(root, t.info.root_hash);
            prop_assert_eq!(&levels[..], &t.area[4096..]);
        }
    }

    #[test]
    fn levels_need_all_the_data() {
        let mut b = LevelsBuilder::new(8192, b"").unwrap();
        b.update(&[0u8; 8191]);
        assert!(b.finish().is_none());
        assert!(LevelsBuilder::new(4095, b"").is_err());
        assert!(LevelsBuilder::new(0, b"").is_err());
    }
}
