//! QEMU's command line for one machine: the board, firmware, disks, network and devices a
//! `VmConfig` asks for. `Vm::spawn` prepares the files and ports it names and runs it.

use crate::config::VmConfig;
use crate::machine::{Accel, Firmware, GuestArch};
use std::path::Path;
use std::process::Command;

/// What the command line needs besides the configuration: what `Vm::spawn` chose and made.
pub(crate) struct Launch<'a> {
    pub cfg: &'a VmConfig,
    pub fw: &'a Firmware,
    pub accel: Accel,
    /// The machine's copy of the firmware variables.
    pub vars: &'a Path,
    /// The NBD server's socket when the disk is served with a lossy cache.
    pub nbd_socket: Option<&'a Path>,
    /// The host port forwarded to the agent's.
    pub host_port: Option<u16>,
    /// More (guest, host) port forwards.
    pub extra_ports: &'a [(u16, u16)],
}

/// QEMU with everything but the TPM, the monitor, a resumed state and fw_cfg strings.
pub(crate) fn command(l: &Launch<'_>) -> Command {
    let Launch {
        cfg,
        fw,
        accel,
        vars,
        nbd_socket,
        host_port,
        extra_ports,
    } = *l;
    let mut cmd = Command::new(cfg.arch.qemu());
    match cfg.arch {
        GuestArch::X86_64 if fw.secure => cmd
            .args(["-machine", &format!("q35,smm=on,accel={}", accel.name())])
            .args(["-global", "driver=cfi.pflash01,property=secure,value=on"]),
        GuestArch::X86_64 => cmd.args(["-machine", &format!("q35,accel={}", accel.name())]),
        GuestArch::Arm64 => cmd
            .args(["-machine", &format!("virt,accel={}", accel.name())])
            .args(["-cpu", "cortex-a57"]),
    };
    cmd.args(["-m", &cfg.memory_mib.to_string()])
        .args([
            "-nographic",
            "-nodefaults",
            "-serial",
            if cfg.interactive {
                "mon:stdio"
            } else {
                "stdio"
            },
        ])
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={}",
            fw.code.display()
        ))
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=1,file={}",
            vars.display()
        ));
    for (i, decoy) in cfg.decoys.iter().enumerate() {
        cmd.arg("-drive")
            .arg(format!(
                "if=none,id=decoy{i},format=raw,file={}",
                decoy.display()
            ))
            .args(["-device", &format!("virtio-blk-pci,drive=decoy{i}")]);
    }
    cmd.arg("-drive")
        .arg(match nbd_socket {
            Some(socket) => format!(
                "if=none,id=d0,format=raw,file=nbd:unix:{}",
                socket.display()
            ),
            None => format!("if=none,id=d0,format=raw,file={}", cfg.disk.display()),
        })
        .args([
            "-device",
            &if cfg.decoys.is_empty() {
                cfg.disk_model.device("d0")
            } else {
                cfg.disk_model.device("d0") + ",bootindex=1"
            },
        ]);
    if cfg.arch == GuestArch::X86_64 {
        cmd.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    } else {
        // No RDRAND: the guest's entropy comes from the host, or the agent's first TLS
        // key waits for the kernel's pool under TCG.
        cmd.args(["-device", "virtio-rng-pci"]);
    }
    if accel == Accel::Kvm {
        cmd.args(["-cpu", "host"]);
    }
    if let (Some(guest), Some(host)) = (cfg.guest_port, host_port) {
        let mut netdev = format!("user,id=n0,hostfwd=tcp:127.0.0.1:{host}-:{guest}");
        for (guest, host) in extra_ports {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        cmd.args(["-netdev", &netdev])
            .args(["-device", &cfg.nic_model.device("n0")]);
    }
    if cfg.watchdog && cfg.arch == GuestArch::X86_64 {
        cmd.args(["-device", "i6300esb", "-action", "watchdog=reset"]);
    }
    if cfg.no_reboot {
        cmd.arg("-no-reboot");
    }
    if let Some(base) = &cfg.rtc_base {
        cmd.args(["-rtc", &format!("base={base}")]);
    }
    cmd
}
