//! The TPM 2.0 operations Slate needs, over any [`Transport`]: the kernel's resource manager
//! (`/dev/tpmrm0`) on a device, swtpm's socket in the tests. Each operation here is one
//! command; the salted session is `salted`, and the flows that matter (seal at enrolment,
//! the epoch index, unseal by a signed policy) are `signed`.

mod salted;
mod signed;

pub use salted::Salted;

use super::policy;
use super::wire::{self, alg, Cc, Command, Response, TpmError};
use sha2::{Digest, Sha256};

/// Something that carries a command to a TPM and brings its whole response back.
pub trait Transport {
    /// Sends `command`, returns the response.
    fn transact(&mut self, command: &[u8]) -> std::io::Result<Vec<u8>>;
}

/// Why a TPM operation did not give what it was for.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The transport failed (no TPM, a driver error).
    #[error("talking to the TPM: {0}")]
    Io(#[from] std::io::Error),
    /// The TPM refused or answered nonsense.
    #[error(transparent)]
    Tpm(#[from] TpmError),
    /// No policy in the image's `.pcrsig` was signed for this PCR 11 value.
    #[error("no signed policy in this image is for PCR 11 = {pcr11} (this image's UKI was changed after signing, or a phase was extended twice)")]
    NoPolicyForPcr {
        /// The PCR's value now, hex.
        pcr11: String,
    },
    /// The `.pcrsig` entry does not decode.
    #[error("the signed policy is malformed: {0}")]
    BadSignature(String),
    /// The TPM's epoch index is above this image's epoch: a newer image was committed.
    #[error("this image's security epoch {epoch} is below the TPM's floor {floor}: a newer image was committed on this device, and the TPM will not unseal /data for an older one")]
    BelowTpmFloor {
        /// This image's epoch.
        epoch: u64,
        /// The index's value.
        floor: u64,
    },
    /// The epoch index is missing or unwritten although a key was sealed on this TPM.
    #[error("the TPM's epoch index is gone although /data was sealed on this TPM: it was deleted (to let an older image unseal?); /data stays locked, and the recovery is a factory reset")]
    IndexGone,
    /// The epoch index exists with another public area (another vendor key made it).
    #[error("the TPM's epoch index {index:#010x} was made for another vendor key; clear the TPM (which also loses /data) to use it with this one")]
    ForeignIndex {
        /// The index.
        index: u32,
    },
    /// The session's cryptography failed, or the TPM's answer was not authentic.
    #[error("the salted session: {0}")]
    Crypto(String),
    /// The public key in the image is not the one the secret was sealed to.
    #[error("the image's PCR-signing key is not the key /data was sealed to: this image was signed by another vendor key")]
    OtherKey,
}

/// A secret sealed by this TPM: what it hands back at `Create`, stored on disk as is. Both
/// parts are `TPM2B`s, size included.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sealed {
    /// `TPM2B_PRIVATE`: encrypted by the storage key, useless to any other TPM.
    pub private: Vec<u8>,
    /// `TPM2B_PUBLIC`: carries the policy that unseals it.
    pub public: Vec<u8>,
}

/// A TPM reached through a transport.
#[derive(Debug)]
pub struct Tpm<T: Transport> {
    transport: T,
}

/// `TPM_SE_POLICY`.
const SE_POLICY: u8 = 0x01;
/// `TPM_ST_VERIFIED`: a VerifySignature ticket's tag.
const ST_VERIFIED: u16 = 0x8022;

impl<T: Transport> Tpm<T> {
    /// A TPM on `transport`.
    pub fn new(transport: T) -> Tpm<T> {
        Tpm { transport }
    }

    fn run(&mut self, c: Command) -> Result<Vec<u8>, Error> {
        Ok(self.transport.transact(&c.bytes())?)
    }

    /// `n` random bytes from the TPM's generator.
    pub fn random(&mut self, n: usize) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let want = u16::try_from((n - out.len()).min(32)).unwrap_or(32);
            let bytes = self.run(Command::new(Cc::GetRandom).u16(want))?;
            let mut r = Response::parse(Cc::GetRandom, &bytes, 0)?;
            let got = r.b()?;
            if got.is_empty() {
                return Err(TpmError::Malformed {
                    cc: Cc::GetRandom,
                    at: 10,
                    what: "no random bytes",
                }
                .into());
            }
            out.extend_from_slice(got);
        }
        out.truncate(n);
        Ok(out)
    }

    /// Extends SHA-256 bank PCR `pcr` with the SHA-256 of `data` (as systemd-pcrphase does
    /// with a phase word).
    pub fn extend(&mut self, pcr: u32, data: &[u8]) -> Result<(), Error> {
        let digest = Sha256::digest(data);
        let bytes = self.run(
            Command::new(Cc::PcrExtend)
                .handle(pcr)
                .password()
                .u32(1)
                .u16(alg::SHA256)
                .raw(&digest),
        )?;
        Response::parse(Cc::PcrExtend, &bytes, 0)?;
        Ok(())
    }

    /// SHA-256 bank PCR `pcr` now.
    pub fn read_pcr(&mut self, pcr: u32) -> Result<[u8; 32], Error> {
        let bytes = self.run(Command::new(Cc::PcrRead).raw(&wire::pcr_selection(&[pcr])))?;
        let mut r = Response::parse(Cc::PcrRead, &bytes, 0)?;
        let _update_counter = r.u32()?;
        let banks = r.u32()?;
        for _ in 0..banks {
            let _hash = r.u16()?;
            let n = r.u8()?;
            r.raw(usize::from(n))?;
        }
        let count = r.u32()?;
        let value = if count == 1 { r.b()? } else { &[][..] };
        value.try_into().map_err(|_| {
            Error::Tpm(TpmError::Malformed {
                cc: Cc::PcrRead,
                at: 10,
                what: "not one SHA-256 PCR value (is the SHA-256 bank active?)",
            })
        })
    }

    /// Creates a primary key in the owner hierarchy from `template` and returns its handle
    /// and public area (the same TPM and template always give the same key).
    pub fn create_primary(
        &mut self,
        hierarchy: u32,
        template: &[u8],
    ) -> Result<(u32, Vec<u8>), Error> {
        let bytes = self.run(
            Command::new(Cc::CreatePrimary)
                .handle(hierarchy)
                .password()
                .raw(&[0, 4, 0, 0, 0, 0]) // inSensitive: no auth, no data
                .b(template)
                .u16(0) // outsideInfo
                .u32(0), // creationPCR
        )?;
        let mut r = Response::parse(Cc::CreatePrimary, &bytes, 1)?;
        let public = r.b()?.to_vec();
        Ok((r.handle.unwrap_or(0), public))
    }

    /// Forgets a loaded object or session.
    pub fn flush(&mut self, handle: u32) -> Result<(), Error> {
        let bytes = self.run(Command::new(Cc::FlushContext).u32(handle))?;
        Response::parse(Cc::FlushContext, &bytes, 0)?;
        Ok(())
    }

    /// Seals `secret` under the storage primary key so that only a session satisfying
    /// `policy` can unseal it.
    pub fn seal(&mut self, secret: &[u8], policy: &[u8; 32]) -> Result<Sealed, Error> {
        let (srk, _) = self.create_primary(wire::RH_OWNER, &wire::srk_template())?;
        let mut sensitive = Vec::new();
        sensitive.extend_from_slice(&0u16.to_be_bytes());
        sensitive.extend_from_slice(&u16::try_from(secret.len()).unwrap_or(0).to_be_bytes());
        sensitive.extend_from_slice(secret);
        let result = self
            .run(
                Command::new(Cc::Create)
                    .handle(srk)
                    .password()
                    .b(&sensitive)
                    .b(&wire::sealed_template(policy))
                    .u16(0)
                    .u32(0),
            )
            .and_then(|bytes| {
                let mut r = Response::parse(Cc::Create, &bytes, 0)?;
                Ok(Sealed {
                    private: r.b_whole()?.to_vec(),
                    public: r.b_whole()?.to_vec(),
                })
            });
        self.flush(srk)?;
        result
    }

    /// Loads an RSA public key to verify signatures with; returns its handle and name.
    pub fn load_verify_key(&mut self, n: &[u8], e: u32) -> Result<(u32, Vec<u8>), Error> {
        let bytes = self.run(
            Command::new(Cc::LoadExternal)
                .u16(0) // no private part
                .b(&wire::rsa_verify_template(n, e))
                .u32(wire::RH_OWNER),
        )?;
        let mut r = Response::parse(Cc::LoadExternal, &bytes, 1)?;
        let name = r.b()?.to_vec();
        Ok((r.handle.unwrap_or(0), name))
    }

    /// Has the TPM check an RSASSA-SHA256 signature of `digest` by `key`; returns the ticket
    /// (`TPMT_TK_VERIFIED`) that proves it to `PolicyAuthorize`.
    pub fn verify_signature(
        &mut self,
        key: u32,
        digest: &[u8; 32],
        signature: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let bytes = self.run(
            Command::new(Cc::VerifySignature)
                .handle(key)
                .b(digest)
                .u16(alg::RSASSA)
                .u16(alg::SHA256)
                .b(signature),
        )?;
        let mut r = Response::parse(Cc::VerifySignature, &bytes, 0)?;
        let tag = r.u16()?;
        let hierarchy = r.u32()?;
        let ticket_digest = r.b()?;
        if tag != ST_VERIFIED {
            return Err(TpmError::Malformed {
                cc: Cc::VerifySignature,
                at: 10,
                what: "not a verification ticket",
            }
            .into());
        }
        let mut ticket = tag.to_be_bytes().to_vec();
        ticket.extend_from_slice(&hierarchy.to_be_bytes());
        ticket.extend_from_slice(
            &u16::try_from(ticket_digest.len())
                .unwrap_or(0)
                .to_be_bytes(),
        );
        ticket.extend_from_slice(ticket_digest);
        Ok(ticket)
    }

    /// Starts a policy session (unsalted, unbound, SHA-256).
    pub fn start_policy_session(&mut self) -> Result<u32, Error> {
        let nonce = self.random(16)?;
        let bytes = self.run(
            Command::new(Cc::StartAuthSession)
                .handle(wire::RH_NULL)
                .handle(wire::RH_NULL)
                .b(&nonce)
                .u16(0) // encryptedSalt
                .u8(SE_POLICY)
                .u16(alg::NULL) // symmetric
                .u16(alg::SHA256),
        )?;
        let r = Response::parse(Cc::StartAuthSession, &bytes, 1)?;
        Ok(r.handle.unwrap_or(0))
    }

    /// Binds `session` to the current value of SHA-256 PCR `pcr`.
    pub fn policy_pcr(&mut self, session: u32, pcr: u32) -> Result<(), Error> {
        let bytes = self.run(
            Command::new(Cc::PolicyPcr)
                .handle(session)
                .u16(0) // pcrDigest: the TPM uses the current value
                .raw(&wire::pcr_selection(&[pcr])),
        )?;
        Response::parse(Cc::PolicyPcr, &bytes, 0)?;
        Ok(())
    }

    /// Replaces `session`'s digest, which must equal `approved`, by "authorised by the key
    /// named `key_name`", proven by `ticket`.
    pub fn policy_authorize(
        &mut self,
        session: u32,
        approved: &[u8; 32],
        policy_ref: &[u8],
        key_name: &[u8],
        ticket: &[u8],
    ) -> Result<(), Error> {
        let bytes = self.run(
            Command::new(Cc::PolicyAuthorize)
                .handle(session)
                .b(approved)
                .b(policy_ref)
                .b(key_name)
                .raw(ticket),
        )?;
        Response::parse(Cc::PolicyAuthorize, &bytes, 0)?;
        Ok(())
    }

    /// Loads `sealed` under `parent`.
    pub fn load(&mut self, parent: u32, sealed: &Sealed) -> Result<u32, Error> {
        let bytes = self.run(
            Command::new(Cc::Load)
                .handle(parent)
                .password()
                .raw(&sealed.private)
                .raw(&sealed.public),
        )?;
        let r = Response::parse(Cc::Load, &bytes, 1)?;
        Ok(r.handle.unwrap_or(0))
    }

    /// Unseals `item` with `session` (which ends with it).
    pub fn unseal(&mut self, item: u32, session: u32) -> Result<Vec<u8>, Error> {
        let bytes = self.run(Command::new(Cc::Unseal).handle(item).session(session, 0))?;
        let mut r = Response::parse(Cc::Unseal, &bytes, 0)?;
        Ok(r.b()?.to_vec())
    }

    /// Binds `session` to "the 8-byte value of `index` ≤ `bound`", reading the index with
    /// owner authorisation.
    pub fn policy_nv_at_most(&mut self, session: u32, index: u32, bound: u64) -> Result<(), Error> {
        let (operand, offset, op) = policy::policy_nv_operands(bound);
        let bytes = self.run(
            Command::new(Cc::PolicyNv)
                .handle(wire::RH_OWNER)
                .handle(index)
                .handle(session)
                .password()
                .b(&operand)
                .u16(offset)
                .u16(op),
        )?;
        Response::parse(Cc::PolicyNv, &bytes, 0)?;
        Ok(())
    }

    /// An NV index's public area (`TPMS_NV_PUBLIC`), None when it is not defined.
    pub fn nv_public(&mut self, index: u32) -> Result<Option<Vec<u8>>, Error> {
        let bytes = self.run(Command::new(Cc::NvReadPublic).handle(index))?;
        match Response::parse(Cc::NvReadPublic, &bytes, 0) {
            Ok(mut r) => Ok(Some(r.b()?.to_vec())),
            // TPM_RC_HANDLE on the first handle: no such index.
            Err(TpmError::Rc { rc, .. }) if rc & 0xBF == 0x8B => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Defines an NV index (owner authorisation, no auth value of its own).
    pub fn nv_define(&mut self, public: &[u8]) -> Result<(), Error> {
        let bytes = self.run(
            Command::new(Cc::NvDefineSpace)
                .handle(wire::RH_OWNER)
                .password()
                .u16(0)
                .b(public),
        )?;
        Response::parse(Cc::NvDefineSpace, &bytes, 0)?;
        Ok(())
    }

    /// The 8-byte big-endian value of `index`, read with owner authorisation.
    pub fn nv_read_u64(&mut self, index: u32) -> Result<u64, Error> {
        let bytes = self.run(
            Command::new(Cc::NvRead)
                .handle(wire::RH_OWNER)
                .handle(index)
                .password()
                .u16(8)
                .u16(0),
        )?;
        let mut r = Response::parse(Cc::NvRead, &bytes, 0)?;
        let data: [u8; 8] = r.b()?.try_into().map_err(|_| TpmError::Malformed {
            cc: Cc::NvRead,
            at: 10,
            what: "not 8 bytes",
        })?;
        Ok(u64::from_be_bytes(data))
    }

    /// Writes `value` to `index` under `session`, which ends with it.
    pub(super) fn nv_write_u64(
        &mut self,
        index: u32,
        session: u32,
        value: u64,
    ) -> Result<(), Error> {
        let bytes = self.run(
            Command::new(Cc::NvWrite)
                .handle(index)
                .handle(index)
                .session(session, 0)
                .b(&value.to_be_bytes())
                .u16(0),
        )?;
        Response::parse(Cc::NvWrite, &bytes, 0)?;
        Ok(())
    }

    /// A quote over [`super::quote::QUOTED_PCRS`] with `nonce`, signed by the attestation
    /// key (a primary key of the endorsement hierarchy: the same TPM always derives the same
    /// one), with the PCR values it covers.
    pub fn quote(&mut self, nonce: &[u8]) -> Result<super::quote::Quote, Error> {
        let (ak, public) =
            self.create_primary(wire::RH_ENDORSEMENT, &wire::attestation_template())?;
        let result = self.quote_with(ak, &public, nonce);
        self.flush(ak)?;
        result
    }

    fn quote_with(
        &mut self,
        ak: u32,
        public: &[u8],
        nonce: &[u8],
    ) -> Result<super::quote::Quote, Error> {
        let bad = |what| TpmError::Malformed {
            cc: Cc::Quote,
            at: 0,
            what,
        };
        let (x, y) = ecc_point(public).ok_or(bad("the attestation key is not an ECC key"))?;
        let bytes = self.run(
            Command::new(Cc::Quote)
                .handle(ak)
                .password()
                .b(nonce)
                .u16(alg::ECDSA)
                .u16(alg::SHA256)
                .raw(&wire::pcr_selection(&super::quote::QUOTED_PCRS)),
        )?;
        let mut r = Response::parse(Cc::Quote, &bytes, 0)?;
        let attest = r.b()?.to_vec();
        let (sig_alg, _hash) = (r.u16()?, r.u16()?);
        if sig_alg != alg::ECDSA {
            return Err(bad("not an ECDSA signature").into());
        }
        let (sig_r, sig_s) = (r.b()?.to_vec(), r.b()?.to_vec());
        let mut pcrs = Vec::new();
        for p in super::quote::QUOTED_PCRS {
            pcrs.push(hex::encode(self.read_pcr(p)?));
        }
        Ok(super::quote::Quote {
            attest: hex::encode(attest),
            sig_r: hex::encode(sig_r),
            sig_s: hex::encode(sig_s),
            ak_x: hex::encode(x),
            ak_y: hex::encode(y),
            pcrs,
        })
    }
}

/// The point (x, y) of an ECC `TPMT_PUBLIC` (the storage key's or the attestation key's):
/// after type, nameAlg, attributes, authPolicy, then the symmetric definition, scheme and KDF,
/// each an algorithm followed by its details unless it is `TPM_ALG_NULL`.
fn ecc_point(public: &[u8]) -> Option<(&[u8], &[u8])> {
    let u16_at = |at: usize| Some(u16::from_be_bytes([*public.get(at)?, *public.get(at + 1)?]));
    if u16_at(0)? != alg::ECC {
        return None;
    }
    let mut at = 10 + usize::from(u16_at(8)?);
    // symmetric: alg [keyBits mode]; scheme: alg [hash]; curve; kdf: alg [hash].
    at += if u16_at(at)? == alg::NULL { 2 } else { 6 };
    at += if u16_at(at)? == alg::NULL { 2 } else { 4 };
    at += 2;
    at += if u16_at(at)? == alg::NULL { 2 } else { 4 };
    let mut take = || -> Option<&[u8]> {
        let n = usize::from(u16_at(at)?);
        let v = public.get(at + 2..at + 2 + n)?;
        at += 2 + n;
        Some(v)
    };
    let x = take()?;
    let y = take()?;
    Some((x, y))
}

/// The `authPolicy` of a sealed object's `TPM2B_PUBLIC` (as [`wire::sealed_template`] lays it
/// out), None if it is not one.
pub fn sealed_policy(public: &[u8]) -> Option<[u8; 32]> {
    // size(2) type(2) nameAlg(2) attributes(4) authPolicy size(2) = 32, then the digest.
    let size = public.get(10..12)?;
    if size != [0, 32] {
        return None;
    }
    public.get(12..44)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_point_is_found_in_both_key_layouts() {
        for template in [wire::srk_template(), wire::attestation_template()] {
            let mut public = template[..template.len() - 4].to_vec();
            for c in [[1u8; 32], [2u8; 32]] {
                public.extend_from_slice(&32u16.to_be_bytes());
                public.extend_from_slice(&c);
            }
            assert_eq!(ecc_point(&public), Some((&[1u8; 32][..], &[2u8; 32][..])));
            assert_eq!(ecc_point(&public[..40]), None);
        }
        assert_eq!(ecc_point(&wire::sealed_template(&[0; 32])), None);
    }

    #[test]
    fn the_sealed_policy_is_read_back_from_the_template() {
        let policy = [7u8; 32];
        let t = wire::sealed_template(&policy);
        let mut public = u16::try_from(t.len()).unwrap().to_be_bytes().to_vec();
        public.extend_from_slice(&t);
        assert_eq!(sealed_policy(&public), Some(policy));
        assert_eq!(sealed_policy(&public[..20]), None);
        assert_eq!(sealed_policy(&[]), None);
    }
}
