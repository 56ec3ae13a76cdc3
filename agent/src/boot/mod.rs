//! The boot loader back-end: how a slot becomes bootable, is tried, blessed or marked bad, and
//! how this boot was chosen. Today that is systemd-boot (type-1 entries or UKIs on the ESP,
//! boot counting in file names, its EFI variables); a Raspberry Pi tryboot back-end would
//! implement the same [`BootBackend`].

pub mod efivars;
pub mod esp;
pub mod secure_boot;
