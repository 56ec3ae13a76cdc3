//! A machine's TPM: swtpm on the state folder `VmConfig::tpm` names, and the QEMU arguments
//! that attach it (`tpm-tis` on x86-64, `tpm-tis-device` on arm64's virt machine).

use crate::machine::GuestArch;
use anyhow::Result;
use slate_oracles::swtpm::{Endpoint, Swtpm};
use std::path::Path;
use std::process::Command;

/// Starts the TPM whose state is in `state` and adds its device to `cmd`; it must outlive
/// QEMU (the caller keeps it).
pub fn attach(cmd: &mut Command, state: &Path, arch: GuestArch) -> Result<Swtpm> {
    let tpm = Swtpm::for_vm(state).map_err(anyhow::Error::msg)?;
    if let Endpoint::Socket(sock) = &tpm.endpoint {
        cmd.arg("-chardev")
            .arg(format!("socket,id=chrtpm,path={}", sock.display()))
            .args(["-tpmdev", "emulator,id=tpm0,chardev=chrtpm"])
            .args([
                "-device",
                match arch {
                    GuestArch::X86_64 => "tpm-tis,tpmdev=tpm0",
                    GuestArch::Arm64 => "tpm-tis-device,tpmdev=tpm0",
                },
            ]);
    }
    Ok(tpm)
}
