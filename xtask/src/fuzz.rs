//! `cargo xtask fuzz --seconds N`: every fuzz target in `fuzz/` for N seconds each, with
//! cargo-fuzz on the nightly toolchain (installed from crates.io when missing).

use crate::{workspace::root, workspace::run};
use anyhow::{bail, Context, Result};
use std::process::Command;

/// The targets, one per parser that takes outside input.
pub const TARGETS: &[&str] = &[
    "manifest",
    "signatures",
    "trust",
    "bundle_stream",
    "boot_entry",
    "cmdline",
    "disk_headers",
    "image_spec",
    "http_request",
    "fat_volume",
    "pe_image",
    "dhcp_reply",
    "delta_files",
    "multipart_answer",
    "ddi_documents",
    "tpm_answers",
];

fn has_cargo_fuzz() -> bool {
    Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// How the targets are built.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// Optimised (cargo fuzz's default): for real fuzzing runs.
    Release,
    /// Unoptimised (`--dev`): builds in half the time; CI's smoke only shows that every target
    /// builds, runs and does not crash at once.
    Dev,
}

/// Runs the targets; prints executions per target.
pub fn fuzz(seconds: u64, only: Option<&str>, build: Build) -> Result<()> {
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output();
    if !nightly.is_ok_and(|o| o.status.success()) {
        bail!("cargo fuzz needs the nightly toolchain (rustup toolchain install nightly)");
    }
    if !has_cargo_fuzz() {
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let targets: Vec<&str> = TARGETS
        .iter()
        .copied()
        .filter(|t| only.is_none_or(|o| o == *t))
        .collect();
    if targets.is_empty() {
        bail!("no fuzz target named {only:?} (known: {TARGETS:?})");
    }
    let mut summary = Vec::new();
    for t in targets {
        let corpus = root().join("target/fuzz-corpus").join(t);
        std::fs::create_dir_all(&corpus)?;
        if t == "fat_volume" {
            std::fs::write(corpus.join("seed-small-fat32"), small_fat32())?;
        }
        let out = Command::new("cargo")
            .current_dir(root().join("fuzz"))
            .args(["+nightly", "fuzz", "run", t])
            .args((build == Build::Dev).then_some("--dev"))
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-print_final_stats=1")
            .output()
            .with_context(|| format!("running cargo fuzz on {t}"))?;
        let err = String::from_utf8_lossy(&out.stderr);
        let execs = err
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .map(str::trim)
            .unwrap_or("?")
            .to_string();
        if !out.status.success() {
            eprintln!("{err}");
            bail!("fuzz target {t} failed (crash or build error); the reproducer is under fuzz/artifacts/{t}/");
        }
        println!("  {t:<14} {execs:>10} executions in {seconds} s, no crash");
        summary.push((t, execs));
    }
    Ok(())
}

/// A 32 KiB FAT32 volume (512-byte sectors and clusters, one FAT) with a long-named file of
/// two clusters in the root: a seed that gets the `fat_volume` fuzzer past the boot sector.
fn small_fat32() -> Vec<u8> {
    const SECTOR: usize = 512;
    let mut v = vec![0u8; 64 * SECTOR];
    let put16 =
        |v: &mut Vec<u8>, at: usize, x: u16| v[at..at + 2].copy_from_slice(&x.to_le_bytes());
    let put32 =
        |v: &mut Vec<u8>, at: usize, x: u32| v[at..at + 4].copy_from_slice(&x.to_le_bytes());
    put16(&mut v, 11, SECTOR as u16); // bytes per sector
    v[13] = 1; // sectors per cluster
    put16(&mut v, 14, 2); // reserved sectors: boot + FSInfo
    v[16] = 1; // one FAT
    put32(&mut v, 32, 64); // total sectors
    put32(&mut v, 36, 1); // sectors per FAT
    put32(&mut v, 44, 2); // root cluster
    put16(&mut v, 48, 1); // FSInfo sector
    v[510] = 0x55;
    v[511] = 0xAA;
    let info = SECTOR;
    put32(&mut v, info, 0x4161_5252);
    put32(&mut v, info + 484, 0x6141_7272);
    put32(&mut v, info + 488, 61 - 3); // free clusters
    put32(&mut v, info + 492, 5);
    let fat = 2 * SECTOR;
    for (c, x) in [
        (0, 0x0FFF_FFF8),
        (1, 0x0FFF_FFFF),
        (2, 0x0FFF_FFFF),
        (3, 4),
        (4, 0x0FFF_FFFF),
    ] {
        put32(&mut v, fat + c * 4, x);
    }
    let root = 3 * SECTOR;
    let short = *b"LONGNA~1TXT";
    let sum = short
        .iter()
        .fold(0u8, |s, &b| s.rotate_right(1).wrapping_add(b));
    v[root] = 0x41; // the last (and only) long-name part
    for (i, ch) in "long-name.txt".encode_utf16().take(5).enumerate() {
        put16(&mut v, root + 1 + 2 * i, ch);
    }
    v[root + 11] = 0x0F;
    v[root + 13] = sum;
    let e = root + 32;
    v[e..e + 11].copy_from_slice(&short);
    v[e + 11] = 0x20;
    put16(&mut v, e + 26, 3);
    put32(&mut v, e + 28, 700);
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fat_seed_is_a_clean_volume() {
        let mut v = std::io::Cursor::new(super::small_fat32());
        let found = slate_core::fat::check(&mut v).unwrap();
        assert!(found.is_clean(), "{found:?}");
    }
}
