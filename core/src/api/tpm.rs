//! The TPM as `/v1/status` shows it: whether there is one, whether `/data` is sealed by it,
//! and the values a remote verifier compares with its own (PCR 11 after the boot phases, the
//! epoch index).

use serde::{Deserialize, Serialize};

/// `tpm` in `/v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpmStatus {
    /// The machine has a TPM 2.0 the kernel drives (`/dev/tpmrm0`).
    pub present: bool,
    /// `/data` is encrypted with a key this TPM sealed.
    pub sealed_data: bool,
    /// PCR 11 (SHA-256 bank) now, hex: after "leave-initrd" on a measured image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcr11: Option<String>,
    /// The TPM's security epoch index (`core::tpm::policy::EPOCH_INDEX`), once made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nv_epoch: Option<u64>,
    /// What is wrong, for people: an image that seals `/data` running without a TPM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}
