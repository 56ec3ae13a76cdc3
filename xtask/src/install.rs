//! `cargo xtask install`: `slate` with what it needs outside the source tree, under a prefix:
//! `bin/slate`, the static device binaries in `lib/slate/` and the boards in
//! `share/slate/boards/` (where an installed `slate` looks for them).

use crate::workspace::root;
use anyhow::{Context, Result};
use std::path::Path;

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    std::fs::set_permissions(to, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    Ok(())
}

/// Runs `cargo xtask install --prefix PREFIX`.
pub fn install(prefix: &Path) -> Result<()> {
    let slate = crate::images::release_imager()?;
    let agent = slate_imager::image::agentbin::locate(
        None,
        slate_core::layout::Arch::X86_64,
        slate_imager::progress::Progress::new(false),
    )?;
    copy(&slate, &prefix.join("bin/slate"), 0o755)?;
    let lib = prefix
        .join("bin")
        .join(slate_imager::image::agentbin::INSTALLED_DIR);
    copy(&agent.init, &lib.join("slate-init"), 0o755)?;
    copy(&agent.slated, &lib.join("slated"), 0o755)?;
    let progress = slate_imager::progress::Progress::new(false);
    if let Some(loader) =
        slate_imager::image::bootretry::locate(None, slate_core::layout::Arch::X86_64, progress)?
    {
        let to = lib.join(slate_imager::image::bootretry::FILE);
        std::fs::write(&to, loader).with_context(|| format!("writing {}", to.display()))?;
    }
    for e in std::fs::read_dir(root().join("boards"))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "toml") {
            let name = p.file_name().unwrap_or_default();
            copy(&p, &prefix.join("share/slate/boards").join(name), 0o644)?;
        }
    }
    eprintln!(
        "installed {} (device binaries in {}, boards in {})",
        prefix.join("bin/slate").display(),
        prefix.join("lib/slate").display(),
        prefix.join("share/slate/boards").display()
    );
    Ok(())
}
