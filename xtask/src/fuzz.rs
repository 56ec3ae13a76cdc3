//! `cargo xtask fuzz --seconds N`: every fuzz target in `fuzz/` for N seconds each, with
//! cargo-fuzz on the nightly toolchain (installed from crates.io when missing).

use crate::{root, run};
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
];

fn has_cargo_fuzz() -> bool {
    Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs the targets; prints executions per target.
pub fn fuzz(seconds: u64, only: Option<&str>) -> Result<()> {
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
        let out = Command::new("cargo")
            .current_dir(root().join("fuzz"))
            .args(["+nightly", "fuzz", "run", t])
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
