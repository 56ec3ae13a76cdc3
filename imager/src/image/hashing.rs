//! Hashing files as they stream: the one helper the build report, bundles and the overlay
//! provenance use, so a large file is never held in memory to be hashed.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use slate_core::Digest32;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Size and sha256 of a file, streaming. Holes of a sparse file (most of a `disk.img`) are
/// hashed as the zeros they read as, without reading them.
pub fn hash_file(path: &Path) -> Result<(u64, Digest32)> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = f.metadata()?.len();
    let segments = crate::image::write::disk::data_segments(&f).unwrap_or_else(|_| vec![(0, len)]);
    let mut h = Sha256::new();
    let zeros = vec![0u8; 1 << 20];
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    let feed_zeros = |h: &mut Sha256, mut n: u64| {
        while n > 0 {
            let k = n.min(zeros.len() as u64) as usize;
            h.update(&zeros[..k]);
            n -= k as u64;
        }
    };
    for (start, seg_len) in segments {
        feed_zeros(&mut h, start - pos);
        f.seek(SeekFrom::Start(start))?;
        let mut left = seg_len;
        while left > 0 {
            let k = left.min(buf.len() as u64) as usize;
            f.read_exact(&mut buf[..k])
                .with_context(|| format!("reading {}", path.display()))?;
            h.update(&buf[..k]);
            left -= k as u64;
        }
        pos = start + seg_len;
    }
    feed_zeros(&mut h, len - pos);
    Ok((len, Digest32(h.finalize().into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sparse file hashes like the same bytes written out in full (sha256sum is the oracle).
    #[test]
    fn sparse_files_hash_as_their_bytes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sparse.img");
        let f = File::create(&p).unwrap();
        f.set_len(64 << 20).unwrap();
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.seek(SeekFrom::Start(20 << 20)).unwrap();
        f.write_all(&[0xab; 5000]).unwrap();
        f.seek(SeekFrom::Start((64 << 20) - 3)).unwrap();
        f.write_all(b"end").unwrap();
        drop(f);
        let out = std::process::Command::new("sha256sum")
            .arg(&p)
            .output()
            .unwrap();
        assert!(out.status.success());
        let theirs = String::from_utf8_lossy(&out.stdout);
        let (len, ours) = hash_file(&p).unwrap();
        assert_eq!(len, 64 << 20);
        assert_eq!(
            Some(ours.to_string().as_str()),
            theirs.split_whitespace().next()
        );
    }
}
