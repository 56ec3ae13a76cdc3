//! Running the few host tools the build uses (mtools for the ESP, mkfs.ext4 for /data).
//!
//! None of them needs root: each writes a plain file. Their versions go into the provenance.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::{Command, Output};

/// Finds a tool on PATH or in the sbin folders a non-root PATH may lack.
pub fn find(tool: &str, package: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs =
        std::env::split_paths(&path).chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from));
    for d in dirs {
        let p = d.join(tool);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{tool} not found: install the Debian package {package} (`apt-get install {package}`, or run `cargo xtask deps`)")
}

/// Runs a prepared command, failing with its stderr when it exits non-zero.
pub fn run(cmd: &mut Command, what: &str) -> Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("{what}: could not start {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{what}: {:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// The first line a tool prints about its version (stdout or stderr).
pub fn version(tool: &str, package: &str, arg: &str) -> Result<String> {
    let out = Command::new(find(tool, package)?).arg(arg).output()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string())
}
