//! What a download has delivered so far, hashed: the bundle's sha256 (checked against the
//! signed one at the end) and, for a delta, the root image's verity levels computed from the
//! data as it passes — so the tree, which changes wherever the data does and is as long as
//! 1/127 of it, is never fetched (its superblock block, with the image's UUID, is).

use sha2::{Digest, Sha256};
use slate_core::verity::LevelsBuilder;
use slate_core::Digest32;

/// Where a bundle's root image data lies and how its tree is salted: what a download needs to
/// compute the tree's levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeSpec {
    /// The bundle offset of the root image's first data byte.
    pub data_at: u64,
    /// The data's length (the verity hash offset).
    pub data_len: u64,
    /// The salt from the bundle's manifest.
    pub salt: Vec<u8>,
}

/// The running hashes of a download.
pub struct Seen {
    sha: Sha256,
    tree: Option<(TreeSpec, LevelsBuilder)>,
    levels: Option<Vec<u8>>,
}

impl Seen {
    /// For a download whose root image's levels are to be computed (`tree`), or not.
    pub fn new(tree: Option<TreeSpec>) -> Seen {
        let tree = tree.and_then(|t| {
            let b = LevelsBuilder::new(t.data_len, &t.salt).ok()?;
            Some((t, b))
        });
        Seen {
            sha: Sha256::new(),
            tree,
            levels: None,
        }
    }

    /// Takes the bundle's bytes at `at` (delivered in order).
    pub fn take(&mut self, at: u64, bytes: &[u8]) {
        self.sha.update(bytes);
        if let Some((spec, levels)) = &mut self.tree {
            let next = spec.data_at + levels.fed();
            let end = at + bytes.len() as u64;
            if at <= next && next < end && levels.fed() < spec.data_len {
                let from = usize::try_from(next - at).unwrap_or(usize::MAX);
                levels.update(&bytes[from..]);
            }
        }
    }

    /// `len` bytes of the computed levels from `from` (an offset after the superblock block),
    /// once all the data passed; an error (the bytes are then fetched) before.
    pub fn levels(&mut self, from: u64, len: u64) -> Result<Vec<u8>, String> {
        if self.levels.is_none() {
            let (_, builder) = self
                .tree
                .take()
                .ok_or("no root image data to compute the verity tree from")?;
            self.levels = Some(
                builder
                    .finish()
                    .ok_or("the root image data did not all pass before its tree")?
                    .1,
            );
        }
        let levels = self.levels.as_deref().unwrap_or_default();
        let start = usize::try_from(from).map_err(|e| e.to_string())?;
        let end = start
            .checked_add(usize::try_from(len).map_err(|e| e.to_string())?)
            .filter(|&e| e <= levels.len())
            .ok_or_else(|| {
                format!(
                    "bytes {from}..+{len} of the verity levels, which are {} bytes",
                    levels.len()
                )
            })?;
        Ok(levels[start..end].to_vec())
    }

    /// The bundle's sha256.
    pub fn finalize(self) -> Digest32 {
        Digest32(self.sha.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_levels_are_those_of_the_data_wherever_it_sits_in_the_bundle() {
        let data: Vec<u8> = (0..40 * 4096).map(|i| (i % 249) as u8).collect();
        let tree = slate_core::verity::build(
            &data[..],
            data.len() as u64,
            b"s",
            slate_core::guid::Guid::NIL,
            1,
            &mut |_| {},
        )
        .unwrap();
        let mut bundle = vec![9u8; 1536];
        bundle.extend_from_slice(&data);
        bundle.extend_from_slice(&tree.area);
        let mut seen = Seen::new(Some(TreeSpec {
            data_at: 1536,
            data_len: data.len() as u64,
            salt: b"s".to_vec(),
        }));
        // Delivered in uneven pieces, straddling the data's start.
        let mut at = 0;
        for n in [1000usize, 1000, 4096 * 3 + 7, 100_000] {
            let end = (at + n).min(1536 + data.len());
            seen.take(at as u64, &bundle[at..end]);
            at = end;
        }
        seen.take(at as u64, &bundle[at..1536 + data.len()]);
        let levels_at = 1536 + data.len() + 4096;
        let want = &bundle[levels_at..];
        assert_eq!(seen.levels(0, want.len() as u64).unwrap(), want);
        assert_eq!(seen.levels(10, 20).unwrap(), &want[10..30]);
        assert!(seen.levels(0, want.len() as u64 + 1).is_err());
    }

    #[test]
    fn without_all_the_data_there_are_no_levels() {
        let mut seen = Seen::new(Some(TreeSpec {
            data_at: 0,
            data_len: 8192,
            salt: vec![],
        }));
        seen.take(0, &[0u8; 4096]);
        assert!(seen.levels(0, 32).is_err());
        assert!(Seen::new(None).levels(0, 1).is_err());
    }
}
