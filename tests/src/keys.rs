//! The test processes' keys, made once each at run time (never committed): the update
//! signing keys and trust file, and the Secure Boot keys with their enrolled variables.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Test signing keys: two trusted (threshold 2 of 2) and one stranger.
pub struct Keys {
    /// Trusted key 1.
    pub k1: ed25519_dalek::SigningKey,
    /// Trusted key 2.
    pub k2: ed25519_dalek::SigningKey,
    /// Not trusted.
    pub stranger: ed25519_dalek::SigningKey,
    /// The trust file baked into test images.
    pub trust_file: PathBuf,
    /// The same, parsed.
    pub trust: slate_core::manifest::Trust,
}

/// Secure Boot keys made once per test process (`slate sb keygen`), with `OVMF_VARS.fd`
/// (them enrolled, Secure Boot on) and `other/` (a second set whose db the firmware does not
/// hold) in the same folder.
pub fn secure_boot_keys() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("slate-e2e-sb-")
            .tempdir()
            .expect("temp dir")
            .keep();
        slate_imager::operator::secure_boot::keygen(&dir, "Slate test").expect("slate sb keygen");
        slate_imager::operator::secure_boot::vars(
            &dir,
            Path::new(slate_imager::operator::secure_boot::OVMF_VARS_TEMPLATE),
            &dir.join("OVMF_VARS.fd"),
            None,
        )
        .expect("slate sb vars (virt-fw-vars: cargo xtask deps installs it)");
        slate_imager::operator::secure_boot::keygen(&dir.join("other"), "Stranger")
            .expect("keygen");
        // The PCR-signing key the Secure Boot test images sign their PCR 11 policies with.
        let out = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(dir.join("pcr.key"))
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl genpkey: {out:?}");
        dir
    })
}

/// Keys made once per test process.
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = Box::leak(Box::new(
            tempfile::Builder::new()
                .prefix("slate-e2e-keys-")
                .tempdir()
                .expect("temp dir"),
        ));
        let mk = |n: &str| {
            let (private, public, _) =
                slate_imager::operator::keys::keygen(&dir.path().join(n)).expect("keygen");
            (
                slate_imager::operator::keys::load_private(&private).expect("load key"),
                public,
            )
        };
        let ((k1, p1), (k2, p2), (stranger, _)) = (mk("k1"), mk("k2"), mk("stranger"));
        let trust = slate_imager::operator::keys::trust(&[p1, p2], 2).expect("trust");
        let trust_file = dir.path().join("trust.toml");
        std::fs::write(&trust_file, toml::to_string(&trust).expect("toml")).expect("write trust");
        Keys {
            k1,
            k2,
            stranger,
            trust_file,
            trust,
        }
    })
}
