//! A salted policy session (TPM 2.0 Part 1 §19.6, §21): the caller makes an ephemeral P-256
//! key, the salt is the ECDH secret with the storage key run through KDFe, and the session
//! key derived from it (KDFa) authenticates the Unseal command (HMAC) and encrypts its answer
//! (AES-128-CFB). Someone reading the TPM's bus then sees the unsealed key only encrypted
//! under a secret that never crossed it.
//!
//! The key derivations and HMACs are here (SHA-256 only); the elliptic curve and the block
//! cipher are the caller's ([`SaltCrypto`]), so this crate stays free of crypto libraries.

use sha2::{Digest, Sha256};

/// The two primitives a salted session needs from a crypto library.
pub trait SaltCrypto {
    /// A fresh ephemeral P-256 key agreed with the point (`x`, `y`): our public point and the
    /// shared secret's x-coordinate.
    fn ecdh_p256(&mut self, x: &[u8], y: &[u8]) -> Result<EcdhResult, String>;
    /// Decrypts `data` in place with AES-128 in CFB-128 mode.
    fn aes128_cfb_decrypt(&self, key: &[u8], iv: &[u8], data: &mut [u8]) -> Result<(), String>;
}

/// What [`SaltCrypto::ecdh_p256`] gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcdhResult {
    /// Our ephemeral point, x.
    pub x: Vec<u8>,
    /// y.
    pub y: Vec<u8>,
    /// The shared secret (the x-coordinate of the product).
    pub z: Vec<u8>,
}

/// HMAC-SHA256 of the concatenation of `parts`.
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// KDFa (SP 800-108 counter mode with HMAC-SHA256), `bits` of output.
pub fn kdfa(key: &[u8], label: &str, u: &[u8], v: &[u8], bits: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut counter = 1u32;
    while out.len() * 8 < bits as usize {
        out.extend_from_slice(&hmac(
            key,
            &[
                &counter.to_be_bytes(),
                label.as_bytes(),
                &[0],
                u,
                v,
                &bits.to_be_bytes(),
            ],
        ));
        counter += 1;
    }
    out.truncate(bits as usize / 8);
    out
}

/// KDFe (SP 800-56A concatenation KDF with SHA-256), `bits` of output.
pub fn kdfe(z: &[u8], label: &str, u: &[u8], v: &[u8], bits: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut counter = 1u32;
    while out.len() * 8 < bits as usize {
        let mut h = Sha256::new();
        h.update(counter.to_be_bytes());
        h.update(z);
        h.update(label.as_bytes());
        h.update([0]);
        h.update(u);
        h.update(v);
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(bits as usize / 8);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_is_rfc_4231s() {
        // RFC 4231 test case 2.
        assert_eq!(
            hex::encode(hmac(b"Jefe", &[b"what do ya want ", b"for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn kdfs_give_the_asked_length_and_depend_on_every_input() {
        assert_eq!(kdfa(b"k", "ATH", b"u", b"v", 256).len(), 32);
        assert_eq!(kdfa(b"k", "CFB", b"u", b"v", 384).len(), 48);
        assert_ne!(
            kdfa(b"k", "ATH", b"u", b"v", 256),
            kdfa(b"k", "ATH", b"v", b"u", 256)
        );
        assert_eq!(kdfe(b"z", "SECRET", b"u", b"v", 256).len(), 32);
        assert_ne!(
            kdfe(b"z", "SECRET", b"u", b"v", 256),
            kdfe(b"y", "SECRET", b"u", b"v", 256)
        );
    }
}
