//! What a device that boots Unified Kernel Images checks of a bundle's UKI before it writes a
//! byte of the update, and what `slate verify` checks on the host.
//!
//! The bundle's manifest is signed by the operators' ed25519 keys; on a Secure Boot image the
//! UKI is signed by the db key the firmware trusts too. They must agree, or the device would
//! install an update its firmware refuses (a failed boot) or one whose command line is not
//! the one the manifest signed:
//! - on a Secure Boot image, the UKI's Authenticode signature is by the image's db certificate
//!   ([`crate::authenticode`], the firmware's own check); a measured-boot image without Secure
//!   Boot boots UKIs its firmware does not check (the manifest's sha256 covers them, and the
//!   TPM unseals `/data` only for a PCR 11 the vendor signed), so that step is skipped there;
//! - its `.cmdline` is exactly the slot, the manifest's root hash and options
//!   ([`crate::cmdline::BootParams::options`]), since systemd-stub passes it as it is and
//!   stage 1 verifies the root against that hash;
//! - its `.osrel` names the manifest's version and the slot, since systemd-boot orders entries
//!   by `IMAGE_VERSION` and the agent finds its own entry by the file name that carries them.

use crate::authenticode::{self, AuthenticodeError, RsaVerify};
use crate::cmdline::BootParams;
use crate::layout::Slot;
use crate::manifest::Manifest;
use crate::pe::Pe;

/// Why a bundle's UKI is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UkiError {
    /// Not signed by the db certificate (or not a signed PE image at all).
    #[error("{name}: {source}")]
    Signature {
        /// The artifact.
        name: String,
        /// Why.
        source: AuthenticodeError,
    },
    /// A section a UKI must have is missing.
    #[error("{name} has no {section} section: it is not a unified kernel image")]
    MissingSection {
        /// The artifact.
        name: String,
        /// The section.
        section: &'static str,
    },
    /// The signed command line is not the one the manifest describes.
    #[error("{name}: its signed command line is {found:?}, but the manifest's slot, root hash and options make {expected:?}")]
    Cmdline {
        /// The artifact.
        name: String,
        /// The UKI's `.cmdline`.
        found: String,
        /// What the manifest makes.
        expected: String,
    },
    /// The os-release does not name the manifest's version or the slot.
    #[error("{name}: its os-release has {field}={found:?}, the manifest says {expected:?}")]
    OsRelease {
        /// The artifact.
        name: String,
        /// The os-release field.
        field: &'static str,
        /// What the UKI says.
        found: String,
        /// What it must say.
        expected: String,
    },
}

/// The section text with the NULs and line ends a linker or tool may pad it with removed.
fn text(pe: &Pe, file: &[u8], name: &str, section: &'static str) -> Result<String, UkiError> {
    let bytes = pe
        .section(file, section)
        .ok_or_else(|| UkiError::MissingSection {
            name: name.to_string(),
            section,
        })?;
    Ok(String::from_utf8_lossy(bytes)
        .trim_end_matches(['\0', '\n', ' '])
        .to_string())
}

/// The key a Secure Boot image's UKIs must be signed by, and the RSA check to use.
#[derive(Clone, Copy)]
pub struct DbKey<'a> {
    /// The db certificate's public key (an `RSAPublicKey`, [`authenticode::rsa_public_key`]).
    pub public_key: &'a [u8],
    /// The RSA verification (AWS-LC on the device, ring on the host).
    pub rsa: RsaVerify<'a>,
}

/// Checks the UKI `file` that the bundle of `manifest` carries for `slot`: signed by `db`
/// (a Secure Boot image; None for an image whose firmware does not check), command line and
/// os-release as the manifest says.
pub fn check(
    file: &[u8],
    slot: Slot,
    manifest: &Manifest,
    db: Option<DbKey<'_>>,
) -> Result<(), UkiError> {
    let name = crate::manifest::uki_artifact(slot).to_string();
    let signature = |source| UkiError::Signature {
        name: name.clone(),
        source,
    };
    let pe = Pe::parse(file).map_err(|e| signature(e.into()))?;
    if let Some(db) = db {
        authenticode::verify_parsed(file, &pe, db.public_key, db.rsa).map_err(signature)?;
    }
    if let Some(verity) = manifest.rootfs().and_then(|r| r.verity.clone()) {
        let expected = BootParams { slot, verity }.options(&manifest.options);
        let found = text(&pe, file, &name, ".cmdline")?;
        if found.trim() != expected {
            return Err(UkiError::Cmdline {
                name,
                found,
                expected,
            });
        }
    }
    let osrel = text(&pe, file, &name, ".osrel")?;
    let version = manifest.version.to_string();
    let slot_name = slot.to_string();
    for (field, expected) in [("IMAGE_VERSION", &version), ("SLATE_SLOT", &slot_name)] {
        let found = crate::osrelease::OsRelease::field(&osrel, field);
        if found != expected.as_str() {
            return Err(UkiError::OsRelease {
                name,
                field,
                found: found.to_string(),
                expected: expected.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsigned_file_is_refused_before_anything_else() {
        let m = crate::manifest::Manifest {
            format: crate::manifest::FORMAT_UKI,
            product: "p".into(),
            board: "b".into(),
            version: "1.0.0".parse().unwrap(),
            security_epoch: 0,
            created: 0,
            expires: None,
            options: String::new(),
            artifacts: Vec::new(),
        };
        let never = |_: &[u8], _: &[u8], _: &[u8]| true;
        let db = DbKey {
            public_key: &[],
            rsa: &never,
        };
        let e = check(b"not a PE file", Slot::B, &m, Some(db)).unwrap_err();
        assert!(matches!(e, UkiError::Signature { .. }), "{e}");
        assert!(e.to_string().starts_with("uki-b.efi: "), "{e}");
        // Without Secure Boot, a file that is not a PE image is refused all the same.
        let e = check(b"not a PE file", Slot::B, &m, None).unwrap_err();
        assert!(e.to_string().starts_with("uki-b.efi: "), "{e}");
    }
}
