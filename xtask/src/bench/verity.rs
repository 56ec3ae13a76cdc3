//! `cargo xtask bench verity`: the dm-verity tree beside `veritysetup format`.

use super::{summarize, timed};
use crate::{root, run};
use anyhow::Result;
use std::process::Command;

pub(super) fn measure(rounds: u32) -> Result<()> {
    let slate = crate::release_imager()?;
    let scratch = root().join("target/bench-verity");
    std::fs::create_dir_all(&scratch)?;
    let data = scratch.join("data.bin");
    run(Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "count=512", "status=none"])
        .arg(format!("of={}", data.display())))?;
    let salt = "00".repeat(32);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        ours.push(timed(
            Command::new(&slate)
                .arg("verity-format")
                .arg(&data)
                .arg(scratch.join("ours.hash"))
                .arg(format!("--salt={salt}")),
            &scratch,
        )?);
        let _ = std::fs::remove_file(scratch.join("theirs.hash"));
        theirs.push(timed(
            Command::new("veritysetup")
                .arg("format")
                .arg(&data)
                .arg(scratch.join("theirs.hash"))
                .arg(format!("--salt={salt}"))
                .arg("--uuid=00000000-0000-0000-0000-000000000000"),
            &scratch,
        )?);
    }
    println!("\nverity tree of 512 MiB (median of {rounds}); data in page cache");
    println!(
        "  {:<34} {:>10} {:>11} {:>13}",
        "", "wall", "cpu", "peak RSS"
    );
    let a = summarize("slate verity-format", &ours);
    let b = summarize("veritysetup format", &theirs);
    println!(
        "  {:<34} {:>8.2}×  (veritysetup wall / slate wall; goal ≥ 1.5×)",
        "speed-up",
        b.wall / a.wall
    );
    let same =
        std::fs::read(scratch.join("ours.hash"))? == std::fs::read(scratch.join("theirs.hash"))?;
    println!("  hash areas identical: {same}");
    Ok(())
}
