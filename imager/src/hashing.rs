//! Hashing files as they stream: the one helper the build report, bundles and the overlay
//! provenance use, so a large file is never held in memory to be hashed.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use slate_core::Digest32;
use std::fs::File;
use std::path::Path;

/// Size and sha256 of a file, streaming.
pub fn hash_file(path: &Path) -> Result<(u64, Digest32)> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let size =
        std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", path.display()))?;
    Ok((size, Digest32(h.finalize().into())))
}
