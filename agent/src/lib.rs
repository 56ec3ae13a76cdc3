//! `slate-agent`: the device side of Slate.
//!
//! Two programs share this library:
//!
//! ```text
//! init/     slate-init, PID 1: stage 1 in the initramfs (modules, dm-verity, the root, /data,
//!           its first-boot grow), stage 2 in the real root (services, watchdog, DHCP)
//! slated/   slated, the agent: its API server, installs (push and channel), health checks,
//!           device identity, the update state it keeps on /data
//! boot/     the boot loader back-end both use: the ESP's entries (boot counting), systemd-boot's
//!           EFI variables, what the firmware says about Secure Boot
//! (top)     what both programs need: system calls (sys), the console markers and logging,
//!           durable files on /data, the boot-attempt record, the security floor, partitions,
//!           the test images' cut points (hooks)
//! ```
//!
//! Nothing in `slated/` uses `init/`, and `boot/` uses neither. All system calls that need
//! `unsafe` live in [`sys`]; policy (command line, restart decisions, health results) is pure
//! and unit-tested.

pub mod attempts;
pub mod boot;
pub mod clock;
pub mod dhcp;
pub mod durable;
pub mod floor;
pub mod hooks;
pub mod init;
pub mod lines;
pub mod logfile;
pub mod logging;
pub mod marker;
pub mod partitions;
pub mod reset;
pub mod services;
pub mod slated;
pub mod sys;
pub mod tpm;

/// Locks a mutex, taking over from a holder that panicked: every value the agent keeps behind
/// one is consistent after each single change, and PID 1 and the agent must not die of it.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Milliseconds since the kernel started (from /proc/uptime), the clock boot timings use.
pub fn uptime_ms() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|x| x.parse::<f64>().ok())
        })
        .map_or(0, |s| (s * 1000.0) as u64)
}
