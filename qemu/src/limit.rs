//! How many machines run at once in one process: TCG is CPU-bound, so tests that start VMs
//! in parallel queue here (`SLATE_QEMU_PARALLEL`, default 2).

use std::sync::{Condvar, Mutex};

/// Limits how many VMs run at once in one process (TCG is CPU-bound).
struct Slots {
    used: Mutex<usize>,
    cv: Condvar,
}

static SLOTS: Slots = Slots {
    used: Mutex::new(0),
    cv: Condvar::new(),
};

fn max_parallel() -> usize {
    std::env::var("SLATE_QEMU_PARALLEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(2)
}

/// Held by a running machine; dropping it lets the next one start.
pub(crate) struct SlotGuard;

impl SlotGuard {
    pub(crate) fn take() -> SlotGuard {
        let mut used = SLOTS.used.lock().unwrap_or_else(|p| p.into_inner());
        while *used >= max_parallel() {
            used = SLOTS.cv.wait(used).unwrap_or_else(|p| p.into_inner());
        }
        *used += 1;
        SlotGuard
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut used = SLOTS.used.lock().unwrap_or_else(|p| p.into_inner());
        *used -= 1;
        SLOTS.cv.notify_one();
    }
}
