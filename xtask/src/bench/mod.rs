//! `cargo xtask bench`: Slate beside the standard tools on the same input, as ratios.
//!
//! `imager`: `slate build` of a tree made of the kernel's modules plus busybox (~400 MiB)
//! against the standard pipeline (dpkg-deb, cpio|zstd, mksquashfs -comp zstd, veritysetup
//! format, mkfs.vfat + mcopy, mkfs.ext4, sgdisk, dd) at the same compression level, alternating,
//! with wall time, CPU time and peak RSS from GNU time. Then the verity tree alone on 512 MiB
//! against `veritysetup format`. Figures are printed, never asserted.
//!
//! `apps`: the nginx example (lock, fetch, build) beside debootstrap minbase + nginx-light.

mod api;
mod apps;
mod boards;
mod boot;
mod delta;
mod imager;
mod install;
mod secure_boot;
mod squashfs_floor;
mod verity;

use crate::workspace::root;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One measured run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    wall: f64,
    cpu: f64,
    rss_mib: f64,
    /// What the command printed on stderr (`slate build --timings` puts its table there).
    stderr: String,
}

/// Runs `cmd` under GNU time and returns what it measured.
pub(crate) fn timed(cmd: &mut Command, scratch: &Path) -> Result<Sample> {
    let report = scratch.join("time.out");
    let mut t = Command::new("/usr/bin/time");
    t.arg("-f")
        .arg("%e %U %S %M")
        .arg("-o")
        .arg(&report)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    if let Some(d) = cmd.get_current_dir() {
        t.current_dir(d);
    }
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            t.env(k, v);
        }
    }
    let out = t
        .output()
        .context("running /usr/bin/time (Debian package `time`)")?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = std::fs::read_to_string(&report)?;
    let f: Vec<f64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    if f.len() < 4 {
        bail!("unexpected GNU time output {text:?}");
    }
    Ok(Sample {
        wall: f[0],
        cpu: f[1] + f[2],
        rss_mib: f[3] / 1024.0,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// The median, or None when nothing was measured (so no figure is printed for it).
pub(crate) fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied()
}

/// A table cell: the figure, or "n/a" when it was not measured.
pub(crate) fn cell(v: Option<f64>, width: usize) -> String {
    v.map_or_else(
        || format!("{:>width$}", "n/a"),
        |x| format!("{x:>width$.2}"),
    )
}

pub(crate) fn summarize(name: &str, s: &[Sample]) -> Sample {
    let m = Sample {
        wall: median(s.iter().map(|x| x.wall).collect()).unwrap_or(f64::NAN),
        cpu: median(s.iter().map(|x| x.cpu).collect()).unwrap_or(f64::NAN),
        rss_mib: median(s.iter().map(|x| x.rss_mib).collect()).unwrap_or(f64::NAN),
        stderr: String::new(),
    };
    println!(
        "  {name:<34} {:>8.2} s {:>9.2} s {:>9.0} MiB",
        m.wall, m.cpu, m.rss_mib
    );
    m
}

pub(crate) fn deb_file(requested: &str) -> Result<PathBuf> {
    let cache = root().join(".cache/debs");
    let index: slate_imager::image::debian::deb::DebIndex = toml::from_str(
        &std::fs::read_to_string(cache.join("index.toml"))
            .context("no deb cache: run `cargo xtask deps`")?,
    )?;
    let rec = index
        .packages
        .iter()
        .find(|p| p.requested == requested)
        .with_context(|| format!("{requested} not in the deb cache"))?;
    Ok(cache.join(&rec.file))
}

/// Runs `cargo xtask bench WHAT`.
pub fn bench(what: &str, mib: u64, rounds: u32) -> Result<()> {
    match what {
        "imager" => {
            imager::measure(mib, rounds)?;
            verity::measure(rounds.max(3))
        }
        "verity" => verity::measure(rounds.max(3)),
        "boot" => boot::measure(rounds),
        "boards" => boards::measure(rounds),
        "secure-boot" => secure_boot::measure(rounds),
        "install" => install::measure(),
        "api" => api::measure(),
        "apps" => apps::measure(),
        "channel" => channel(),
        "delta" => delta::measure(),
        "fleet" => fleet(),
        "tpm" => tpm(),
        other => {
            bail!("unknown benchmark {other:?} (known: imager, verity, boot, boards, secure-boot, install, api, apps, channel, delta, fleet, tpm)")
        }
    }
}

/// `cargo xtask bench fleet`: a fleet server's deployment → committed beside `slate push`
/// on one device, an idle device's requests and an update's feedback bytes (the in-repo DDI
/// server of `slate-tests`).
fn fleet() -> Result<()> {
    qemu_bench("bench_fleet::deployment_to_commit_beside_push")
}

/// Runs the QEMU harness's benchmark test `test` alone (it needs the test images and fixtures
/// of `slate-tests`).
fn qemu_bench(test: &str) -> Result<()> {
    crate::deps::deps(false)?;
    crate::workspace::run(&mut crate::workspace::e2e_command(
        None,
        &["--ignored", "--exact", test, "--nocapture"],
    ))
}

/// `cargo xtask bench tpm`: what a TPM (swtpm) costs a Secure Boot boot under this
/// machine's accelerator — OVMF and systemd-stub measuring, stage 1 unsealing `/data`.
fn tpm() -> Result<()> {
    qemu_bench("tpm::bench_boot_cost_of_the_tpm")
}

/// `cargo xtask bench channel`: the QEMU harness's channel benchmark (publish → committed
/// beside push, and the bytes sent again after a drop), which needs the test images and the
/// channel fixture of `slate-tests`; it runs alone, as the fixture's repository is its own.
fn channel() -> Result<()> {
    qemu_bench("bench_channel::publish_to_commit_beside_push")
}
