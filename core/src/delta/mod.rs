//! Delta updates (DESIGN §17): a device fetches only the bytes of a release's root image that
//! its running slot does not already hold. Pure: the publisher chunks the new root image
//! ([`chunker`]) and publishes the [`index`]; the device chunks its running slot with the same
//! parameters, and [`plan`] says which ranges to copy from the running slot and which to fetch
//! from the full bundle, and whether the delta is worth it at all.
//!
//! Nothing here is trusted for the result: the index is authenticated by TUF, and what the
//! device writes is checked exactly as a full install is (the signed rootfs sha256, the read
//! back, the verity tree). A wrong or hostile index can only waste bytes.

pub mod chunker;
mod diff;
pub mod index;
pub mod patch;
pub mod plan;

pub use chunker::{chunks, Params};
pub use index::{ChunkIndex, IndexError};
pub use plan::{DeltaPlan, Mode, Op};

/// The chunk index target beside a bundle target (`<bundle>.chunks`). It is found by name in
/// the TUF targets rather than named in `release.json`: agents from before delta updates read
/// `release.json` strictly (unknown fields refused), and a fleet must keep pulling while it
/// is being updated to an agent that knows deltas.
pub fn index_target(bundle_target: &str) -> String {
    format!("{bundle_target}.chunks")
}

/// The chunk index of a bundle's UKI `artifact` (`uki-a.efi`, `uki-b.efi`) beside the bundle
/// target: `<bundle>.chunks.<artifact>`. A format-2 bundle is mostly its two UKIs (the same
/// kernel each time), so a device copies their unchanged stretches from the UKI it boots.
/// Agents that do not know these targets ignore them.
pub fn uki_index_target(bundle_target: &str, artifact: &str) -> String {
    format!("{bundle_target}.chunks.{artifact}")
}

/// The static patch target beside a bundle target for devices running the root image whose
/// verity root hash is `from_root_hash` (hex): `<bundle>.patch-<hash>`, found by name like the
/// index, and only by the devices it was made for.
pub fn patch_target(bundle_target: &str, from_root_hash: &str) -> String {
    format!("{bundle_target}.patch-{from_root_hash}")
}

/// Bytes of a bundle's head a device fetches first to find its root image: a manifest and
/// its signatures take 2–4 KiB (a head that does not fit is fetched again up to
/// [`HEAD_MAX`]).
pub const HEAD_PROBE: u64 = 8 << 10;

/// The longest head a bundle can have: the manifest's and the signatures' entries at their
/// largest, each with its 512-byte header.
pub const HEAD_MAX: u64 = 2 * 512 + crate::manifest::MAX_MANIFEST + crate::manifest::MAX_SIGNATURES;

/// The average chunk size publishers use: 32 KiB keeps the index (about 10.5 bytes a chunk)
/// near 0.03% of the image, under the 0.05% the format aims for.
pub const DEFAULT_AVG: u32 = 32 << 10;

#[cfg(test)]
mod patch_tests;
#[cfg(test)]
mod tests;
