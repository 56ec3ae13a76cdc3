//! What an operator does with images and devices: keys and trust files, signed bundles,
//! pushing them to a device, flashing a disk, and describing either.

pub mod apply;
pub mod attest;
pub mod bundle;
pub mod ca;
pub mod flash;
pub mod inspect;
pub mod keys;
pub mod push;
pub mod repo;
pub mod reset;
pub mod secure_boot;
pub mod tls;
