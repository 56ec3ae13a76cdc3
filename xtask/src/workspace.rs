//! The workspace and the commands run in it: where it is, where cargo puts what it builds, how
//! a command runs. Every other module uses these; this one uses none of them.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (this crate's parent).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Cargo's target folder: `CARGO_TARGET_DIR` when set (relative to the workspace, as cargo
/// reads it), else `target/` of the workspace. Built binaries are looked for here.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root().join(dir),
        _ => root().join("target"),
    }
}

/// Runs a command in the workspace, failing with its status.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Cargo itself: the one running `cargo xtask` when there is one.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// `cargo test --locked -p slate-tests --test e2e [FILTER] -- ARGS`: the QEMU suite, or part
/// of it.
pub fn e2e_command(filter: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = cargo();
    cmd.args(["test", "--locked", "-p", "slate-tests", "--test", "e2e"]);
    cmd.args(filter);
    cmd.arg("--").args(args);
    cmd
}
