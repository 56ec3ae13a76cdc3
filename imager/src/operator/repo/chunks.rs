//! The chunk indexes a published bundle gets beside it (DESIGN §17): the root image's data (the
//! squashfs as stored, without its verity tree, which a device recomputes) chunked with
//! [`slate_core::delta::DEFAULT_AVG`], so a device fetches only the chunks its running slot
//! lacks; and a format-2 bundle's UKIs, each whole, whose unchanged stretches (the kernel) a
//! device copies from the UKI it boots.

use anyhow::{bail, Context, Result};
use slate_core::bundle::BundleReader;
use slate_core::delta::{ChunkIndex, Params, DEFAULT_AVG};
use slate_core::layout::Slot;
use slate_core::manifest::{uki_artifact, Manifest, ROOTFS};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// A bundle's chunk indexes.
pub struct BundleIndexes {
    /// The root image's data.
    pub root: ChunkIndex,
    /// Each UKI's, by artifact name (none for a format-1 bundle).
    pub ukis: Vec<(String, ChunkIndex)>,
}

/// The chunk indexes of the root image and the UKIs in the bundle at `path` (whose manifest
/// is `manifest`).
pub fn of_bundle(path: &Path, manifest: &Manifest) -> Result<BundleIndexes> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut r = BundleReader::new(BufReader::with_capacity(1 << 20, f));
    slate_core::install::read_head(&mut r).with_context(|| format!("{}", path.display()))?;
    let params = Params::around(DEFAULT_AVG);
    let mut ukis = Vec::new();
    for a in &manifest.artifacts {
        let size = r
            .expect_entry(&a.name, a.size)
            .with_context(|| format!("{}: {}", path.display(), a.name))?;
        if a.name != ROOTFS {
            let is_uki = [Slot::A, Slot::B]
                .into_iter()
                .any(|s| uki_artifact(s) == a.name);
            let mut bytes = Vec::new();
            r.stream(&a.name, size, |c| {
                if is_uki {
                    bytes.extend_from_slice(c);
                }
                Ok::<(), std::io::Error>(())
            })
            .with_context(|| format!("{}: {}", path.display(), a.name))??;
            if is_uki {
                ukis.push((a.name.clone(), ChunkIndex::of(&bytes, params)));
            }
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
        let root = ChunkIndex::of(&data, params);
        // The root image is a bundle's last artifact; UKIs come before it.
        return Ok(BundleIndexes { root, ukis });
    }
    bail!("{}: no {ROOTFS} in the bundle", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use slate_core::manifest::{Artifact, FORMAT_UKI};
    use slate_core::verity::VerityInfo;
    use slate_core::Digest32;

    fn artifact(name: &str, content: &[u8], verity: Option<VerityInfo>) -> Artifact {
        Artifact {
            name: name.into(),
            size: content.len() as u64,
            sha256: Digest32(<sha2::Sha256 as sha2::Digest>::digest(content).into()),
            verity,
        }
    }

    /// Bytes that chunk into several chunks (no long runs of one value).
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn a_format_2_bundle_gets_an_index_of_each_uki_and_of_the_root_image_data() {
        let dir = tempfile::tempdir().unwrap();
        let data = noise(256 << 10, 1);
        let verity = VerityInfo::new(Digest32([1; 32]), vec![], 64, data.len() as u64).unwrap();
        let mut rootfs = data.clone();
        rootfs.resize(usize::try_from(verity.image_size()).unwrap(), 0);
        let (uki_a, uki_b) = (noise(300 << 10, 2), noise(200 << 10, 3));
        let m = Manifest {
            format: FORMAT_UKI,
            product: "p".into(),
            board: "b".into(),
            version: "1.0.0".parse().unwrap(),
            security_epoch: 0,
            created: 0,
            expires: None,
            options: String::new(),
            artifacts: vec![
                artifact("uki-a.efi", &uki_a, None),
                artifact("uki-b.efi", &uki_b, None),
                artifact(ROOTFS, &rootfs, Some(verity)),
            ],
        };
        let mut w = slate_core::bundle::Writer::new(Vec::new(), 0);
        w.head(&m.to_bytes(), b"").unwrap();
        w.entry("uki-a.efi", &uki_a).unwrap();
        w.entry("uki-b.efi", &uki_b).unwrap();
        w.entry(ROOTFS, &rootfs).unwrap();
        let path = dir.path().join("b.slate");
        std::fs::write(&path, w.finish().unwrap()).unwrap();

        let got = of_bundle(&path, &m).unwrap();
        let params = Params::around(DEFAULT_AVG);
        // The root image's data only (not its verity tree), as the device chunks its slot.
        assert_eq!(got.root, ChunkIndex::of(&data, params));
        let names: Vec<&str> = got.ukis.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["uki-a.efi", "uki-b.efi"]);
        assert_eq!(got.ukis[0].1, ChunkIndex::of(&uki_a, params));
        assert_eq!(got.ukis[1].1, ChunkIndex::of(&uki_b, params));
        assert!(got.ukis[0].1.chunks.len() > 1);
    }
}
