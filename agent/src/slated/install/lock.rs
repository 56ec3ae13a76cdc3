//! The install lock (`/run/slate/install.lock`): one install at a time, pushed or pulled.
//!
//! It is root's alone (0600 in a 0700 `/run/slate`): `flock` works on a read-only descriptor,
//! so a lock file anyone can open is a lock any unprivileged service can hold forever, and
//! with it block every update. A refusal names the holder, read from `/proc/locks`.

use anyhow::{Context, Result};
use slate_core::install::Refusal;
use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Where the lock lives.
pub const PATH: &str = "/run/slate/install.lock";

/// A held lock: released when dropped (the descriptor closes).
#[derive(Debug)]
pub struct Held {
    _file: File,
}

/// Why the lock could not be taken.
#[derive(Debug)]
pub enum NotTaken {
    /// Another process holds it.
    Busy(Refusal),
    /// The lock file could not be made or opened.
    Failed(anyhow::Error),
}

/// Takes the lock at `path` without waiting.
pub fn try_take(path: &Path) -> Result<Held, NotTaken> {
    if let Some(dir) = path.parent() {
        crate::durable::private_dir(dir).map_err(NotTaken::Failed)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
        .map_err(NotTaken::Failed)?;
    // A file left by an older agent keeps its mode: make it root's alone too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private", path.display()))
        .map_err(NotTaken::Failed)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Held { _file: file }),
        Err(_) => Err(NotTaken::Busy(Refusal::Busy {
            holder: holder(&file),
        })),
    }
}

/// Who holds the lock on `file`: its process name and PID from `/proc/locks`.
fn holder(file: &File) -> String {
    let Ok(meta) = file.metadata() else {
        return "held by another process".into();
    };
    let dev = meta.dev();
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    match holder_pid(
        &locks,
        rustix::fs::major(dev),
        rustix::fs::minor(dev),
        meta.ino(),
    ) {
        Some(pid) => {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|n| n.trim().to_string())
                .unwrap_or_else(|_| "a process".into());
            format!("held by {name} (PID {pid})")
        }
        None => "held by another process".into(),
    }
}

/// The PID of the `FLOCK` on the file `major:minor:inode` in `/proc/locks`'s text
/// (`1: FLOCK  ADVISORY  WRITE 1234 00:19:5678 0 EOF`: device numbers in hex).
pub fn holder_pid(locks: &str, major: u32, minor: u32, inode: u64) -> Option<u32> {
    let wanted = format!("{major:02x}:{minor:02x}:{inode}");
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Blocked waiters are listed as "1: -> FLOCK …": not holders.
        if fields.get(1) != Some(&"FLOCK") || fields.get(5) != Some(&wanted.as_str()) {
            return None;
        }
        fields.get(4)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_found_by_device_and_inode() {
        let locks = "1: POSIX  ADVISORY  WRITE 99 00:19:5678 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 777 00:1a:5678 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 42 103:02:5678 0 EOF\n";
        assert_eq!(holder_pid(locks, 0, 0x1a, 5678), Some(1234));
        assert_eq!(holder_pid(locks, 0x103, 2, 5678), Some(42));
        assert_eq!(
            holder_pid(locks, 0, 0x19, 5678),
            None,
            "a POSIX lock is not ours"
        );
        assert_eq!(holder_pid(locks, 0, 0x1a, 567), None);
    }

    #[test]
    fn the_lock_is_private_and_a_second_taker_learns_who_holds_it() {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = d.path().join("run/slate");
        let path = dir.join("install.lock");
        let held = try_take(&path).expect("first take");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&path), 0o600);
        match try_take(&path) {
            Err(NotTaken::Busy(r)) => {
                let text = r.to_string();
                let me = std::process::id();
                assert!(text.contains(&format!("(PID {me})")), "{text}");
            }
            other => panic!("a second take got {other:?}"),
        }
        drop(held);
        // A lock file an older agent left world-readable becomes private again.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let _again = try_take(&path).expect("take after release");
        assert_eq!((mode(&dir), mode(&path)), (0o700, 0o600));
    }
}
