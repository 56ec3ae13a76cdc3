//! Block maps in bmaptool's XML format (version 2.0), so `bmaptool copy` and `slate flash`
//! write only the blocks that matter and check each range's sha256.
//!
//! ```text
//! <bmap version="2.0">
//!   <ImageSize> bytes </ImageSize>  <BlockSize> 4096 </BlockSize>
//!   <BlocksCount> n </BlocksCount>  <MappedBlocksCount> m </MappedBlocksCount>
//!   <ChecksumType> sha256 </ChecksumType>
//!   <BmapFileChecksum> sha256 of this file with this field set to 64 zeros </BmapFileChecksum>
//!   <BlockMap> <Range chksum="sha256 of the range's bytes"> first-last </Range> ... </BlockMap>
//! </bmap>
//! ```
//! Ranges are inclusive block numbers; a one-block range is written as a single number.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// Block size of Slate's maps.
pub const BLOCK: u64 = 4096;

/// One mapped range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// First block.
    pub first: u64,
    /// Last block (inclusive).
    pub last: u64,
    /// sha256 of the range's bytes (hex).
    pub sha256: String,
}

impl Range {
    /// Byte offset and length of the range in an image of `image_size` bytes.
    pub fn bytes(&self, image_size: u64) -> (u64, u64) {
        let start = self.first * BLOCK;
        let end = ((self.last + 1) * BLOCK).min(image_size);
        (start, end - start)
    }
}

/// A parsed or computed block map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bmap {
    /// Image size in bytes.
    pub image_size: u64,
    /// Mapped ranges, sorted, not overlapping.
    pub ranges: Vec<Range>,
}

/// Merges byte extents into sorted, block-aligned, non-overlapping block ranges.
pub fn block_ranges(extents: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut blocks: Vec<(u64, u64)> = extents
        .iter()
        .filter(|(_, len)| *len > 0)
        .map(|&(off, len)| (off / BLOCK, (off + len).div_ceil(BLOCK) - 1))
        .collect();
    blocks.sort();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in blocks {
        match merged.last_mut() {
            Some(last) if a <= last.1 + 1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

impl Bmap {
    /// Hashes the mapped `extents` of `image`.
    pub fn compute(
        image: &mut File,
        extents: &[(u64, u64)],
        progress: &dyn Fn(u64),
    ) -> Result<Bmap> {
        let image_size = image.metadata()?.len();
        let mut ranges = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0;
        for (first, last) in block_ranges(extents) {
            let mut r = Range {
                first,
                last,
                sha256: String::new(),
            };
            let (start, len) = r.bytes(image_size);
            image.seek(SeekFrom::Start(start))?;
            let mut h = Sha256::new();
            let mut left = len;
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                image.read_exact(&mut buf[..n])?;
                h.update(&buf[..n]);
                left -= n as u64;
                done += n as u64;
                progress(done);
            }
            r.sha256 = hex::encode(h.finalize());
            ranges.push(r);
        }
        Ok(Bmap { image_size, ranges })
    }

    /// Bytes of mapped data.
    pub fn mapped_bytes(&self) -> u64 {
        self.ranges.iter().map(|r| r.bytes(self.image_size).1).sum()
    }

    /// The XML text, with its own checksum filled in.
    pub fn render(&self) -> String {
        let blocks = self.image_size.div_ceil(BLOCK);
        let mapped: u64 = self.ranges.iter().map(|r| r.last - r.first + 1).sum();
        let mut s = String::new();
        s.push_str("<?xml version=\"1.0\" ?>\n");
        s.push_str(
            "<!-- Block map of a Slate disk image, for `bmaptool copy` or `slate flash`. -->\n",
        );
        s.push_str("<bmap version=\"2.0\">\n");
        s.push_str(&format!(
            "    <ImageSize> {} </ImageSize>\n",
            self.image_size
        ));
        s.push_str(&format!("    <BlockSize> {BLOCK} </BlockSize>\n"));
        s.push_str(&format!("    <BlocksCount> {blocks} </BlocksCount>\n"));
        s.push_str(&format!(
            "    <MappedBlocksCount> {mapped} </MappedBlocksCount>\n"
        ));
        s.push_str("    <ChecksumType> sha256 </ChecksumType>\n");
        s.push_str(&format!(
            "    <BmapFileChecksum> {} </BmapFileChecksum>\n",
            "0".repeat(64)
        ));
        s.push_str("    <BlockMap>\n");
        for r in &self.ranges {
            let span = if r.first == r.last {
                r.first.to_string()
            } else {
                format!("{}-{}", r.first, r.last)
            };
            s.push_str(&format!(
                "        <Range chksum=\"{}\"> {span} </Range>\n",
                r.sha256
            ));
        }
        s.push_str("    </BlockMap>\n</bmap>\n");
        let sum = hex::encode(Sha256::digest(s.as_bytes()));
        s.replacen(&"0".repeat(64), &sum, 1)
    }

    /// Parses a bmap file, checking its own checksum.
    pub fn parse(text: &str) -> Result<Bmap> {
        let doc =
            roxmltree::Document::parse(text).context("the bmap file is not well-formed XML")?;
        let root = doc.root_element();
        if !root.has_tag_name("bmap")
            || !root
                .attribute("version")
                .is_some_and(|v| v.starts_with("2."))
        {
            bail!("not a bmap file of version 2.x (root element <bmap version=\"2.x\">)");
        }
        let field = |name: &str| -> Result<String> {
            let node = root
                .children()
                .find(|n| n.has_tag_name(name))
                .with_context(|| format!("bmap has no <{name}>"))?;
            Ok(node.text().unwrap_or("").trim().to_string())
        };
        let block: u64 = field("BlockSize")?.parse().context("bmap <BlockSize>")?;
        if block != BLOCK {
            bail!("bmap block size is {block}; Slate reads {BLOCK}");
        }
        if field("ChecksumType")? != "sha256" {
            bail!("bmap checksum type is not sha256");
        }
        // The checksum covers the file's text with its own value zeroed (as bmaptool computes it).
        let stored = field("BmapFileChecksum")?;
        let zeroed = text.replacen(&stored, &"0".repeat(64), 1);
        let actual = hex::encode(Sha256::digest(zeroed.as_bytes()));
        if stored.to_ascii_lowercase() != actual {
            bail!("bmap file checksum mismatch (stored {stored}, computed {actual}): the bmap file is damaged");
        }
        let image_size: u64 = field("ImageSize")?.parse().context("bmap <ImageSize>")?;
        let map = root
            .children()
            .find(|n| n.has_tag_name("BlockMap"))
            .context("bmap has no <BlockMap>")?;
        let mut ranges = Vec::new();
        for (i, r) in map
            .children()
            .filter(|n| n.has_tag_name("Range"))
            .enumerate()
        {
            let sha = r
                .attribute("chksum")
                .with_context(|| format!("bmap range {i} has no chksum"))?
                .to_ascii_lowercase();
            sha.parse::<slate_core::Digest32>()
                .with_context(|| format!("bmap range {i} chksum {sha:?}"))?;
            let span = r.text().unwrap_or("").trim();
            let (a, b) = span.split_once('-').unwrap_or((span, span));
            let first: u64 = a
                .trim()
                .parse()
                .with_context(|| format!("bmap range {i}: {span:?}"))?;
            let last: u64 = b
                .trim()
                .parse()
                .with_context(|| format!("bmap range {i}: {span:?}"))?;
            if last < first || last * BLOCK >= image_size.max(1) + BLOCK - 1 + BLOCK {
                bail!("bmap range {i} ({span}) lies outside the image");
            }
            ranges.push(Range {
                first,
                last,
                sha256: sha,
            });
        }
        Ok(Bmap { image_size, ranges })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_merge_into_block_ranges() {
        assert_eq!(
            block_ranges(&[(0, 512), (4096, 4096), (100_000, 1)]),
            vec![(0, 1), (24, 24)]
        );
        assert_eq!(block_ranges(&[(8192, 10), (0, 4096)]), vec![(0, 0), (2, 2)]);
    }

    #[test]
    fn render_parse_round_trip_and_detect_damage() {
        let b = Bmap {
            image_size: 1 << 20,
            ranges: vec![
                Range {
                    first: 0,
                    last: 3,
                    sha256: "a".repeat(64),
                },
                Range {
                    first: 9,
                    last: 9,
                    sha256: "b".repeat(64),
                },
            ],
        };
        let text = b.render();
        assert_eq!(Bmap::parse(&text).unwrap(), b);
        let damaged = text.replace("> 9 <", "> 10 <");
        assert!(Bmap::parse(&damaged)
            .unwrap_err()
            .to_string()
            .contains("checksum mismatch"));
    }
}
