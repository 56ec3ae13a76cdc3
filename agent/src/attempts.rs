//! The boot-attempt count (`/data/slate/boot-attempts`, format and policy in
//! `slate_core::slots`): stage 1 records every start of a slot before it touches the root, the
//! agent clears it once the boot is healthy, and a *good* slot that keeps dying before that is
//! given up for the other slot — the only way out of a blessed entry that no longer boots.

use anyhow::{Context, Result};
use slate_core::layout::Slot;
use slate_core::slots::Attempts;
use std::path::Path;

/// Where the count lives (the same path before and after switch root: stage 1 mounts the data
/// partition at /data first).
pub const FILE: &str = "/data/slate/boot-attempts";

/// Records one more start of `slot` in the folder of `file`, durable before returning.
pub fn record_in(file: &Path, slot: Slot) -> Result<Attempts> {
    let previous = std::fs::read_to_string(file)
        .ok()
        .and_then(|t| Attempts::parse(&t));
    let now = Attempts::next(previous, slot);
    let dir = file.parent().context("attempt file without folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::durable::replace(file, now.render().as_bytes())
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(now)
}

/// Takes back the last start of `slot` (an orderly shutdown); removes the file when nothing is
/// left to count. Returns what remains.
pub fn forgive_in(file: &Path, slot: Slot) -> Result<Option<Attempts>> {
    let previous = std::fs::read_to_string(file)
        .ok()
        .and_then(|t| Attempts::parse(&t));
    if previous.is_none() {
        return Ok(None);
    }
    match Attempts::forgive(previous, slot) {
        Some(left) => {
            crate::durable::replace(file, left.render().as_bytes())
                .with_context(|| format!("writing {}", file.display()))?;
            Ok(Some(left))
        }
        None if previous.is_some_and(|p| p.slot == slot) => {
            crate::durable::remove(file)?;
            Ok(None)
        }
        None => Ok(None),
    }
}

/// [`forgive_in`] at [`FILE`].
pub fn forgive(slot: Slot) -> Result<Option<Attempts>> {
    forgive_in(Path::new(FILE), slot)
}

/// Forgets the count (the boot is healthy, or the slot was given up).
pub fn clear_in(file: &Path) -> Result<()> {
    crate::durable::remove(file)
}

/// [`record_in`] at [`FILE`].
pub fn record(slot: Slot) -> Result<Attempts> {
    record_in(Path::new(FILE), slot)
}

/// [`clear_in`] at [`FILE`].
pub fn clear() -> Result<()> {
    clear_in(Path::new(FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_starts_and_clears() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("slate/boot-attempts");
        assert_eq!(record_in(&f, Slot::A).unwrap().starts, 1);
        assert_eq!(record_in(&f, Slot::A).unwrap().starts, 2);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "a 2\n");
        assert_eq!(record_in(&f, Slot::B).unwrap().starts, 1);
        clear_in(&f).unwrap();
        assert!(!f.exists());
        clear_in(&f).unwrap();
        assert_eq!(record_in(&f, Slot::B).unwrap().starts, 1);
        std::fs::write(&f, "torn").unwrap();
        assert_eq!(record_in(&f, Slot::B).unwrap().starts, 1);
        record_in(&f, Slot::B).unwrap();
        assert_eq!(forgive_in(&f, Slot::B).unwrap().map(|a| a.starts), Some(1));
        assert_eq!(forgive_in(&f, Slot::A).unwrap(), None);
        assert!(f.exists(), "another slot's count is left alone");
        assert_eq!(forgive_in(&f, Slot::B).unwrap(), None);
        assert!(!f.exists());
    }
}
