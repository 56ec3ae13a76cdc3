//! Where the device binaries (`slate-init`, `slated`) come from.
//!
//! Inside the Slate source tree, `slate build` builds the agent crate itself, static
//! (`+crt-static`) for the device target, so a fresh checkout needs no extra step. Elsewhere
//! `--agent-dir` names a folder holding both binaries, or an installed `slate` finds them in
//! [`INSTALLED_DIR`] beside its own folder (`/usr/local/bin/slate` → `/usr/local/lib/slate/`),
//! where `cargo xtask install` puts them.

use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Target triple of the device binaries (the only one guaranteed on the build machine).
pub const DEVICE_TARGET: &str = "x86_64-unknown-linux-gnu";
/// The cargo profile device binaries are built with (`[profile.device]`: release, sized).
pub const DEVICE_PROFILE: &str = "device";

/// Where an installed `slate` keeps the device binaries, relative to its own folder.
pub const INSTALLED_DIR: &str = "../lib/slate";

/// The two device binaries.
#[derive(Debug, Clone)]
pub struct AgentBinaries {
    /// PID 1, stage 1 and 2.
    pub init: PathBuf,
    /// The update agent.
    pub slated: PathBuf,
}

/// Finds the binaries in `agent_dir`, or builds them in the enclosing Slate workspace.
pub fn locate(agent_dir: Option<&Path>, progress: Progress) -> Result<AgentBinaries> {
    let bins = match agent_dir {
        Some(dir) => AgentBinaries {
            init: dir.join("slate-init"),
            slated: dir.join("slated"),
        },
        None => match (find_workspace(), installed_dir()) {
            (Some(ws), _) => build_in_workspace(&ws, progress)?,
            (None, Some(dir)) => AgentBinaries {
                init: dir.join("slate-init"),
                slated: dir.join("slated"),
            },
            (None, None) => bail!("slate-init and slated were not found: pass --agent-dir DIR (a folder with both static binaries), install them beside slate with `cargo xtask install`, or run `slate build` inside the Slate source tree so it can build them"),
        },
    };
    for p in [&bins.init, &bins.slated] {
        let bytes = std::fs::read(p).with_context(|| {
            format!(
                "cannot read device binary {} (pass --agent-dir with slate-init and slated)",
                p.display()
            )
        })?;
        if is_dynamic_elf(&bytes) {
            bail!(
                "{} is dynamically linked; the initramfs has no C library. Build it with RUSTFLAGS='-C target-feature=+crt-static'",
                p.display()
            );
        }
    }
    Ok(bins)
}

/// [`INSTALLED_DIR`] of the running `slate`, when it holds `slate-init`.
fn installed_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.join(INSTALLED_DIR);
    dir.join("slate-init").is_file().then_some(dir)
}

/// The Slate workspace root: the first folder above the current folder, or above this
/// executable, whose `Cargo.toml` sits beside `agent/Cargo.toml`.
pub fn find_workspace() -> Option<PathBuf> {
    let starts = [
        std::env::current_dir().ok(),
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf)),
    ];
    for start in starts.into_iter().flatten() {
        let mut dir = Some(start.as_path());
        while let Some(d) = dir {
            if d.join("Cargo.toml").is_file() && d.join("agent/Cargo.toml").is_file() {
                return Some(d.to_path_buf());
            }
            dir = d.parent();
        }
    }
    None
}

fn build_in_workspace(ws: &Path, progress: Progress) -> Result<AgentBinaries> {
    progress.step("building slate-init and slated (static, release)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(ws)
        .args([
            "build",
            "--profile",
            DEVICE_PROFILE,
            "--locked",
            "-p",
            "slate-agent",
            "--target",
            DEVICE_TARGET,
        ])
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
            "-C target-feature=+crt-static",
        );
    if progress.is_quiet() {
        cmd.arg("--quiet");
    }
    let status = cmd
        .status()
        .context("running cargo to build the agent crate (is cargo on PATH?)")?;
    if !status.success() {
        bail!("building the agent crate failed ({status}); see cargo's output above");
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| ws.join("target"));
    let dir = target_dir.join(DEVICE_TARGET).join(DEVICE_PROFILE);
    Ok(AgentBinaries {
        init: dir.join("slate-init"),
        slated: dir.join("slated"),
    })
}

/// True for an ELF file with a program interpreter (PT_INTERP), i.e. one that needs ld.so.
pub fn is_dynamic_elf(b: &[u8]) -> bool {
    use object::read::elf::ProgramHeader;
    let Ok(elf) = object::read::elf::ElfFile64::<object::Endianness>::parse(b) else {
        return false;
    };
    let endian = elf.endian();
    elf.elf_program_headers()
        .iter()
        .any(|p| p.p_type(endian) == object::elf::PT_INTERP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamically_linked_program_is_recognised() {
        let dynamic = std::fs::read("/bin/true").unwrap();
        assert!(is_dynamic_elf(&dynamic));
        assert!(!is_dynamic_elf(b"#!/bin/sh\necho not an ELF file at all\n"));
        assert!(!is_dynamic_elf(&dynamic[..40]));
    }
}
