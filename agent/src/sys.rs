//! Every system call PID 1 and the agent make that needs care: mounts, module loading,
//! device-mapper and network ioctls, device nodes, reboot. Small owning wrappers; each
//! `unsafe` block says why it is sound. Nothing else in the crate uses `unsafe`.
#![allow(unsafe_code)]

use anyhow::{bail, Context, Result};
use rustix::fs::{FileType, Mode};
use rustix::mount::{MountFlags, UnmountFlags};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

mod net;
pub use net::{
    add_default_route, bind_to_device, clear_ipv4, link_up, mac_address, replace_default_route,
    set_ipv4,
};

/// Mounts `fstype` from `source` at `target`, creating the folder if needed.
pub fn mount(
    source: &str,
    target: &str,
    fstype: &str,
    flags: MountFlags,
    data: &str,
) -> Result<()> {
    std::fs::create_dir_all(target).with_context(|| format!("creating mount point {target}"))?;
    let data = cstring(data)?;
    rustix::mount::mount(source, target, fstype, flags, Some(data.as_c_str()))
        .with_context(|| format!("mounting {fstype} {source} at {target}"))
}

/// Changes the flags of a mounted file system (read-only ↔ read-write).
pub fn remount(target: &str, flags: MountFlags, data: &str) -> Result<()> {
    rustix::mount::mount_remount(target, flags, data)
        .with_context(|| format!("remounting {target}"))
}

/// Moves a mount to another place.
pub fn mount_move(from: &str, to: &str) -> Result<()> {
    std::fs::create_dir_all(to).ok();
    rustix::mount::mount_move(from, to).with_context(|| format!("moving mount {from} to {to}"))
}

/// Binds a folder onto another.
pub fn mount_bind(from: &str, to: &str) -> Result<()> {
    std::fs::create_dir_all(to).ok();
    rustix::mount::mount_bind(from, to).with_context(|| format!("binding {from} on {to}"))
}

/// Unmounts, detaching lazily if busy.
pub fn unmount(target: &str) -> Result<()> {
    match rustix::mount::unmount(target, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => rustix::mount::unmount(target, UnmountFlags::DETACH)
            .with_context(|| format!("detaching busy mount {target}")),
        Err(e) => Err(e).with_context(|| format!("unmounting {target}")),
    }
}

/// Unmounts `target` now or fails (no lazy detach): for a shutdown that must know whether the
/// file system is clean.
pub fn unmount_now(target: &str) -> rustix::io::Result<()> {
    rustix::mount::unmount(target, UnmountFlags::empty())
}

/// Loads a kernel module from its file; an already loaded module is fine.
pub fn load_module(path: &str) -> Result<()> {
    let f = File::open(path).with_context(|| format!("opening module {path}"))?;
    match rustix::system::finit_module(&f, c"", 0) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("loading module {path}")),
    }
}

/// Creates a block device node (used for `/dev/mapper/<name>`).
pub fn mknod_block(path: &str, major: u32, minor: u32) -> Result<()> {
    if let Some(parent) = Path::new(path).parent() {
        std::fs::create_dir_all(parent).ok();
    }
    let _ = std::fs::remove_file(path);
    let dev = rustix::fs::makedev(major, minor);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        FileType::BlockDevice,
        Mode::from_raw_mode(0o600),
        dev,
    )
    .with_context(|| format!("creating device node {path} ({major}:{minor})"))
}

/// Flushes all file systems.
pub fn sync() {
    rustix::fs::sync();
}

/// How the machine goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    /// Restart.
    Reboot,
    /// Power off.
    PowerOff,
}

/// Reboots or powers off now (after a sync). Only returns on failure.
pub fn halt(how: Halt) -> anyhow::Error {
    sync();
    let cmd = match how {
        Halt::Reboot => rustix::system::RebootCommand::Restart,
        Halt::PowerOff => rustix::system::RebootCommand::PowerOff,
    };
    match rustix::system::reboot(cmd) {
        Ok(()) => anyhow::anyhow!("reboot(2) returned"),
        Err(e) => anyhow::anyhow!("reboot(2) failed: {e}"),
    }
}

/// Sets the hostname.
pub fn set_hostname(name: &str) -> Result<()> {
    rustix::system::sethostname(name.as_bytes()).context("setting the hostname")
}

// ---------------------------------------------------------------------------------------------
// device-mapper (include/uapi/linux/dm-ioctl.h, interface version 4)
//
// struct dm_ioctl (312 bytes): version[3] u32 @0, data_size u32 @12, data_start u32 @16,
// target_count u32 @20, open_count i32 @24, flags u32 @28, event_nr u32 @32, padding @36,
// dev u64 @40, name[128] @48, uuid[129] @176, data[7] @305.
// struct dm_target_spec (40 bytes): sector_start u64, length u64, status i32, next u32,
// target_type[16]; then the NUL-terminated parameter string, padded to 8 bytes.

const DM_IOCTL_SIZE: usize = 312;
const DM_SPEC_SIZE: usize = 40;
const DM_READONLY_FLAG: u32 = 1 << 0;

const fn dm_iowr(nr: u32) -> u64 {
    ((3u64) << 30) | ((DM_IOCTL_SIZE as u64) << 16) | (0xfd << 8) | nr as u64
}
const DM_DEV_CREATE: u64 = dm_iowr(3);
const DM_DEV_SUSPEND: u64 = dm_iowr(6);
const DM_TABLE_LOAD: u64 = dm_iowr(9);

fn dm_header(name: &str, total: usize, flags: u32) -> Result<Vec<u8>> {
    if name.len() >= 128 {
        bail!("device-mapper name {name:?} is too long");
    }
    let mut b = vec![0u8; total];
    b[0..4].copy_from_slice(&4u32.to_ne_bytes());
    b[12..16].copy_from_slice(&(total as u32).to_ne_bytes());
    b[16..20].copy_from_slice(&(DM_IOCTL_SIZE as u32).to_ne_bytes());
    b[28..32].copy_from_slice(&flags.to_ne_bytes());
    b[48..48 + name.len()].copy_from_slice(name.as_bytes());
    Ok(b)
}

fn dm_call(control: &File, request: u64, buf: &mut [u8], what: &str) -> Result<()> {
    // SAFETY: `buf` is a live, writable buffer of `data_size` bytes (set in its header) that
    // starts with a valid struct dm_ioctl; the kernel reads and writes at most that many bytes.
    let rc = unsafe {
        libc::ioctl(
            control.as_raw_fd(),
            request as libc::c_ulong,
            buf.as_mut_ptr(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("device-mapper {what}"));
    }
    Ok(())
}

/// A device-mapper device made by Slate: name and device numbers.
#[derive(Debug, Clone)]
pub struct DmDevice {
    /// Name under /dev/mapper.
    pub name: String,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

/// Creates a read-only device-mapper device with one target line and activates it.
/// `table` is `(start sector, length, target type, parameters)`.
pub fn dm_create_readonly(name: &str, table: (u64, u64, &str, &str)) -> Result<DmDevice> {
    dm_create(name, table, DM_READONLY_FLAG)
}

/// Creates a writable device-mapper device (dm-crypt's `/data`) with one target line, and
/// its node under /dev/mapper. The parameters may hold a key: they never reach an error
/// message.
pub fn dm_create_writable(name: &str, table: (u64, u64, &str, &str)) -> Result<DmDevice> {
    let dm = dm_create(name, table, 0)?;
    mknod_block(&format!("/dev/mapper/{name}"), dm.major, dm.minor)?;
    Ok(dm)
}

fn dm_create(name: &str, table: (u64, u64, &str, &str), flags: u32) -> Result<DmDevice> {
    let control = File::options()
        .read(true)
        .write(true)
        .open("/dev/mapper/control")
        .context("opening /dev/mapper/control (is dm-mod loaded?)")?;

    let mut create = dm_header(name, DM_IOCTL_SIZE, 0)?;
    dm_call(
        &control,
        DM_DEV_CREATE,
        &mut create,
        &format!("create {name}"),
    )?;
    let dev = u64::from_ne_bytes(create[40..48].try_into()?);
    let major = ((dev >> 8) & 0xfff) as u32;
    let minor = ((dev & 0xff) | ((dev >> 12) & 0xfff00)) as u32;

    let (start, len, target, params) = table;
    let params_len = (params.len() + 1).div_ceil(8) * 8;
    let total = DM_IOCTL_SIZE + DM_SPEC_SIZE + params_len;
    let mut load = dm_header(name, total, flags)?;
    load[20..24].copy_from_slice(&1u32.to_ne_bytes());
    let s = DM_IOCTL_SIZE;
    load[s..s + 8].copy_from_slice(&start.to_ne_bytes());
    load[s + 8..s + 16].copy_from_slice(&len.to_ne_bytes());
    load[s + 20..s + 24].copy_from_slice(&((DM_SPEC_SIZE + params_len) as u32).to_ne_bytes());
    if target.len() >= 16 {
        bail!("device-mapper target type {target:?} is too long");
    }
    load[s + 24..s + 24 + target.len()].copy_from_slice(target.as_bytes());
    load[s + DM_SPEC_SIZE..s + DM_SPEC_SIZE + params.len()].copy_from_slice(params.as_bytes());
    // A crypt table's parameters carry the key: name the target, not its parameters.
    let shown = if target == "crypt" { "…" } else { params };
    dm_call(
        &control,
        DM_TABLE_LOAD,
        &mut load,
        &format!("table load for {name} ({target} {shown})"),
    )?;
    load.fill(0);

    let mut resume = dm_header(name, DM_IOCTL_SIZE, 0)?;
    dm_call(
        &control,
        DM_DEV_SUSPEND,
        &mut resume,
        &format!("resume {name}"),
    )?;
    Ok(DmDevice {
        name: name.to_string(),
        major,
        minor,
    })
}

/// `struct blkpg_partition` of `<linux/blkpg.h>`.
#[repr(C)]
struct BlkpgPartition {
    start: i64,
    length: i64,
    pno: libc::c_int,
    devname: [libc::c_char; 64],
    volname: [libc::c_char; 64],
}

/// `struct blkpg_ioctl_arg` of `<linux/blkpg.h>`.
#[repr(C)]
struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut libc::c_void,
}

const BLKPG: libc::c_ulong = 0x1269;
const BLKPG_RESIZE_PARTITION: libc::c_int = 3;
/// `EXT4_IOC_RESIZE_FS`: `_IOW('f', 16, __u64)`.
const EXT4_IOC_RESIZE_FS: libc::c_ulong = 0x4008_6610;

/// Tells the kernel that partition `number` of the disk open as `disk` now spans `length`
/// bytes from `start` (BLKPG_RESIZE_PARTITION: works while other partitions are in use).
pub fn resize_partition(disk: &impl AsRawFd, number: u32, start: u64, length: u64) -> Result<()> {
    let mut part = BlkpgPartition {
        start: i64::try_from(start).context("partition start")?,
        length: i64::try_from(length).context("partition length")?,
        pno: libc::c_int::try_from(number).context("partition number")?,
        devname: [0; 64],
        volname: [0; 64],
    };
    let mut arg = BlkpgIoctlArg {
        op: BLKPG_RESIZE_PARTITION,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as libc::c_int,
        data: (&mut part as *mut BlkpgPartition).cast(),
    };
    // SAFETY: `arg` and the partition it points at are valid for the call, laid out as
    // <linux/blkpg.h> declares them.
    let rc = unsafe { libc::ioctl(disk.as_raw_fd(), BLKPG, &mut arg as *mut BlkpgIoctlArg) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("resizing partition {number} in the kernel"));
    }
    Ok(())
}

/// Grows the mounted ext4 file system that `dir` (its mount point, opened) lies on to
/// `blocks` blocks, online (EXT4_IOC_RESIZE_FS; the kernel journals each step).
pub fn ext4_resize(dir: &impl AsRawFd, blocks: u64) -> Result<()> {
    let mut count = blocks;
    // SAFETY: the argument is a valid u64 for the call, as EXT4_IOC_RESIZE_FS reads it.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), EXT4_IOC_RESIZE_FS, &mut count as *mut u64) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("growing the ext4 file system to {blocks} blocks"));
    }
    Ok(())
}

/// Makes `fd` (the console) the controlling terminal of the calling session leader; for the
/// debug shell's job control.
pub fn set_controlling_tty() -> std::io::Result<()> {
    rustix::process::setsid()?;
    rustix::process::ioctl_tiocsctty(rustix::stdio::stdin())?;
    Ok(())
}

/// Spawns `cmd` as the leader of a new session with the console as its controlling terminal.
pub fn spawn_session(cmd: &mut std::process::Command) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only makes two system calls
    // (setsid, ioctl), both async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            let _ = set_controlling_tty();
            Ok(())
        });
    }
    cmd.spawn()
}

/// Keeps `fd` open across exec (clears FD_CLOEXEC); used to hand the watchdog to stage 2.
pub fn keep_across_exec(f: &File) -> Result<()> {
    let fd = f.as_raw_fd();
    // SAFETY: `fd` is owned by `f`, alive for the call; F_GETFD/F_SETFD only touch its flags.
    let rc = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC)
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context("clearing FD_CLOEXEC");
    }
    Ok(())
}

/// Adopts a file descriptor inherited across exec, and marks it close-on-exec again so it
/// goes no further: the watchdog descriptor must not leak into services, or any of them
/// could stop it (magic close) and turn off hang recovery.
pub fn adopt_fd(fd: i32) -> Option<File> {
    use std::os::fd::FromRawFd;
    // F_GETFD succeeds only for an open descriptor.
    // SAFETY: fcntl(F_GETFD) has no side effects on any descriptor number.
    if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: `fd` is open (checked above); F_SETFD only sets its close-on-exec flag.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return None;
    }
    // SAFETY: the descriptor is open (checked above) and was handed to this process, which
    // uses it only through the File returned here.
    Some(unsafe { File::from_raw_fd(fd) })
}

/// Execs a program, replacing this process. Returns only on failure.
pub fn exec(path: &str, args: &[&str], env: &[(String, String)]) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(path);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let e = cmd.exec();
    anyhow::anyhow!("exec {path}: {e}")
}

/// Mount flags used across the crate.
pub use rustix::mount::MountFlags as Flags;

/// A C string from Rust text, for the rare call that needs one.
pub fn cstring(s: &str) -> Result<CString> {
    CString::new(s).with_context(|| format!("{s:?} contains NUL"))
}

/// Makes the child of `cmd` run with `uid`, `gid` (no supplementary groups) and only the
/// capabilities in `caps` (as ambient capabilities, so they survive exec of a program without
/// file capabilities), and with `no_new_privs`, before it execs. For uid 0 with no
/// capabilities named, only `no_new_privs` is set (a root service keeps root). Services get
/// the usual umask 022 back (PID 1 runs with 077, so what it creates is root's alone).
pub fn run_as(
    cmd: &mut std::process::Command,
    uid: u32,
    gid: u32,
    caps: rustix::thread::CapabilitySet,
) {
    use rustix::thread::{self as t, CapabilitySets};
    use std::os::unix::process::CommandExt;
    let drop_root = uid != 0 || gid != 0 || !caps.is_empty();
    let io = |e: rustix::io::Errno| std::io::Error::from(e);
    // SAFETY: the closure runs in the forked child between fork and exec. It only makes raw
    // system calls (prctl, setgroups, setresgid, setresuid, capset, umask) on the one thread the
    // child has, allocates nothing and takes no lock, so it is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if drop_root {
                t::set_keep_capabilities(true).map_err(io)?;
                t::set_thread_groups(&[]).map_err(io)?;
                let g = rustix::process::Gid::from_raw(gid);
                t::set_thread_res_gid(g, g, g).map_err(io)?;
                let u = rustix::process::Uid::from_raw(uid);
                t::set_thread_res_uid(u, u, u).map_err(io)?;
                t::set_capabilities(
                    None,
                    CapabilitySets {
                        effective: caps,
                        permitted: caps,
                        inheritable: caps,
                    },
                )
                .map_err(io)?;
                for cap in caps.iter() {
                    t::configure_capability_in_ambient_set(cap, true).map_err(io)?;
                }
                t::set_keep_capabilities(false).map_err(io)?;
            }
            t::set_no_new_privs(true).map_err(io)?;
            rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
            Ok(())
        });
    }
}

/// The capability set of bit numbers (from `slate_core::config::capability_bit`).
pub fn capability_set(bits: &[u32]) -> rustix::thread::CapabilitySet {
    bits.iter()
        .filter(|&&b| b < 64)
        .fold(rustix::thread::CapabilitySet::empty(), |s, &b| {
            s | rustix::thread::CapabilitySet::from_bits_retain(1u64 << b)
        })
}
