//! `cargo xtask bench boot`: Slate's boot beside a busybox-only floor on the same firmware,
//! boot loader and kernel.

use super::{cell, deb_file, median};
use crate::timeline::BootTimes;
use crate::{workspace::root, workspace::run};
use anyhow::{bail, Context, Result};
use slate_core::api::Kind;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A disk that boots the same firmware, boot loader and kernel into a busybox-only initramfs
/// that prints its uptime and powers off: the floor Slate's own boot is compared with.
fn floor_disk(image: &Path, dir: &Path) -> Result<PathBuf> {
    use slate_imager::image::spec::ImagePath;
    use slate_imager::image::write::tree::{Node, Tree};
    let disk = dir.join("floor.img");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(image.join("disk.img"))
        .arg(&disk))?;
    let bb = dir.join("bb");
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb_file("busybox-static")?)
        .arg(&bb))?;
    let mut t = Tree::default();
    let p = |s: &str| ImagePath::new(s).map_err(anyhow::Error::msg);
    t.insert(
        &p("/bin/busybox")?,
        Node::bytes(std::fs::read(bb.join("bin/busybox"))?, 0o755),
    )?;
    t.insert(&p("/bin/sh")?, Node::symlink("busybox"))?;
    t.insert(&p("/proc")?, Node::dir(0o755))?;
    t.insert(&p("/dev")?, Node::dir(0o755))?;
    t.insert(
        &p("/dev/console")?,
        Node {
            kind: slate_imager::image::write::tree::Kind::CharDev { major: 5, minor: 1 },
            mode: 0o600,
            uid: 0,
            gid: 0,
        },
    )?;
    t.insert(&p("/init")?, Node::bytes("#!/bin/sh\n/bin/busybox mount -t proc proc /proc\necho \"floor: up $(/bin/busybox cut -d' ' -f1 /proc/uptime)\"\n/bin/busybox poweroff -f\n", 0o755))?;
    let cpio = slate_imager::image::write::cpio::write(&t, 0, Vec::new())?;
    let initrd = dir.join("floor-initrd.img");
    std::fs::write(&initrd, zstd::bulk::compress(&cpio, 19)?)?;
    let mut head = vec![0u8; 34 * 512];
    std::io::Read::read_exact(&mut std::fs::File::open(&disk)?, &mut head)?;
    let esp = slate_core::gpt::Table::decode(&head)?
        .by_name("esp")
        .context("no esp partition")?
        .offset();
    run(Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-o")
        .arg("-i")
        .arg(format!("{}@@{esp}", disk.display()))
        .arg(&initrd)
        .arg("::/slate/a/initrd.img"))?;
    Ok(disk)
}

pub(super) fn measure(rounds: u32) -> Result<()> {
    use slate_qemu::{Vm, VmConfig};
    use std::time::Duration;
    let image =
        crate::images::ensure_image(&root().join("rootfs/image.toml"), "qemu-x86_64", false)?;
    let scratch = root().join("target/bench-boot");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let floor = floor_disk(&image, &scratch)?;
    let budget = Duration::from_secs(300);
    let (mut slate_runs, mut floor_runs) = (Vec::new(), Vec::new());
    let mut rss = String::new();
    for r in 0..rounds.max(5) {
        let work = scratch.join(format!("run{r}"));
        std::fs::create_dir_all(&work)?;
        let disk = work.join("disk.img");
        run(Command::new("cp")
            .arg("--sparse=always")
            .arg(image.join("disk.img"))
            .arg(&disk))?;
        let mut vm = Vm::start(&crate::dev::dev_vm(&disk, &work)?)?;
        vm.wait_for(&Kind::Healthy.prefix(), budget)?;
        let t = BootTimes::of(&vm);
        eprintln!("  slate {}: {}", r + 1, crate::timeline::boot_timings(&vm));
        if rss.is_empty() {
            vm.wait_prompt("slate# ", 0, Duration::from_secs(30))?;
            std::thread::sleep(Duration::from_secs(3));
            rss = vm.shell(
                "grep VmRSS /proc/1/status /proc/$(busybox pidof slated)/status",
                Duration::from_secs(30),
            )?;
        }
        vm.power_cut();
        slate_runs.push(t);

        let fdisk = work.join("floor.img");
        run(Command::new("cp")
            .arg("--sparse=always")
            .arg(&floor)
            .arg(&fdisk))?;
        let mut cfg = VmConfig::new(&fdisk, &work.join("floor"));
        cfg.no_reboot = true;
        let mut vm = Vm::start(&cfg)?;
        let line = vm.wait_for("floor: up", budget)?;
        let uptime: f64 = line
            .text
            .rsplit(' ')
            .next()
            .and_then(|t| t.parse().ok())
            .with_context(|| format!("no uptime in {:?}", line.text))?;
        let _ = vm.wait_exit(Duration::from_secs(30));
        let fw = vm
            .lines()
            .iter()
            .find(|l| l.text.contains("BdsDxe: starting"))
            .map(|l| l.at.as_secs_f64());
        floor_runs.push((fw, line.at.as_secs_f64() - uptime, line.at.as_secs_f64()));
        eprintln!(
            "  floor {}: firmware done {}, kernel start {:.2} s, init up {:.2} s",
            r + 1,
            fw.map_or("not seen".to_string(), |f| format!("{f:.2} s")),
            line.at.as_secs_f64() - uptime,
            line.at.as_secs_f64()
        );
    }
    let med =
        |f: &dyn Fn(&BootTimes) -> Option<f64>| median(slate_runs.iter().filter_map(f).collect());
    let (fw, kernel, s1, s2, healthy) = (
        med(&|t| t.firmware),
        med(&|t| t.kernel),
        med(&|t| t.stage1),
        med(&|t| t.stage2),
        med(&|t| t.healthy),
    );
    let f_fw = median(floor_runs.iter().filter_map(|x| x.0).collect());
    let f_kernel = median(floor_runs.iter().map(|x| x.1).collect());
    let f_up = median(floor_runs.iter().map(|x| x.2).collect());
    println!(
        "\nboot, median of {} (s since QEMU start, host clock)",
        slate_runs.len()
    );
    println!(
        "  {:<22} {:>8} {:>8} {:>9} {:>9} {:>9}",
        "", "firmware", "kernel", "stage 1", "stage 2", "healthy"
    );
    println!(
        "  {:<22} {} {} {} {} {}",
        "slate",
        cell(fw, 8),
        cell(kernel, 8),
        cell(s1, 9),
        cell(s2, 9),
        cell(healthy, 9)
    );
    println!(
        "  {:<22} {} {} {:>9} {:>9} {}",
        "floor (busybox initrd)",
        cell(f_fw, 8),
        cell(f_kernel, 8),
        "-",
        "-",
        cell(f_up, 9)
    );
    // Spans are taken within each boot, then their medians compared: subtracting medians of
    // separate series would pair milestones of different boots.
    let slate_spans: Vec<f64> = slate_runs
        .iter()
        .filter_map(|t| Some(t.healthy? - t.kernel?))
        .collect();
    let floor_spans: Vec<f64> = floor_runs.iter().map(|x| x.2 - x.1).collect();
    if slate_spans.is_empty() || floor_spans.is_empty() {
        bail!("no boot measured both its kernel start and its ready line; nothing to compare");
    }
    let (Some(slate_span), Some(floor_span)) =
        (median(slate_spans.clone()), median(floor_spans.clone()))
    else {
        bail!("no boot span was measured");
    };
    println!("  slate over the floor, kernel start → ready: {:.2} s (median of {} slate boots' healthy − kernel start: {slate_span:.2} s; median of {} floor boots' init up − kernel start: {floor_span:.2} s; goal ≤ 0.5 s)", slate_span - floor_span, slate_spans.len(), floor_spans.len());
    println!("\nidle RSS (kB, from /proc/<pid>/status in the guest):\n{rss}");
    for b in ["slate-init", "slated"] {
        let p = root()
            .join("target")
            .join(slate_imager::image::agentbin::DEVICE_TARGET)
            .join(slate_imager::image::agentbin::DEVICE_PROFILE)
            .join(b);
        if let Ok(m) = std::fs::metadata(&p) {
            println!("  {b}: {:.2} MiB static binary", m.len() as f64 / 1048576.0);
        }
    }
    Ok(())
}
