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
//! bin/slate/ the `slate` command line (one module per group of commands)
//! ```
//! Paths say where a module lives (`slate_imager::image::write::squashfs`,
//! `slate_imager::operator::push`): nothing is re-exported under a flat name.

pub mod error;
pub mod image;
pub mod operator;
pub mod progress;
