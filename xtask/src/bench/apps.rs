//! `cargo xtask bench apps`: the nginx example as a user builds it (`slate lock`, `slate fetch`
//! into an empty cache, `slate build` without the extraction cache) beside the usual way to a
//! Debian-based root (`debootstrap --variant=minbase --include=nginx-light` of the same suite,
//! apt's caches and lists removed, squashed by `mksquashfs` with the same zstd level and block
//! size). Times and sizes are printed as measured, never asserted. Needs root (debootstrap).

use super::{summarize, timed};
use crate::workspace::root;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

fn size(p: &Path) -> Result<u64> {
    Ok(std::fs::metadata(p)
        .with_context(|| format!("measuring {}", p.display()))?
        .len())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

/// Runs the benchmark once (debootstrap takes most of a minute).
pub fn measure() -> Result<()> {
    if Command::new("debootstrap")
        .arg("--version")
        .output()
        .is_err()
    {
        crate::workspace::run(Command::new("apt-get").args([
            "install",
            "-y",
            "-q",
            "debootstrap",
        ]))?;
    }
    let slate = crate::images::release_imager()?;
    let agent = slate_imager::image::agentbin::locate(
        None,
        slate_core::layout::Arch::X86_64,
        slate_imager::progress::Progress::new(true),
    )?;
    let agent_dir = agent.init.parent().context("device binaries' folder")?;
    let scratch = root().join("target/bench-apps");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let s = scratch.as_path();
    let spec_dir = s.join("nginx");
    crate::workspace::run(
        Command::new("cp")
            .arg("-a")
            .arg(root().join("examples/nginx"))
            .arg(&spec_dir),
    )?;
    // Cold: empty package cache, and the board's packages without the extraction cache.
    let (cache, debs) = (s.join("cache"), s.join("debs"));
    std::fs::create_dir_all(&debs)?;
    for e in std::fs::read_dir(root().join(".cache/debs"))? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), debs.join(e.file_name()))?;
        }
    }
    let spec = spec_dir.join("image.toml");
    let slate_cmd = |args: &[&str]| {
        let mut c = Command::new(&slate);
        c.args(args)
            .arg("--spec")
            .arg(&spec)
            .arg("--boards")
            .arg(root().join("boards"))
            .arg("--cache")
            .arg(&cache);
        c
    };
    println!("\nnginx example (bookworm, nginx-light) beside debootstrap minbase + nginx-light:");
    println!(
        "  {:<34} {:>10} {:>11} {:>13}",
        "", "wall", "CPU", "peak RSS"
    );
    let lock = summarize(
        "slate lock (empty cache)",
        &[timed(&mut slate_cmd(&["lock"]), s)?],
    );
    let fetch = summarize(
        "slate fetch (empty cache)",
        &[timed(&mut slate_cmd(&["fetch"]), s)?],
    );
    let out = s.join("out");
    let mut b = slate_cmd(&["build", "--quiet"]);
    b.arg("--debs")
        .arg(&debs)
        .arg("--agent-dir")
        .arg(agent_dir)
        .arg("--out")
        .arg(&out);
    let build = summarize("slate build (cold)", &[timed(&mut b, s)?]);
    let bundle = s.join("nginx.slate");
    let key = crate::dev::dev_trust()?.with_file_name("dev.pem");
    crate::workspace::run(
        Command::new(&slate)
            .args(["bundle", "--build"])
            .arg(&out)
            .arg("--key")
            .arg(&key)
            .arg("--out")
            .arg(&bundle),
    )?;

    let tree = s.join("debootstrap");
    let mut d = Command::new("debootstrap");
    d.args(["--variant=minbase", "--include=nginx-light", "bookworm"])
        .arg(&tree)
        .arg("http://deb.debian.org/debian");
    let boot = summarize("debootstrap minbase + nginx-light", &[timed(&mut d, s)?]);
    for junk in ["var/cache/apt", "var/lib/apt/lists"] {
        let _ = std::fs::remove_dir_all(tree.join(junk));
    }
    let squashed = s.join("debootstrap.sqfs");
    let level = "15";
    let mut m = Command::new("mksquashfs");
    m.arg(&tree).arg(&squashed).args([
        "-comp",
        "zstd",
        "-Xcompression-level",
        level,
        "-b",
        "131072",
        "-noappend",
        "-quiet",
    ]);
    let sq = summarize("mksquashfs of that tree", &[timed(&mut m, s)?]);
    let report = slate_imager::image::build::Report::load(&out)?;
    let ours_sqfs = report.verity.info.hash_offset;
    let packages = |dir: &Path| -> Result<usize> {
        Ok(std::fs::read_dir(dir)?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".list"))
            .count())
    };
    let theirs_pkgs = packages(&tree.join("var/lib/dpkg/info"))?;
    let ours_pkgs = slate_imager::image::debian::lock::Lock::read(&spec_dir.join("image.lock"))?
        .packages
        .len();
    if ours_sqfs == 0 {
        bail!("the build report has no root image size");
    }
    println!(
        "  {:<34} {:>8.2} s (Slate: lock + fetch + build) vs {:.2} s (debootstrap + mksquashfs)",
        "to a root image",
        lock.wall + fetch.wall + build.wall,
        boot.wall + sq.wall
    );
    println!("\n  {:<34} {:>12} {:>14}", "", "Slate", "debootstrap");
    println!("  {:<34} {:>12} {:>14}", "packages", ours_pkgs, theirs_pkgs);
    println!(
        "  {:<34} {:>9.1} MiB {:>11.1} MiB",
        "root squashfs (zstd 15, 128 KiB)",
        mib(ours_sqfs),
        mib(size(&squashed)?)
    );
    println!(
        "  {:<34} {:>9.1} MiB {:>11.1} MiB",
        "update bundle (root + kernel + initrd)",
        mib(size(&bundle)?),
        mib(size(&squashed)? + size(&out.join("vmlinuz"))? + size(&out.join("initrd.img"))?)
    );
    println!("  (the debootstrap bundle is its squashfs plus the same kernel and initramfs, unsigned and without a verity tree)");
    Ok(())
}
