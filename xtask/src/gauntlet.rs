//! `cargo xtask gauntlet [--full]`: the power-cut tests (every step, then random cuts) with a
//! fresh seed, printed so a failure can be replayed.

use crate::workspace::root;
use anyhow::{bail, Result};

/// Deterministic cut points (`slate_core::api::CutPoint::UPDATE` and `STAGE`), each cut on two
/// disks.
const STEPS: u64 =
    (slate_core::api::CutPoint::UPDATE.len() + slate_core::api::CutPoint::STAGE.len()) as u64;

/// Runs the gauntlet: `random` random cuts with `seed` (fresh when None), `jobs` machines at
/// once.
pub fn gauntlet(full: bool, random: Option<u64>, seed: Option<u64>, jobs: u64) -> Result<()> {
    // --full: 300 cuts in all (the floor), the 26 step cuts included.
    let random = random.unwrap_or(if full { 300 - 2 * STEPS } else { 10 });
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    eprintln!(
        "gauntlet: {} step cuts (plain and volatile disk) + {random} random cuts, seed {seed}, {jobs} at a time",
        2 * STEPS
    );
    let jobs_arg = jobs.to_string();
    // Every step on both disks: CI leaves one twin of each out for time.
    let status = crate::workspace::e2e_command(
        Some("gauntlet"),
        &[
            "--nocapture",
            "--include-ignored",
            "--test-threads",
            &jobs_arg,
        ],
    )
    .current_dir(root())
    .env("SLATE_GAUNTLET_RANDOM", random.to_string())
    .env("SLATE_GAUNTLET_SEED", seed.to_string())
    .env("SLATE_GAUNTLET_JOBS", jobs.to_string())
    .status()?;
    if !status.success() {
        bail!("the gauntlet found broken promises (seed {seed}); see the summary and serial logs above");
    }
    Ok(())
}
