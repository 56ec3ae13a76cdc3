//! The machine QEMU emulates: which firmware, which accelerator (KVM when it can run OVMF,
//! TCG otherwise, `SLATE_ACCEL` to force one), and a free host port to forward.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The guest's architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestArch {
    /// `qemu-system-x86_64 -machine q35` with OVMF.
    X86_64,
    /// `qemu-system-aarch64 -machine virt -cpu cortex-a57` with AAVMF, always under TCG here
    /// (KVM runs only the host's own architecture).
    Arm64,
}

impl GuestArch {
    /// A board file's `[qemu] machine` value (`"q35"`, `"virt"`).
    pub fn from_machine(name: &str) -> Option<GuestArch> {
        match name {
            "q35" => Some(GuestArch::X86_64),
            "virt" => Some(GuestArch::Arm64),
            _ => None,
        }
    }

    /// The QEMU binary.
    pub(crate) fn qemu(self) -> &'static str {
        match self {
            GuestArch::X86_64 => "qemu-system-x86_64",
            GuestArch::Arm64 => "qemu-system-aarch64",
        }
    }
}

/// UEFI firmware files (Debian's `ovmf` package).
#[derive(Debug, Clone)]
pub struct Firmware {
    /// Read-only code.
    pub code: PathBuf,
    /// Variable store template; each VM gets a copy.
    pub vars: PathBuf,
    /// The Secure Boot build: QEMU must give it SMM and a secure flash.
    pub secure: bool,
}

/// OVMF built with Secure Boot (and SMM, so the guest OS cannot write the variables past it).
const OVMF_SECURE_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";

impl Firmware {
    /// Finds the UEFI firmware of `arch`: OVMF (4 MiB build first) or AAVMF.
    pub fn find(arch: GuestArch) -> Result<Firmware> {
        let (candidates, package): (&[(&str, &str)], &str) = match arch {
            GuestArch::X86_64 => (
                &[
                    (
                        "/usr/share/OVMF/OVMF_CODE_4M.fd",
                        "/usr/share/OVMF/OVMF_VARS_4M.fd",
                    ),
                    (
                        "/usr/share/OVMF/OVMF_CODE.fd",
                        "/usr/share/OVMF/OVMF_VARS.fd",
                    ),
                ],
                "ovmf",
            ),
            GuestArch::Arm64 => (
                &[(
                    "/usr/share/AAVMF/AAVMF_CODE.fd",
                    "/usr/share/AAVMF/AAVMF_VARS.fd",
                )],
                "qemu-efi-aarch64",
            ),
        };
        for (code, vars) in candidates {
            if Path::new(code).is_file() && Path::new(vars).is_file() {
                return Ok(Firmware {
                    code: code.into(),
                    vars: vars.into(),
                    secure: false,
                });
            }
        }
        bail!(
            "UEFI firmware not found ({}): install the Debian package {package} (`cargo xtask deps`)",
            candidates[0].0
        )
    }
}

impl Firmware {
    /// The firmware a VM boots: with `enrolled` (a variables file with our PK, KEK and db and
    /// Secure Boot on, `slate sb vars`), OVMF's Secure Boot build; otherwise [`Firmware::find`].
    pub fn select(arch: GuestArch, enrolled: Option<&Path>) -> Result<Firmware> {
        let Some(vars) = enrolled else {
            return Firmware::find(arch);
        };
        if arch != GuestArch::X86_64 {
            bail!("Secure Boot in the harness is x86-64 only (Debian's AAVMF has no Secure Boot build with SMM)");
        }
        if !Path::new(OVMF_SECURE_CODE).is_file() {
            bail!("{OVMF_SECURE_CODE} not found: install the Debian package ovmf (`cargo xtask deps`)");
        }
        if !vars.is_file() {
            bail!(
                "the enrolled variables file {} does not exist (make it with `slate sb vars`)",
                vars.display()
            );
        }
        Ok(Firmware {
            code: OVMF_SECURE_CODE.into(),
            vars: vars.to_path_buf(),
            secure: true,
        })
    }
}

/// Accelerator QEMU runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation (always works; ~10 s per boot here).
    Tcg,
}

impl Accel {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Set once KVM failed to run OVMF in this process, so later VMs go straight to TCG.
pub(crate) static KVM_BROKEN: AtomicBool = AtomicBool::new(false);
/// How long a KVM guest may stay silent before the harness decides KVM cannot run OVMF.
pub(crate) const KVM_PROBE: Duration = Duration::from_secs(8);

pub(crate) fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

pub(crate) fn requested_accel() -> Result<Option<Accel>> {
    match std::env::var("SLATE_ACCEL").as_deref() {
        Ok("kvm") => Ok(Some(Accel::Kvm)),
        Ok("tcg") => Ok(Some(Accel::Tcg)),
        Ok("auto") | Ok("") | Err(_) => Ok(None),
        Ok(other) => bail!("SLATE_ACCEL={other:?}: expected kvm, tcg or auto"),
    }
}

pub(crate) fn kvm_usable() -> bool {
    !KVM_BROKEN.load(Ordering::Relaxed)
        && std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok()
}
