//! Cut points for the power-cut gauntlet, in test images only: compiled in with the cargo
//! feature `test-hooks` (test images' agent) and armed by `[agent] test_hooks = true`.
//!
//! The QEMU harness names a step through fw_cfg (`opt/slate/cut-at`); when the agent reaches
//! it, it prints `slate: cut-point <step>` and stops there, so the harness can kill the machine
//! at exactly that moment. A production build has none of this: `cut_point` does nothing and
//! fw_cfg is never read.

use slate_core::api::CutPoint;
use std::sync::OnceLock;

/// Where the harness's string appears in the guest.
pub const FW_CFG: &str = "/sys/firmware/qemu_fw_cfg/by_name/opt/slate/cut-at/raw";

static ARMED: OnceLock<Option<String>> = OnceLock::new();

/// Whether this build has the hooks (the `test-hooks` feature).
pub const COMPILED_IN: bool = cfg!(feature = "test-hooks");

#[cfg(feature = "test-hooks")]
fn asked() -> Option<String> {
    std::fs::read_to_string(FW_CFG)
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(not(feature = "test-hooks"))]
fn asked() -> Option<String> {
    None
}

/// Arms the hooks (call once at start with the image's setting).
pub fn arm(enabled: bool) {
    if enabled && !COMPILED_IN {
        crate::marker::warn(
            "[agent] test_hooks is set, but this agent was built without them (a production build); ignored",
        );
    }
    let _ = ARMED.set(if enabled { asked() } else { None });
}

/// Stops here forever if the harness asked to cut at `step`.
pub fn cut_point(step: CutPoint) {
    if ARMED.get().and_then(|s| s.as_deref()) == Some(step.as_str()) {
        crate::marker::emit(&slate_core::api::Marker::CutPoint { step });
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}
