//! Why a manifest, a signature file or a trust file was refused: one error type for the
//! manifest's family of files, so a refusal names the file and field at fault.

use super::{FORMAT, FORMAT_UKI};
use crate::version::Version;

/// Why a manifest, signature file or trust file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// Not valid TOML of the expected shape.
    #[error("{file}: {why}")]
    Parse {
        /// Which file.
        file: &'static str,
        /// Parser message (names the field).
        why: String,
    },
    /// Too large.
    #[error("{file} is {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// Which file.
        file: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A format this code does not know.
    #[error(
        "manifest format {0} is not supported (this agent reads formats {FORMAT} and {FORMAT_UKI})"
    )]
    Format(u32),
    /// Artifact list is not the expected one.
    #[error("a format-{format} manifest's artifacts must be exactly {expected:?} in that order, with verity parameters on rootfs.img alone: {why}")]
    Artifacts {
        /// The manifest's format.
        format: u32,
        /// The artifacts that format carries.
        expected: [&'static str; 3],
        /// What is wrong.
        why: String,
    },
    /// Too few good signatures from trusted keys.
    #[error("{good} valid signature(s) from trusted keys, {threshold} required ({detail})")]
    Threshold {
        /// Valid trusted signatures.
        good: usize,
        /// Needed.
        threshold: usize,
        /// What was seen.
        detail: String,
    },
    /// The trust file is unusable.
    #[error("trust file: {0}")]
    Trust(String),
    /// Product or board differ.
    #[error("bundle is for {what} {bundle:?}, this device is {device:?}")]
    Incompatible {
        /// "product" or "board".
        what: &'static str,
        /// Bundle's value.
        bundle: String,
        /// Device's value.
        device: String,
    },
    /// Not newer than what runs.
    #[error("bundle version {bundle} is not newer than the running {running} (downgrades and reinstalls are refused)")]
    NotNewer {
        /// Bundle's version.
        bundle: Version,
        /// Running version.
        running: Version,
    },
    /// Below the stored epoch.
    #[error("bundle security epoch {bundle} is below the device's {device} (rollback protection)")]
    Epoch {
        /// Bundle's epoch.
        bundle: u64,
        /// Device's epoch.
        device: u64,
    },
    /// Past its expiry.
    #[error("bundle expired at {expires} (unix seconds); now is {now}")]
    Expired {
        /// Expiry.
        expires: i64,
        /// Now.
        now: i64,
    },
    /// The version failed before and its back-off has not run (or its failures are final).
    #[error("version {0} failed its health checks before on this device; it is not installed again unless forced, or once the back-off in the status's failed[].retry_at has passed (none: its failures are final)")]
    PreviouslyFailed(Version),
    /// A channel's signed release offered one version and the bundle's own signed manifest
    /// says another: whoever signed the release pointed at the wrong bundle (or at an old one
    /// under a new name), and the device installs only what it was offered.
    #[error(
        "the channel offered version {offered}, but the bundle's signed manifest says {bundle}"
    )]
    NotOffered {
        /// The version the release named.
        offered: Version,
        /// The bundle's own.
        bundle: Version,
    },
}
