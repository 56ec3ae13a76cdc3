//! `cargo xtask qemu`: build the image if needed and boot it, interactively or headless.

use anyhow::{bail, Context, Result};
use slate_core::api::Kind;
use slate_qemu::{DiskModel, GuestArch, NicModel, Vm, VmConfig};
use std::path::Path;
use std::time::Duration;

/// How `cargo xtask qemu` runs the machine.
pub struct Run<'a> {
    /// Rebuild the image even if it looks fresh.
    pub rebuild: bool,
    /// No terminal: wait for a marker, print timings, power off.
    pub headless: bool,
    /// With `headless`: the marker to wait for.
    pub until: Option<&'a str>,
    /// With `headless`: seconds to wait.
    pub timeout: u64,
    /// Guest ports to forward besides the agent's.
    pub forward: &'a [u16],
    /// A Secure Boot image on OVMF's Secure Boot build with the development keys enrolled.
    pub secure_boot: bool,
}

/// Runs `cargo xtask qemu`.
pub fn qemu(spec: &Path, board: &str, run_as: Run<'_>) -> Result<()> {
    let Run {
        rebuild,
        headless,
        until,
        timeout,
        forward,
        secure_boot,
    } = run_as;
    let out = crate::images::ensure_image_for(spec, board, rebuild, secure_boot)?;
    let run = out.join("run");
    std::fs::create_dir_all(&run)?;
    let disk = run.join("disk.img");
    let ok = std::process::Command::new("cp")
        .arg("--sparse=always")
        .arg(out.join("disk.img"))
        .arg(&disk)
        .status()?
        .success();
    if !ok {
        bail!("copying the disk image into {}", run.display());
    }
    let mut cfg = crate::dev::dev_vm(&disk, &run)?;
    board_machine(&mut cfg, board)?;
    cfg.extra_ports = forward.to_vec();
    if secure_boot {
        cfg.secure_boot_vars = Some(crate::dev::dev_secure_boot()?.join("OVMF_VARS.fd"));
    }
    if !headless {
        cfg.interactive = true;
        let mut vm = Vm::start(&cfg)?;
        for &guest in forward {
            if let Some(host) = vm.forwarded(guest) {
                eprintln!("slate: guest port {guest} is http://127.0.0.1:{host}/");
            }
        }
        eprintln!(
            "slate: booting {} ({:?}); once up: slate status --device {} --identity .cache/keys/operator",
            disk.display(),
            vm.accel(),
            vm.agent_url().unwrap_or_default()
        );
        eprintln!("slate: quit with Ctrl-A X; the debug shell appears on this console once booted");
        let status = vm.wait_exit(Duration::from_secs(u64::MAX / 4))?;
        eprintln!("qemu exited: {status}");
        return Ok(());
    }
    let until = until.unwrap_or("healthy");
    let marker = match until {
        "healthy" => Kind::Healthy,
        "stage2" => Kind::Stage2Up,
        "stage1" => Kind::Stage1Done,
        other => bail!("--until {other:?}: expected healthy, stage2 or stage1"),
    }
    .prefix();
    let mut vm = Vm::start(&cfg)?;
    let budget = Duration::from_secs(timeout);
    let result = vm.wait_any_after(
        &[
            &marker,
            &Kind::Stage1Failed.prefix(),
            &Kind::Stage2Failed.prefix(),
            &Kind::Unhealthy.prefix(),
        ],
        0,
        budget,
    );
    let timings = crate::timeline::boot_timings(&vm);
    match result {
        Ok((0, line)) => {
            println!("{}", line.text);
            println!("{timings}");
            println!(
                "accel {:?}; serial log {}",
                vm.accel(),
                vm.log_path().display()
            );
            let _ = vm.shutdown(Duration::from_secs(60));
            Ok(())
        }
        Ok((_, line)) => bail!(
            "boot failed: {} (serial log {})",
            line.text,
            vm.log_path().display()
        ),
        Err(e) => Err(e),
    }
}

/// Takes the board file's `[qemu]` table (`machine`, `memory_mib`, `disk`, `nic`): a PC board
/// boots on a machine that looks like a PC (an NVMe disk, an e1000e card), not like the dev
/// VM, and an arm64 board on QEMU's arm64 `virt` machine.
pub fn board_machine(cfg: &mut VmConfig, board: &str) -> Result<()> {
    let loaded = slate_imager::image::board::LoadedBoard::load(
        &crate::workspace::root().join("boards"),
        board,
    )?;
    let Some(q) = loaded.board.qemu else {
        return Ok(());
    };
    let field = |name: &str| q.get(name).and_then(|v| v.as_str());
    let file = loaded.path.display();
    if let Some(m) = field("machine") {
        cfg.arch = GuestArch::from_machine(m).with_context(|| {
            format!("{file}: [qemu] machine = {m:?}: expected \"q35\" or \"virt\"")
        })?;
    }
    if let Some(d) = field("disk") {
        cfg.disk_model = DiskModel::from_board(d).with_context(|| {
            format!("{file}: [qemu] disk = {d:?}: expected \"virtio\" or \"nvme\"")
        })?;
    }
    if let Some(n) = field("nic") {
        cfg.nic_model = NicModel::from_board(n).with_context(|| {
            format!("{file}: [qemu] nic = {n:?}: expected \"virtio\" or \"e1000e\"")
        })?;
    }
    if let Some(m) = q.get("memory_mib").and_then(|v| v.as_integer()) {
        cfg.memory_mib =
            u32::try_from(m).with_context(|| format!("{file}: [qemu] memory_mib = {m}"))?;
    }
    Ok(())
}
