//! `slate-init`, PID 1: stage 1 in the initramfs mounts the verified root and `/data` and
//! switches to it; stage 2 in the real root supervises the image's services until shutdown.

pub mod etc_overrides;
pub mod grow;
pub mod sealed_data;
pub mod stage1;
pub mod stage2;
pub mod supervisor;
pub mod watchdog;
