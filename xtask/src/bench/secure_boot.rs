//! `cargo xtask bench secure-boot`: what Secure Boot costs a boot and a bundle. The demo spec
//! built twice (plain; signed UKIs with the development db key), first boots to healthy on
//! the dev VM: the plain image on plain OVMF, the Secure Boot image on OVMF's Secure Boot
//! build with the keys enrolled, and the Secure Boot image on plain OVMF (the UKI without the
//! firmware's check); and the UKI's size beside the kernel and initramfs it replaces.

use super::{cell, median};
use crate::timeline::BootTimes;
use crate::workspace::root;
use anyhow::{Context, Result};
use slate_core::api::Kind;
use slate_qemu::Vm;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One first boot of `image`'s disk, with `vars` as the enrolled Secure Boot variables when
/// given, until healthy.
fn first_boot(image: &Path, work: &Path, vars: Option<&PathBuf>) -> Result<BootTimes> {
    let mut cfg = super::boards::vm_for(image, work, None)?;
    cfg.secure_boot_vars = vars.cloned();
    let mut vm = Vm::start(&cfg)?;
    vm.wait_for(&Kind::Healthy.prefix(), Duration::from_secs(300))
        .with_context(|| format!("booting {}", cfg.disk.display()))?;
    let t = BootTimes::of(&vm);
    eprintln!("  {}", crate::timeline::boot_timings(&vm));
    vm.power_cut();
    Ok(t)
}

fn row(name: &str, runs: &[BootTimes]) {
    let med = |f: &dyn Fn(&BootTimes) -> Option<f64>| median(runs.iter().filter_map(f).collect());
    println!(
        "  {name:<46} {} {} {}",
        cell(med(&|t| t.firmware), 8),
        cell(med(&|t| t.stage1), 8),
        cell(med(&|t| t.healthy), 8)
    );
}

fn size(p: &Path) -> Result<u64> {
    Ok(std::fs::metadata(p)
        .with_context(|| format!("{}", p.display()))?
        .len())
}

pub(super) fn measure(rounds: u32) -> Result<()> {
    let spec = root().join("rootfs/image.toml");
    let plain = crate::images::ensure_image_for(&spec, "qemu-x86_64", false, false)?;
    let signed = crate::images::ensure_image_for(&spec, "qemu-x86_64", false, true)?;
    let vars = crate::dev::dev_secure_boot()?.join("OVMF_VARS.fd");
    let scratch = root().join("target/bench-secure-boot");
    let _ = std::fs::remove_dir_all(&scratch);
    let rounds = rounds.max(5);
    let (mut off, mut on, mut uki_off) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let w = scratch.join(format!("run{r}"));
        off.push(first_boot(&plain, &w.join("plain"), None)?);
        on.push(first_boot(&signed, &w.join("secure"), Some(&vars))?);
        uki_off.push(first_boot(&signed, &w.join("uki-off"), None)?);
    }
    println!("\nfirst boot of the demo on the dev VM, median of {rounds} (s since QEMU start, host clock)");
    println!(
        "  {:<46} {:>8} {:>8} {:>8}",
        "image and firmware", "firmware", "stage 1", "healthy"
    );
    row("plain (.conf entry), OVMF", &off);
    row("Secure Boot (signed UKI), OVMF secboot + keys", &on);
    row("Secure Boot (signed UKI), plain OVMF", &uki_off);
    let (kernel, initrd, uki) = (
        size(&signed.join("vmlinuz"))?,
        size(&signed.join("initrd.img"))?,
        size(&signed.join("uki-a.efi"))?,
    );
    let mib = |b: u64| b as f64 / 1048576.0;
    println!("\nwhat a slot boots from the ESP:");
    println!(
        "  vmlinuz {:.2} MiB + initrd.img {:.2} MiB = {:.2} MiB; a slot's signed UKI {:.2} MiB ({:+} bytes)",
        mib(kernel),
        mib(initrd),
        mib(kernel + initrd),
        mib(uki),
        uki as i64 - (kernel + initrd) as i64
    );
    // The same content as bundles: format 1 (rootfs, vmlinuz, initrd) and format 2 (a signed
    // UKI per slot, then rootfs), signed with the development key.
    crate::dev::dev_trust()?;
    let key = slate_imager::operator::keys::load_private(&root().join(".cache/keys/dev.pem"))?;
    let mut bundles = Vec::new();
    for (name, dir) in [("plain", &plain), ("secure-boot", &signed)] {
        let out = scratch.join(format!("{name}.slate"));
        slate_imager::operator::bundle::make(dir, std::slice::from_ref(&key), None, None, &out)?;
        bundles.push(size(&out)?);
    }
    println!(
        "
the same image as an update bundle:"
    );
    println!(
        "  format 1 (rootfs.img, vmlinuz, initrd.img) {:.2} MiB; format 2 (uki-a.efi, uki-b.efi, rootfs.img) {:.2} MiB ({:+.2} MiB)",
        mib(bundles[0]),
        mib(bundles[1]),
        mib(bundles[1]) - mib(bundles[0])
    );
    Ok(())
}
