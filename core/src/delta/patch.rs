//! The static tier of delta updates: a patch that builds one release's whole bundle from what a
//! device running one earlier release holds (its running slot's root image and its boot
//! files), published beside the bundle when the publisher knows that earlier release
//! (`slate publish --from PREV.slate`).
//!
//! Where the chunk index finds shared stretches at chunk granularity (32 KiB on average) and
//! fetches the rest from the bundle by Range, a patch is computed from both images byte for
//! byte: it copies every shared run of 32 bytes or more and carries only the bytes that are
//! new, in one file, in one request. It names exactly one source state (the earlier root hash),
//! so it is used only by devices running that release; every other device takes the dynamic
//! path.
//!
//! Nothing in a patch is trusted for the result: the device assembles the bundle from it and
//! hashes the whole against the signed sha256, exactly as a download. A wrong patch wastes its
//! bytes.
//!
//! ```text
//! "SLATEPD1"  magic and version (8 bytes)
//! target_len  u64 LE: the bundle the patch builds
//! sources     u8 (1..=8), then per source:
//!             name (u8 length, then [A-Za-z0-9._-]), length u64 LE, id (32 bytes:
//!             the verity root hash for `rootfs.img`, the sha256 of any other file)
//! ops         until they tile the target, each a tag byte:
//!             0 copy:    source (u8), offset (LEB128), length (LEB128)
//!             1 literal: length (LEB128), then that many bytes
//!             2 levels:  data offset (LEB128), data length (LEB128), salt (u16 LE length,
//!                        then its bytes), length (LEB128): the verity levels of the target's
//!                        root image data at that offset, which the device computes
//!                        (at most one; the data must come before it)
//! ```
//!
//! Making a patch (the publisher's side) is [`diff`] (`delta/diff.rs`); reading and applying
//! one is here.

use crate::Digest32;
use std::io::Read;

pub use super::diff::diff;

/// The patch format's magic and version.
pub const MAGIC: &[u8; 8] = b"SLATEPD1";

/// The length of the blocks a source is indexed by: every shared run of twice this length is
/// found (a shorter one only by luck). 32 finds the runs between squashfs's compressed blocks
/// and metadata that 64 misses, at twice the host's memory for the index.
pub const BLOCK: usize = 32;

/// A patch names at most this many sources.
pub const MAX_SOURCES: usize = 8;

/// A source the patch copies from, as the device must hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The bundle artifact's name (`rootfs.img`: the running slot; others: the running
    /// slot's boot files of that name).
    pub name: String,
    /// Its length in bytes.
    pub len: u64,
    /// Its identity: the verity root hash for the root image (which the running kernel
    /// proves), the sha256 of any other file (which the device checks before use).
    pub id: Digest32,
}

/// A source's bytes, for the publisher.
#[derive(Debug, Clone, Copy)]
pub struct SourceBytes<'a> {
    /// Name (see [`Source::name`]).
    pub name: &'a str,
    /// Identity (see [`Source::id`]).
    pub id: Digest32,
    /// Its bytes.
    pub bytes: &'a [u8],
}

/// One step of applying a patch, in the target's order; together they tile it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchOp {
    /// `len` bytes of source number `source` at `from`, to the target at `to`.
    Copy {
        /// Index into the patch's sources.
        source: u8,
        /// Offset in the source.
        from: u64,
        /// Offset in the target.
        to: u64,
        /// Bytes.
        len: u64,
    },
    /// `len` bytes of verity levels computed from the target's root image data (see
    /// [`Patch::levels`]), to the target at `to`.
    Levels {
        /// Offset in the target.
        to: u64,
        /// Bytes.
        len: u64,
    },
    /// `len` bytes carried in the patch file at `at`, to the target at `to`.
    Literal {
        /// Offset in the patch file.
        at: u64,
        /// Offset in the target.
        to: u64,
        /// Bytes.
        len: u64,
    },
}

/// A patch as read: what it needs and what it does, without its literal bytes (which stay in
/// the file and are read from there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    /// The length of the bundle it builds.
    pub target_len: u64,
    /// What it copies from.
    pub sources: Vec<Source>,
    /// The steps.
    pub ops: Vec<PatchOp>,
    /// The root image whose verity levels a [`PatchOp::Levels`] step computes.
    pub levels: Option<LevelsSource>,
}

/// A root image in the target whose verity levels the device computes rather than copies or
/// fetches: they change wherever the data does, even by one shifted byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelsSource {
    /// The target offset of its first data byte.
    pub data_at: u64,
    /// Its data length (the verity hash offset).
    pub data_len: u64,
    /// The salt.
    pub salt: Vec<u8>,
}

/// Where a target's verity levels are, for [`diff`]: `len` bytes at `at`, computed from
/// `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelsAt {
    /// Target offset of the levels (after the superblock block).
    pub at: u64,
    /// Their length.
    pub len: u64,
    /// The data they are computed from.
    pub source: LevelsSource,
}

impl Patch {
    /// Bytes the patch carries itself.
    pub fn literal_bytes(&self) -> u64 {
        self.ops
            .iter()
            .map(|op| match *op {
                PatchOp::Literal { len, .. } => len,
                PatchOp::Copy { .. } | PatchOp::Levels { .. } => 0,
            })
            .sum()
    }

    /// The sources some step copies from (a source nothing copies from need not be held).
    pub fn used_sources(&self) -> Vec<usize> {
        let mut used: Vec<usize> = self
            .ops
            .iter()
            .filter_map(|op| match *op {
                PatchOp::Copy { source, .. } => Some(usize::from(source)),
                PatchOp::Literal { .. } | PatchOp::Levels { .. } => None,
            })
            .collect();
        used.sort_unstable();
        used.dedup();
        used
    }
}

/// Why bytes are not a patch; each names the byte where reading stopped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    /// Not this format.
    #[error("not a Slate patch (no SLATEPD1 magic at byte 0)")]
    Magic,
    /// The file ends before it should.
    #[error("the patch ends at byte {at}, before its {what}")]
    Truncated {
        /// Where it ends.
        at: u64,
        /// What was still to come.
        what: &'static str,
    },
    /// A field outside what the format allows.
    #[error("the patch's {what} at byte {at} is not valid: {why}")]
    Field {
        /// Which field.
        what: &'static str,
        /// Where.
        at: u64,
        /// What is wrong with it.
        why: String,
    },
    /// Bytes after the last step.
    #[error("bytes follow the patch's last step (at byte {at})")]
    Trailing {
        /// Where.
        at: u64,
    },
}

/// Reads a patch from `r` (a file on the device): every field checked against the others, so
/// what comes out tiles a target of `target_len` bytes with copies inside their sources and
/// literals inside the file. The literal bytes are skipped, never held.
pub fn read(r: impl Read) -> Result<Patch, PatchError> {
    let mut r = Cursor { r, at: 0 };
    if &r.array::<8>("magic")? != MAGIC {
        return Err(PatchError::Magic);
    }
    let target_len = u64::from_le_bytes(r.array("target length")?);
    let at = r.at;
    let count = usize::from(r.array::<1>("source count")?[0]);
    if count == 0 || count > MAX_SOURCES {
        return Err(PatchError::Field {
            what: "source count",
            at,
            why: format!("{count} is not 1..={MAX_SOURCES}"),
        });
    }
    let mut sources = Vec::with_capacity(count);
    for _ in 0..count {
        let at = r.at;
        let n = usize::from(r.array::<1>("source name")?[0]);
        let name = r.bytes(n, "source name")?;
        let name = String::from_utf8(name)
            .ok()
            .filter(|s| is_source_name(s))
            .ok_or_else(|| PatchError::Field {
                what: "source name",
                at,
                why: "not 1..=64 of [A-Za-z0-9._-], not starting with a dot".into(),
            })?;
        let len = u64::from_le_bytes(r.array("source length")?);
        let id = Digest32(r.array("source id")?);
        sources.push(Source { name, len, id });
    }
    let mut ops = Vec::new();
    let mut levels = None;
    let mut to = 0u64;
    while to < target_len {
        let at = r.at;
        let tag = r.array::<1>("step")?[0];
        let op = match tag {
            0 => {
                let source = r.array::<1>("copy source")?[0];
                let src = sources
                    .get(usize::from(source))
                    .ok_or_else(|| PatchError::Field {
                        what: "copy source",
                        at,
                        why: format!("source {source} of {count}"),
                    })?;
                let from = r.leb128("copy offset")?;
                let len = r.leb128("copy length")?;
                if from.checked_add(len).is_none_or(|end| end > src.len) {
                    return Err(PatchError::Field {
                        what: "copy",
                        at,
                        why: format!(
                            "{len} bytes at {from} run past {} ({} bytes)",
                            src.name, src.len
                        ),
                    });
                }
                PatchOp::Copy {
                    source,
                    from,
                    to,
                    len,
                }
            }
            1 => {
                let len = r.leb128("literal length")?;
                let at = r.at;
                r.skip(len, "literal bytes")?;
                PatchOp::Literal { at, to, len }
            }
            2 => {
                let data_at = r.leb128("levels data offset")?;
                let data_len = r.leb128("levels data length")?;
                let n = usize::from(u16::from_le_bytes(r.array("levels salt")?));
                let salt = r.bytes(n.min(crate::verity::MAX_SALT + 1), "levels salt")?;
                let len = r.leb128("levels length")?;
                let blocks = data_len / crate::verity::BLOCK;
                let sane = levels.is_none()
                    && n <= crate::verity::MAX_SALT
                    && data_len > 0
                    && data_len.is_multiple_of(crate::verity::BLOCK)
                    && blocks <= crate::verity::MAX_DATA_BLOCKS
                    && data_at.checked_add(data_len).is_some_and(|end| end <= to)
                    && len == crate::verity::tree_blocks(blocks) * crate::verity::BLOCK;
                if !sane {
                    return Err(PatchError::Field {
                        what: "levels",
                        at,
                        why: format!(
                            "{len} bytes of levels for {data_len} bytes of data at {data_at}, before target offset {to} (at most one such step, after its data, of the tree's length)"
                        ),
                    });
                }
                levels = Some(LevelsSource {
                    data_at,
                    data_len,
                    salt,
                });
                PatchOp::Levels { to, len }
            }
            other => {
                return Err(PatchError::Field {
                    what: "step",
                    at,
                    why: format!("tag {other} is not copy (0), literal (1) or levels (2)"),
                })
            }
        };
        let (_, len) = op.span();
        if len == 0 || to.checked_add(len).is_none_or(|end| end > target_len) {
            return Err(PatchError::Field {
                what: "step",
                at,
                why: format!("{len} bytes at target offset {to} of {target_len}"),
            });
        }
        to += len;
        ops.push(op);
    }
    if r.r.read(&mut [0u8; 1]).map_err(|_| PatchError::Truncated {
        at: r.at,
        what: "end",
    })? != 0
    {
        return Err(PatchError::Trailing { at: r.at });
    }
    Ok(Patch {
        target_len,
        sources,
        ops,
        levels,
    })
}

impl PatchOp {
    /// Where in the target the step starts, and how many bytes it gives.
    pub fn span(&self) -> (u64, u64) {
        match *self {
            PatchOp::Copy { to, len, .. }
            | PatchOp::Literal { to, len, .. }
            | PatchOp::Levels { to, len } => (to, len),
        }
    }
}

/// A name a source may have: an artifact's file name.
pub(super) fn is_source_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// A reader that knows where it is.
struct Cursor<R> {
    r: R,
    at: u64,
}

impl<R: Read> Cursor<R> {
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], PatchError> {
        let mut b = [0u8; N];
        self.r
            .read_exact(&mut b)
            .map_err(|_| PatchError::Truncated { at: self.at, what })?;
        self.at += N as u64;
        Ok(b)
    }

    fn bytes(&mut self, n: usize, what: &'static str) -> Result<Vec<u8>, PatchError> {
        let mut b = vec![0u8; n];
        self.r
            .read_exact(&mut b)
            .map_err(|_| PatchError::Truncated { at: self.at, what })?;
        self.at += n as u64;
        Ok(b)
    }

    fn skip(&mut self, n: u64, what: &'static str) -> Result<(), PatchError> {
        let got = std::io::copy(&mut (&mut self.r).take(n), &mut std::io::sink())
            .map_err(|_| PatchError::Truncated { at: self.at, what })?;
        self.at += got;
        if got != n {
            return Err(PatchError::Truncated { at: self.at, what });
        }
        Ok(())
    }

    /// An unsigned LEB128 of at most 10 bytes.
    fn leb128(&mut self, what: &'static str) -> Result<u64, PatchError> {
        let start = self.at;
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.array::<1>(what)?[0];
            let bits = u64::from(b & 0x7f);
            if i == 9 && bits > 1 {
                break;
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(PatchError::Field {
            what,
            at: start,
            why: "a number past 64 bits".into(),
        })
    }
}

/// Applies a patch in memory (tests and the bench's check; the device streams the same steps
/// into its download instead).
pub fn apply(patch_bytes: &[u8], sources: &[&[u8]]) -> Result<Vec<u8>, PatchError> {
    let p = read(patch_bytes)?;
    let mut out = Vec::with_capacity(usize::try_from(p.target_len).unwrap_or(0));
    for op in &p.ops {
        match *op {
            PatchOp::Copy {
                source, from, len, ..
            } => {
                let src = sources
                    .get(usize::from(source))
                    .ok_or_else(|| PatchError::Field {
                        what: "copy source",
                        at: 0,
                        why: format!("source {source} was not given"),
                    })?;
                let bytes = slice(src, from, len).ok_or_else(|| PatchError::Field {
                    what: "copy",
                    at: 0,
                    why: format!("source {source} is shorter than the patch says"),
                })?;
                out.extend_from_slice(bytes);
            }
            PatchOp::Levels { len, .. } => {
                let src = p.levels.as_ref().ok_or(PatchError::Field {
                    what: "levels",
                    at: 0,
                    why: "no levels source".into(),
                })?;
                let data = slice(&out, src.data_at, src.data_len).ok_or(PatchError::Field {
                    what: "levels",
                    at: 0,
                    why: "their data is not built yet".into(),
                })?;
                let mut b =
                    crate::verity::LevelsBuilder::new(src.data_len, &src.salt).map_err(|e| {
                        PatchError::Field {
                            what: "levels",
                            at: 0,
                            why: e.to_string(),
                        }
                    })?;
                b.update(data);
                let (_, levels) = b.finish().unwrap_or_default();
                if levels.len() as u64 != len {
                    return Err(PatchError::Field {
                        what: "levels",
                        at: 0,
                        why: format!("{} bytes computed, {len} in the patch", levels.len()),
                    });
                }
                out.extend_from_slice(&levels);
            }
            PatchOp::Literal { at, len, .. } => {
                out.extend_from_slice(slice(patch_bytes, at, len).ok_or(
                    PatchError::Truncated {
                        at,
                        what: "literal bytes",
                    },
                )?);
            }
        }
    }
    Ok(out)
}

/// `len` bytes of `b` at `at`, if it has them.
fn slice(b: &[u8], at: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(at).ok()?;
    b.get(start..start.checked_add(usize::try_from(len).ok()?)?)
}
