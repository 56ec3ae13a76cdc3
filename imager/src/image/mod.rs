//! The image pipeline and its inputs: from a spec, a board and packages to `disk.img`.

pub mod agentbin;
pub mod apt;
pub mod bmap;
pub mod board;
pub mod build;
pub mod cache;
pub mod compose;
pub mod cpio;
pub mod deb;
pub mod debroot;
pub mod debver;
pub mod disk;
pub mod esp;
pub mod ext4;
pub mod hashing;
pub mod kernel;
pub mod kmod;
pub mod lock;
pub mod packages;
pub mod provenance;
pub mod resolve;
pub mod spec;
pub mod squashfs;
pub mod timings;
pub mod tools;
pub mod tree;
