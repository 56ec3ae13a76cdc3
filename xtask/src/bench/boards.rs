//! `cargo xtask bench boards`: boot to healthy per board, each on the machine its board file's
//! `[qemu]` table describes (the dev VM; a PC with an NVMe disk and an e1000e card taking its
//! address by DHCP; QEMU's arm64 virt machine), with the firmware-done and stage-1 split; what
//! the first boot's grow of `data` onto a 4 GiB disk adds, as the difference within pairs of
//! first boots of the same image on a 4 GiB disk and on a disk the image's size; and the
//! device binaries' sizes per architecture.

use super::{cell, median};
use crate::timeline::BootTimes;
use crate::{workspace::root, workspace::run};
use anyhow::{bail, Context, Result};
use slate_core::api::Kind;
use slate_qemu::{Vm, VmConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The larger disk of the grow measurement.
const LARGE_DISK: u64 = 4 << 30;

/// The demo spec for the PC board: its address by DHCP (nothing on a real network is known
/// in advance), in a folder of its own so `out/x86_64-uefi` rebuilds only when it changes.
fn pc_spec(scratch: &Path) -> Result<PathBuf> {
    let dir = scratch.join("pc-spec");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    run(Command::new("cp")
        .arg("-a")
        .arg(root().join("rootfs/."))
        .arg(&dir))?;
    let spec = dir.join("image.toml");
    let text = std::fs::read_to_string(&spec)?;
    let fixed = "address = \"10.0.2.15/24\"\n";
    if !text.contains(fixed) {
        bail!("rootfs/image.toml has no static address to replace with dhcp = true");
    }
    std::fs::write(&spec, text.replace(fixed, "dhcp = true\n"))?;
    Ok(spec)
}

/// A private copy of `image`'s disk in `work` (made `size` bytes long when given) and the dev
/// VM's configuration for it.
pub(super) fn vm_for(image: &Path, work: &Path, size: Option<u64>) -> Result<VmConfig> {
    std::fs::create_dir_all(work)?;
    let disk = work.join("disk.img");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(image.join("disk.img"))
        .arg(&disk))?;
    if let Some(size) = size {
        let f = std::fs::OpenOptions::new().write(true).open(&disk)?;
        f.set_len(size)?;
    }
    crate::dev::dev_vm(&disk, work)
}

/// One first boot of `image`'s disk (made `size` bytes long when given) on `board`'s
/// machine, until healthy.
fn first_boot(image: &Path, board: &str, work: &Path, size: Option<u64>) -> Result<BootTimes> {
    let mut cfg = vm_for(image, work, size)?;
    let disk = cfg.disk.clone();
    crate::qemu::board_machine(&mut cfg, board)?;
    let mut vm = Vm::start(&cfg)?;
    vm.wait_for(&Kind::Healthy.prefix(), Duration::from_secs(300))
        .with_context(|| format!("{board}: booting {}", disk.display()))?;
    if size.is_some() {
        vm.wait_for(
            &format!("{} filesystem", Kind::DataGrown.prefix()),
            Duration::from_secs(30),
        )
        .with_context(|| format!("{board}: data did not grow"))?;
    }
    let t = BootTimes::of(&vm);
    eprintln!("  {board}: {}", crate::timeline::boot_timings(&vm));
    vm.power_cut();
    Ok(t)
}

/// The medians of a series of boots: firmware done, stage 1 done, healthy.
fn row(name: &str, machine: &str, runs: &[BootTimes]) {
    let med = |f: &dyn Fn(&BootTimes) -> Option<f64>| median(runs.iter().filter_map(f).collect());
    println!(
        "  {name:<12} {machine:<34} {} {} {}",
        cell(med(&|t| t.firmware), 8),
        cell(med(&|t| t.stage1), 8),
        cell(med(&|t| t.healthy), 8)
    );
}

pub(super) fn measure(rounds: u32) -> Result<()> {
    let scratch = root().join("target/bench-boards");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let dev = crate::images::ensure_image(&root().join("rootfs/image.toml"), "qemu-x86_64", false)?;
    let pc = crate::images::ensure_image(&pc_spec(&scratch)?, "x86_64-uefi", false)?;
    let arm = crate::images::ensure_image(&root().join("rootfs/image.toml"), "qemu-arm64", false)?;
    let rounds = rounds.max(5);
    let (mut dev_runs, mut pc_small, mut pc_large) = (Vec::new(), Vec::new(), Vec::new());
    let mut arm_runs = Vec::new();
    for r in 0..rounds {
        let w = scratch.join(format!("run{r}"));
        dev_runs.push(first_boot(&dev, "qemu-x86_64", &w.join("dev"), None)?);
        arm_runs.push(first_boot(&arm, "qemu-arm64", &w.join("arm"), None)?);
        pc_small.push(first_boot(&pc, "x86_64-uefi", &w.join("pc"), None)?);
        pc_large.push(first_boot(
            &pc,
            "x86_64-uefi",
            &w.join("pc-4g"),
            Some(LARGE_DISK),
        )?);
    }
    println!("\nfirst boot per board, median of {rounds} (s since QEMU start, host clock)");
    println!(
        "  {:<12} {:<34} {:>8} {:>8} {:>8}",
        "board", "machine", "firmware", "stage 1", "healthy"
    );
    row("qemu-x86_64", "virtio disk, virtio-net, static", &dev_runs);
    row("x86_64-uefi", "NVMe (image size), e1000e, DHCP", &pc_small);
    row("x86_64-uefi", "NVMe 4 GiB (grows), e1000e, DHCP", &pc_large);
    row("qemu-arm64", "virt, cortex-a57, virtio, static", &arm_runs);
    // Within each pair of boots: stage 1's span (kernel start → stage 1 done) on the 4 GiB
    // disk less the same on the image-sized one. The ext4 grow runs in stage 1 too.
    let spans = |runs: &[BootTimes]| -> Vec<Option<f64>> {
        runs.iter().map(|t| Some(t.stage1? - t.kernel?)).collect()
    };
    let added: Vec<f64> = spans(&pc_large)
        .into_iter()
        .zip(spans(&pc_small))
        .filter_map(|(l, s)| Some(l? - s?))
        .collect();
    match median(added.clone()) {
        Some(a) => println!(
            "  the grow onto 4 GiB adds {a:.2} s to stage 1 (median of {} pairs: kernel start → stage 1 done, 4 GiB less image size)",
            added.len()
        ),
        None => bail!("no pair of boots measured both kernel start and stage 1"),
    }
    println!("\ndevice binaries (static, profile device):");
    for arch in [
        slate_core::layout::Arch::X86_64,
        slate_core::layout::Arch::Arm64,
    ] {
        let dir = root()
            .join("target")
            .join(slate_imager::image::agentbin::target_for(arch))
            .join(slate_imager::image::agentbin::DEVICE_PROFILE);
        for b in ["slate-init", "slated"] {
            let m = std::fs::metadata(dir.join(b)).with_context(|| {
                format!("{}: built by the image builds above", dir.join(b).display())
            })?;
            println!(
                "  {:<6} {b:<10} {:.2} MiB",
                arch.debian(),
                m.len() as f64 / 1048576.0
            );
        }
    }
    Ok(())
}
