//! Where the device binaries (`slate-init`, `slated`) come from.
//!
//! Inside the Slate source tree, `slate build` builds the agent crate itself, static
//! (`+crt-static`) for the device target, so a fresh checkout needs no extra step. Elsewhere
//! `--agent-dir` names a folder holding both binaries, or an installed `slate` finds them in
//! [`INSTALLED_DIR`] beside its own folder (`/usr/local/bin/slate` → `/usr/local/lib/slate/`),
//! where `cargo xtask install` puts them.

use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use slate_core::layout::Arch;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Target triple of the x86-64 device binaries (the only one guaranteed on the build machine).
pub const DEVICE_TARGET: &str = "x86_64-unknown-linux-gnu";

/// The Rust target of a board's device binaries: glibc linked statically (`+crt-static`), so
/// the initramfs needs no C library.
pub fn target_for(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => DEVICE_TARGET,
        Arch::Arm64 => "aarch64-unknown-linux-gnu",
    }
}

/// The ELF `e_machine` of a board's binaries.
fn elf_machine_for(arch: Arch) -> u16 {
    match arch {
        Arch::X86_64 => object::elf::EM_X86_64,
        Arch::Arm64 => object::elf::EM_AARCH64,
    }
}
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

/// Finds the binaries for `arch` in `agent_dir`, or builds them in the enclosing Slate
/// workspace.
pub fn locate(agent_dir: Option<&Path>, arch: Arch, progress: Progress) -> Result<AgentBinaries> {
    let bins = match agent_dir {
        Some(dir) => AgentBinaries {
            init: dir.join("slate-init"),
            slated: dir.join("slated"),
        },
        None => match (find_workspace(), installed_dir()) {
            (Some(ws), _) => build_in_workspace(&ws, arch, progress)?,
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
        let machine = elf_machine(&bytes);
        if machine.is_some_and(|m| m != elf_machine_for(arch)) {
            bail!(
                "{} is not built for {} (ELF machine {}): pass --agent-dir with binaries built for {}",
                p.display(),
                arch.debian(),
                machine.unwrap_or_default(),
                target_for(arch)
            );
        }
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

fn build_in_workspace(ws: &Path, arch: Arch, progress: Progress) -> Result<AgentBinaries> {
    let target = target_for(arch);
    progress.step(format!(
        "building slate-init and slated (static, release, {target})"
    ));
    let mut cmd = cargo_in(ws, progress);
    cmd.envs(cargo_env(arch)?).args([
        "build",
        "--profile",
        DEVICE_PROFILE,
        "--locked",
        "-p",
        "slate-agent",
        "--target",
        target,
    ]);
    let status = cmd
        .status()
        .context("running cargo to build the agent crate (is cargo on PATH?)")?;
    if !status.success() {
        bail!(
            "building the agent crate for {target} failed ({status}); see cargo's output above{}",
            if arch == Arch::X86_64 {
                ""
            } else {
                " (a missing target: `rustup target add aarch64-unknown-linux-gnu`)"
            }
        );
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| ws.join("target"));
    let dir = target_dir.join(target).join(DEVICE_PROFILE);
    Ok(AgentBinaries {
        init: dir.join("slate-init"),
        slated: dir.join("slated"),
    })
}

/// `cargo` (the one running the build, if any) in `dir`, for a build of device-side code:
/// without the caller's `RUSTFLAGS`, which would replace the target's flags, and quiet when
/// `progress` is.
pub(crate) fn cargo_in(dir: &Path, progress: Progress) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if progress.is_quiet() {
        cmd.arg("--quiet");
    }
    cmd
}

/// `CARGO_TARGET_<TRIPLE>` for a target triple.
fn cargo_target_env(target: &str) -> String {
    format!("CARGO_TARGET_{}", target.to_uppercase().replace('-', "_"))
}

/// The environment cargo builds `arch`'s device binaries with (besides `--target`): glibc
/// linked statically, and for another architecture Debian's cross linker (also the C compiler
/// AWS-LC's build finds by the target's name), unless the caller named one. Callers remove
/// `RUSTFLAGS`, which would override the target's flags.
pub fn cargo_env(arch: Arch) -> Result<Vec<(String, String)>> {
    let target = target_for(arch);
    let mut env = vec![(
        format!("{}_RUSTFLAGS", cargo_target_env(target)),
        "-C target-feature=+crt-static".to_string(),
    )];
    let gcc = match arch {
        Arch::Arm64 => "aarch64-linux-gnu-gcc",
        Arch::X86_64 => return Ok(env),
    };
    let linker_var = format!("{}_LINKER", cargo_target_env(target));
    if std::env::var_os(&linker_var).is_some() {
        return Ok(env);
    }
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(gcc).is_file()));
    if !found {
        bail!("building the device binaries for {target} needs the cross compiler {gcc}: install Debian's gcc-aarch64-linux-gnu (`cargo xtask deps` does), and `rustup target add {target}`");
    }
    env.push((linker_var, gcc.to_string()));
    Ok(env)
}

/// The ELF `e_machine` of `b`, if it is a 64-bit ELF file.
fn elf_machine(b: &[u8]) -> Option<u16> {
    use object::read::elf::FileHeader;
    let elf = object::read::elf::ElfFile64::<object::Endianness>::parse(b).ok()?;
    Some(elf.elf_header().e_machine(elf.endian()))
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

    #[test]
    fn a_binary_names_its_machine() {
        let host = std::fs::read("/bin/true").unwrap();
        assert_eq!(elf_machine(&host), Some(elf_machine_for(Arch::X86_64)));
        assert_ne!(elf_machine(&host), Some(elf_machine_for(Arch::Arm64)));
        assert_eq!(elf_machine(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn device_binaries_link_glibc_statically_for_each_target() {
        let x86 = cargo_env(Arch::X86_64).unwrap();
        assert_eq!(
            x86,
            [(
                "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS".to_string(),
                "-C target-feature=+crt-static".to_string()
            )]
        );
        // `cargo xtask deps` installs the cross compiler this needs.
        let arm = cargo_env(Arch::Arm64).unwrap();
        assert_eq!(arm[0].0, "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS");
        assert_eq!(arm[0].1, "-C target-feature=+crt-static");
    }
}
