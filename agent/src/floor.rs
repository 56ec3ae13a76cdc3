//! The device's security floor (`/data/slate/security-epoch`): the highest security epoch a
//! committed image had. Stage 1 refuses to start an image below it, and the agent refuses
//! bundles below it.
//!
//! It is its own small file, written only when an image is committed, so that a damaged or
//! deleted `state.json` cannot lower it; and the agent never uses less than the running
//! image's own epoch. Raising it is monotonic: a lower value is never written.

use anyhow::{Context, Result};
use std::path::Path;

/// Where the floor lives (the same path before and after switch root).
pub const FILE: &str = "/data/slate/security-epoch";

/// The stored floor; a missing or unreadable file reads as 0 (the callers take the maximum
/// with what else they know: the state file, the running image's epoch).
pub fn read_in(file: &Path) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// Raises the stored floor to `epoch` (never lowers it), durable before returning.
pub fn raise_in(file: &Path, epoch: u64) -> Result<u64> {
    let now = read_in(file);
    if epoch <= now && file.exists() {
        return Ok(now);
    }
    let new = now.max(epoch);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    crate::durable::replace(file, format!("{new}\n").as_bytes())
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(new)
}

/// Lowers the stored floor to `epoch`: only for stage 1, when the floor is above every image
/// the device can boot. That floor was never written by a commit (a commit raises it to the
/// committed image's epoch, and marks a lower other slot bad), so it is damage or an attack
/// by whoever could write `/data`, and obeying it would leave the device unable to boot.
pub fn repair_in(file: &Path, epoch: u64) -> Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    crate::durable::replace(file, format!("{epoch}\n").as_bytes())
        .with_context(|| format!("writing {}", file.display()))
}

/// [`read_in`] at [`FILE`].
pub fn read() -> u64 {
    read_in(Path::new(FILE))
}

/// [`raise_in`] at [`FILE`].
pub fn raise(epoch: u64) -> Result<u64> {
    raise_in(Path::new(FILE), epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_only_rises() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("slate/security-epoch");
        assert_eq!(read_in(&f), 0);
        assert_eq!(raise_in(&f, 3).unwrap(), 3);
        assert_eq!(raise_in(&f, 1).unwrap(), 3);
        assert_eq!(read_in(&f), 3);
        std::fs::write(&f, "garbage").unwrap();
        assert_eq!(read_in(&f), 0);
        assert_eq!(raise_in(&f, 2).unwrap(), 2);
    }

    #[test]
    fn a_floor_bomb_reads_as_written_and_repair_lowers_it() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("slate/security-epoch");
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, "18446744073709551615\n").unwrap();
        assert_eq!(read_in(&f), u64::MAX);
        repair_in(&f, 4).unwrap();
        assert_eq!(read_in(&f), 4);
        assert_eq!(raise_in(&f, 5).unwrap(), 5);
    }
}
