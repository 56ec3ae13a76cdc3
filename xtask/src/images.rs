//! The repository's own image, rebuilt only when its inputs changed since the last build.

use crate::dev::{dev_operators, dev_secure_boot, dev_trust};
use crate::workspace::{cargo, root, run, target_dir};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// Newest modification time of any file under `p`.
fn newest(p: &Path) -> SystemTime {
    let mut t = std::fs::metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    if let Ok(dir) = std::fs::read_dir(p) {
        for e in dir.flatten() {
            t = t.max(newest(&e.path()));
        }
    }
    t
}

/// The image folder for `board`, rebuilt when missing, asked for, or older than its inputs.
pub fn ensure_image(spec: &Path, board: &str, rebuild: bool) -> Result<PathBuf> {
    ensure_image_for(spec, board, rebuild, false)
}

/// The folder under out/ an image for `board` is built into.
pub fn out_name(board: &str, secure_boot: bool) -> String {
    if secure_boot {
        format!("{board}-secure-boot")
    } else {
        board.to_string()
    }
}

/// [`ensure_image`], for Secure Boot (signed UKIs, the development db key) when asked.
pub fn ensure_image_for(
    spec: &Path,
    board: &str,
    rebuild: bool,
    secure_boot: bool,
) -> Result<PathBuf> {
    let out = root().join("out").join(out_name(board, secure_boot));
    let report = out.join("build.toml");
    let built = std::fs::metadata(&report).and_then(|m| m.modified()).ok();
    let inputs = [
        spec.parent().unwrap_or(Path::new(".")).to_path_buf(),
        root().join("boards"),
        root().join("agent/src"),
        root().join("core/src"),
        root().join("imager/src"),
        root().join("bootretry/src"),
    ];
    let stale = match built {
        None => true,
        Some(b) => inputs.iter().any(|i| newest(i) > b),
    };
    if rebuild || stale {
        crate::deps::deps(true).context("fetching packages (cargo xtask deps)")?;
        image(board, spec, secure_boot)?;
    }
    Ok(out)
}

/// Builds the release `slate` binary (a no-op when fresh) and returns its path.
pub fn release_imager() -> Result<PathBuf> {
    run(cargo().args(["build", "--release", "--locked", "-p", "slate-imager"]))?;
    Ok(target_dir().join("release/slate"))
}

/// Builds the `slate` binary in the dev profile (a no-op when fresh) and returns its path.
/// `cargo xtask` itself links the imager's library in this profile, so this compiles little
/// more than the binary's own `main`: the release build (LTO, a second copy of every
/// dependency) is for installs and benchmarks. The dev profile optimises every dependency
/// (compression, hashing), so a build takes seconds longer, not minutes.
pub fn dev_imager() -> Result<PathBuf> {
    run(cargo().args(["build", "--locked", "-p", "slate-imager", "--bin", "slate"]))?;
    Ok(target_dir().join("debug/slate"))
}

/// Builds `spec` for `board` into out/<board> with the dev-profile imager, trusting the
/// development signing key and operator CA.
pub fn image(board: &str, spec: &Path, secure_boot: bool) -> Result<PathBuf> {
    build_image(&dev_imager()?, None, board, spec, secure_boot)
}

/// `slate build` of `spec` for `board` into out/<board> with `imager`; `agent_dir` holds
/// ready device binaries (else `slate build` builds them).
pub fn build_image(
    imager: &Path,
    agent_dir: Option<&Path>,
    board: &str,
    spec: &Path,
    secure_boot: bool,
) -> Result<PathBuf> {
    let out = root().join("out").join(out_name(board, secure_boot));
    let trust = dev_trust()?;
    let operators = dev_operators()?;
    let mut cmd = Command::new(imager);
    cmd.arg("build");
    if let Some(dir) = agent_dir {
        cmd.arg("--agent-dir").arg(dir);
    }
    if secure_boot {
        let keys = dev_secure_boot()?;
        cmd.arg("--secure-boot-key")
            .arg(keys.join("db.key"))
            .arg("--secure-boot-cert")
            .arg(keys.join("db.crt"));
    }
    run(cmd
        .arg("--spec")
        .arg(spec)
        .args(["--board", board])
        .arg("--trust")
        .arg(&trust)
        .arg("--operators")
        .arg(&operators)
        // The demo image keeps its debug shell on the console.
        .arg("--allow-debug")
        .arg("--out")
        .arg(&out))?;
    Ok(out)
}
