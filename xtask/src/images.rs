//! The repository's own image, rebuilt only when its inputs changed since the last build.

use crate::root;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Newest modification time of any file under `p`.
fn newest(p: &Path) -> SystemTime {
    let mut t = std::fs::metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    if let Ok(dir) = std::fs::read_dir(p) {
        for e in dir.flatten() {
            t = t.max(newest(&e.path()));
        }
    }
    t
}

/// The image folder for `board`, rebuilt when missing, asked for, or older than its inputs.
pub fn ensure_image(spec: &Path, board: &str, rebuild: bool) -> Result<PathBuf> {
    ensure_image_for(spec, board, rebuild, false)
}

/// The folder under out/ an image for `board` is built into.
pub fn out_name(board: &str, secure_boot: bool) -> String {
    if secure_boot {
        format!("{board}-secure-boot")
    } else {
        board.to_string()
    }
}

/// [`ensure_image`], for Secure Boot (signed UKIs, the development db key) when asked.
pub fn ensure_image_for(
    spec: &Path,
    board: &str,
    rebuild: bool,
    secure_boot: bool,
) -> Result<PathBuf> {
    let out = root().join("out").join(out_name(board, secure_boot));
    let report = out.join("build.toml");
    let built = std::fs::metadata(&report).and_then(|m| m.modified()).ok();
    let inputs = [
        spec.parent().unwrap_or(Path::new(".")).to_path_buf(),
        root().join("boards"),
        root().join("agent/src"),
        root().join("core/src"),
        root().join("imager/src"),
        root().join("bootretry/src"),
    ];
    let stale = match built {
        None => true,
        Some(b) => inputs.iter().any(|i| newest(i) > b),
    };
    if rebuild || stale {
        crate::deps::deps(true).context("fetching packages (cargo xtask deps)")?;
        crate::image(board, spec, secure_boot)?;
    }
    Ok(out)
}
