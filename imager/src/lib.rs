//! `slate-imager`: the host side of Slate.
//!
//! It turns an image spec (`rootfs/image.toml`) and a board (`boards/*.toml`) into a
//! reproducible, verity-sealed A/B disk image without root: compose the root tree, write it as
//! squashfs, seal it with dm-verity, build the initramfs and the ESP, lay out the GPT disk and
//! its block map. It also flashes images (`slate flash`) and describes them (`slate inspect`).
//! Formats shared with the device live in `slate-core`.

pub mod agentbin;
pub mod bmap;
pub mod board;
pub mod build;
pub mod bundle;
pub mod compose;
pub mod cpio;
pub mod deb;
pub mod disk;
pub mod error;
pub mod esp;
pub mod ext4;
pub mod flash;
pub mod hashing;
pub mod inspect;
pub mod kernel;
pub mod keys;
pub mod kmod;
pub mod progress;
pub mod provenance;
pub mod push;
pub mod spec;
pub mod squashfs;
pub mod timings;
pub mod tools;
pub mod tree;
