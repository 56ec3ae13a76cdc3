//! The formats an image is written in, each checked by its standard tool in the tests: the
//! root tree and its squashfs, the initramfs (cpio), the ESP (FAT), the data partition (ext4),
//! the GPT disk and its block map, and signed UKIs.

pub mod bmap;
pub mod cpio;
pub mod disk;
pub mod esp;
pub mod ext4;
pub mod pcr_policy;
pub mod squashfs;
pub mod tree;
pub mod uki;
