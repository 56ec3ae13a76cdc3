//! Files of the build cache (`.cache/debs/extracted/`) that hold zstd-compressed bytes by the
//! sha256 of what they decompress to: the initramfs and squashfs blocks. A kept file is used
//! only when it decompresses to exactly the expected bytes, so a damaged one costs a
//! recompression, never a wrong image.

use std::path::Path;

/// The kept compression of `expected`, if `path` holds one that decompresses to it.
pub fn load_zstd(path: &Path, expected: &[u8]) -> Option<Vec<u8>> {
    let compressed = std::fs::read(path).ok()?;
    let back = zstd::bulk::decompress(&compressed, expected.len()).ok()?;
    (back == expected).then_some(compressed)
}

/// Keeps `bytes` at `path` (a temporary name renamed into place, so a reader beside this build
/// never sees half a file). A cache needs no fsync: a torn file fails [`load_zstd`].
pub fn keep(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let kept = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if kept.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    kept
}
