//! The static tier of a pull (DESIGN §17): when the release has a patch made for the running
//! release (`<bundle>.patch-<running root hash>`, authenticated by TUF), the device fetches
//! that one file onto /data and builds the whole bundle from it, its running slot and its boot
//! files — no request to the bundle at all. The bundle is hashed against the signed sha256 as
//! it is assembled, exactly as a download, so a wrong patch only costs its bytes.
//!
//! The patch is kept on /data until the install ends: a power cut while the bundle is being
//! assembled continues from the idle slot's durable prefix and the same patch file, without
//! fetching either again. Memory stays bounded: the patch is read from its file piece by
//! piece, the running slot from its block device.

use super::delta::{Running, Setup};
use super::download::{Expected, Piece, PieceKind};
use super::seen::TreeSpec;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use slate_core::delta::patch::{self, Patch, PatchOp};
use slate_core::delta::{self, plan, Mode};
use slate_core::manifest::ROOTFS;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where the patch being used is kept, named by its sha256.
pub const DIR: &str = "/data/slate/patches";

/// Room kept free on /data beside a patch (the device's state, logs and applications live
/// there too).
const SPARE: u64 = 64 << 20;

/// Plans a static install of `target` for the running release. None when the release has no
/// patch for it, or the patch cannot be used (the reason on the console): the dynamic tier
/// follows.
pub async fn prepare(
    repo: &tough::Repository,
    target: &str,
    expected: &Expected,
    running: &Running,
) -> Option<Setup> {
    let name = tough::TargetName::new(delta::patch_target(target, &running.root_hash)).ok()?;
    let listed = repo.targets().signed.targets.get(&name)?.clone();
    match plan_static(repo, &name, &listed, expected, running, Path::new(DIR)).await {
        Ok(setup) => Some(setup),
        Err(e) => {
            crate::marker::warn(format!(
                "channel: the static patch for {target} is not used ({e:#}); trying chunks"
            ));
            None
        }
    }
}

/// The bytes the static tier would still fetch for `target` on this device: the patch's
/// signed length, or nothing when it is kept on /data already (an attempt a cut stopped);
/// None when the release has no patch for the running release.
pub fn fetch_cost(repo: &tough::Repository, target: &str, running: &Running) -> Option<u64> {
    let name = tough::TargetName::new(delta::patch_target(target, &running.root_hash)).ok()?;
    let listed = repo.targets().signed.targets.get(&name)?;
    let kept = Path::new(DIR).join(format!(
        "{}.patch",
        hex::encode(listed.hashes.sha256.as_ref())
    ));
    Some(if holds(&kept, listed) {
        0
    } else {
        listed.length
    })
}

/// Removes every kept patch but `keep` (an install that ended, or a newer release).
pub fn clean(dir: &Path, keep: Option<&Path>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if Some(e.path().as_path()) != keep {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

async fn plan_static(
    repo: &tough::Repository,
    name: &tough::TargetName,
    listed: &tough::schema::Target,
    expected: &Expected,
    running: &Running,
    dir: &Path,
) -> Result<Setup> {
    let worth_it = u128::from(listed.length) * u128::from(plan::WORTH_IT.1)
        < u128::from(expected.length) * u128::from(plan::WORTH_IT.0);
    if !worth_it {
        bail!(
            "{} bytes are not less than 95% of the bundle's {}",
            listed.length,
            expected.length
        );
    }
    let sha = hex::encode(listed.hashes.sha256.as_ref());
    let path = dir.join(format!("{sha}.patch"));
    clean(dir, Some(&path));
    let fetched = if holds(&path, listed) {
        0
    } else {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let free = rustix::fs::statvfs(dir)
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
            .with_context(|| format!("the free space of {}", dir.display()))?;
        if free < listed.length.saturating_add(SPARE) {
            bail!(
                "{} has {free} bytes free, the patch needs {} and {SPARE} to spare",
                dir.display(),
                listed.length
            );
        }
        download(repo, name, &path).await?;
        listed.length
    };
    let p = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || -> Result<Patch> {
            let f = std::fs::File::open(&path)?;
            Ok(patch::read(std::io::BufReader::with_capacity(1 << 16, f))?)
        })
        .await??
    };
    let pieces = pieces(&p, expected, running, &path)?;
    Ok(Setup {
        mode: Mode::Static,
        cost: fetched,
        pieces,
        tree: p.levels.map(|l| TreeSpec {
            data_at: l.data_at,
            data_len: l.data_len,
            salt: l.salt,
        }),
        fetched,
        requests: u64::from(fetched > 0),
    })
}

/// Whether `path` already holds the listed patch (kept from an attempt a power cut stopped).
fn holds(path: &Path, listed: &tough::schema::Target) -> bool {
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                len += n as u64;
            }
            Err(_) => return false,
        }
    }
    len == listed.length && h.finalize().as_slice() == listed.hashes.sha256.as_ref()
}

/// Fetches the patch through TUF (its signed length and sha256 enforced) into `path`.
async fn download(repo: &tough::Repository, name: &tough::TargetName, path: &Path) -> Result<()> {
    use futures::StreamExt;
    use std::io::Write;
    let mut stream = repo
        .read_target(name)
        .await
        .context("fetching the patch")?
        .context("the patch is listed but not served")?;
    let tmp = path.with_extension("part");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.context("fetching the patch")?;
        f.write_all(&chunk)
            .with_context(|| format!("writing {}", tmp.display()))?;
    }
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("keeping {}", path.display()))?;
    Ok(())
}

/// The pieces that build the bundle: copies from the running slot and its boot files, and
/// the patch's own bytes from its file. Every source a step copies from must be what the
/// patch was made from (the running root hash; a boot file's length and sha256).
fn pieces(p: &Patch, expected: &Expected, running: &Running, file: &Path) -> Result<Vec<Piece>> {
    if p.target_len != expected.length {
        bail!(
            "it builds {} bytes, the bundle has {}",
            p.target_len,
            expected.length
        );
    }
    let mut devices: Vec<Option<PathBuf>> = vec![None; p.sources.len()];
    for i in p.used_sources() {
        let s = &p.sources[i];
        devices[i] = Some(if s.name == ROOTFS {
            if hex::encode(s.id.0) != running.root_hash {
                bail!(
                    "it copies from another root image ({})",
                    hex::encode(s.id.0)
                );
            }
            running.device.clone()
        } else {
            let path = running.boot_files.join(&s.name);
            if !super::delta::holds_file(&path, s.len, &s.id) {
                bail!("{} is not the file the patch copies from", path.display());
            }
            path
        });
    }
    Ok(p.ops
        .iter()
        .map(|op| match *op {
            PatchOp::Copy {
                source,
                from,
                to,
                len,
            } => Piece {
                bundle_offset: to,
                len,
                device: devices[usize::from(source)].clone().unwrap_or_default(),
                device_offset: from,
                kind: PieceKind::Copied,
            },
            PatchOp::Levels { to, len } => Piece {
                bundle_offset: to,
                len,
                device: PathBuf::new(),
                device_offset: 0,
                kind: PieceKind::Tree,
            },
            PatchOp::Literal { at, to, len } => Piece {
                bundle_offset: to,
                len,
                device: file.to_path_buf(),
                device_offset: at,
                kind: PieceKind::Patched,
            },
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use slate_core::delta::patch::SourceBytes;
    use slate_core::Digest32;

    #[test]
    fn the_pieces_copy_from_the_running_slot_and_the_patch_file() {
        let dir = tempfile::tempdir().unwrap();
        let slot: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let kernel = b"the kernel".repeat(100);
        let mut bundle = b"head".repeat(10);
        bundle.extend_from_slice(&slot[..30_000]);
        bundle.extend_from_slice(b"something new");
        bundle.extend_from_slice(&kernel);
        let root = Digest32([9; 32]);
        let bytes = patch::diff(
            &bundle,
            &[
                SourceBytes {
                    name: ROOTFS,
                    id: root,
                    bytes: &slot,
                },
                SourceBytes {
                    name: "vmlinuz",
                    id: Digest32(Sha256::digest(&kernel).into()),
                    bytes: &kernel,
                },
            ],
            None,
        )
        .unwrap();
        let file = dir.path().join("p.patch");
        std::fs::write(&file, &bytes).unwrap();
        std::fs::write(dir.path().join("vmlinuz"), &kernel).unwrap();
        std::fs::write(dir.path().join("slot"), &slot).unwrap();
        let running = Running {
            device: dir.path().join("slot"),
            boot_files: dir.path().to_path_buf(),
            data_len: 0,
            uki: None,
            root_hash: hex::encode(root.0),
        };
        let p = patch::read(&bytes[..]).unwrap();
        let expected = Expected {
            length: bundle.len() as u64,
            sha256: Digest32(Sha256::digest(&bundle).into()),
        };
        let pieces = pieces(&p, &expected, &running, &file).unwrap();
        // Assembled from the pieces, it is the bundle.
        let mut out = Vec::new();
        for piece in &pieces {
            assert_eq!(piece.bundle_offset, out.len() as u64);
            let src = std::fs::read(&piece.device).unwrap();
            let at = piece.device_offset as usize;
            out.extend_from_slice(&src[at..at + piece.len as usize]);
        }
        assert_eq!(out, bundle);
        assert!(pieces.iter().any(|p| p.device == running.device));
        assert!(pieces.iter().any(|p| p.kind == PieceKind::Patched));

        // Another running root image, another kernel: refused, with the reason.
        let other = Running {
            root_hash: hex::encode([1u8; 32]),
            ..running.clone()
        };
        let e = pieces_err(&p, &expected, &other, &file);
        assert!(e.contains("another root image"), "{e}");
        std::fs::write(dir.path().join("vmlinuz"), b"another kernel").unwrap();
        let e = pieces_err(&p, &expected, &running, &file);
        assert!(e.contains("not the file the patch copies from"), "{e}");
        // A patch for a bundle of another length.
        let longer = Expected {
            length: expected.length + 1,
            ..expected
        };
        let e = pieces_err(&p, &longer, &running, &file);
        assert!(e.contains("the bundle has"), "{e}");
    }

    fn pieces_err(p: &Patch, e: &Expected, r: &Running, f: &Path) -> String {
        format!("{:#}", pieces(p, e, r, f).unwrap_err())
    }

    #[test]
    fn clean_keeps_only_the_patch_in_use() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["a.patch", "b.patch", "c.part"] {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        clean(dir.path(), Some(&dir.path().join("b.patch")));
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("b.patch")]);
    }
}
