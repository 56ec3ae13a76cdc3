//! `slate repo refresh`: new snapshot and timestamp signatures with the online key alone, so
//! devices keep trusting an unchanged repository (what a cron job runs, well inside the
//! timestamp's expiry).

use super::layout::Layout;
use super::write::{self, TargetsState};
use crate::operator::keys;
use anyhow::Result;
use std::path::Path;

/// Re-signs snapshot and timestamp; returns the new timestamp's expiry.
pub fn refresh(dir: &Path, online_key: &Path, now: i64) -> Result<jiff::Timestamp> {
    let layout = Layout::new(dir);
    let settings = layout.settings()?;
    let key = keys::load_private(online_key)?;
    let repo = layout.load(false)?;
    let targets = TargetsState::of(&repo)?;
    write::snapshot_and_timestamp(&layout, &targets, Some(&repo), &key, &settings, now)?;
    let repo = layout.load(false)?;
    Ok(repo.timestamp().signed.expires)
}
