//! Durable replacement of a file: what a power cut cannot tear. The agent's state, stage 1's
//! boot count and every file the agent writes on the ESP go through here.
//!
//! ```text
//! .<name>.tmp  ← write, fsync      (a cut here leaves the old file and a stray temp)
//! <name>       ← rename            (atomic: old or new)
//! folder       ← fsync             (the rename itself is on the disk)
//! ```

use anyhow::{Context, Result};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The temporary name beside `path`: hidden, and not ending in `.conf` (systemd-boot reads
/// only `*.conf` entries).
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Makes `dir` root's alone (0700), whoever made it before.
pub fn private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private", dir.display()))
}

/// fsync of a folder: makes renames and removals in it durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing folder {}", dir.display()))
}

/// Replaces `path` with what `fill` writes. A failed `fill` removes the temporary file and
/// leaves `path` as it was.
pub fn replace_with(path: &Path, fill: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = temp_path(path);
    let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    if let Err(e) = fill(&mut f) {
        drop(f);
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    f.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} into place", path.display()))?;
    sync_dir(dir)
}

/// Replaces `path` with `bytes`.
pub fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    replace_with(path, |f| {
        f.write_all(bytes)
            .with_context(|| format!("writing {}", path.display()))
    })
}

/// Removes `path` durably (a missing file is fine).
pub fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
    }
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        replace(&p, b"one").unwrap();
        replace(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert!(!temp_path(&p).exists());
        let failed = replace_with(&p, |f| {
            f.write_all(b"half")?;
            anyhow::bail!("the stream broke")
        });
        assert!(failed.is_err());
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"two",
            "a failed write kept the old file"
        );
        assert!(!temp_path(&p).exists());
        remove(&p).unwrap();
        remove(&p).unwrap();
        assert!(!p.exists());
    }
}
