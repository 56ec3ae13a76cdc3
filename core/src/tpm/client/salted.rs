//! A salted policy session's two commands (the derivations are `crate::tpm::session`):
//! starting it with an ECDH salt to the storage key, and an Unseal whose command carries the
//! session's HMAC and whose answer is checked and decrypted.

use super::{ecc_point, Error, Tpm, Transport, SE_POLICY};
use crate::tpm::session::{self, SaltCrypto};
use crate::tpm::wire::{self, alg, Cc, Command, Response, TpmError};
use sha2::{Digest, Sha256};

/// A salted policy session: its handle, its session key and the TPM's last nonce.
#[derive(Debug)]
pub struct Salted {
    /// The session's handle.
    pub handle: u32,
    /// The session key (KDFa of the salt and both nonces).
    pub key: Vec<u8>,
    /// The TPM's nonce, for the next command's HMAC.
    pub nonce_tpm: Vec<u8>,
}

impl<T: Transport> Tpm<T> {
    /// Starts a policy session salted to the storage key `srk` (its public area
    /// `srk_public`, a `TPMT_PUBLIC` of an ECC P-256 key), with AES-128-CFB for parameter
    /// encryption.
    pub fn start_salted_session(
        &mut self,
        srk: u32,
        srk_public: &[u8],
        crypto: &mut dyn SaltCrypto,
    ) -> Result<Salted, Error> {
        let (sx, sy) = ecc_point(srk_public).ok_or(TpmError::Malformed {
            cc: Cc::CreatePrimary,
            at: 0,
            what: "the storage key is not an ECC P-256 key",
        })?;
        let agreed = crypto.ecdh_p256(sx, sy).map_err(Error::Crypto)?;
        let salt = session::kdfe(&agreed.z, "SECRET", &agreed.x, sx, 256);
        let mut point = Vec::new();
        for c in [&agreed.x, &agreed.y] {
            point.extend_from_slice(&u16::try_from(c.len()).unwrap_or(0).to_be_bytes());
            point.extend_from_slice(c);
        }
        let nonce_caller = self.random(32)?;
        let bytes = self.run(
            Command::new(Cc::StartAuthSession)
                .handle(srk)
                .handle(wire::RH_NULL)
                .b(&nonce_caller)
                .b(&point)
                .u8(SE_POLICY)
                .u16(alg::AES)
                .u16(128)
                .u16(alg::CFB)
                .u16(alg::SHA256),
        )?;
        let mut r = Response::parse(Cc::StartAuthSession, &bytes, 1)?;
        let nonce_tpm = r.b()?.to_vec();
        Ok(Salted {
            handle: r.handle.unwrap_or(0),
            key: session::kdfa(&salt, "ATH", &nonce_tpm, &nonce_caller, 256),
            nonce_tpm,
        })
    }

    /// Unseals `item` (named `item_name`) with the salted policy session `s`, which ends with
    /// it: the command carries the session's HMAC, the answer is checked by its HMAC and
    /// decrypted.
    pub fn unseal_salted(
        &mut self,
        item: u32,
        item_name: &[u8],
        s: &Salted,
        nonce_caller: &[u8],
        crypto: &dyn SaltCrypto,
    ) -> Result<Vec<u8>, Error> {
        const ENCRYPT: u8 = 0x40;
        let cc = (Cc::Unseal as u32).to_be_bytes();
        let cp_hash: [u8; 32] = Sha256::digest([cc.as_slice(), item_name].concat()).into();
        let command_hmac =
            session::hmac(&s.key, &[&cp_hash, nonce_caller, &s.nonce_tpm, &[ENCRYPT]]);
        let bytes = self.run(Command::new(Cc::Unseal).handle(item).session_with(
            s.handle,
            nonce_caller,
            ENCRYPT,
            &command_hmac,
        ))?;
        let r = Response::parse(Cc::Unseal, &bytes, 0)?;
        let params = r.parameters();
        let (nonce_tpm, attrs, answer_hmac) = r.session_answer()?;
        let rp_hash: [u8; 32] =
            Sha256::digest([&0u32.to_be_bytes()[..], &cc, params].concat()).into();
        let want = session::hmac(&s.key, &[&rp_hash, nonce_tpm, nonce_caller, &[attrs]]);
        if answer_hmac != want {
            return Err(Error::Crypto(
                "the TPM's answer to Unseal does not carry the session's HMAC (changed on the bus?)"
                    .into(),
            ));
        }
        let mut data = params
            .get(2..)
            .ok_or(TpmError::Malformed {
                cc: Cc::Unseal,
                at: 10,
                what: "no outData",
            })?
            .to_vec();
        let kv = session::kdfa(&s.key, "CFB", nonce_tpm, nonce_caller, 256);
        crypto
            .aes128_cfb_decrypt(&kv[..16], &kv[16..32], &mut data)
            .map_err(Error::Crypto)?;
        Ok(data)
    }
}
