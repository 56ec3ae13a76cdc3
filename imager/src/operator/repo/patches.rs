//! The static patches a published bundle gets beside it (`slate publish --from PREV.slate`,
//! DESIGN §17): for devices running exactly an earlier release, one file that builds the whole
//! new bundle from their running slot's root image and boot files, carrying only the bytes
//! they lack (see [`slate_core::delta::patch`]).

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use slate_core::bundle::BundleReader;
use slate_core::delta::patch::{self, LevelsAt, LevelsSource, SourceBytes};
use slate_core::manifest::{Manifest, ROOTFS, UKI_ARTIFACTS};
use slate_core::Digest32;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// A patch from one earlier release.
#[derive(Debug)]
pub struct FromPrevious {
    /// The earlier release's manifest.
    pub from: Manifest,
    /// Its root image's verity root hash, in hex (names the target: devices find the patch
    /// made for them by their running root hash).
    pub root_hash: String,
    /// The patch.
    pub bytes: Vec<u8>,
}

/// The patch that builds the bundle at `new` (whose manifest is `manifest`) for devices
/// running the bundle at `previous`, which must be an earlier version of the same product
/// and board.
pub fn from_previous(previous: &Path, new: &Path, manifest: &Manifest) -> Result<FromPrevious> {
    let (from, artifacts) = artifacts(previous)?;
    if from.product != manifest.product || from.board != manifest.board {
        bail!(
            "--from {}: it is {} for {}, the bundle {} for {}; a patch is made from an earlier release of the same product and board",
            previous.display(),
            from.product,
            from.board,
            manifest.product,
            manifest.board
        );
    }
    if from.version >= manifest.version {
        bail!(
            "--from {}: version {} is not earlier than the bundle's {}",
            previous.display(),
            from.version,
            manifest.version
        );
    }
    let root_hash = from
        .rootfs()
        .and_then(|a| a.verity.as_ref())
        .map(|v| v.root_hash)
        .with_context(|| format!("{}: no {ROOTFS} with verity", previous.display()))?;
    // The device copies from its running slot (the root image as installed, verity tree
    // included) and from the boot files in its slot's ESP folder; UKIs are not kept there.
    let sources: Vec<SourceBytes<'_>> = from
        .artifacts
        .iter()
        .zip(&artifacts)
        .filter(|(a, _)| a.name == ROOTFS || !UKI_ARTIFACTS.contains(&a.name.as_str()))
        .map(|(a, bytes)| SourceBytes {
            name: &a.name,
            id: if a.name == ROOTFS {
                root_hash
            } else {
                Digest32(Sha256::digest(bytes).into())
            },
            bytes,
        })
        .collect();
    let target = std::fs::read(new).with_context(|| format!("reading {}", new.display()))?;
    let levels = levels_in(&target, manifest)
        .with_context(|| format!("{}: its root image", new.display()))?;
    let bytes = patch::diff(&target, &sources, Some(&levels)).context("making the patch")?;
    // Checked here as the device will check it: applied, it is the bundle.
    let refs: Vec<&[u8]> = sources.iter().map(|s| s.bytes).collect();
    if patch::apply(&bytes, &refs).context("applying the patch")? != target {
        bail!(
            "the patch from {} does not rebuild {} (a bug in the patcher)",
            previous.display(),
            new.display()
        );
    }
    Ok(FromPrevious {
        root_hash: hex::encode(root_hash.0),
        from,
        bytes,
    })
}

/// Where the bundle `bytes` (whose manifest is `manifest`) holds its root image's verity
/// levels: the device computes them from the data, so the patch carries none of them.
fn levels_in(bytes: &[u8], manifest: &Manifest) -> Result<LevelsAt> {
    let mut r = BundleReader::new(bytes);
    slate_core::install::read_head(&mut r)?;
    let offsets =
        slate_core::bundle::data_offsets(r.offset(), manifest.artifacts.iter().map(|a| a.size))
            .context("artifact sizes overflow")?;
    let (a, at) = manifest
        .artifacts
        .iter()
        .zip(offsets)
        .find(|(a, _)| a.name == ROOTFS)
        .with_context(|| format!("no {ROOTFS}"))?;
    let v = a.verity.as_ref().context("no verity")?;
    let levels_at = v.hash_offset + slate_core::verity::BLOCK;
    Ok(LevelsAt {
        at: at + levels_at,
        len: a.size.saturating_sub(levels_at),
        source: LevelsSource {
            data_at: at,
            data_len: v.hash_offset,
            salt: v.salt.clone(),
        },
    })
}

/// A bundle's manifest, read from its head alone.
pub fn manifest(path: &Path) -> Result<Manifest> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut r = BundleReader::new(BufReader::new(f));
    let (m, _) =
        slate_core::install::read_head(&mut r).with_context(|| format!("{}", path.display()))?;
    Manifest::parse(&m).with_context(|| format!("{}: its manifest", path.display()))
}

/// A bundle's manifest and each artifact's bytes, in its order (whole images in memory: for
/// the publisher and its benchmark, never the device).
pub fn artifacts(path: &Path) -> Result<(Manifest, Vec<Vec<u8>>)> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut r = BundleReader::new(BufReader::with_capacity(1 << 20, f));
    let (m, _) =
        slate_core::install::read_head(&mut r).with_context(|| format!("{}", path.display()))?;
    let m = Manifest::parse(&m).with_context(|| format!("{}: its manifest", path.display()))?;
    let mut out = Vec::with_capacity(m.artifacts.len());
    for a in &m.artifacts {
        let size = r
            .expect_entry(&a.name, a.size)
            .with_context(|| format!("{}: {}", path.display(), a.name))?;
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        r.stream(&a.name, size, |c| {
            bytes.extend_from_slice(c);
            Ok::<(), std::io::Error>(())
        })
        .with_context(|| format!("{}: {}", path.display(), a.name))??;
        out.push(bytes);
    }
    Ok((m, out))
}
