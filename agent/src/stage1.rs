//! Stage 1 of `slate-init`, PID 1 in the initramfs: from kernel to the verified root.
//!
//! mount /dev /proc /sys → load modules in order → open the watchdog → read slot and verity
//! parameters → data at /data, count this start of the slot → wait for `PARTNAME=root-<slot>`
//! → dm-verity (read-only, restart on corruption) → squashfs at /sysroot → move mounts (data to
//! /sysroot/data) → switch root → exec stage 2.
//! Any failure prints `slate: stage1 failed: <what>` and reboots after a short delay, so boot
//! counting can spend a try and fall back; a production image never gets a shell here.
//! A *good* slot has no counter, so when it has started more than
//! [`slots::MAX_FAILED_BOOTS`] times in a row without becoming healthy (dm-verity restarting
//! the machine on a corrupt block, a panic, a hang), stage 1 marks its entry bad and reboots
//! into the other slot (`slate: fallback from=<slot> to=<other> …`).

use crate::esp::{self, Esp};
use crate::{attempts, cmdline, marker, sys, uptime_ms};
use anyhow::{bail, Context, Result};
use slate_core::config::{paths, InitrdConfig};
use slate_core::layout;
use slate_core::slots::{self, Attempts};
use std::time::{Duration, Instant};

/// Where stage 2 lives in the real root.
pub const STAGE2: &str = "/usr/lib/slate/slate-init";
/// Environment variable carrying the watchdog descriptor to stage 2.
pub const WATCHDOG_FD_ENV: &str = "SLATE_WATCHDOG_FD";
/// Name of the verity device (`/dev/mapper/root`).
pub const ROOT_DM_NAME: &str = "root";
const PARTITION_WAIT: Duration = Duration::from_secs(15);
/// Where stage 1 mounts the data partition before the root exists (moved under it later).
const EARLY_DATA: &str = "/data";

/// Runs stage 1; returns only with an error.
pub fn run() -> anyhow::Error {
    let started = uptime_ms();
    match boot(started) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// The block device of the partition labelled `label`, from sysfs uevents (no udev here).
pub fn find_partition(label: &str) -> Option<String> {
    let dir = std::fs::read_dir("/sys/class/block").ok()?;
    for e in dir.flatten() {
        let Ok(uevent) = std::fs::read_to_string(e.path().join("uevent")) else {
            continue;
        };
        if uevent.lines().any(|l| l == format!("PARTNAME={label}")) {
            let dev = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))?;
            return Some(format!("/dev/{dev}"));
        }
    }
    None
}

fn wait_for_partition(label: &str) -> Result<String> {
    let deadline = Instant::now() + PARTITION_WAIT;
    loop {
        if let Some(dev) = find_partition(label) {
            return Ok(dev);
        }
        if Instant::now() > deadline {
            bail!("no partition labelled {label} appeared within {} s (disk driver missing from the board's modules?)", PARTITION_WAIT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn boot(started: u64) -> Result<std::convert::Infallible> {
    use sys::Flags;
    sys::mount("devtmpfs", "/dev", "devtmpfs", Flags::NOSUID, "mode=0755")?;
    sys::mount(
        "proc",
        "/proc",
        "proc",
        Flags::NOSUID | Flags::NODEV | Flags::NOEXEC,
        "",
    )?;
    sys::mount(
        "sysfs",
        "/sys",
        "sysfs",
        Flags::NOSUID | Flags::NODEV | Flags::NOEXEC,
        "",
    )?;

    let cfg_path = format!("/{}", paths::INITRD);
    let cfg: InitrdConfig = toml::from_str(
        &std::fs::read_to_string(&cfg_path).with_context(|| format!("reading {cfg_path}"))?,
    )
    .with_context(|| format!("parsing {cfg_path}"))?;
    for m in &cfg.modules {
        sys::load_module(m)?;
    }

    // The watchdog first: from here on a hang resets the machine.
    let watchdog = match &cfg.watchdog {
        Some(w) => Some(crate::watchdog::open(&w.device)?),
        None => None,
    };

    let line = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    let params = cmdline::parse(&line)?;
    mount_data(EARLY_DATA)?;
    match attempts::record(params.slot) {
        Ok(a) if a.starts > slots::MAX_FAILED_BOOTS => give_up(a)?,
        Ok(_) => {}
        Err(e) => marker::emit(&format!("warning: counting this boot: {e:#}")),
    }
    let root_dev = wait_for_partition(params.slot.label())?;

    let table = params
        .verity
        .dm_table(&root_dev, &["restart_on_corruption"]);
    // dm_table() renders "start len verity <params>"; the ioctl wants the parameters alone.
    let verity_params = table
        .splitn(4, ' ')
        .nth(3)
        .context("verity table")?
        .to_string();
    let dm = sys::dm_create_readonly(
        ROOT_DM_NAME,
        (0, params.verity.data_blocks * 8, "verity", &verity_params),
    )?;
    let mapper = format!("/dev/mapper/{}", dm.name);
    sys::mknod_block(&mapper, dm.major, dm.minor)?;
    sys::mount(&mapper, "/sysroot", "squashfs", Flags::RDONLY, "").with_context(|| {
        format!(
            "mounting the root of slot {} (verity device {mapper})",
            params.slot
        )
    })?;

    sys::mount_move(EARLY_DATA, "/sysroot/data")?;
    for m in ["/dev", "/proc", "/sys"] {
        sys::mount_move(m, &format!("/sysroot{m}"))?;
    }
    rustix::process::chdir("/sysroot").context("chdir /sysroot")?;
    sys::mount_move(".", "/")?;
    rustix::process::chroot(".").context("chroot into the new root")?;
    rustix::process::chdir("/").context("chdir /")?;

    let mut env = vec![(
        "SLATE_STAGE1_MS".to_string(),
        (uptime_ms().saturating_sub(started)).to_string(),
    )];
    if let Some(w) = &watchdog {
        sys::keep_across_exec(w)?;
        env.push((
            WATCHDOG_FD_ENV.to_string(),
            std::os::fd::AsRawFd::as_raw_fd(w).to_string(),
        ));
    }
    marker::emit(&format!(
        "stage1 done slot={} root={} in {} ms",
        params.slot,
        hex::encode(params.verity.root_hash),
        uptime_ms().saturating_sub(started)
    ));
    Err(sys::exec(STAGE2, &["--stage2"], &env))
}

/// Marks the running good slot bad and reboots into the other one, when the entries allow it
/// (see [`slots::give_up`]); otherwise warns and lets this boot go on.
fn give_up(a: Attempts) -> Result<()> {
    std::fs::create_dir_all(esp::MOUNT).with_context(|| format!("creating {}", esp::MOUNT))?;
    let esp = Esp::mount()?;
    let renamed = esp
        .entries()
        .and_then(|entries| match slots::give_up(a, &entries) {
            Some((from, to)) => esp.rename_entry(&from, &to).map(|()| Some(to)),
            None => Ok(None),
        });
    let _ = sys::unmount(esp::MOUNT);
    match renamed? {
        Some(bad) => {
            marker::emit(&format!(
                "fallback from={} to={} reason=\"{} starts without becoming healthy\" marked={bad}",
                a.slot,
                a.slot.other(),
                a.starts
            ));
            attempts::clear()?;
            let _ = sys::unmount(EARLY_DATA);
            sys::sync();
            Err(sys::halt(sys::Halt::Reboot))
        }
        None => {
            marker::emit(&format!(
                "warning: slot {} started {} times without becoming healthy, but slot {} cannot boot; trying again",
                a.slot,
                a.starts,
                a.slot.other()
            ));
            Ok(())
        }
    }
}

/// Mounts the data partition at `target`; a missing or unmountable one falls back to a tmpfs
/// with a loud warning, because refusing to boot would brick the device over /data.
fn mount_data(target: &str) -> Result<()> {
    use sys::Flags;
    std::fs::create_dir_all(target).with_context(|| format!("creating {target}"))?;
    let Some(dev) = find_partition(layout::DATA_LABEL) else {
        marker::emit("warning: no data partition; /data is a tmpfs and nothing persists");
        return sys::mount(
            "tmpfs",
            target,
            "tmpfs",
            Flags::NOSUID | Flags::NODEV,
            "mode=0755",
        );
    };
    if let Err(e) = sys::mount(&dev, target, "ext4", Flags::NOSUID | Flags::NODEV, "") {
        marker::emit(&format!(
            "warning: data partition {dev} did not mount ({e:#}); /data is a tmpfs"
        ));
        return sys::mount(
            "tmpfs",
            target,
            "tmpfs",
            Flags::NOSUID | Flags::NODEV,
            "mode=0755",
        );
    }
    Ok(())
}
