//! The image pipeline and its inputs: from a spec, a board and packages to `disk.img`.
//!
//! ```text
//! spec, board, update_spec   the inputs, parsed and checked
//! debian/                    Debian packages: apt, the lock and its resolver, .deb reading, versions
//! compose, kernel, kmod      the root tree and the initramfs's contents
//! write/                     the output formats: tree, squashfs, cpio, ESP, ext4, GPT disk, bmap, UKI
//! build/                     the stages in order, with their report and provenance
//! ```

pub mod agentbin;
pub mod board;
pub mod bootretry;
pub mod build;
pub mod cache;
pub mod compose;
pub mod debian;
pub mod fleet_spec;
pub mod hashing;
pub mod kernel;
pub mod kmod;
pub mod operator_ca;
pub mod packages;
pub mod provenance;
pub mod spec;
pub mod timings;
pub mod tools;
pub mod tzif;
pub mod update_spec;
pub mod write;
