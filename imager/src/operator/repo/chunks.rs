//! The chunk index a published bundle gets beside it (DESIGN §17): the root image's data (the
//! squashfs as stored, without its verity tree, which a device recomputes) chunked with
//! [`slate_core::delta::DEFAULT_AVG`], so a device fetches only the chunks its running slot
//! lacks.

use anyhow::{bail, Context, Result};
use slate_core::bundle::BundleReader;
use slate_core::delta::{ChunkIndex, Params, DEFAULT_AVG};
use slate_core::manifest::{Manifest, ROOTFS};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// The chunk index of the root image in the bundle at `path` (whose manifest is `manifest`).
pub fn of_bundle(path: &Path, manifest: &Manifest) -> Result<ChunkIndex> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut r = BundleReader::new(BufReader::with_capacity(1 << 20, f));
    slate_core::install::read_head(&mut r).with_context(|| format!("{}", path.display()))?;
    for a in &manifest.artifacts {
        let size = r
            .expect_entry(&a.name, a.size)
            .with_context(|| format!("{}: {}", path.display(), a.name))?;
        if a.name != ROOTFS {
            r.stream(&a.name, size, |_| Ok::<(), std::io::Error>(()))
                .with_context(|| format!("{}: {}", path.display(), a.name))??;
            continue;
        }
        let data_len = match &a.verity {
            Some(v) => v.hash_offset,
            None => bail!("{}: {ROOTFS} has no verity parameters", path.display()),
        };
        let mut data = Vec::with_capacity(usize::try_from(data_len).unwrap_or(0));
        r.stream(&a.name, size, |c| {
            let room = usize::try_from(data_len).unwrap_or(usize::MAX) - data.len();
            data.extend_from_slice(&c[..c.len().min(room)]);
            Ok::<(), std::io::Error>(())
        })
        .with_context(|| format!("{}: {ROOTFS}", path.display()))??;
        return Ok(ChunkIndex::of(&data, Params::around(DEFAULT_AVG)));
    }
    bail!("{}: no {ROOTFS} in the bundle", path.display())
}
