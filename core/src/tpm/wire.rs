//! TPM 2.0 commands and responses as bytes (TPM 2.0 Library, Part 1 §18 and Part 3): the
//! handful stage 1 and the agent send, built and read here so that each is a pure function of
//! its inputs and a fuzzable parser of what a TPM (or anything pretending to be one) answers.
//!
//! Why by hand and not with a marshalling crate: Slate sends eleven commands whose layouts
//! are fixed; this file is their whole wire format, every length read from a response is
//! bounds-checked ([`Reader`]), and swtpm checks every byte we build in the tests
//! (`tests/src/tpm.rs`). `tpm2-protocol` 1.2 (zero dependencies, no_std) was read and
//! weighed: it models all of TPM 2.0 in 11,600 lines and its major versions still break its
//! API; for eleven commands its types would be most of the code we would have to learn and
//! keep up with, and none of the checking we need would go away.

/// `TPM_ST_NO_SESSIONS`.
const ST_NO_SESSIONS: u16 = 0x8001;
/// `TPM_ST_SESSIONS`.
const ST_SESSIONS: u16 = 0x8002;
/// `TPM_RS_PW`: the password session (an empty password here).
pub const RS_PW: u32 = 0x4000_0009;
/// `TPM_RH_OWNER`: the storage hierarchy the primary key lives in.
pub const RH_OWNER: u32 = 0x4000_0001;
/// `TPM_RH_NULL`.
pub const RH_NULL: u32 = 0x4000_0007;
/// `TPM_RH_ENDORSEMENT`: where the attestation key lives.
pub const RH_ENDORSEMENT: u32 = 0x4000_000B;

/// Command codes (Part 2 §6.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Cc {
    /// TPM2_NV_Increment.
    NvIncrement = 0x0000_0134,
    /// TPM2_NV_DefineSpace.
    NvDefineSpace = 0x0000_012A,
    /// TPM2_Create.
    Create = 0x0000_0153,
    /// TPM2_Load.
    Load = 0x0000_0157,
    /// TPM2_Quote.
    Quote = 0x0000_0158,
    /// TPM2_Unseal.
    Unseal = 0x0000_015E,
    /// TPM2_CreatePrimary.
    CreatePrimary = 0x0000_0131,
    /// TPM2_FlushContext.
    FlushContext = 0x0000_0165,
    /// TPM2_LoadExternal.
    LoadExternal = 0x0000_0167,
    /// TPM2_NV_Read.
    NvRead = 0x0000_014E,
    /// TPM2_NV_ReadPublic.
    NvReadPublic = 0x0000_0169,
    /// TPM2_NV_Write.
    NvWrite = 0x0000_0137,
    /// TPM2_PolicyAuthorize.
    PolicyAuthorize = 0x0000_016A,
    /// TPM2_PolicyNV.
    PolicyNv = 0x0000_0149,
    /// TPM2_StartAuthSession.
    StartAuthSession = 0x0000_0176,
    /// TPM2_VerifySignature.
    VerifySignature = 0x0000_0177,
    /// TPM2_PolicyPCR.
    PolicyPcr = 0x0000_017F,
    /// TPM2_GetRandom.
    GetRandom = 0x0000_017B,
    /// TPM2_PCR_Read.
    PcrRead = 0x0000_017E,
    /// TPM2_PCR_Extend.
    PcrExtend = 0x0000_0182,
    /// TPM2_PolicyGetDigest.
    PolicyGetDigest = 0x0000_0189,
}

/// A command being built: header, handles, the authorisation area, parameters.
#[derive(Debug)]
pub struct Command {
    cc: Cc,
    handles: Vec<u8>,
    auth: Vec<u8>,
    sessions: usize,
    params: Vec<u8>,
}

impl Command {
    /// A command with nothing in it yet.
    pub fn new(cc: Cc) -> Command {
        Command {
            cc,
            handles: Vec::new(),
            auth: Vec::new(),
            sessions: 0,
            params: Vec::new(),
        }
    }

    /// Adds a handle to the handle area.
    pub fn handle(mut self, h: u32) -> Command {
        self.handles.extend_from_slice(&h.to_be_bytes());
        self
    }

    /// Authorises the next handle with the empty password (`TPM_RS_PW`).
    pub fn password(self) -> Command {
        self.session(RS_PW, 0x01)
    }

    /// Authorises with `session` (a policy session: no HMAC, no nonce of ours), its
    /// attributes as given (`0x01` = continueSession).
    pub fn session(self, session: u32, attributes: u8) -> Command {
        self.session_with(session, &[], attributes, &[])
    }

    /// Authorises with `session`, our `nonce`, its `attributes` and the command's `hmac`.
    pub fn session_with(
        mut self,
        session: u32,
        nonce: &[u8],
        attributes: u8,
        hmac: &[u8],
    ) -> Command {
        self.auth.extend_from_slice(&session.to_be_bytes());
        self.auth
            .extend_from_slice(&u16::try_from(nonce.len()).unwrap_or(0).to_be_bytes());
        self.auth.extend_from_slice(nonce);
        self.auth.push(attributes);
        self.auth
            .extend_from_slice(&u16::try_from(hmac.len()).unwrap_or(0).to_be_bytes());
        self.auth.extend_from_slice(hmac);
        self.sessions += 1;
        self
    }

    /// Appends a `u8` parameter.
    pub fn u8(mut self, v: u8) -> Command {
        self.params.push(v);
        self
    }

    /// Appends a `u16` parameter.
    pub fn u16(mut self, v: u16) -> Command {
        self.params.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a `u32` parameter.
    pub fn u32(mut self, v: u32) -> Command {
        self.params.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends raw bytes (an already marshalled structure).
    pub fn raw(mut self, bytes: &[u8]) -> Command {
        self.params.extend_from_slice(bytes);
        self
    }

    /// Appends a `TPM2B`: a `u16` size, then the bytes. Sizes come from our own buffers,
    /// never above 64 KiB; a larger one is cut to what the size can say, which the TPM
    /// refuses.
    pub fn b(self, bytes: &[u8]) -> Command {
        let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
        let end = usize::from(len);
        self.u16(len).raw(&bytes[..end])
    }

    /// The command as sent.
    pub fn bytes(&self) -> Vec<u8> {
        let auth_area = if self.sessions > 0 {
            4 + self.auth.len()
        } else {
            0
        };
        let size = 10 + self.handles.len() + auth_area + self.params.len();
        let mut out = Vec::with_capacity(size);
        let tag = if self.sessions > 0 {
            ST_SESSIONS
        } else {
            ST_NO_SESSIONS
        };
        out.extend_from_slice(&tag.to_be_bytes());
        out.extend_from_slice(&u32::try_from(size).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(&(self.cc as u32).to_be_bytes());
        out.extend_from_slice(&self.handles);
        if self.sessions > 0 {
            out.extend_from_slice(&u32::try_from(self.auth.len()).unwrap_or(0).to_be_bytes());
            out.extend_from_slice(&self.auth);
        }
        out.extend_from_slice(&self.params);
        out
    }
}

/// Why a TPM's answer was not the success we needed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TpmError {
    /// The TPM answered with an error code.
    #[error("{cc:?} failed: TPM_RC {rc:#06x} ({})", describe(*rc))]
    Rc {
        /// The command.
        cc: Cc,
        /// Its response code.
        rc: u32,
    },
    /// The answer was not a TPM 2.0 response.
    #[error("{cc:?}: malformed response at byte {at}: {what}")]
    Malformed {
        /// The command.
        cc: Cc,
        /// Where in the response.
        at: usize,
        /// What was wrong.
        what: &'static str,
    },
}

/// The few response codes worth a word (Part 2 §6.6); the rest print as numbers.
pub fn describe(rc: u32) -> &'static str {
    // Format-one codes carry a parameter/handle/session number in bits 8..11.
    let base = if rc & 0x80 != 0 { rc & 0xBF } else { rc };
    match base {
        0x000 => "success",
        0x100 => "TPM not initialised",
        0x101 => "TPM failure",
        0x126 => "the policy is not satisfied (TPM_RC_POLICY)",
        0x128 => "a PCR changed during the policy (TPM_RC_PCR_CHANGED)",
        0x14A => "the NV index is not written yet",
        0x14C => "the NV index is already defined",
        0x081 => "asymmetric algorithm not supported or not correct",
        0x084 => "a value is out of range (for PolicyAuthorize: the session's policy is not the one signed)",
        0x085 => "hierarchy disabled",
        0x08B => "the handle is not loaded",
        0x08E => "the authorisation failed",
        0x095 => "unsupported size",
        0x09B => "the signature does not verify (TPM_RC_SIGNATURE)",
        0x09D => "policy check failed",
        0x09F => "integrity check failed: sealed by another TPM, or altered (TPM_RC_INTEGRITY)",
        0x0A0 => "the ticket is not valid",
        0x902 => "out of object memory",
        0x903 => "out of session memory",
        0x921 => "dictionary-attack lockout",
        0x922 => "the TPM asks to retry",
        _ => "see TPM 2.0 Part 2 §6.6",
    }
}

/// A response's parameters, read with bounds checks.
#[derive(Debug)]
pub struct Response<'a> {
    cc: Cc,
    bytes: &'a [u8],
    at: usize,
    /// The handles the response starts with (CreatePrimary, Load, LoadExternal,
    /// StartAuthSession return one).
    pub handle: Option<u32>,
    /// Where the parameters are (for a response HMAC), and the authorisation area after them.
    params: std::ops::Range<usize>,
    auth: &'a [u8],
}

impl<'a> Response<'a> {
    /// Checks the header and code of a response to `cc` sent with or without sessions, and
    /// positions the reader at its parameters (after `handles` handles).
    pub fn parse(cc: Cc, bytes: &'a [u8], handles: usize) -> Result<Response<'a>, TpmError> {
        let bad = |at, what| TpmError::Malformed { cc, at, what };
        if bytes.len() < 10 {
            return Err(bad(bytes.len(), "shorter than a response header"));
        }
        let tag = u16::from_be_bytes([bytes[0], bytes[1]]);
        let size = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
        let rc = u32::from_be_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
        if usize::try_from(size).ok() != Some(bytes.len()) {
            return Err(bad(2, "the size field is not the response's length"));
        }
        if rc != 0 {
            return Err(TpmError::Rc { cc, rc });
        }
        let mut r = Response {
            cc,
            bytes,
            at: 10,
            handle: None,
            params: 0..0,
            auth: &[],
        };
        for _ in 0..handles {
            r.handle = Some(r.u32()?);
        }
        match tag {
            ST_SESSIONS => {
                let params = r.u32()?;
                let end = usize::try_from(params)
                    .ok()
                    .and_then(|p| r.at.checked_add(p))
                    .filter(|&end| end <= bytes.len())
                    .ok_or(bad(r.at, "the parameter size is past the end"))?;
                r.bytes = &bytes[..end];
                r.params = r.at..end;
                r.auth = &bytes[end..];
            }
            ST_NO_SESSIONS => r.params = r.at..bytes.len(),
            _ => return Err(bad(0, "not a TPM 2.0 tag")),
        }
        Ok(r)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], TpmError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(TpmError::Malformed {
                cc: self.cc,
                at: self.at,
                what,
            })?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    /// Reads a `u8`.
    pub fn u8(&mut self) -> Result<u8, TpmError> {
        Ok(self.take(1, "a byte past the end")?[0])
    }

    /// Reads a `u16`.
    pub fn u16(&mut self) -> Result<u16, TpmError> {
        let b = self.take(2, "a u16 past the end")?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Reads a `u32`.
    pub fn u32(&mut self) -> Result<u32, TpmError> {
        let b = self.take(4, "a u32 past the end")?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a `TPM2B`'s bytes.
    pub fn b(&mut self) -> Result<&'a [u8], TpmError> {
        let n = self.u16()?;
        self.take(usize::from(n), "a TPM2B past the end")
    }

    /// Reads a `TPM2B` whole, its size included (to hand back to the TPM as it was).
    pub fn b_whole(&mut self) -> Result<&'a [u8], TpmError> {
        let start = self.at;
        self.b()?;
        Ok(&self.bytes[start..self.at])
    }

    /// The parameter area as sent (what a response HMAC covers).
    pub fn parameters(&self) -> &'a [u8] {
        &self.bytes[self.params.clone()]
    }

    /// The first session's answer: its nonce, attributes and HMAC.
    pub fn session_answer(&self) -> Result<(&'a [u8], u8, &'a [u8]), TpmError> {
        let mut a = Response {
            cc: self.cc,
            bytes: self.auth,
            at: 0,
            handle: None,
            params: 0..0,
            auth: &[],
        };
        let nonce = a.b()?;
        let attrs = a.u8()?;
        let hmac = a.b()?;
        Ok((nonce, attrs, hmac))
    }

    /// Reads `n` raw bytes.
    pub fn raw(&mut self, n: usize) -> Result<&'a [u8], TpmError> {
        self.take(n, "bytes past the end")
    }
}

/// `TPM_ALG_*` (Part 2 §6.3).
pub mod alg {
    /// RSA.
    pub const RSA: u16 = 0x0001;
    /// SHA-256.
    pub const SHA256: u16 = 0x000B;
    /// AES.
    pub const AES: u16 = 0x0006;
    /// Keyed hash (a sealed data object).
    pub const KEYEDHASH: u16 = 0x0008;
    /// No algorithm.
    pub const NULL: u16 = 0x0010;
    /// RSASSA-PKCS1-v1_5.
    pub const RSASSA: u16 = 0x0014;
    /// ECDSA.
    pub const ECDSA: u16 = 0x0018;
    /// ECC.
    pub const ECC: u16 = 0x0023;
    /// CFB mode.
    pub const CFB: u16 = 0x0043;
    /// NIST P-256.
    pub const ECC_NIST_P256: u16 = 0x0003;
}

/// `TPMA_OBJECT` bits (Part 2 §8.3).
pub mod attr {
    /// Cannot leave this TPM.
    pub const FIXED_TPM: u32 = 0x0000_0002;
    /// Cannot move to another parent.
    pub const FIXED_PARENT: u32 = 0x0000_0010;
    /// The TPM made the sensitive part.
    pub const SENSITIVE_DATA_ORIGIN: u32 = 0x0000_0020;
    /// Usable with its auth value (not only by policy).
    pub const USER_WITH_AUTH: u32 = 0x0000_0040;
    /// Not subject to dictionary-attack lockout.
    pub const NO_DA: u32 = 0x0000_0400;
    /// Signs only what the TPM made (quotes).
    pub const RESTRICTED: u32 = 0x0001_0000;
    /// A decryption (storage) key.
    pub const DECRYPT: u32 = 0x0002_0000;
    /// A signing key.
    pub const SIGN: u32 = 0x0004_0000;
}

/// A `TPMS_PCR_SELECTION` list with one SHA-256 bank and the PCRs in `pcrs` (below 24).
pub fn pcr_selection(pcrs: &[u32]) -> Vec<u8> {
    let mut select = [0u8; 3];
    for &p in pcrs {
        if let Some(b) = select.get_mut((p / 8) as usize) {
            *b |= 1 << (p % 8);
        }
    }
    let mut out = Vec::with_capacity(10);
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&alg::SHA256.to_be_bytes());
    out.push(3);
    out.extend_from_slice(&select);
    out
}

/// The public area (`TPMT_PUBLIC`) of the storage primary key stage 1 seals under: ECC
/// P-256, restricted decryption, AES-128-CFB for its children — the TCG's standard SRK
/// template, so the same TPM always derives the same key and nothing needs storing.
pub fn srk_template() -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&alg::ECC.to_be_bytes());
    t.extend_from_slice(&alg::SHA256.to_be_bytes());
    let attrs = attr::FIXED_TPM
        | attr::FIXED_PARENT
        | attr::SENSITIVE_DATA_ORIGIN
        | attr::USER_WITH_AUTH
        | attr::NO_DA
        | attr::RESTRICTED
        | attr::DECRYPT;
    t.extend_from_slice(&attrs.to_be_bytes());
    t.extend_from_slice(&0u16.to_be_bytes()); // authPolicy
    t.extend_from_slice(&alg::AES.to_be_bytes());
    t.extend_from_slice(&128u16.to_be_bytes());
    t.extend_from_slice(&alg::CFB.to_be_bytes());
    t.extend_from_slice(&alg::NULL.to_be_bytes()); // scheme
    t.extend_from_slice(&alg::ECC_NIST_P256.to_be_bytes());
    t.extend_from_slice(&alg::NULL.to_be_bytes()); // kdf
    t.extend_from_slice(&0u16.to_be_bytes()); // unique.x
    t.extend_from_slice(&0u16.to_be_bytes()); // unique.y
    t
}

/// The public area of a sealed secret: a keyed-hash data object usable only through
/// `auth_policy` (no `userWithAuth`), fixed to this TPM and its parent.
pub fn sealed_template(auth_policy: &[u8; 32]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&alg::KEYEDHASH.to_be_bytes());
    t.extend_from_slice(&alg::SHA256.to_be_bytes());
    let attrs = attr::FIXED_TPM | attr::FIXED_PARENT | attr::NO_DA;
    t.extend_from_slice(&attrs.to_be_bytes());
    t.extend_from_slice(&32u16.to_be_bytes());
    t.extend_from_slice(auth_policy);
    t.extend_from_slice(&alg::NULL.to_be_bytes()); // scheme
    t.extend_from_slice(&0u16.to_be_bytes()); // unique
    t
}

/// The public area of an RSA public key the TPM only verifies signatures with (the vendor's
/// PCR-signing key): `n` the modulus, `e` its exponent (65537 is written as 0, the default).
pub fn rsa_verify_template(n: &[u8], e: u32) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&alg::RSA.to_be_bytes());
    t.extend_from_slice(&alg::SHA256.to_be_bytes());
    let attrs = attr::USER_WITH_AUTH | attr::SIGN | attr::DECRYPT;
    t.extend_from_slice(&attrs.to_be_bytes());
    t.extend_from_slice(&0u16.to_be_bytes()); // authPolicy
    t.extend_from_slice(&alg::NULL.to_be_bytes()); // symmetric
    t.extend_from_slice(&alg::NULL.to_be_bytes()); // scheme
    let bits = u16::try_from(n.len() * 8).unwrap_or(0);
    t.extend_from_slice(&bits.to_be_bytes());
    let exponent = if e == 65537 { 0 } else { e };
    t.extend_from_slice(&exponent.to_be_bytes());
    let len = u16::try_from(n.len()).unwrap_or(0);
    t.extend_from_slice(&len.to_be_bytes());
    t.extend_from_slice(n);
    t
}

/// The public area of the attestation key: ECC P-256, restricted, signing with ECDSA-SHA256,
/// derived from the endorsement seed so the same TPM always gives the same key.
pub fn attestation_template() -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&alg::ECC.to_be_bytes());
    t.extend_from_slice(&alg::SHA256.to_be_bytes());
    let attrs = attr::FIXED_TPM
        | attr::FIXED_PARENT
        | attr::SENSITIVE_DATA_ORIGIN
        | attr::USER_WITH_AUTH
        | attr::NO_DA
        | attr::RESTRICTED
        | attr::SIGN;
    t.extend_from_slice(&attrs.to_be_bytes());
    t.extend_from_slice(&0u16.to_be_bytes());
    t.extend_from_slice(&alg::NULL.to_be_bytes()); // symmetric
    t.extend_from_slice(&alg::ECDSA.to_be_bytes());
    t.extend_from_slice(&alg::SHA256.to_be_bytes());
    t.extend_from_slice(&alg::ECC_NIST_P256.to_be_bytes());
    t.extend_from_slice(&alg::NULL.to_be_bytes());
    t.extend_from_slice(&0u16.to_be_bytes());
    t.extend_from_slice(&0u16.to_be_bytes());
    t
}

/// An object's name: its name algorithm, then the hash of its public area.
pub fn name_of(public_area: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut name = alg::SHA256.to_be_bytes().to_vec();
    name.extend_from_slice(&Sha256::digest(public_area));
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_has_its_size_tag_and_areas_in_order() {
        let c = Command::new(Cc::PcrExtend)
            .handle(11)
            .password()
            .u32(1)
            .u16(alg::SHA256)
            .raw(&[0xAA; 32]);
        let b = c.bytes();
        assert_eq!(&b[0..2], &[0x80, 0x02]);
        assert_eq!(
            u32::from_be_bytes([b[2], b[3], b[4], b[5]]) as usize,
            b.len()
        );
        assert_eq!(&b[6..10], &0x182u32.to_be_bytes());
        assert_eq!(&b[10..14], &11u32.to_be_bytes());
        // authorizationSize 9: handle, empty nonce, attributes, empty hmac.
        assert_eq!(&b[14..18], &9u32.to_be_bytes());
        assert_eq!(&b[18..22], &RS_PW.to_be_bytes());
        assert_eq!(b.len(), 10 + 4 + 4 + 9 + 4 + 2 + 32);
        let plain = Command::new(Cc::GetRandom).u16(8).bytes();
        assert_eq!(plain, vec![0x80, 0x01, 0, 0, 0, 12, 0, 0, 1, 0x7B, 0, 8]);
    }

    #[test]
    fn responses_are_read_within_their_bounds() {
        // GetRandom, 4 bytes.
        let ok = [0x80, 0x01, 0, 0, 0, 16, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4];
        let mut r = Response::parse(Cc::GetRandom, &ok, 0).unwrap();
        assert_eq!(r.b().unwrap(), &[1, 2, 3, 4]);
        assert!(r.u8().is_err());
        // A TPM2B claiming more than is there.
        let short = [0x80, 0x01, 0, 0, 0, 14, 0, 0, 0, 0, 0xFF, 0xFF, 1, 2];
        let mut r = Response::parse(Cc::GetRandom, &short, 0).unwrap();
        assert!(matches!(r.b(), Err(TpmError::Malformed { at: 12, .. })));
        // A size field that lies, an error code, a short header.
        let lying = [0x80, 0x01, 0, 0, 0, 99, 0, 0, 0, 0];
        assert!(Response::parse(Cc::GetRandom, &lying, 0).is_err());
        let failed = [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x09, 0x8E];
        let e = Response::parse(Cc::Unseal, &failed, 0).unwrap_err();
        assert_eq!(
            e,
            TpmError::Rc {
                cc: Cc::Unseal,
                rc: 0x98E
            }
        );
        assert!(e.to_string().contains("authorisation failed"), "{e}");
        assert!(describe(0x1DF).contains("another TPM"));
        assert!(Response::parse(Cc::Unseal, &[0x80], 0).is_err());
        // A session response whose parameter size runs past the end.
        let past = [0x80, 0x02, 0, 0, 0, 14, 0, 0, 0, 0, 0, 0, 0, 9];
        assert!(Response::parse(Cc::Unseal, &past, 0).is_err());
    }

    #[test]
    fn pcr_selection_sets_one_bit_per_pcr() {
        assert_eq!(&pcr_selection(&[11])[7..], &[0, 0x08, 0]);
        assert_eq!(&pcr_selection(&[7, 11])[7..], &[0x80, 0x08, 0]);
        assert_eq!(&pcr_selection(&[99])[7..], &[0, 0, 0]);
    }
}
