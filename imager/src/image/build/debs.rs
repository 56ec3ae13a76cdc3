//! The packages a build reads: the root's from the spec's `image.lock` and the cache `slate
//! fetch` filled, and the board's kernel and boot loader from the same lock when it has them,
//! else from the deb cache `cargo xtask deps` fills (`--debs`).

use super::{default_dir, BuildOptions, EXTRACTED};
use crate::error::BuildError;
use crate::image::board::LoadedBoard;
use crate::image::debian::deb::DebCache;
use crate::image::debian::debroot::{self, LockedDeb};
use crate::image::debian::lock::{self, Lock};
use crate::image::provenance::{DebUsed, Provenance};
use crate::image::spec::LoadedSpec;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// What the build extracts.
pub struct Debs {
    /// The lock's root packages (the spec's and their dependencies).
    pub root: Vec<LockedDeb>,
    /// The kernel package's bytes.
    pub kernel: Vec<u8>,
    /// Its sha256 (the key of what is kept extracted).
    pub kernel_sha256: slate_core::Digest32,
    /// The boot loader package's bytes.
    pub boot: Vec<u8>,
    /// Where extracted kernel contents and compressed blocks are kept between builds.
    pub extracted: PathBuf,
}

/// The spec's lock, checked against what the spec and board need: None when there is none and
/// the spec has no packages (the board's packages then come from `--debs`).
fn read_lock(spec: &LoadedSpec, board: &LoadedBoard) -> Result<Option<Lock>> {
    let (wanted, path) = lock::wanted_by(spec, &board.board);
    if !path.is_file() {
        if spec.spec.packages.is_empty() {
            return Ok(None);
        }
        // A spec locked for another architecture only: its lock for this one is missing.
        let other = if path.file_name() == Some(std::ffi::OsStr::new(lock::LOCK_FILE)) {
            String::new()
        } else {
            format!(
                " ({} is for another architecture; the lock for {} is {})",
                lock::LOCK_FILE,
                wanted.architecture,
                path.file_name().unwrap_or_default().to_string_lossy()
            )
        };
        return Err(BuildError::Lock {
            why: format!(
                "missing: {} has packages, and `slate build` takes them only from its lock{other}; run `slate lock --spec {} --board {}` and then `slate fetch --spec {} --board {}`",
                spec.path.display(),
                spec.path.display(),
                board.board.name,
                spec.path.display(),
                board.board.name,
            ),
            path,
        }
        .into());
    }
    let as_lock_error = |e: anyhow::Error| BuildError::Lock {
        path: path.clone(),
        why: format!("{e:#}"),
    };
    let lock = Lock::read(&path).map_err(as_lock_error)?;
    lock.check_fresh(&wanted, &path).map_err(as_lock_error)?;
    Ok(Some(lock))
}

fn record(prov: &mut Provenance, d: &LockedDeb, role: &str) {
    prov.debs.push(DebUsed {
        name: d.pkg.name.clone(),
        version: d.pkg.version.clone(),
        role: role.into(),
        sha256: d.pkg.sha256,
    });
}

/// Reads every package the build needs, each checked against its recorded sha256, and lists
/// them in the provenance.
pub fn read(
    spec: &LoadedSpec,
    board: &LoadedBoard,
    opts: &BuildOptions,
    prov: &mut Provenance,
) -> Result<Debs> {
    let lock = read_lock(spec, board)?;
    let cache = match &opts.cache {
        Some(c) => c.clone(),
        None => lock::default_cache_for(spec)?,
    };
    let fetched = cache.join("debs");
    let (root, board_debs) = match &lock {
        Some(l) => {
            let root = debroot::load(&l.packages, &fetched, &spec.path)?;
            let board_debs = debroot::load(&l.board_packages, &fetched, &spec.path)?;
            (root, board_debs)
        }
        None => (Vec::new(), Vec::new()),
    };
    let (kernel, kernel_sha256, boot, extracted) = match <[LockedDeb; 2]>::try_from(board_debs) {
        Ok([k, b]) => {
            record(prov, &k, "kernel");
            record(prov, &b, "bootloader");
            let sha = k.pkg.sha256;
            (k.bytes, sha, b.bytes, cache.join(EXTRACTED))
        }
        Err(_) => from_deb_cache(spec, board, opts.debs.as_deref(), prov)?,
    };
    for d in &root {
        record(prov, d, "rootfs");
    }
    Ok(Debs {
        root,
        kernel,
        kernel_sha256,
        boot,
        extracted,
    })
}

/// The board's kernel and boot loader from the deb cache of `cargo xtask deps`.
fn from_deb_cache(
    spec: &LoadedSpec,
    board: &LoadedBoard,
    debs: Option<&Path>,
    prov: &mut Provenance,
) -> Result<(Vec<u8>, slate_core::Digest32, Vec<u8>, PathBuf)> {
    let dir = debs.map_or_else(|| default_dir(&spec.dir, ".cache/debs"), Path::to_path_buf);
    let cache = DebCache::open(&dir)?;
    let mut read = |name: &str, role: &str| -> Result<(Vec<u8>, slate_core::Digest32)> {
        let (rec, bytes) = cache.read(name)?;
        let sha = rec.sha256;
        prov.debs.push(DebUsed {
            name: rec.name,
            version: rec.version,
            role: role.into(),
            sha256: rec.sha256,
        });
        Ok((bytes, sha))
    };
    let (kernel, kernel_sha256) = read(&board.board.kernel_package, "kernel")?;
    let (boot, _) = read(&board.board.bootloader_package, "bootloader")?;
    Ok((kernel, kernel_sha256, boot, dir.join(EXTRACTED)))
}
