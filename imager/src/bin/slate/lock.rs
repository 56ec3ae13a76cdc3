//! `slate lock` and `slate fetch`: the CLI side of [`slate_imager::image::debian::lock`].

use anyhow::Result;
use slate_imager::image::{build, debian::apt::Apt, debian::lock, spec::LoadedSpec};
use std::path::PathBuf;

/// Which spec, for which board, with which cache (`slate lock`, `slate fetch`).
#[derive(clap::Args)]
pub struct SpecTarget {
    /// Image spec (TOML); its lock is image.lock beside it.
    #[arg(long, default_value = "rootfs/image.toml")]
    spec: PathBuf,
    /// Board name (a file in the boards folder); default: the spec's `board`.
    #[arg(long)]
    board: Option<String>,
    /// Boards folder [default: boards/ beside the spec, or of the source tree].
    #[arg(long, value_name = "DIR")]
    boards: Option<PathBuf>,
    /// Cache folder for apt's lists and the .deb files [default: ~/.cache/slate, or
    /// .cache/slate of the Slate source tree for a spec inside it].
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
}

/// What a spec's lock must be, where it lives, the private apt, and the cache.
struct Target {
    wanted: lock::LockedFor,
    path: PathBuf,
    apt: Apt,
    cache: PathBuf,
}

impl SpecTarget {
    fn open(&self) -> Result<Target> {
        let spec = LoadedSpec::load(&self.spec)?;
        let (_, board) = build::board_for(&spec, self.board.as_deref(), self.boards.as_deref())?;
        let (wanted, path) = lock::wanted_by(&spec, &board.board);
        let cache = match &self.cache {
            Some(c) => c.clone(),
            None => lock::default_cache_for(&spec)?,
        };
        let apt = Apt::new(&cache, &spec.spec.debian, &wanted.architecture)?;
        Ok(Target {
            wanted,
            path,
            apt,
            cache,
        })
    }
}

/// `slate lock`.
pub fn lock(target: &SpecTarget) -> Result<()> {
    let t = target.open()?;
    eprintln!(
        "resolving {} package(s) for {} in {} …",
        t.wanted.requested.len(),
        t.wanted.architecture,
        t.wanted.suite
    );
    let lock = lock::lock(&t.apt, t.wanted, &t.path)?;
    let bytes: u64 = lock.packages.iter().map(|p| p.size).sum();
    println!(
        "locked {} packages ({:.1} MiB of .deb files) in {}",
        lock.packages.len(),
        bytes as f64 / 1048576.0,
        t.path.display()
    );
    Ok(())
}

/// `slate fetch`.
pub fn fetch(target: &SpecTarget) -> Result<()> {
    let t = target.open()?;
    let lock = lock::Lock::read(&t.path)?;
    lock.check_fresh(&t.wanted, &t.path)?;
    let debs = t.cache.join("debs");
    let files = lock::fetch(&t.apt, &lock, &debs)?;
    println!(
        "{} locked packages in {}, each sha256 as the lock says",
        files.len(),
        debs.display()
    );
    Ok(())
}
