//! `slate-imager`: the host side of Slate.
//!
//! It turns an image spec (`rootfs/image.toml`) and a board (`boards/*.toml`) into a
//! reproducible, verity-sealed A/B disk image without root: compose the root tree, write it as
//! squashfs, seal it with dm-verity, build the initramfs and the ESP, lay out the GPT disk and
//! its block map. It also makes keys, signs bundles, pushes them to devices, flashes images
//! and describes them. Formats shared with the device live in `slate-core`.
//!
//! ```text
//! image/     the image pipeline and its inputs: spec, board, packages, compose, squashfs,
//!            initramfs (cpio), ESP, ext4, disk, bmap, provenance, build (the stages in order)
//! operator/  what an operator does with images and devices: keys, bundles, push, flash, inspect
//! main.rs    the `slate` command line
//! ```
//! The modules are re-exported at the top (`slate_imager::build`, `slate_imager::push`, …), so
//! their paths do not depend on the folders.

pub mod error;
pub mod image;
pub mod operator;
pub mod progress;

pub use image::{
    agentbin, apt, bmap, board, bootretry, build, cache, compose, cpio, deb, debroot, disk, esp,
    ext4, hashing, kernel, kmod, lock, provenance, spec, squashfs, timings, tools, tree, uki,
};
pub use operator::{bundle, ca, flash, inspect, keys, push, repo, secure_boot, tls};
