//! The device's wave seed: drawn once from the system's random source and kept on /data, so a
//! device keeps its place in every rollout across reboots and updates.

use anyhow::{Context, Result};
use slate_core::channel::Seed;
use std::path::Path;

/// Reads the seed, or draws and stores one.
pub fn load_or_draw(path: &Path) -> Result<Seed> {
    if let Ok(text) = std::fs::read_to_string(path) {
        if let Some(seed) = text
            .trim()
            .parse::<u32>()
            .ok()
            .and_then(|v| Seed::try_from(v).ok())
        {
            return Ok(seed);
        }
        crate::marker::warn(format!("{}: not a seed; drawing a new one", path.display()));
    }
    let seed = Seed::from_random(random()?);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    crate::durable::replace(path, format!("{}\n", seed.get()).as_bytes())?;
    Ok(seed)
}

/// 64 random bits from the kernel.
pub fn random() -> Result<u64> {
    let mut b = [0u8; 8];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty())
        .context("reading the kernel's random source")?;
    Ok(u64::from_le_bytes(b))
}
