//! `cargo xtask gauntlet [--full]`: the power-cut tests (every step, then random cuts) with a
//! fresh seed, printed so a failure can be replayed.

use crate::root;
use anyhow::{bail, Result};
use std::process::Command;

/// Runs the gauntlet: `random` random cuts with `seed` (fresh when None).
pub fn gauntlet(full: bool, random: Option<u64>, seed: Option<u64>) -> Result<()> {
    let random = random.unwrap_or(if full { 290 } else { 10 });
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    eprintln!("gauntlet: 10 step cuts + {random} random cuts, seed {seed}");
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(root())
        .args([
            "test",
            "--locked",
            "-p",
            "slate-tests",
            "--test",
            "e2e",
            "gauntlet",
            "--",
            "--nocapture",
        ])
        .env("SLATE_GAUNTLET_RANDOM", random.to_string())
        .env("SLATE_GAUNTLET_SEED", seed.to_string())
        .status()?;
    if !status.success() {
        bail!("the gauntlet found broken promises (seed {seed}); see the summary and serial logs above");
    }
    Ok(())
}
