//! What to boot and how: one [`VmConfig`] per machine.

use crate::machine::GuestArch;
use crate::snapshot::Snapshot;
use std::path::{Path, PathBuf};

/// What to boot and how.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Disk image (used in place; copy it first to keep the original).
    pub disk: PathBuf,
    /// Raw disks attached ahead of `disk` (the guest names them first: `vda`, …), as a USB
    /// stick or a second drive would be; the firmware still boots `disk`.
    pub decoys: Vec<PathBuf>,
    /// Folder for the VM's variable store and serial log.
    pub work_dir: PathBuf,
    /// Guest memory.
    pub memory_mib: u32,
    /// Guest TCP port to forward from a free 127.0.0.1 port (the agent's).
    pub guest_port: Option<u16>,
    /// More guest TCP ports to forward (an application's, such as a web server's port 80);
    /// [`crate::Vm::forwarded`] gives the host port of each.
    pub extra_ports: Vec<u16>,
    /// `opt/slate/<key>` fw_cfg strings.
    pub fw_cfg: Vec<(String, String)>,
    /// Add an i6300esb watchdog that resets the guest.
    pub watchdog: bool,
    /// Exit QEMU instead of rebooting the guest.
    pub no_reboot: bool,
    /// Serial on the terminal as well (for `cargo xtask qemu`).
    pub echo: bool,
    /// Serve the disk through an NBD server with a volatile write cache: unflushed writes are
    /// lost at a power cut, as `loss` says.
    pub volatile_cache: Option<crate::nbd::Loss>,
    /// Give QEMU the terminal itself (stdin and stdout, `-serial mon:stdio`); nothing is
    /// captured, so waits and `shell` do not work.
    pub interactive: bool,
    /// Resume this saved machine instead of booting (`disk` must be a copy of its disk).
    pub resume: Option<Snapshot>,
    /// The guest's architecture: which QEMU, machine and firmware.
    pub arch: GuestArch,
    /// How the boot disk is attached.
    pub disk_model: DiskModel,
    /// The network card the agent's port is forwarded through.
    pub nic_model: NicModel,
    /// Boot OVMF's Secure Boot build with this enrolled variables file (`slate sb vars`);
    /// None: the plain firmware.
    pub secure_boot_vars: Option<PathBuf>,
    /// Talk to the agent over TLS with this client configuration (an operator certificate and
    /// the device pin); None: plain HTTP, for images built with `insecure_http`.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Start the machine's real-time clock at this date (QEMU's `-rtc base=`, e.g.
    /// `2020-01-01`) instead of the host's time: a board whose RTC battery is flat.
    pub rtc_base: Option<String>,
    /// Give the machine a TPM 2.0 (swtpm, started and stopped with QEMU) whose state lives
    /// in this folder: the same folder is the same TPM across boots, a new one a new TPM.
    pub tpm: Option<PathBuf>,
}

impl VmConfig {
    /// Defaults for a disk: 512 MiB, agent port 8080 forwarded, watchdog on.
    pub fn new(disk: &Path, work_dir: &Path) -> VmConfig {
        VmConfig {
            disk: disk.to_path_buf(),
            decoys: Vec::new(),
            work_dir: work_dir.to_path_buf(),
            memory_mib: 512,
            guest_port: Some(8080),
            extra_ports: Vec::new(),
            fw_cfg: Vec::new(),
            watchdog: true,
            no_reboot: false,
            echo: false,
            interactive: false,
            volatile_cache: None,
            resume: None,
            arch: GuestArch::X86_64,
            disk_model: DiskModel::Virtio,
            nic_model: NicModel::Virtio,
            secure_boot_vars: None,
            tls: None,
            rtc_base: None,
            tpm: None,
        }
    }
}

/// The boot disk's controller: the dev VM's virtio, or what a PC has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskModel {
    /// virtio-blk (`vda`).
    Virtio,
    /// An NVMe drive (`nvme0n1`), as most PCs boot from.
    Nvme,
}

impl DiskModel {
    /// A board file's `[qemu] disk` value (`"virtio"`, `"nvme"`).
    pub fn from_board(name: &str) -> Option<DiskModel> {
        match name {
            "virtio" => Some(DiskModel::Virtio),
            "nvme" => Some(DiskModel::Nvme),
            _ => None,
        }
    }

    /// The `-device` for drive `id`.
    pub(crate) fn device(self, id: &str) -> String {
        match self {
            DiskModel::Virtio => format!("virtio-blk-pci,drive={id}"),
            DiskModel::Nvme => format!("nvme,drive={id},serial=slate-{id}"),
        }
    }
}

/// The network card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicModel {
    /// virtio-net.
    Virtio,
    /// An Intel 82574L (the `e1000e` driver), as many PCs have.
    E1000e,
}

impl NicModel {
    /// A board file's `[qemu] nic` value (`"virtio"`, `"e1000e"`).
    pub fn from_board(name: &str) -> Option<NicModel> {
        match name {
            "virtio" => Some(NicModel::Virtio),
            "e1000e" => Some(NicModel::E1000e),
            _ => None,
        }
    }

    /// The `-device` for netdev `id`.
    pub(crate) fn device(self, id: &str) -> String {
        match self {
            NicModel::Virtio => format!("virtio-net-pci,netdev={id}"),
            NicModel::E1000e => format!("e1000e,netdev={id}"),
        }
    }
}
