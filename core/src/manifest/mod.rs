//! Update manifests (`manifest.toml`), their signatures (`manifest.sig`) and the device's trust
//! file (`/etc/slate/trust.toml`) (DESIGN §7).
//!
//! ```text
//! manifest.toml   format = 1 | 2, product, board, version, security_epoch, created, [expires],
//!                 options (kernel command line), [[artifact]] name size sha256 [verity]
//!                 format 1: rootfs.img, vmlinuz, initrd.img; format 2 (Secure Boot images):
//!                 uki-a.efi, uki-b.efi, rootfs.img
//! manifest.sig    [[signature]] key_id (16 hex), signature (128 hex: ed25519 over the exact
//!                 bytes of manifest.toml)
//! trust.toml      threshold = k, [[key]] id, public_key (64 hex)
//! ```
//! Limits: a manifest is at most 64 KiB and a signature file 16 KiB; both are read whole and
//! only after the signature is checked does anything else of a bundle get read.
//! Verification follows the numbered steps of [`Verifier::verify`].

mod error;
mod format;
mod signatures;
mod trust;
mod verify;

/// The manifest format of bundles for images that boot a kernel and an initramfs through a
/// `.conf` entry.
pub const FORMAT: u32 = 1;

/// The manifest format of bundles for Secure Boot images: each slot boots a signed Unified
/// Kernel Image, so the bundle carries one per slot (the slot and the root hash are in its
/// signed command line) instead of a kernel and an initramfs.
pub const FORMAT_UKI: u32 = 2;

pub use error::ManifestError;
pub use format::{
    uki_artifact, Artifact, Manifest, ARTIFACTS, MAX_BOOT_ARTIFACT, MAX_MANIFEST, MAX_SIGNATURES,
    ROOTFS, UKI_ARTIFACTS,
};
pub use signatures::{key_id, SignatureEntry, Signatures};
pub use trust::{Trust, TrustedKey};
pub use verify::{DeviceFacts, Verifier};

#[cfg(test)]
mod tests;
