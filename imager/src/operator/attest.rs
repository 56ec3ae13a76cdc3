//! `slate attest`: asks a device for a TPM quote over a fresh nonce and checks it — the
//! attestation key's ECDSA signature (ring), the nonce, the reported PCR values against the
//! signed digest, PCR 11 against what the image's UKI gives after both boot phases, and,
//! when given, PCR 7 and the attestation key an operator pinned.
//!
//! The attestation key is a primary key of the TPM's endorsement hierarchy with no
//! manufacturer certificate checked here: pin it (`--ak`) the first time you see a device.

use crate::operator::push::Device;
use anyhow::{anyhow, bail, Context, Result};
use slate_core::tpm::quote::{self, Quote};
use slate_core::tpm::{self, Section};
use std::path::Path;

/// What a checked quote showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    /// PCR 7, hex.
    pub pcr7: String,
    /// PCR 11, hex.
    pub pcr11: String,
    /// SHA-256 of the attestation key's point (x then y), hex: what `--ak` pins.
    pub ak: String,
}

/// What the verifier expects.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// PCR 11 (from [`pcr11_of_uki`]).
    pub pcr11: Option<String>,
    /// PCR 7.
    pub pcr7: Option<String>,
    /// The attestation key's fingerprint.
    pub ak: Option<String>,
}

/// PCR 11 of a device that booted the UKI at `uki` and went through stage 1 (both phases).
pub fn pcr11_of_uki(uki: &Path) -> Result<String> {
    let bytes = std::fs::read(uki).with_context(|| format!("reading {}", uki.display()))?;
    let pe = slate_core::pe::Pe::parse(&bytes)
        .map_err(|e| anyhow!("{}: not a UKI: {e}", uki.display()))?;
    let mut sections = Vec::new();
    for (s, name) in [
        (Section::Linux, ".linux"),
        (Section::Osrel, ".osrel"),
        (Section::Cmdline, ".cmdline"),
        (Section::Initrd, ".initrd"),
        (Section::Pcrpkey, ".pcrpkey"),
    ] {
        if let Some(data) = pe.section(&bytes, name) {
            sections.push((s, data));
        }
    }
    if !sections.iter().any(|(s, _)| *s == Section::Pcrpkey) {
        bail!("{}: no .pcrpkey: not a measured-boot UKI", uki.display());
    }
    Ok(hex::encode(tpm::pcr11(
        &sections,
        &[tpm::ENTER_INITRD, tpm::LEAVE_INITRD],
    )))
}

/// Checks `q`, answered for `nonce`, against `want`.
pub fn verify(q: &Quote, nonce: &[u8], want: &Expected) -> Result<Attested> {
    let field = |name: &str, h: &str| -> Result<Vec<u8>> {
        hex::decode(h).map_err(|_| anyhow!("the quote's {name} is not hex"))
    };
    let pad = |v: Vec<u8>| -> Result<Vec<u8>> {
        if v.len() > 32 {
            bail!("a P-256 value longer than 32 bytes");
        }
        let mut out = vec![0u8; 32 - v.len()];
        out.extend_from_slice(&v);
        Ok(out)
    };
    let (x, y) = (pad(field("ak_x", &q.ak_x)?)?, pad(field("ak_y", &q.ak_y)?)?);
    let mut point = vec![0x04];
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    let mut sig = pad(field("sig_r", &q.sig_r)?)?;
    sig.extend(pad(field("sig_s", &q.sig_s)?)?);
    let attest = field("attest", &q.attest)?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &point)
        .verify(&attest, &sig)
        .map_err(|_| anyhow!("the quote's signature does not verify with its attestation key"))?;
    let ak = hex::encode(slate_core::Digest32::of(&[x, y].concat()).as_bytes());
    if let Some(pinned) = &want.ak {
        if !pinned.eq_ignore_ascii_case(&ak) {
            bail!("the quote was signed by attestation key {ak}, not the pinned {pinned}");
        }
    }
    let v = quote::check(q, nonce, want.pcr11.as_deref())?;
    if let Some(pcr7) = &want.pcr7 {
        if !pcr7.eq_ignore_ascii_case(&v.pcr7) {
            bail!("PCR 7 is {}, expected {pcr7}", v.pcr7);
        }
    }
    Ok(Attested {
        pcr7: v.pcr7,
        pcr11: v.pcr11,
        ak,
    })
}

/// Asks `dev` for a quote over a fresh random nonce and verifies it.
pub fn attest(dev: &Device, want: &Expected) -> Result<Attested> {
    let mut nonce = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| anyhow!("no randomness for the nonce"))?;
    let q = dev.quote(&nonce)?;
    verify(&q, &nonce, want)
}
