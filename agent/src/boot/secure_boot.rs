//! What the firmware and the kernel say about UEFI Secure Boot on this boot.
//!
//! With Secure Boot on, the firmware ran only a UKI signed by its db, and systemd-stub used
//! the command line inside it: the root hash stage 1 verifies the root against is
//! authenticated. Stage 1 prints what it found, and the agent reports it in its status.

/// The EFI global variable namespace (`SecureBoot` lives there).
const GLOBAL_GUID: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// Where the kernel reports its lockdown mode (securityfs).
pub const LOCKDOWN: &str = "/sys/kernel/security/lockdown";

/// The value of the `SecureBoot` variable as efivarfs returns it (4 bytes of attributes, then
/// one byte): None when it is not a one-byte boolean.
pub fn parse_secure_boot(var: &[u8]) -> Option<bool> {
    match var {
        [_, _, _, _, v] => Some(*v == 1),
        _ => None,
    }
}

/// The selected lockdown mode from the kernel's `none [integrity] confidentiality`.
pub fn parse_lockdown(text: &str) -> Option<&str> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
}

/// True when the firmware has Secure Boot on (false when the variable is missing: no UEFI
/// Secure Boot support, or efivarfs is not mounted).
pub fn enabled() -> bool {
    std::fs::read(format!(
        "/sys/firmware/efi/efivars/SecureBoot-{GLOBAL_GUID}"
    ))
    .ok()
    .and_then(|v| parse_secure_boot(&v))
    .unwrap_or(false)
}

/// The kernel's lockdown mode, or `unknown` when securityfs does not say.
pub fn lockdown() -> String {
    std::fs::read_to_string(LOCKDOWN)
        .ok()
        .and_then(|t| parse_lockdown(&t).map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// The public key of a Secure Boot image's db certificate ([`slate_core::config::paths::SECURE_BOOT_DB`]),
/// as an `RSAPublicKey` (DER): a bundle's UKIs must be signed by it, since the firmware
/// refuses anything else.
pub fn db_key() -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let path = format!("/{}", slate_core::config::paths::SECURE_BOOT_DB);
    let pem = std::fs::read(&path).with_context(|| format!("reading {path}"))?;
    let cert = CertificateDer::from_pem_slice(&pem)
        .map_err(|e| anyhow::anyhow!("{path}: not a PEM certificate: {e}"))?;
    let key = slate_core::authenticode::rsa_public_key(&cert).with_context(|| path.clone())?;
    Ok(key.to_vec())
}

/// RSA PKCS#1 v1.5 with SHA-256, as the firmware checks a UKI's signature
/// ([`slate_core::authenticode::RsaVerify`]): the algorithm the agent's TLS stack verifies
/// certificates with (AWS-LC through rustls, which `deny.toml` lets carry it).
pub fn rsa_verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    provider
        .signature_verification_algorithms
        .mapping
        .iter()
        .filter(|(scheme, _)| *scheme == rustls::SignatureScheme::RSA_PKCS1_SHA256)
        .flat_map(|(_, algorithms)| algorithms.iter())
        .any(|a| a.verify_signature(public_key, message, signature).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_variable_and_the_lockdown_mode() {
        assert_eq!(parse_secure_boot(&[6, 0, 0, 0, 1]), Some(true));
        assert_eq!(parse_secure_boot(&[6, 0, 0, 0, 0]), Some(false));
        assert_eq!(parse_secure_boot(&[6, 0, 0, 0]), None);
        assert_eq!(
            parse_lockdown("none [integrity] confidentiality\n"),
            Some("integrity")
        );
        assert_eq!(
            parse_lockdown("[none] integrity confidentiality"),
            Some("none")
        );
        assert_eq!(parse_lockdown(""), None);
    }
}
