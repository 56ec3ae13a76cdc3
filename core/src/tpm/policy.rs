//! The policy digests Slate signs and satisfies (TPM 2.0 Part 3, each command's "policy
//! update"), computed without a TPM: the imager signs them at build time, stage 1 finds the
//! signed one that matches the TPM's state, and swtpm checks that the TPM computes the same.
//!
//! ```text
//! sealed key's policy   PolicyAuthorize(vendor key, ref "")
//!   signed per UKI:     PolicyNV(epoch index ≤ image epoch) → PolicyPCR(11 = enter-initrd value)
//! epoch index's writes  PolicyAuthorize(vendor key, ref "slate-epoch-write")
//!   signed per UKI:     PolicyPCR(11 = enter-initrd value)
//! ```
//! An older signed UKI's unseal policy says "index ≤ its epoch": once stage 1 of a newer
//! committed image raised the index, the TPM refuses it. Only stage 1 of a signed image (PCR
//! 11 at "enter-initrd") can write the index, and its code only ever raises it.

use super::wire::{self, alg, Cc};
use sha2::{Digest, Sha256};

/// The NV index holding the device's security epoch (owner range, "SL").
pub const EPOCH_INDEX: u32 = 0x0100_534C;
/// The policyRef of the epoch index's write policy, so that it can never unseal.
pub const EPOCH_WRITE_REF: &[u8] = b"slate-epoch-write";

/// `TPMA_NV` bits (Part 2 §13.4).
pub mod nv_attr {
    /// Written under the index's policy.
    pub const POLICYWRITE: u32 = 0x0000_0008;
    /// Read with owner authorisation.
    pub const OWNERREAD: u32 = 0x0002_0000;
    /// Not subject to dictionary-attack lockout.
    pub const NO_DA: u32 = 0x0200_0000;
    /// Set by the TPM once written.
    pub const WRITTEN: u32 = 0x2000_0000;
}

/// `TPM_EO_UNSIGNED_LE`: the index's value ≤ the operand.
const EO_UNSIGNED_LE: u16 = 0x0009;

fn h(parts: &[&[u8]]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for p in parts {
        hash.update(p);
    }
    hash.finalize().into()
}

/// `TPM2_PolicyPCR` over one SHA-256 PCR `pcr` whose value is `value`, after `prev`.
pub fn policy_pcr_after(prev: &[u8; 32], pcr: u32, value: &[u8; 32]) -> [u8; 32] {
    let selection = wire::pcr_selection(&[pcr]);
    h(&[
        prev,
        &(Cc::PolicyPcr as u32).to_be_bytes(),
        &selection,
        &h(&[value]),
    ])
}

/// `TPM2_PolicyPCR` from a fresh session: what systemd-measure signs.
pub fn policy_pcr(pcr: u32, value: &[u8; 32]) -> [u8; 32] {
    policy_pcr_after(&[0; 32], pcr, value)
}

/// `TPM2_PolicyNV`: the 8-byte big-endian value of the index named `nv_name` ≤ `bound`.
pub fn policy_nv_at_most(prev: &[u8; 32], nv_name: &[u8], bound: u64) -> [u8; 32] {
    let args = h(&[
        &bound.to_be_bytes(),
        &0u16.to_be_bytes(),
        &EO_UNSIGNED_LE.to_be_bytes(),
    ]);
    h(&[prev, &(Cc::PolicyNv as u32).to_be_bytes(), &args, nv_name])
}

/// The operands of [`policy_nv_at_most`] as `TPM2_PolicyNV` takes them.
pub fn policy_nv_operands(bound: u64) -> (Vec<u8>, u16, u16) {
    (bound.to_be_bytes().to_vec(), 0, EO_UNSIGNED_LE)
}

/// "PolicyAuthorize by the key named `key_name` with `policy_ref`": what an object is given
/// so that any policy that key signs (with that ref) satisfies it.
pub fn authorized_policy(key_name: &[u8], policy_ref: &[u8]) -> [u8; 32] {
    let first = h(&[
        &[0u8; 32],
        &(Cc::PolicyAuthorize as u32).to_be_bytes(),
        key_name,
    ]);
    h(&[&first, policy_ref])
}

/// What the vendor signs for `approved` with `policy_ref`: `PolicyAuthorize`'s aHash.
pub fn signed_digest(approved: &[u8; 32], policy_ref: &[u8]) -> [u8; 32] {
    h(&[approved, policy_ref])
}

/// The name the TPM gives the vendor's RSA key loaded with [`wire::rsa_verify_template`].
pub fn vendor_key_name(n: &[u8], e: u32) -> Vec<u8> {
    wire::name_of(&wire::rsa_verify_template(n, e))
}

/// The epoch index's public area (`TPMS_NV_PUBLIC`), written or not (the name changes).
pub fn epoch_index_public(vendor_name: &[u8], written: bool) -> Vec<u8> {
    // Not TPMA_NV_POLICY_DELETE: only the platform may set it. The owner (whose
    // authorisation is empty on a device) can delete the index; stage 1 then refuses to make
    // it again while /data has a header (client::Tpm::epoch_index).
    let mut attrs = nv_attr::POLICYWRITE | nv_attr::OWNERREAD | nv_attr::NO_DA;
    if written {
        attrs |= nv_attr::WRITTEN;
    }
    let mut p = EPOCH_INDEX.to_be_bytes().to_vec();
    p.extend_from_slice(&alg::SHA256.to_be_bytes());
    p.extend_from_slice(&attrs.to_be_bytes());
    p.extend_from_slice(&32u16.to_be_bytes());
    p.extend_from_slice(&authorized_policy(vendor_name, EPOCH_WRITE_REF));
    p.extend_from_slice(&8u16.to_be_bytes());
    p
}

/// The written epoch index's name, which `TPM2_PolicyNV` binds.
pub fn epoch_index_name(vendor_name: &[u8]) -> Vec<u8> {
    wire::name_of(&epoch_index_public(vendor_name, true))
}

/// The unseal policy of an image of epoch `epoch` whose PCR 11 at "enter-initrd" is `pcr11`.
pub fn unseal_policy(vendor_name: &[u8], epoch: u64, pcr11: &[u8; 32]) -> [u8; 32] {
    let nv = policy_nv_at_most(&[0; 32], &epoch_index_name(vendor_name), epoch);
    policy_pcr_after(&nv, super::PCR_KERNEL_BOOT, pcr11)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_binding_changes_the_policy() {
        let name = vendor_key_name(&[0xC5; 256], 65537);
        let pcr = [7u8; 32];
        let base = unseal_policy(&name, 3, &pcr);
        assert_ne!(base, unseal_policy(&name, 4, &pcr));
        assert_ne!(base, unseal_policy(&name, 3, &[8u8; 32]));
        assert_ne!(
            base,
            unseal_policy(&vendor_key_name(&[0xC6; 256], 65537), 3, &pcr)
        );
        assert_ne!(
            authorized_policy(&name, b""),
            authorized_policy(&name, EPOCH_WRITE_REF)
        );
        assert_ne!(
            epoch_index_public(&name, true),
            epoch_index_public(&name, false)
        );
    }
}
