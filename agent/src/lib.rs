//! `slate-agent`: the device side of Slate.
//!
//! `slate-init` is PID 1 in two stages (initramfs → verified root → supervisor) and `slated` is
//! the agent that reports status and, with the Updates work, installs signed updates. All
//! system calls that need `unsafe` live in [`sys`]; policy (command line, restart decisions,
//! health results) is pure and unit-tested.

pub mod agent;
pub mod attempts;
pub mod channel;
pub mod conntable;
pub mod dhcp;
pub mod durable;
pub mod efivar;
pub mod esp;
pub mod floor;
pub mod grow;
pub mod health;
pub mod hooks;
pub mod http;
pub mod identity;
pub mod install;
pub mod lines;
pub mod logfile;
pub mod logging;
pub mod marker;
pub mod partitions;
pub mod secure_boot;
pub mod server;
pub mod stage1;
pub mod stage2;
pub mod state;
pub mod status;
pub mod supervisor;
pub mod sys;
pub mod throttle;
pub mod uki;
pub mod watchdog;

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
