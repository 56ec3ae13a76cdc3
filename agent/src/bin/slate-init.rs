//! `slate-init`: PID 1 of a Slate device.
//!
//! Run by the kernel as `/init` of the initramfs it is stage 1; stage 1 execs it again from the
//! verified root as `/usr/lib/slate/slate-init --stage2`. On any fatal error it prints
//! `slate: stage1 failed: …` (or `stage2 failed`) and reboots after a short delay, so boot
//! counting can fall back. It never drops to a shell on its own.

use slate_agent::{init::stage1, init::stage2, marker, sys};
use std::time::Duration;

/// Pause before rebooting after a failure, so the message can be read on a console.
const FAIL_DELAY: Duration = Duration::from_secs(5);

fn main() {
    let stage2 = std::env::args().nth(1).as_deref() == Some("--stage2");
    if std::process::id() != 1 {
        eprintln!("slate-init is PID 1 of a Slate device; it does nothing as an ordinary process");
        std::process::exit(2);
    }
    let (which, err) = if stage2 {
        ("stage2", stage2::run())
    } else {
        ("stage1", stage1::run())
    };
    marker::emit(&slate_core::api::Marker::StageFailed {
        stage: which,
        error: format!("{err:#}"),
    });
    std::thread::sleep(FAIL_DELAY);
    let e = sys::halt(sys::Halt::Reboot);
    marker::warn(format!("{which}: {e:#}"));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
