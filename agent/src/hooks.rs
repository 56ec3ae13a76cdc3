//! Cut points for the power-cut gauntlet, in test images only (`[agent] test_hooks = true`).
//!
//! The QEMU harness names a step through fw_cfg (`opt/slate/cut-at`); when the agent reaches
//! it, it prints `slate: cut-point <step>` and stops there, so the harness can kill the machine
//! at exactly that moment. Production images ignore fw_cfg entirely.

use std::sync::OnceLock;

/// Where the harness's string appears in the guest.
pub const FW_CFG: &str = "/sys/firmware/qemu_fw_cfg/by_name/opt/slate/cut-at/raw";

/// The durable steps of an update, in order (DESIGN §6), plus the boots after it.
pub const STEPS: &[&str] = &[
    "entry-removed",
    "slot-partly-written",
    "slot-written",
    "boot-files-writing",
    "boot-files-written",
    "entry-written",
    "trial-boot",
    "health-running",
    "blessed",
    "marked-bad",
    "fallback-boot",
];

static ARMED: OnceLock<Option<String>> = OnceLock::new();

/// Arms the hooks (call once at start with the image's setting).
pub fn arm(enabled: bool) {
    let _ = ARMED.set(if enabled {
        std::fs::read_to_string(FW_CFG)
            .ok()
            .map(|s| s.trim().to_string())
    } else {
        None
    });
}

/// Stops here forever if the harness asked to cut at `step`.
pub fn cut_point(step: &str) {
    if ARMED.get().and_then(|s| s.as_deref()) == Some(step) {
        crate::marker::emit(&slate_core::api::Marker::CutPoint { step: step.into() });
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}
