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

use crate::boot::esp::{self, Esp};
use crate::{attempts, marker, partitions, sys, uptime_ms};
use anyhow::{Context, Result};
use slate_core::api::Marker;
use slate_core::cmdline::BootParams;
use slate_core::config::{paths, InitrdConfig};
use slate_core::layout;
use slate_core::slots::{self, Attempts};
use std::time::Duration;

/// Where stage 2 lives in the real root.
pub const STAGE2: &str = "/usr/lib/slate/slate-init";
/// Environment variable carrying the watchdog descriptor to stage 2.
pub const WATCHDOG_FD_ENV: &str = "SLATE_WATCHDOG_FD";
/// Name of the verity device (`/dev/mapper/root`).
pub const ROOT_DM_NAME: &str = "root";
const PARTITION_WAIT: Duration = Duration::from_secs(15);
/// Where stage 1 mounts the data partition before the root exists (moved under it later).
const EARLY_DATA: &str = "/data";
/// Where stage 1 mounts efivarfs (it moves with /sys into the root).
pub const EFIVARS: &str = "/sys/firmware/efi/efivars";

/// Runs stage 1; returns only with an error.
pub fn run() -> anyhow::Error {
    let started = uptime_ms();
    match boot(started) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn boot(started: u64) -> Result<std::convert::Infallible> {
    use sys::Flags;
    // What PID 1 creates (the boot count, logs, the floor) is root's alone; stage 2 keeps this
    // umask and gives services 022.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
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
    // Test images: the harness's cut points in the grow (fw_cfg is a module, loaded above).
    crate::hooks::arm(cfg.test_hooks);

    // The watchdog first: from here on a hang resets the machine.
    let watchdog = match &cfg.watchdog {
        Some(w) => Some(crate::init::watchdog::open(&w.device)?),
        None => None,
    };

    let line = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    let params: BootParams = line.parse()?;
    // Stage 1 needs to know which partition the firmware booted from; the mount moves with
    // /sys into the root, where the agent reads systemd-boot's other variables.
    sys::mount(
        "efivarfs",
        EFIVARS,
        "efivarfs",
        Flags::NOSUID | Flags::NODEV | Flags::NOEXEC,
        "",
    )
    .context("mounting efivarfs (the board's modules need efivarfs)")?;
    let secure_boot = crate::boot::secure_boot::enabled();
    if secure_boot || cfg.secure_boot {
        // securityfs says what lockdown Secure Boot put the kernel in; it moves with /sys.
        if let Err(e) = sys::mount(
            "securityfs",
            "/sys/kernel/security",
            "securityfs",
            Flags::NOSUID | Flags::NODEV | Flags::NOEXEC,
            "",
        ) {
            marker::warn(format!("mounting securityfs: {e:#}"));
        }
        marker::emit(&Marker::SecureBoot {
            enabled: secure_boot,
            lockdown: crate::boot::secure_boot::lockdown(),
            built_for: cfg.secure_boot,
        });
    }
    let disk = partitions::boot_disk(PARTITION_WAIT)?;
    marker::emit(&Marker::BootDisk {
        device: format!("/dev/{}", disk.name),
        esp: disk.esp,
    });
    // A disk larger than the image: the GPT spans it and data fills it (crate::init::grow). A
    // failure costs the extra space, never the boot.
    if let Err(e) = crate::init::grow::grow_partition(disk) {
        marker::warn(format!("growing data to the disk's end: {e:#}"));
    }
    match &cfg.sealed_data {
        // The TPM unseals the key (or enrols one) and dm-crypt opens /data.
        Some(sealed) => {
            let part = partitions::find(layout::DATA_LABEL)?;
            crate::init::sealed_data::mount(sealed, &part, EARLY_DATA, cfg.security_epoch)?;
        }
        None => {
            if cfg.measured_boot {
                crate::tpm::pass_initrd_phases();
            }
            mount_data(EARLY_DATA)?;
        }
    }
    // A factory reset the agent asked for, before anything reads /data.
    match crate::reset::carry_out(std::path::Path::new(EARLY_DATA)) {
        Ok(Some(r)) => marker::emit(&Marker::FactoryReset {
            new_identity: r.new_identity,
        }),
        Ok(None) => {}
        Err(e) => marker::warn(format!(
            "factory reset: {e:#}; it is tried again at the next boot"
        )),
    }
    // The agent's state, keys, logs and counters: root's alone, on older devices too.
    if let Err(e) = crate::durable::private_dir(&std::path::Path::new(EARLY_DATA).join("slate")) {
        marker::warn(format!("{e:#}"));
    }
    // Stage 1's lines so far, and the rest of them, are kept on /data from here on.
    if let Err(e) = crate::logging::attach(
        &std::path::Path::new(EARLY_DATA).join("slate/log/stage1.log"),
        slate_core::config::LogConfig::default().max_bytes(),
    ) {
        marker::warn(format!("keeping stage 1's log on /data: {e}"));
    }
    match attempts::record(params.slot) {
        Ok(a) if a.starts > slots::MAX_FAILED_BOOTS => give_up(a)?,
        Ok(_) => {}
        Err(e) => marker::warn(format!("counting this boot: {e:#}")),
    }
    let floor = crate::floor::read();
    if !slots::epoch_allows(cfg.security_epoch, floor) {
        refuse_below_floor(params.slot, cfg.security_epoch, floor)?;
    }
    let root_dev = partitions::wait_for(params.slot.label(), PARTITION_WAIT)?;

    let target = params
        .verity
        .dm_target(&root_dev, &["restart_on_corruption"]);
    let dm = sys::dm_create_readonly(
        ROOT_DM_NAME,
        (target.start, target.sectors, target.kind, &target.params),
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
    marker::emit(&Marker::Stage1Done {
        slot: params.slot,
        root: params.verity.root_hash,
        ms: uptime_ms().saturating_sub(started),
    });
    crate::logging::flush();
    Err(sys::exec(STAGE2, &["--stage2"], &env))
}

/// This slot's image is below the device's security floor: it never reaches stage 2. Its entry
/// is marked bad and the machine reboots into the other slot. With no other slot to boot, the
/// floor is above every image the device has: no commit wrote that (a commit sets the floor to
/// the committed image's epoch and marks a lower other slot bad), so it is damage or someone
/// who could write `/data` trying to stop the device. This slot boots, the floor is rewritten
/// to its epoch, and a warning says so; a floor decision never powers the device off.
fn refuse_below_floor(slot: slate_core::layout::Slot, epoch: u64, floor: u64) -> Result<()> {
    marker::emit(&Marker::BelowFloor { slot, epoch, floor });
    std::fs::create_dir_all(esp::MOUNT).with_context(|| format!("creating {}", esp::MOUNT))?;
    let esp = Esp::mount()?;
    let renamed =
        esp.entries()
            .and_then(|entries| match slots::refuse_below_floor(slot, &entries) {
                Some((from, to)) => esp.rename_entry(&from, &to).map(|()| true),
                None => Ok(false),
            });
    let _ = sys::unmount(esp::MOUNT);
    if renamed.as_ref().is_ok_and(|r| *r) {
        let _ = sys::unmount(EARLY_DATA);
        sys::sync();
        return Err(sys::halt(sys::Halt::Reboot));
    }
    if let Err(e) = &renamed {
        marker::warn(format!("reading the boot entries for the floor: {e:#}"));
    }
    marker::warn(format!(
        "the security floor {floor} is above every image this device can boot (slot {} cannot boot): the floor is damaged; booting slot {slot} and rewriting the floor to its epoch {epoch}",
        slot.other()
    ));
    if let Err(e) = crate::floor::repair_in(std::path::Path::new(crate::floor::FILE), epoch) {
        marker::warn(format!("rewriting the security floor: {e:#}"));
    }
    Ok(())
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
            marker::emit(&Marker::Fallback {
                from: a.slot,
                starts: a.starts,
                marked: bad.to_string(),
            });
            attempts::clear()?;
            let _ = sys::unmount(EARLY_DATA);
            sys::sync();
            Err(sys::halt(sys::Halt::Reboot))
        }
        None => {
            marker::warn(format!(
                "slot {} started {} times without becoming healthy, but slot {} cannot boot; trying again",
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
    let why = match partitions::find(layout::DATA_LABEL) {
        Err(e) => format!("no data partition ({e:#}); /data is a tmpfs and nothing persists"),
        Ok(dev) => match sys::mount(&dev, target, "ext4", Flags::NOSUID | Flags::NODEV, "") {
            Ok(()) => {
                if let Err(e) = crate::init::grow::grow_filesystem(&dev, target) {
                    marker::warn(format!("growing the data file system: {e:#}"));
                }
                return Ok(());
            }
            Err(e) => format!("data partition {dev} did not mount ({e:#}); /data is a tmpfs"),
        },
    };
    marker::warn(why);
    sys::mount(
        "tmpfs",
        target,
        "tmpfs",
        Flags::NOSUID | Flags::NODEV,
        "mode=0755",
    )
}
