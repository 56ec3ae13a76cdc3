//! What to boot and how: one [`VmConfig`] per machine.

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
    /// Talk to the agent over TLS with this client configuration (an operator certificate and
    /// the device pin); None: plain HTTP, for images built with `insecure_http`.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
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
            tls: None,
        }
    }
}
