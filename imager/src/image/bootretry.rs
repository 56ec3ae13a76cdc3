//! Where a Secure Boot image's `BOOTX64.EFI` comes from: Slate's boot-retry loader
//! (`bootretry/`), which starts systemd-boot and resets the machine when systemd-boot returns,
//! so a trial UKI the firmware refuses costs a try per reset instead of stopping the machine
//! at the firmware's boot menu.
//!
//! Found as the device binaries are ([`crate::image::agentbin`]): `slate-bootretry.efi` in the
//! `--agent-dir` folder or beside an installed `slate`, or built in the enclosing Slate
//! source tree for `x86_64-unknown-uefi`.

use crate::image::agentbin;
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use slate_core::layout::Arch;
use std::path::{Path, PathBuf};

/// The loader's file name in an agent folder and in the build's target folder.
pub const FILE: &str = "slate-bootretry.efi";
/// Where systemd-boot goes on the ESP when the loader is `BOOTX64.EFI` (where `bootctl
/// install` puts it too); the loader starts it from there.
pub const SYSTEMD_BOOT_PATH: &str = "EFI/systemd/systemd-bootx64.efi";
/// The Rust target the loader is built for.
pub const TARGET: &str = "x86_64-unknown-uefi";

/// The loader's bytes for `arch`, or None where there is none (arm64: Secure Boot is not
/// supported there yet, so its `BOOTAA64.EFI` stays systemd-boot).
pub fn locate(agent_dir: Option<&Path>, arch: Arch, progress: Progress) -> Result<Option<Vec<u8>>> {
    if arch != Arch::X86_64 {
        return Ok(None);
    }
    let beside = |dir: &Path| Some(dir.join(FILE)).filter(|p| p.is_file());
    let path = match agent_dir.and_then(beside) {
        Some(p) => p,
        None => match agentbin::find_workspace() {
            Some(ws) => build_in_workspace(&ws, progress)?,
            None => {
                let installed = std::env::current_exe()
                    .ok()
                    .and_then(|e| e.parent().map(|d| d.join(agentbin::INSTALLED_DIR)));
                match installed.as_deref().and_then(beside) {
                    Some(p) => p,
                    None => bail!("{FILE} (the boot-retry loader of Secure Boot images) was not found: put it in the --agent-dir folder, install it beside slate with `cargo xtask install`, or run `slate build` inside the Slate source tree so it can build it"),
                }
            }
        },
    };
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    slate_core::pe::Pe::parse(&bytes)
        .with_context(|| format!("{} is not a PE image", path.display()))?;
    Ok(Some(bytes))
}

fn build_in_workspace(ws: &Path, progress: Progress) -> Result<PathBuf> {
    progress.step(format!("building the boot-retry loader ({TARGET})"));
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| ws.join("target"))
        .join("bootretry");
    let status = agentbin::cargo_in(&ws.join("bootretry"), progress)
        .args(["build", "--release", "--locked", "--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .context("running cargo to build the boot-retry loader")?;
    if !status.success() {
        bail!("building the boot-retry loader failed ({status}); see cargo's output above (a missing target: `rustup target add {TARGET}`, which `cargo xtask deps` runs)");
    }
    Ok(target_dir.join(TARGET).join("release").join(FILE))
}
