//! `etc_overrides`: a device's own copy of an `/etc` file (`/data/etc/<file>`), bound read-only
//! over the image's for the files the image names (a hostname, an NTP server list).
//!
//! `/data` is writable by whatever runs as root on the device and readable offline, so the
//! source is opened as carefully as a setuid program would: no symlink anywhere in its path
//! below `/data/etc` (`openat2` with `RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH`, so a link cannot
//! point the bind at another file), a regular file owned by root that neither group nor others
//! may write, and the bind is `nosuid,nodev,noexec`. `/etc/slate`, and the files that decide
//! who is root or what every program loads, are never overridden.

use crate::{marker, sys};
use anyhow::{bail, Context, Result};
use rustix::fd::{AsRawFd, OwnedFd};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::path::Path;

/// Where the device's copies live.
pub const SOURCE_DIR: &str = "/data/etc";

/// Binds each override whose source exists and passes [`open_source`]; others are skipped,
/// with a warning when a source exists but is refused.
pub fn apply(files: &[String]) {
    let dir = Path::new(SOURCE_DIR);
    if !dir.is_dir() {
        return;
    }
    for target in files {
        let Some(rel) = allowed(target) else {
            marker::warn(format!(
                "etc override {target}: not an /etc file a device may replace"
            ));
            continue;
        };
        let source = match open_source(dir, rel) {
            Ok(Some(fd)) => fd,
            Ok(None) => continue,
            Err(e) => {
                marker::warn(format!("etc override {target}: {e:#}"));
                continue;
            }
        };
        // The bind's source is the opened file itself, not its path again.
        let from = format!("/proc/self/fd/{}", source.as_raw_fd());
        let flags = sys::Flags::BIND
            | sys::Flags::RDONLY
            | sys::Flags::NOSUID
            | sys::Flags::NODEV
            | sys::Flags::NOEXEC;
        let bound = sys::mount_bind(&from, target).and_then(|()| sys::remount(target, flags, ""));
        match bound {
            Ok(()) => tracing::info!(file = %target, "etc override"),
            Err(e) => marker::warn(format!("etc override {target}: {e:#}")),
        }
    }
}

/// The path below `/etc/` of a target a device may override, or None.
pub fn allowed(target: &str) -> Option<&str> {
    let rel = target.strip_prefix("/etc/")?;
    let bad_component = rel
        .split('/')
        .any(|c| c == ".." || c == "." || c.is_empty());
    let never = slate_core::config::ETC_NEVER_OVERRIDDEN.contains(&&target[1..]);
    (!rel.starts_with("slate/") && rel != "slate" && !bad_component && !never).then_some(rel)
}

/// Opens `dir/rel` for reading if it exists and may be bound: None when there is no such file.
pub fn open_source(dir: &Path, rel: &str) -> Result<Option<OwnedFd>> {
    let base = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening {}", dir.display()))?;
    let fd = match rustix::fs::openat2(
        &base,
        rel,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::XDEV) => {
            bail!("{}/{rel} has a symbolic link in its path", dir.display())
        }
        Err(e) => return Err(e).with_context(|| format!("opening {}/{rel}", dir.display())),
    };
    let st = rustix::fs::fstat(&fd).with_context(|| format!("{}/{rel}", dir.display()))?;
    let mode = st.st_mode;
    if rustix::fs::FileType::from_raw_mode(mode) != rustix::fs::FileType::RegularFile {
        bail!("{}/{rel} is not a regular file", dir.display());
    }
    if st.st_uid != 0 {
        bail!(
            "{}/{rel} is owned by uid {}, not root",
            dir.display(),
            st.st_uid
        );
    }
    if mode & 0o022 != 0 {
        bail!(
            "{}/{rel} is writable by group or others (mode {:04o})",
            dir.display(),
            mode & 0o7777
        );
    }
    Ok(Some(fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn only_plain_etc_files_outside_slate_and_the_identity_files_are_allowed() {
        assert_eq!(allowed("/etc/hostname"), Some("hostname"));
        assert_eq!(
            allowed("/etc/chrony/chrony.conf"),
            Some("chrony/chrony.conf")
        );
        for t in [
            "/etc/slate/trust.toml",
            "/etc/passwd",
            "/etc/group",
            "/etc/ld.so.preload",
            "/etc/../root/x",
            "/usr/lib/x",
        ] {
            assert_eq!(allowed(t), None, "{t}");
        }
    }

    #[test]
    fn a_source_is_a_root_owned_regular_file_reached_without_links() {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = d.path().join("etc");
        std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
        let write = |rel: &str, mode: u32| {
            let p = dir.join(rel);
            std::fs::write(&p, "x\n").expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
            p
        };
        write("hostname", 0o644);
        assert!(open_source(&dir, "hostname").expect("ok").is_some());
        assert!(open_source(&dir, "missing").expect("ok").is_none());
        write("open", 0o666);
        let e = open_source(&dir, "open").expect_err("world-writable");
        assert!(e.to_string().contains("writable by group or others"), "{e}");
        let theirs = write("theirs", 0o644);
        rustix::fs::chown(
            &theirs,
            Some(rustix::fs::Uid::from_raw(1000)),
            Some(rustix::fs::Gid::from_raw(1000)),
        )
        .expect("chown (the tests run as root)");
        let e = open_source(&dir, "theirs").expect_err("not root's");
        assert!(e.to_string().contains("uid 1000"), "{e}");
        std::os::unix::fs::symlink("/etc/shadow", dir.join("link")).expect("symlink");
        let e = open_source(&dir, "link").expect_err("a link");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        std::os::unix::fs::symlink(d.path(), dir.join("up")).expect("symlink");
        let e = open_source(&dir, "up/etc/hostname").expect_err("a link in the path");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let e = open_source(&dir, "sub").expect_err("a folder");
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
