//! Writes a tree as a squashfs 4.0 image (zstd), padded to 4 KiB so the dm-verity data area
//! ends on a block boundary.
//!
//! `backhand` writes deterministically given the same nodes in the same order; the tree gives
//! sorted paths and fixed timestamps, so the same tree makes the same bytes.
//!
//! backhand compresses one data block at a time as it writes. To use every core, the blocks of
//! every file that spans whole blocks are compressed first, in parallel, with the very call
//! backhand makes (`zstd::bulk::Compressor` at the same level); backhand's compressor is then a
//! [`Precompressed`] one that answers those blocks from memory and compresses everything else
//! (fragments, metadata) itself. The bytes written are the same either way (a test compares).

use crate::image::write::tree::{Content, Kind, Tree};
use anyhow::{anyhow, Context, Result};
use backhand::compression::{CompressionAction, Compressor, DefaultCompressor};
use backhand::{BackhandError, FilesystemCompressor, FilesystemWriter, NodeHeader};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// backhand's data block size (its default, which Slate keeps).
const BLOCK_SIZE: usize = backhand::DEFAULT_BLOCK_SIZE as usize;
/// zstd levels a spec may ask for.
const LEVELS: usize = 22;

/// A compressor that answers blocks compressed ahead of time, one per zstd level (backhand needs
/// a `&'static` compressor and does not say the level to it).
struct Precompressed {
    level: i32,
    blocks: Mutex<BTreeMap<[u8; 32], Arc<Vec<u8>>>>,
    /// Builds using this level right now; the blocks are dropped when the last one ends.
    users: AtomicUsize,
    /// Blocks answered from memory (a test checks the parallel path is taken).
    hits: AtomicUsize,
}

static PRECOMPRESSED: [Precompressed; LEVELS] = {
    const fn at(level: i32) -> Precompressed {
        Precompressed {
            level,
            blocks: Mutex::new(BTreeMap::new()),
            users: AtomicUsize::new(0),
            hits: AtomicUsize::new(0),
        }
    }
    [
        at(1),
        at(2),
        at(3),
        at(4),
        at(5),
        at(6),
        at(7),
        at(8),
        at(9),
        at(10),
        at(11),
        at(12),
        at(13),
        at(14),
        at(15),
        at(16),
        at(17),
        at(18),
        at(19),
        at(20),
        at(21),
        at(22),
    ]
};

impl Precompressed {
    fn blocks(&self) -> std::sync::MutexGuard<'_, BTreeMap<[u8; 32], Arc<Vec<u8>>>> {
        self.blocks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What backhand's own zstd compressor returns for `bytes`.
    fn compress_now(&self, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut c = zstd::bulk::Compressor::new(self.level)?;
        let mut buf = Vec::with_capacity(zstd::zstd_safe::compress_bound(bytes.len()));
        c.compress_to_buffer(bytes, &mut buf)?;
        Ok(buf)
    }
}

impl CompressionAction for Precompressed {
    type Error = BackhandError;
    type Compressor = Compressor;
    type FilesystemCompressor = FilesystemCompressor;
    type SuperBlock = backhand::SuperBlock;

    fn decompress(
        &self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        compressor: Compressor,
    ) -> Result<(), BackhandError> {
        DefaultCompressor.decompress(bytes, out, compressor)
    }

    fn compress(
        &self,
        bytes: &[u8],
        fc: FilesystemCompressor,
        block_size: u32,
    ) -> Result<Vec<u8>, BackhandError> {
        // Data blocks are found by content; fragments and metadata are not there and are
        // compressed here, as backhand would.
        if bytes.len() <= BLOCK_SIZE {
            let key: [u8; 32] = Sha256::digest(bytes).into();
            if let Some(b) = self.blocks().get(&key) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(b.as_ref().clone());
            }
        }
        DefaultCompressor.compress(bytes, fc, block_size)
    }

    fn compression_options(
        &self,
        superblock: &mut backhand::SuperBlock,
        kind: &backhand::kind::Kind,
        fc: FilesystemCompressor,
    ) -> Result<Option<Vec<u8>>, BackhandError> {
        DefaultCompressor.compression_options(superblock, kind, fc)
    }
}

/// What one worker compresses: the data blocks of one file, or one fragment block (the small
/// files backhand packs together, in its order).
enum Unit<'a> {
    File(&'a Content),
    Fragment(Vec<&'a Content>),
}

/// The regular files in the order backhand writes their data: its nodes are sorted by path
/// component by component (`a/b` before `a-b`), not as strings.
fn files_in_write_order(tree: &Tree) -> Vec<&Content> {
    let mut files: Vec<(&str, &Content)> = tree
        .iter()
        .filter_map(|(path, n)| match &n.kind {
            Kind::File(c) => Some((path.as_str(), c)),
            _ => None,
        })
        .collect();
    files.sort_by(|a, b| std::path::Path::new(a.0).cmp(std::path::Path::new(b.0)));
    files.into_iter().map(|(_, c)| c).collect()
}

/// The work: every file of at least one block, and the fragment blocks backhand will make by
/// packing smaller files in write order (a new block when the next file would overflow it).
/// A wrong guess only costs speed: a block not found is compressed by backhand itself.
fn units(tree: &Tree) -> Result<Vec<Unit<'_>>> {
    let mut units = Vec::new();
    let mut fragment: Vec<&Content> = Vec::new();
    let mut fragment_len = 0usize;
    for c in files_in_write_order(tree) {
        let len = slate_core::num::usize_of(c.size().context("reading a file's size")?);
        if len >= BLOCK_SIZE {
            units.push(Unit::File(c));
        } else if len > 0 {
            if fragment_len + len > BLOCK_SIZE {
                units.push(Unit::Fragment(std::mem::take(&mut fragment)));
                fragment_len = 0;
            }
            fragment.push(c);
            fragment_len += len;
        }
    }
    if !fragment.is_empty() {
        units.push(Unit::Fragment(fragment));
    }
    Ok(units)
}

/// Compressed blocks kept on disk between builds, by the sha256 of their uncompressed bytes,
/// one folder per zstd level; a block is reused only when it decompresses to the same bytes.
struct DiskCache {
    dir: std::path::PathBuf,
}

impl DiskCache {
    fn path(&self, key: &[u8; 32]) -> std::path::PathBuf {
        self.dir.join(hex::encode(key))
    }

    fn load(&self, key: &[u8; 32], bytes: &[u8]) -> Option<Vec<u8>> {
        crate::image::cache::load_zstd(&self.path(key), bytes)
    }

    fn store(&self, key: &[u8; 32], compressed: &[u8]) {
        // A block not kept is compressed again by the next build; nothing else depends on it.
        let _ = crate::image::cache::keep(&self.path(key), compressed);
    }

    /// Drops the blocks this build did not use that are older than an hour (a build beside
    /// this one may be using fresh ones), so the cache holds about one image per level.
    fn prune(&self, used: &BTreeSet<[u8; 32]>) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let hour = std::time::Duration::from_secs(3600);
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let mut key = [0u8; 32];
            let is_used = hex::decode_to_slice(&name, &mut key).is_ok() && used.contains(&key);
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > hour);
            if !is_used && old {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Compresses, on `threads` threads, every block backhand will compress: all blocks of files of
/// at least one block (the last, shorter one too) except all-zero ones (holes), and the fragment
/// blocks. Returns the keys of the blocks this build uses.
fn precompress(
    tree: &Tree,
    p: &'static Precompressed,
    threads: usize,
    cache: Option<&DiskCache>,
) -> Result<BTreeSet<[u8; 32]>> {
    let units = units(tree)?;
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let used = Mutex::new(BTreeSet::new());
    let block = |bytes: &[u8]| -> Result<()> {
        let key: [u8; 32] = Sha256::digest(bytes).into();
        used.lock().unwrap_or_else(|p| p.into_inner()).insert(key);
        if p.blocks().contains_key(&key) {
            return Ok(());
        }
        let compressed = match cache.and_then(|c| c.load(&key, bytes)) {
            Some(c) => c,
            None => {
                let c = p.compress_now(bytes).context("zstd")?;
                if let Some(cache) = cache {
                    cache.store(&key, &c);
                }
                c
            }
        };
        p.blocks().insert(key, Arc::new(compressed));
        Ok(())
    };
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(unit) = units.get(i) else { return };
                let result = match unit {
                    Unit::File(c) => {
                        c.read()
                            .context("reading a file of the tree")
                            .and_then(|data| {
                                data.chunks(BLOCK_SIZE)
                                    .filter(|chunk| !chunk.iter().all(|&b| b == 0))
                                    .try_for_each(&block)
                            })
                    }
                    Unit::Fragment(files) => {
                        let mut bytes = Vec::with_capacity(BLOCK_SIZE);
                        files
                            .iter()
                            .try_for_each(|c| {
                                bytes.extend_from_slice(&c.read()?);
                                Ok::<(), std::io::Error>(())
                            })
                            .context("reading a file of the tree")
                            .and_then(|()| block(&bytes))
                    }
                };
                if let Err(e) = result {
                    *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    return;
                }
            });
        }
    });
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(used.into_inner().unwrap_or_else(|p| p.into_inner())),
    }
}

/// Holds a level's precompressed blocks for one build and drops them after the last one.
struct Using(&'static Precompressed);

impl Drop for Using {
    fn drop(&mut self) {
        if self.0.users.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.blocks().clear();
        }
    }
}

/// Bytes shared with backhand without copying.
struct Shared(Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Writes `tree` to `out` (at its current position 0) and returns the padded size in bytes,
/// compressing data blocks on `threads` threads (1: backhand's own single-threaded path), and
/// reusing blocks compressed by earlier builds from `cache` (a folder) when given.
pub fn write<W: Write + Seek>(
    tree: &Tree,
    mtime: u32,
    level: u32,
    threads: usize,
    cache: Option<&std::path::Path>,
    mut out: W,
) -> Result<u64> {
    let mut fs = FilesystemWriter::default();
    let disk = cache.and_then(|c| {
        let dir = c.join(format!("zstd-{level}"));
        std::fs::create_dir_all(&dir).ok()?;
        Some(DiskCache { dir })
    });
    let mut used = None;
    let _using = if threads > 1 {
        let p = usize::try_from(level)
            .ok()
            .and_then(|l| l.checked_sub(1))
            .and_then(|i| PRECOMPRESSED.get(i))
            .with_context(|| format!("zstd level {level} is not in 1..={LEVELS}"))?;
        p.users.fetch_add(1, Ordering::SeqCst);
        let using = Using(p);
        used = Some(precompress(tree, p, threads, disk.as_ref())?);
        fs.set_kind(backhand::kind::Kind::new_v4(p));
        Some(using)
    } else {
        None
    };
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
    if let (Some(disk), Some(used)) = (&disk, &used) {
        disk.prune(used);
    }
    let padded = written.div_ceil(4096) * 4096;
    if padded > written {
        out.seek(SeekFrom::Start(padded - 1))?;
        out.write_all(&[0])?;
    }
    out.flush()?;
    Ok(padded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::spec::ImagePath;
    use crate::image::write::tree::Node;

    /// Files of one, several and partial blocks, a zero block and a duplicate: the parallel
    /// path must write exactly the bytes backhand's own path writes.
    #[test]
    fn parallel_compression_writes_the_same_bytes() {
        let mut tree = Tree::default();
        let p = |s: &str| ImagePath::new(s).unwrap();
        tree.insert(&p("/d"), Node::dir(0o755)).unwrap();
        let noisy: Vec<u8> = (0..BLOCK_SIZE * 3 + 1234)
            .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[1] & 0x3f)
            .collect();
        let mut zeros_inside = noisy.clone();
        zeros_inside[BLOCK_SIZE..2 * BLOCK_SIZE].fill(0);
        tree.insert(&p("/d/a"), Node::bytes(noisy.clone(), 0o644))
            .unwrap();
        tree.insert(&p("/d/b"), Node::bytes(zeros_inside, 0o644))
            .unwrap();
        tree.insert(&p("/d/dup"), Node::bytes(noisy, 0o644))
            .unwrap();
        tree.insert(&p("/d/small"), Node::bytes(b"small".to_vec(), 0o644))
            .unwrap();
        tree.insert(&p("/d/exact"), Node::bytes(vec![7u8; BLOCK_SIZE], 0o644))
            .unwrap();
        let write_with = |threads, cache: Option<&std::path::Path>| {
            let mut out = std::io::Cursor::new(Vec::new());
            write(&tree, 1_700_000_000, 15, threads, cache, &mut out).unwrap();
            out.into_inner()
        };
        let serial = write_with(1, None);
        let hits = PRECOMPRESSED[14].hits.load(Ordering::Relaxed);
        assert_eq!(write_with(4, None), serial);
        // a: 4 blocks, b: 3 (one is a hole), dup: 4 (written, then found a duplicate), exact: 1,
        // and the one fragment block holding `small`.
        let got = PRECOMPRESSED[14].hits.load(Ordering::Relaxed) - hits;
        assert!(got >= 13, "{got} hits");
        assert_eq!(write_with(2, None), serial);
        // Blocks kept on disk by one build are reused by the next, with the same bytes.
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(write_with(2, Some(dir.path())), serial);
        let count = || {
            std::fs::read_dir(dir.path().join("zstd-15"))
                .unwrap()
                .count()
        };
        let kept = count();
        // The distinct blocks: a's full blocks, its tail, `exact`, and the fragment.
        assert!(kept >= 3, "{kept} blocks kept");
        assert_eq!(write_with(2, Some(dir.path())), serial);
        assert_eq!(
            count(),
            kept,
            "a second build added blocks it should have reused"
        );
        // A damaged kept block is not reused: the output stays the same.
        for e in std::fs::read_dir(dir.path().join("zstd-15")).unwrap() {
            std::fs::write(e.unwrap().path(), b"garbage").unwrap();
        }
        assert_eq!(write_with(2, Some(dir.path())), serial);
        assert!(
            PRECOMPRESSED[14].blocks().is_empty(),
            "blocks kept after the build"
        );
    }
}
