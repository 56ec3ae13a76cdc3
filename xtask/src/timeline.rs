//! Boot timelines read off a machine's console: the host-clock moment of each milestone.

use slate_core::api::Kind;

/// Host-clock boot milestones of one boot, in seconds since QEMU started.
#[derive(Debug, Clone, Copy, Default)]
pub struct BootTimes {
    /// OVMF handed over to the boot loader.
    pub firmware: Option<f64>,
    /// The kernel started (stage 2's uptime subtracted from its marker time).
    pub kernel: Option<f64>,
    /// Stage 1 finished.
    pub stage1: Option<f64>,
    /// Stage 2 is supervising.
    pub stage2: Option<f64>,
    /// The agent's checks passed.
    pub healthy: Option<f64>,
}

fn number_before(text: &str, unit: &str) -> Option<f64> {
    let i = text.find(unit)?;
    text[..i].split_whitespace().last()?.parse().ok()
}

impl BootTimes {
    /// Reads the milestones from a VM's console.
    pub fn of(vm: &slate_qemu::Vm) -> BootTimes {
        let mut t = BootTimes::default();
        for l in vm.lines() {
            let at = l.at.as_secs_f64();
            if t.firmware.is_none() && l.text.contains("BdsDxe: starting") {
                t.firmware = Some(at);
            }
            if l.text.contains(&Kind::Stage1Done.prefix()) {
                t.stage1 = Some(at);
            }
            if l.text.contains(&Kind::Stage2Up.prefix()) {
                t.stage2 = Some(at);
                if let Some(ms) = number_before(&l.text, " ms since boot") {
                    t.kernel = Some(at - ms / 1000.0);
                }
            }
            if l.text.contains(&Kind::Healthy.prefix()) {
                t.healthy = Some(at);
            }
        }
        t
    }
}

/// A printable timeline of one boot.
pub fn boot_timings(vm: &slate_qemu::Vm) -> String {
    let t = BootTimes::of(vm);
    let f = |x: Option<f64>| x.map_or("     -".to_string(), |v| format!("{v:6.2}"));
    format!(
        "boot timeline (s since QEMU start, {:?}): firmware done {} | kernel start {} | stage 1 done {} | stage 2 up {} | healthy {}",
        vm.accel(),
        f(t.firmware),
        f(t.kernel),
        f(t.stage1),
        f(t.stage2),
        f(t.healthy)
    )
}

/// Seconds (host clock, since QEMU started) of the first console line after `mark` containing
/// `needle`.
pub fn line_time(vm: &slate_qemu::Vm, mark: usize, needle: &str) -> Option<f64> {
    vm.lines()
        .iter()
        .skip(mark)
        .find(|l| l.text.contains(needle))
        .map(|l| l.at.as_secs_f64())
}
