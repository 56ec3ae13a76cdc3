//! `slate-qemu`: boots Slate disk images in QEMU (OVMF + the image's systemd-boot) for
//! `cargo xtask qemu`, the benchmarks and the end-to-end tests.
//!
//! It finds the firmware and gives each VM a private copy of the UEFI variable store, chooses
//! the accelerator (`SLATE_ACCEL=kvm|tcg|auto`; auto falls back to TCG when KVM cannot run
//! OVMF, as on nested "PVM" hosts), forwards the agent's port to a free loopback port, adds
//! an i6300esb watchdog and `isa-debug-exit`, passes fw_cfg strings, and captures the serial
//! console with host timestamps. A running machine can be saved to files and resumed from
//! them (the gauntlet resumes one healthy machine for every random cut). A `Vm` kills its
//! QEMU when dropped (also on a test panic)
//! and QEMU dies with the thread that started it, so no process outlives its test.

mod cmdline;
mod config;
mod limit;
mod machine;
mod nbd;
mod ports;
mod serial;
mod snapshot;
mod tpm;
mod vm;

pub use config::{DiskModel, NicModel, VmConfig};
pub use machine::GuestArch;
pub use machine::{Accel, Firmware};
pub use nbd::{Loss, NbdDisk};
pub use serial::Line;
pub use snapshot::Snapshot;
pub use vm::Vm;
