//! `cargo xtask bench delta`: what a delta update would fetch between root images the e2e
//! suite built (`target/e2e-images`), for several average chunk sizes — the measurement the
//! chunk size is chosen by. Each figure is computed from the images' bytes with the device's
//! own planner (`slate_core::delta`); nothing is estimated.
//!
//! The full comparison (casync, zstd --patch-from, xdelta3, install times on larger
//! application pairs) is not here yet: this is the first table of it.

use crate::workspace::root;
use anyhow::{bail, Context, Result};
use slate_core::delta::{plan, ChunkIndex, Params};
use std::path::Path;

/// The root image's data (without its verity tree) of a built image folder.
fn data_of(dir: &Path) -> Result<Vec<u8>> {
    let build: toml::Value = toml::from_str(
        &std::fs::read_to_string(dir.join("build.toml"))
            .with_context(|| format!("reading {}", dir.join("build.toml").display()))?,
    )?;
    let hash_offset = build
        .get("verity")
        .and_then(|v| v.get("hash_offset"))
        .and_then(toml::Value::as_integer)
        .context("build.toml has no verity.hash_offset")?;
    let mut img = std::fs::read(dir.join("rootfs.img"))?;
    img.truncate(usize::try_from(hash_offset)?);
    Ok(img)
}

/// Runs the measurement over the pairs found.
pub fn measure() -> Result<()> {
    let images = root().join("target/e2e-images");
    let pairs = [
        (
            "1.0.0-Demo-epoch0-hooks",
            "1.1.0-Demo-epoch0-hooks",
            "version only",
        ),
        (
            "1.0.0-Demo-epoch0-hooks",
            "2.0.0-CappedWindow-epoch0-hooks",
            "spec change",
        ),
        (
            "1.0.0-Demo-epoch0-hooks",
            "1.0.0-Pc-epoch0-hooks",
            "other board",
        ),
    ];
    let mut found = 0;
    println!(
        "{:<14} {:>6} {:>10} {:>9} {:>11} {:>8} {:>11} {:>7}",
        "pair", "avg", "image", "index", "fetched", "requests", "cost", "of full"
    );
    for (from, to, what) in pairs {
        let (a, b) = (images.join(from), images.join(to));
        if !a.is_dir() || !b.is_dir() {
            continue;
        }
        found += 1;
        let (old, new) = (data_of(&a)?, data_of(&b)?);
        for avg in [8u32 << 10, 16 << 10, 32 << 10, 64 << 10] {
            let p = Params::around(avg);
            let (ni, oi) = (ChunkIndex::of(&new, p), ChunkIndex::of(&old, p));
            let index = ni.to_bytes().len() as u64;
            let d = plan::plan(&ni, &oi, plan::COALESCE_GAP);
            let cost = d.cost(index);
            println!(
                "{:<14} {:>5}K {:>10} {:>9} {:>11} {:>8} {:>11} {:>6.1}%",
                what,
                avg >> 10,
                new.len(),
                format!("{index} ({:.3}%)", index as f64 * 100.0 / new.len() as f64),
                d.fetch_bytes,
                d.requests,
                cost,
                cost as f64 * 100.0 / new.len() as f64
            );
        }
    }
    if found == 0 {
        bail!(
            "no image pairs in {}: run the e2e suite first (cargo xtask e2e)",
            images.display()
        );
    }
    Ok(())
}
