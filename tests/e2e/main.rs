//! End-to-end scenarios: real images booted by real OVMF, systemd-boot and the Debian kernel in
//! QEMU. One module per scenario; every failure message carries the serial log path.
#![allow(clippy::unwrap_used)]

mod apps;
mod arm64;
mod bench_channel;
mod bench_delta;
mod bench_fleet;
mod boot;
mod channel;
mod delta;
mod fleet;
mod gauntlet;
mod hostile;
mod pc;
mod policy;
mod secure_boot;
mod tpm;
mod update;
mod verity;
