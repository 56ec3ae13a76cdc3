//! `cargo xtask bench verity`: the dm-verity tree beside `veritysetup format`.

use super::{summarize, timed};
use crate::{workspace::root, workspace::run};
use anyhow::{bail, Result};
use std::process::Command;

pub(super) fn measure(rounds: u32) -> Result<()> {
    let slate = crate::images::release_imager()?;
    let scratch = root().join("target/bench-verity");
    std::fs::create_dir_all(&scratch)?;
    let data = scratch.join("data.bin");
    run(Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "count=512", "status=none"])
        .arg(format!("of={}", data.display())))?;
    let salt = "00".repeat(32);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (mut ours, mut ours_one, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        // Both of ours write and fsync their hash file, as veritysetup does.
        for (threads, into) in [(cores, &mut ours), (1, &mut ours_one)] {
            into.push(timed(
                Command::new(&slate)
                    .arg("verity-format")
                    .arg(&data)
                    .arg(scratch.join("ours.hash"))
                    .arg(format!("--salt={salt}"))
                    .arg(format!("--threads={threads}")),
                &scratch,
            )?);
        }
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
    let a = summarize(&format!("slate verity-format ({cores} threads)"), &ours);
    let one = summarize("slate verity-format (1 thread)", &ours_one);
    let b = summarize("veritysetup format (1 thread)", &theirs);
    println!(
        "  {:<34} {:>8.2}×  (veritysetup wall / slate wall, one thread each)",
        "speed-up, same threads",
        b.wall / one.wall
    );
    println!(
        "  {:<34} {:>8.2}×  (veritysetup wall / slate wall on {cores} threads; goal ≥ 1.5×)",
        "speed-up, all cores",
        b.wall / a.wall
    );
    let same =
        std::fs::read(scratch.join("ours.hash"))? == std::fs::read(scratch.join("theirs.hash"))?;
    println!("  hash areas identical: {same}");
    if !same {
        bail!("our hash area differs from veritysetup's: the timings above compare different work");
    }
    Ok(())
}
