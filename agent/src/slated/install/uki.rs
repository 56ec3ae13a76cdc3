//! The updates of an image that boots Unified Kernel Images: the bundle's UKIs.
//!
//! Each slot of such an image boots a UKI whose command line names the slot and the root
//! hash; a Secure Boot image's firmware checks it against db, a measured-boot image's TPM
//! unseals `/data` only for a PCR 11 the vendor signed. A format-2 bundle carries one per
//! slot, before the root image. The agent reads both, checks each as the firmware will
//! ([`slate_core::uki::check`], with AWS-LC for the RSA step of a Secure Boot image) and
//! keeps the idle slot's: a bundle with a UKI the firmware would refuse, or whose command
//! line is not the manifest's, is refused before the idle slot or the ESP is touched. After the root image is written and read back, the UKI goes onto the ESP as the
//! slot's entry, `EFI/Linux/slate-<slot>-<version>+3.efi` (temporary name, sync, rename):
//! systemd-boot counts its tries by renaming it, as with a `.conf` entry.

use crate::slated::install::InstallError;
use anyhow::Result;
use slate_core::bundle::BundleReader;
use slate_core::install as plan;
use slate_core::install::Refusal;
use slate_core::layout::Slot;
use slate_core::manifest::{uki_artifact, Manifest};
use std::io::Read;

/// Reads the bundle's UKIs (the next artifacts of `r`), checks their sha256 against the
/// signed manifest and each against the manifest and `db_key` (a Secure Boot image's; None
/// where the firmware does not check), and returns the one that boots `idle`.
pub fn take<R: Read>(
    r: &mut BundleReader<R>,
    m: &Manifest,
    idle: Slot,
    db_key: Option<&[u8]>,
) -> Result<Vec<u8>, InstallError> {
    let _span = tracing::info_span!("install", step = "check-ukis", slot = %idle).entered();
    let mut keep = None;
    for slot in [Slot::A, Slot::B] {
        let a = m.artifact(uki_artifact(slot)).ok_or_else(|| {
            InstallError::Failed(anyhow::anyhow!(
                "a parsed format-2 manifest without {}",
                uki_artifact(slot)
            ))
        })?;
        plan::expect_artifact(r, a)?;
        // At most MAX_BOOT_ARTIFACT (Manifest::parse); a UKI is about 10 MiB.
        let mut bytes = Vec::with_capacity(slate_core::num::usize_of(a.size));
        let streamed = plan::stream_into_slot(r, a, idle, |c| {
            bytes.extend_from_slice(c);
            Ok::<(), std::convert::Infallible>(())
        })?;
        if let Err(never) = streamed {
            match never {}
        }
        let db = db_key.map(|public_key| slate_core::uki::DbKey {
            public_key,
            rsa: &crate::boot::secure_boot::rsa_verify,
        });
        slate_core::uki::check(&bytes, slot, m, db).map_err(Refusal::Uki)?;
        tracing::info!(artifact = %a.name, bytes = a.size, signed = db.is_some(), "UKI checked: command line and version as the manifest says");
        if slot == idle {
            keep = Some(bytes);
        }
    }
    keep.ok_or_else(|| InstallError::Failed(anyhow::anyhow!("no UKI for slot {idle}")))
}
