//! `slate-oracles`: the standard tools that judge Slate's formats in every crate's tests.
//!
//! Each runs the tool and reads its verdict as strictly as the tool allows: `sgdisk -v` exits
//! 0 with problems, so its words are checked; `fsck.fat -n` must print nothing but its banner
//! and its summary. One copy of each, so no test judges by a laxer reading than another.
//! Errors are strings with the tool's whole output, for a test's panic message.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `cmd`, or says which Debian package provides it.
fn run(cmd: &mut Command, package: &str) -> Result<Output, String> {
    cmd.output().map_err(|e| {
        format!(
            "running {:?} ({e}): install the Debian package {package}",
            cmd.get_program()
        )
    })
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `sgdisk -v DISK` finds no problem: it exits 0, says "No problems found", and prints no
/// warning or problem. Returns what it printed.
pub fn sgdisk_verify(disk: &Path) -> Result<String, String> {
    let out = run(Command::new("sgdisk").arg("-v").arg(disk), "gdisk")?;
    let printed = text(&out);
    let clean = out.status.success()
        && printed.contains("No problems found")
        && !printed.contains("Warning")
        && !printed.contains("Problem:");
    if clean {
        Ok(printed)
    } else {
        Err(format!(
            "sgdisk -v {} ({}): {printed}",
            disk.display(),
            out.status
        ))
    }
}

/// `fsck.fat -n IMAGE`'s verdict and its output: clean only when it exits 0 and prints its
/// banner and its summary (`N files, M/K clusters`) and nothing else (a repaired-in-memory
/// problem prints a line and may still exit 0).
pub fn fsck_fat_verdict(image: &Path) -> Result<(bool, String), String> {
    let out = run(Command::new("fsck.fat").arg("-n").arg(image), "dosfstools")?;
    let printed = text(&out);
    let lines: Vec<&str> = printed.lines().filter(|l| !l.trim().is_empty()).collect();
    let clean = out.status.success()
        && lines.len() == 2
        && lines[0].starts_with("fsck.fat ")
        && lines[1].contains(" files, ")
        && lines[1].contains(" clusters");
    Ok((clean, printed))
}

/// `fsck.fat -n IMAGE` finds the file system clean (see [`fsck_fat_verdict`]).
pub fn fsck_fat(image: &Path) -> Result<(), String> {
    match fsck_fat_verdict(image)? {
        (true, _) => Ok(()),
        (false, printed) => Err(format!("fsck.fat -n {}: {printed}", image.display())),
    }
}

/// `unsquashfs -lln IMAGE`: every path with its type, mode, owner and link target.
pub fn unsquashfs_list(image: &Path) -> Result<String, String> {
    let out = run(
        Command::new("unsquashfs").arg("-lln").arg(image),
        "squashfs-tools",
    )?;
    if !out.status.success() {
        return Err(format!(
            "unsquashfs -lln {}: {}",
            image.display(),
            text(&out)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `unsquashfs -cat IMAGE PATH`: one file's bytes as squashfs-tools reads them.
pub fn unsquashfs_cat(image: &Path, path: &str) -> Result<Vec<u8>, String> {
    let out = run(
        Command::new("unsquashfs").arg("-cat").arg(image).arg(path),
        "squashfs-tools",
    )?;
    if !out.status.success() {
        return Err(format!(
            "unsquashfs -cat {} {path}: {}",
            image.display(),
            text(&out)
        ));
    }
    Ok(out.stdout)
}

/// `unsquashfs -d DIR IMAGE` (without extended attributes, which an unprivileged extraction
/// cannot set): the whole tree as squashfs-tools extracts it.
pub fn unsquashfs_extract(image: &Path, dir: &Path) -> Result<(), String> {
    let out = run(
        Command::new("unsquashfs")
            .args(["-no-xattrs", "-quiet", "-d"])
            .arg(dir)
            .arg(image),
        "squashfs-tools",
    )?;
    if !out.status.success() {
        return Err(format!(
            "unsquashfs -d {} {}: {}",
            dir.display(),
            image.display(),
            text(&out)
        ));
    }
    Ok(())
}

pub mod swtpm;
