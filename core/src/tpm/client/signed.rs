//! The flows a vendor's signed policies drive: the epoch index, sealing to the vendor's key,
//! unsealing by the policy signed for this image and this TPM's state.

use super::{sealed_policy, Error, Sealed, Tpm, Transport};
use crate::tpm::session::SaltCrypto;
use crate::tpm::wire;
use crate::tpm::{policy, PolicySignature, PCR_KERNEL_BOOT};

impl<T: Transport> Tpm<T> {
    /// Has the TPM verify the vendor's signature of `approved` with `policy_ref` and applies
    /// `PolicyAuthorize` to `session`.
    fn authorize(
        &mut self,
        session: u32,
        vendor: (&[u8], u32),
        approved: &[u8; 32],
        policy_ref: &[u8],
        entry: &PolicySignature,
    ) -> Result<(), Error> {
        let signature = crate::tpm::base64_decode(&entry.sig)
            .ok_or_else(|| Error::BadSignature("its sig is not base64".into()))?;
        let (key, name) = self.load_verify_key(vendor.0, vendor.1)?;
        let ticket = self.verify_signature(
            key,
            &policy::signed_digest(approved, policy_ref),
            &signature,
        );
        self.flush(key)?;
        self.policy_authorize(session, approved, policy_ref, &name, &ticket?)
    }

    /// Makes sure the epoch index exists, is written, and is this vendor's; returns its value.
    /// Only an enrolment (`enrolling`: no sealed key exists yet) defines it and writes 0 under
    /// the write policy; a power cut between the two is finished by the next enrolment. With
    /// a sealed key, a missing or unwritten index is refused: someone deleted it to make an
    /// older image pass "index ≤ its epoch".
    pub fn epoch_index(
        &mut self,
        vendor: (&[u8], u32),
        signatures: &[PolicySignature],
        enrolling: bool,
    ) -> Result<u64, Error> {
        let name = policy::vendor_key_name(vendor.0, vendor.1);
        let unwritten = policy::epoch_index_public(&name, false);
        let written = policy::epoch_index_public(&name, true);
        match self.nv_public(policy::EPOCH_INDEX)? {
            Some(p) if p == written => {}
            Some(p) if p == unwritten && enrolling => self.raise_epoch(vendor, signatures, 0)?,
            None if enrolling => {
                self.nv_define(&unwritten)?;
                self.raise_epoch(vendor, signatures, 0)?;
            }
            Some(p) if p == unwritten => return Err(Error::IndexGone),
            None => return Err(Error::IndexGone),
            Some(_) => {
                return Err(Error::ForeignIndex {
                    index: policy::EPOCH_INDEX,
                })
            }
        }
        self.nv_read_u64(policy::EPOCH_INDEX)
    }

    /// Writes `value` to the epoch index under the write policy (PolicyPCR at this image's
    /// "enter-initrd", signed with [`policy::EPOCH_WRITE_REF`]). Callers only ever raise it.
    pub fn raise_epoch(
        &mut self,
        vendor: (&[u8], u32),
        signatures: &[PolicySignature],
        value: u64,
    ) -> Result<(), Error> {
        let pcr = self.read_pcr(PCR_KERNEL_BOOT)?;
        let want = policy::policy_pcr(PCR_KERNEL_BOOT, &pcr);
        let reference = String::from_utf8_lossy(policy::EPOCH_WRITE_REF);
        let entry = find(signatures, &want, &reference).ok_or_else(|| Error::NoPolicyForPcr {
            pcr11: hex::encode(pcr),
        })?;
        let s = self.start_policy_session()?;
        let result = self
            .policy_pcr(s, PCR_KERNEL_BOOT)
            .and_then(|()| self.authorize(s, vendor, &want, policy::EPOCH_WRITE_REF, entry))
            .and_then(|()| self.nv_write_u64(policy::EPOCH_INDEX, s, value));
        if result.is_err() {
            let _ = self.flush(s);
        }
        result
    }

    /// Unseals `sealed` by the policy the vendor signed for this image (epoch `epoch`) and the
    /// TPM's state: the epoch index ≤ `epoch`, PCR 11 as signed. Every handle is flushed,
    /// also on failure.
    pub fn unseal_signed(
        &mut self,
        sealed: &Sealed,
        vendor: (&[u8], u32),
        signatures: &[PolicySignature],
        epoch: u64,
        crypto: &mut dyn SaltCrypto,
    ) -> Result<Vec<u8>, Error> {
        let name = policy::vendor_key_name(vendor.0, vendor.1);
        if sealed_policy(&sealed.public) != Some(policy::authorized_policy(&name, b"")) {
            return Err(Error::OtherKey);
        }
        let floor = self.nv_read_u64(policy::EPOCH_INDEX)?;
        if floor > epoch {
            return Err(Error::BelowTpmFloor { epoch, floor });
        }
        let pcr = self.read_pcr(PCR_KERNEL_BOOT)?;
        let want = policy::unseal_policy(&name, epoch, &pcr);
        let entry = find(signatures, &want, "").ok_or_else(|| Error::NoPolicyForPcr {
            pcr11: hex::encode(pcr),
        })?;
        let (srk, srk_public) = self.create_primary(wire::RH_OWNER, &wire::srk_template())?;
        let loaded = self.load(srk, sealed).and_then(|item| {
            match self.start_salted_session(srk, &srk_public, crypto) {
                Ok(salted) => Ok((item, salted)),
                Err(e) => {
                    let _ = self.flush(item);
                    Err(e)
                }
            }
        });
        self.flush(srk)?;
        let (item, salted) = loaded?;
        let item_name = wire::name_of(sealed.public.get(2..).unwrap_or_default());
        let nonce_caller = self.random(32);
        let s = salted.handle;
        let result = nonce_caller
            .and_then(|n| {
                self.policy_nv_at_most(s, policy::EPOCH_INDEX, epoch)?;
                self.policy_pcr(s, PCR_KERNEL_BOOT)?;
                self.authorize(s, vendor, &want, b"", entry)?;
                Ok(n)
            })
            .and_then(|n| self.unseal_salted(item, &item_name, &salted, &n, crypto));
        if result.is_err() {
            let _ = self.flush(s);
        }
        self.flush(item)?;
        result
    }

    /// Whether `sealed` belongs to this TPM: it loads under the storage key (another TPM, or
    /// this one cleared, answers TPM_RC_INTEGRITY).
    pub fn loads(&mut self, sealed: &Sealed) -> Result<(), Error> {
        let (srk, _) = self.create_primary(wire::RH_OWNER, &wire::srk_template())?;
        let item = self.load(srk, sealed);
        self.flush(srk)?;
        self.flush(item?)
    }

    /// Seals `secret` so that only the policies `vendor` signs unseal it.
    pub fn seal_to_vendor(&mut self, secret: &[u8], vendor: (&[u8], u32)) -> Result<Sealed, Error> {
        let name = policy::vendor_key_name(vendor.0, vendor.1);
        self.seal(secret, &policy::authorized_policy(&name, b""))
    }
}

/// The signed entry for `pol` with `policy_ref`, SHA-256 bank, PCR 11.
fn find<'a>(
    signatures: &'a [PolicySignature],
    pol: &[u8; 32],
    policy_ref: &str,
) -> Option<&'a PolicySignature> {
    let pol = hex::encode(pol);
    signatures.iter().find(|s| {
        s.pcrs == [PCR_KERNEL_BOOT]
            && s.policy_ref == policy_ref
            && s.pol.eq_ignore_ascii_case(&pol)
    })
}
