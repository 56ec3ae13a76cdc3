//! `cargo xtask ci`: what CI runs, in order.

use crate::deps;
use crate::fuzz;
use crate::images::build_image;
use crate::workspace::{cargo, root, run, target_dir};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// The cargo-deny release CI installs when it is missing (pinned, so a new release cannot
/// change what CI accepts).
const CARGO_DENY_VERSION: &str = "0.18.3";

/// Licenses, banned crates and sources of every dependency, as `deny.toml` says.
fn deny() -> Result<()> {
    let installed = Command::new("cargo")
        .args(["deny", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        // Without its default features (TLS for fetching advisories, which `check licenses
        // bans sources` never does) and unoptimised: it reads cargo metadata for a few seconds,
        // and the optimised build with TLS took 9 of a fresh machine's CI minutes (this one
        // about 2).
        run(Command::new("cargo").args([
            "install",
            "cargo-deny",
            "--locked",
            "--no-default-features",
            "--debug",
            "--version",
            CARGO_DENY_VERSION,
        ]))?;
    }
    run(cargo().args(["deny", "--locked", "check", "licenses", "bans", "sources"]))?;
    // The boot-retry loader is its own workspace (built for UEFI): the same rules.
    run(cargo()
        .args(["deny", "--locked", "--manifest-path"])
        .arg(root().join("bootretry/Cargo.toml"))
        .args(["check", "--config"])
        .arg(root().join("deny.toml"))
        .args(["licenses", "bans", "sources"]))
}

pub fn ci() -> Result<()> {
    deps::deps(false)?;
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The boot-retry loader is its own workspace, built for UEFI (`run` works in the root
    // folder, so it is named by its manifest).
    let bootretry = root().join("bootretry/Cargo.toml");
    run(cargo()
        .arg("fmt")
        .arg("--manifest-path")
        .arg(&bootretry)
        .args(["--", "--check"]))?;
    run(cargo()
        .arg("clippy")
        .arg("--manifest-path")
        .arg(&bootretry)
        .args(["--release", "--locked", "--target"])
        .arg(slate_imager::image::bootretry::TARGET)
        .arg("--target-dir")
        .arg(root().join("target/bootretry"))
        .args(["--", "-D", "warnings"]))?;
    deny()?;
    // The tests' scratch (VM disks, snapshots, repositories; some held for the whole test
    // process) goes under target/ci-tmp and is freed once they pass, with the images they
    // built: the steps after need only the imager and the production agent.
    let scratch = root().join("target/ci-tmp");
    std::fs::create_dir_all(&scratch)?;
    disk_report("before the tests");
    run(cargo()
        .args(["test", "--workspace", "--locked"])
        .env("TMPDIR", &scratch))?;
    disk_report("after the tests");
    for done in ["target/ci-tmp", "target/e2e-images", "target/e2e-specs"] {
        let dir = root().join(done);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    // A short smoke of every fuzz target (the long runs are `cargo xtask fuzz --seconds N`).
    fuzz::fuzz(3, None, fuzz::Build::Dev)?;
    disk_report("after the fuzz smoke");
    // The README's `slate build` of the default image, then the result checked by the standard
    // tools. It uses the imager and the production device binaries the tests above built:
    // building both again in release would repeat eight minutes of compiling for the same code.
    let debug_imager = target_dir().join("debug/slate");
    if !debug_imager.is_file() {
        bail!(
            "{} is missing: `cargo test --workspace` builds it for the imager's tests",
            debug_imager.display()
        );
    }
    let production = root().join("target/e2e-agent/production");
    let agent = production
        .join("slated")
        .is_file()
        .then_some(production.as_path());
    let out = build_image(
        &debug_imager,
        agent,
        "qemu-x86_64",
        Path::new("rootfs/image.toml"),
        false,
    )?;
    run(Command::new(&debug_imager)
        .arg("inspect")
        .arg(out.join("disk.img")))?;
    // sgdisk exits 0 whenever the table loads: its verdict is in what it prints.
    if let Err(e) = slate_oracles::sgdisk_verify(&out.join("disk.img")) {
        bail!("the README's image: {e}");
    }
    // The QEMU tests must not leave a VM behind, pass or fail.
    let left = Command::new("pgrep").args(["-a", "qemu-system"]).output()?;
    if !left.stdout.is_empty() {
        bail!(
            "QEMU processes left behind by the tests:\n{}",
            String::from_utf8_lossy(&left.stdout)
        );
    }
    eprintln!("ci: all green");
    Ok(())
}

/// Prints the free space of the disk that holds the build and the largest users under
/// target/, so that a CI run that comes near a full disk says where the bytes went.
fn disk_report(when: &str) {
    let free = Command::new("df")
        .args(["-h", "--output=avail"])
        .arg(root())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .last()
                .unwrap_or("?")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|e| format!("? ({e})"));
    let used = Command::new("du")
        .args(["-sh", "--"])
        .args(
            std::fs::read_dir(root().join("target"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path()),
        )
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).replace('\n', "; "))
        .unwrap_or_default();
    eprintln!("ci: disk {when}: {free} free; {used}");
}
