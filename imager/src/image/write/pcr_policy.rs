//! Signed PCR policies for measured boot (`[tpm] pcr_key`): each slot's UKI carries the public
//! key (`.pcrpkey`, measured into PCR 11 with the rest) and the vendor's signature of the
//! `TPM2_PolicyPCR` digest for the PCR 11 value the UKI gives at the "enter-initrd" phase
//! (`.pcrsig`, systemd's JSON, not measured). A secret sealed under "PolicyAuthorize by this
//! key" then unseals for any UKI the vendor signed this way, and for nothing else.
//!
//! The key is RSA-2048 (a TPM cannot check ed25519), used through `openssl` as the db key is
//! through `sbsign`: it never enters the image. PKCS#1 v1.5 signatures are deterministic, so
//! `systemd-measure sign` with the same key gives the same bytes — the tests' oracle.

use crate::image::tools;
use anyhow::{bail, Context, Result};
use slate_core::tpm::{self, PcrSig, PolicySignature, Section};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The spec's `[tpm]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmSpec {
    /// The PCR-signing private key, RSA-2048 PEM (relative to the spec; never in the image).
    pub pcr_key: PathBuf,
    /// `/data` encrypted with a key the TPM seals to the policies `pcr_key` signs (default):
    /// a stolen disk reveals nothing. `false` keeps `/data` plain ext4.
    #[serde(default = "sealed_by_default")]
    pub seal_data: bool,
    /// Without a TPM the image refuses to start (and the device falls back); by default it
    /// starts with `/data` plain and says so.
    #[serde(default)]
    pub required: bool,
}

fn sealed_by_default() -> bool {
    true
}

/// A loaded PCR-signing key: where its private half is, and its public half as it goes into
/// the UKI.
#[derive(Debug, Clone)]
pub struct PcrSigner {
    key: PathBuf,
    public_pem: String,
    /// SHA-256 of its PKCS#1 `RSAPublicKey`, hex.
    pkfp: String,
    /// Its name in a TPM (what the policies of a sealed `/data` are authorised by).
    tpm_name: Vec<u8>,
}

/// RSA-2048's modulus, in bytes.
const RSA_2048_MODULUS: usize = 256;

impl PcrSigner {
    /// Reads the private key at `key` and derives its public half; refuses anything but an
    /// RSA-2048 key, naming the file.
    pub fn load(key: &Path) -> Result<PcrSigner> {
        if !key.is_file() {
            bail!(
                "[tpm] pcr_key {} does not exist (make one: openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out {})",
                key.display(),
                key.display()
            );
        }
        let out = tools::run(
            Command::new(tools::find("openssl", "openssl")?)
                .args(["pkey", "-pubout", "-in"])
                .arg(key),
            "reading the PCR-signing key",
        )
        .with_context(|| format!("[tpm] pcr_key {}: not a PEM private key", key.display()))?
        .stdout;
        let public_pem = String::from_utf8(out)
            .with_context(|| format!("{}: its public key is not text", key.display()))?;
        let pkcs1 = tpm::rsa_public_key_der(&public_pem).map_err(|e| {
            anyhow::anyhow!(
                "[tpm] pcr_key {}: {e} (a TPM checks RSA-2048 or ECDSA P-256; Slate signs with RSA-2048)",
                key.display()
            )
        })?;
        let (n, e) = tpm::rsa_public_numbers(&pkcs1)
            .map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
        let modulus = n.len();
        if modulus != RSA_2048_MODULUS {
            bail!(
                "[tpm] pcr_key {}: an RSA key of {} bits; a TPM's policy signatures are checked with RSA-2048",
                key.display(),
                modulus * 8
            );
        }
        Ok(PcrSigner {
            key: key.to_path_buf(),
            pkfp: hex::encode(slate_core::Digest32::of(&pkcs1).as_bytes()),
            public_pem,
            tpm_name: tpm::policy::vendor_key_name(&n, e),
        })
    }

    /// The public key as the `.pcrpkey` section holds it (PEM).
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// The `.pcrsig` of a UKI whose measured sections are `sections` (its `.pcrpkey` among
    /// them), for PCR 11 at "enter-initrd". Without `sealed_epoch`: the one policy systemd
    /// signs (PolicyPCR). With it (a sealed `/data`): the unseal policy (the TPM's epoch
    /// index ≤ this epoch, then PolicyPCR) and the epoch index's write policy (PolicyPCR,
    /// under its own policyRef) — never a bare PolicyPCR that could unseal, or an older image
    /// could ignore the epoch.
    pub fn sign(
        &self,
        sections: &[(Section, &[u8])],
        scratch: &Path,
        sealed_epoch: Option<u64>,
    ) -> Result<PcrSig> {
        let pcr = tpm::pcr11(sections, &[tpm::ENTER_INITRD]);
        let pcr_only = tpm::policy_pcr(tpm::PCR_KERNEL_BOOT, &pcr);
        let policies: Vec<([u8; 32], &[u8])> = match sealed_epoch {
            None => vec![(pcr_only, b"")],
            Some(epoch) => vec![
                (tpm::policy::unseal_policy(&self.tpm_name, epoch, &pcr), b""),
                (pcr_only, tpm::policy::EPOCH_WRITE_REF),
            ],
        };
        std::fs::create_dir_all(scratch)?;
        let mut sha256 = Vec::new();
        for (pol, policy_ref) in policies {
            let signed = scratch.join("policy.bin");
            std::fs::write(&signed, [pol.as_slice(), policy_ref].concat())?;
            let sig = tools::run(
                Command::new(tools::find("openssl", "openssl")?)
                    .args(["dgst", "-sha256", "-sign"])
                    .arg(&self.key)
                    .arg(&signed),
                "signing the PCR policy",
            )?
            .stdout;
            sha256.push(PolicySignature {
                pcrs: vec![tpm::PCR_KERNEL_BOOT],
                pkfp: self.pkfp.clone(),
                pol: hex::encode(pol),
                sig: tpm::base64_encode(&sig),
                policy_ref: String::from_utf8_lossy(policy_ref).into_owned(),
            });
        }
        Ok(PcrSig { sha256 })
    }
}
