//! The chunk index of a root image (a TUF target beside the bundle): the chunking parameters,
//! the image's length, and each chunk's length and identity, in order.
//!
//! A chunk's identity is the first 8 bytes of its sha256: an index must stay a small fraction
//! of the image (the goal is ≤ 0.05%), and a 64-bit identity costs a collision among a
//! device's chunks once in 10^11 updates — which wastes a delta (the result fails its signed
//! sha256 and the device fetches the full bundle), never installs anything.
//!
//! ```text
//! "SLATECI1"  magic and version (8 bytes)
//! min avg max  u32 LE each: the chunker's parameters
//! image_len    u64 LE
//! count        u32 LE
//! count ×      length (LEB128, 1..=max) and id (u64 LE)
//! ```

use super::chunker::{self, Params};
use sha2::{Digest, Sha256};

/// The index format's magic and version.
pub const MAGIC: &[u8; 8] = b"SLATECI1";

/// One chunk: where it is in its image, how long, and its identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Offset in the image.
    pub offset: u64,
    /// Length in bytes.
    pub len: u32,
    /// The first 8 bytes of its sha256, as a little-endian word.
    pub id: u64,
}

/// A root image's chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkIndex {
    /// How it was chunked (the device chunks its running slot the same way).
    pub params: Params,
    /// The image's length.
    pub image_len: u64,
    /// The chunks, in order, covering the image exactly.
    pub chunks: Vec<Chunk>,
}

/// Why bytes are not a chunk index; each names the byte where reading stopped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    /// Not this format.
    #[error("not a Slate chunk index (no SLATECI1 magic at byte 0)")]
    Magic,
    /// The file ends before it should.
    #[error("the chunk index ends at byte {at}, before its {what}")]
    Truncated {
        /// Where it ends.
        at: usize,
        /// What was still to come.
        what: &'static str,
    },
    /// Chunking parameters a device will not use.
    #[error("the chunk index's parameters (min {min}, avg {avg}, max {max}) are not sane: min ≥ 64, min ≤ avg ≤ max ≤ 16 MiB, avg a power of two")]
    Params {
        /// Shortest.
        min: u32,
        /// Average.
        avg: u32,
        /// Longest.
        max: u32,
    },
    /// More chunks than the image's length allows.
    #[error("the chunk index claims {count} chunks for an image of {image_len} bytes with chunks of at least {min}")]
    Count {
        /// Chunks claimed.
        count: u32,
        /// The image's length.
        image_len: u64,
        /// The shortest chunk.
        min: u32,
    },
    /// A chunk's length outside the parameters.
    #[error(
        "chunk {index} (at byte {at} of the index) is {len} bytes long, outside {min}..={max}"
    )]
    Length {
        /// Which chunk.
        index: usize,
        /// Where in the index.
        at: usize,
        /// Its length.
        len: u64,
        /// Shortest allowed.
        min: u32,
        /// Longest allowed.
        max: u32,
    },
    /// The chunks do not add up to the image.
    #[error("the chunks add up to {sum} bytes, the image is {image_len}")]
    Sum {
        /// Their total.
        sum: u64,
        /// The image's length.
        image_len: u64,
    },
    /// A chunk length whose encoding runs on.
    #[error("the chunk length at byte {at} runs past 5 bytes")]
    Varint {
        /// Where it starts.
        at: usize,
    },
    /// Bytes after the last chunk.
    #[error("{extra} bytes follow the last chunk (at byte {at})")]
    Trailing {
        /// How many.
        extra: usize,
        /// Where.
        at: usize,
    },
}

/// A chunk's identity: the first 8 bytes of its sha256.
pub fn chunk_id(bytes: &[u8]) -> u64 {
    let d = Sha256::digest(bytes);
    let mut id = [0u8; 8];
    id.copy_from_slice(&d[..8]);
    u64::from_le_bytes(id)
}

impl ChunkIndex {
    /// Chunks `image` with `params` (the publisher's new image, the device's running slot).
    pub fn of(image: &[u8], params: Params) -> ChunkIndex {
        let chunks = chunker::chunks(image, &params)
            .into_iter()
            .map(|(offset, len)| {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                Chunk {
                    offset,
                    len: u32::try_from(len).unwrap_or(u32::MAX),
                    id: chunk_id(&image[start..start + len]),
                }
            })
            .collect();
        ChunkIndex {
            params,
            image_len: u64::try_from(image.len()).unwrap_or(u64::MAX),
            chunks,
        }
    }

    /// The index's bytes (the TUF target).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.chunks.len() * 11);
        out.extend_from_slice(MAGIC);
        for v in [self.params.min, self.params.avg, self.params.max] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.image_len.to_le_bytes());
        let count = u32::try_from(self.chunks.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for c in &self.chunks {
            let mut len = c.len;
            loop {
                let byte = (len & 0x7f) as u8;
                len >>= 7;
                if len == 0 {
                    out.push(byte);
                    break;
                }
                out.push(byte | 0x80);
            }
            out.extend_from_slice(&c.id.to_le_bytes());
        }
        out
    }

    /// Reads an index from outside (the channel): every field checked against the others, so
    /// what comes out tiles an image of `image_len` bytes with chunks the parameters allow.
    pub fn parse(bytes: &[u8]) -> Result<ChunkIndex, IndexError> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(8, "magic")? != MAGIC {
            return Err(IndexError::Magic);
        }
        let min = r.u32("parameters")?;
        let avg = r.u32("parameters")?;
        let max = r.u32("parameters")?;
        let params = Params { min, avg, max };
        if !params.is_sane() {
            return Err(IndexError::Params { min, avg, max });
        }
        let image_len = r.u64("image length")?;
        let count = r.u32("chunk count")?;
        // Every chunk but the last is at least `min` long, and each takes at least 9 bytes
        // here: a count beyond either is refused before anything is allocated for it.
        let most = image_len / u64::from(min) + 1;
        let room = u64::try_from((bytes.len() - r.at) / 9).unwrap_or(u64::MAX);
        if u64::from(count) > most || u64::from(count) > room {
            return Err(IndexError::Count {
                count,
                image_len,
                min,
            });
        }
        let mut chunks = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        let mut offset = 0u64;
        for index in 0..usize::try_from(count).unwrap_or(0) {
            let at = r.at;
            let len = r.leb128("chunk length")?;
            let last = index + 1 == usize::try_from(count).unwrap_or(0);
            let lowest = if last { 1 } else { u64::from(min) };
            if len < lowest || len > u64::from(max) {
                return Err(IndexError::Length {
                    index,
                    at,
                    len,
                    min: if last { 1 } else { min },
                    max,
                });
            }
            let id = r.u64("chunk id")?;
            chunks.push(Chunk {
                offset,
                len: u32::try_from(len).unwrap_or(u32::MAX),
                id,
            });
            offset = offset.saturating_add(len);
        }
        if offset != image_len {
            return Err(IndexError::Sum {
                sum: offset,
                image_len,
            });
        }
        if r.at != bytes.len() {
            return Err(IndexError::Trailing {
                extra: bytes.len() - r.at,
                at: r.at,
            });
        }
        Ok(ChunkIndex {
            params,
            image_len,
            chunks,
        })
    }
}

/// A cursor over the index's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], IndexError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(IndexError::Truncated {
                at: self.bytes.len(),
                what,
            })?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, IndexError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, IndexError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(b))
    }

    /// An unsigned LEB128 of at most 5 bytes (a chunk length fits in 32 bits).
    fn leb128(&mut self, what: &'static str) -> Result<u64, IndexError> {
        let start = self.at;
        let mut v = 0u64;
        for i in 0..5 {
            let b = self.take(1, what)?[0];
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(IndexError::Varint { at: start })
    }
}

impl ChunkIndex {
    /// Chunks the first `len` bytes of `r` (a device's running slot) with `params`, holding at
    /// most two of the longest chunks in memory: what [`ChunkIndex::of`] gives for the same
    /// bytes, without reading a whole image into RAM.
    pub fn of_reader(
        mut r: impl std::io::Read,
        len: u64,
        params: Params,
    ) -> std::io::Result<ChunkIndex> {
        let max = params.max as usize;
        let mut buf: Vec<u8> = Vec::with_capacity(2 * max);
        let mut left = len;
        let mut offset = 0u64;
        let mut chunks = Vec::new();
        loop {
            // Keep at least one longest chunk ahead (or everything that is left).
            while buf.len() < max && left > 0 {
                let want = usize::try_from(left.min((2 * max - buf.len()) as u64)).unwrap_or(max);
                let start = buf.len();
                buf.resize(start + want, 0);
                r.read_exact(&mut buf[start..])?;
                left -= want as u64;
            }
            if buf.is_empty() {
                break;
            }
            let n = chunker::cut(&buf, &params);
            chunks.push(Chunk {
                offset,
                len: u32::try_from(n).unwrap_or(u32::MAX),
                id: chunk_id(&buf[..n]),
            });
            offset += n as u64;
            buf.drain(..n);
        }
        Ok(ChunkIndex {
            params,
            image_len: len,
            chunks,
        })
    }
}
