//! Signing keys, trust files and signed bundles: `keygen`, `trust`, `bundle`, `sign`, `verify`.

use anyhow::{Context, Result};
use clap::Args;
use slate_imager::operator::{bundle, keys};
use std::path::PathBuf;

/// The arguments of `slate keygen`.
#[derive(Args)]
pub struct KeygenArgs {
    /// Base name of the key files.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `slate keygen`.
pub fn keygen(args: KeygenArgs) -> Result<()> {
    let KeygenArgs { out } = args;
    let (private, public, id) = keys::keygen(&out)?;
    println!(
        "key {id}: private {} (keep it secret), public {}",
        private.display(),
        public.display()
    );
    Ok(())
}

/// The arguments of `slate trust`.
#[derive(Args)]
pub struct TrustArgs {
    /// Public (or private) key PEM files; repeat for several.
    #[arg(long = "key", required = true)]
    pub keys: Vec<PathBuf>,
    /// Valid signatures a bundle needs.
    #[arg(long, default_value_t = 1)]
    pub threshold: usize,
    /// Where to write trust.toml.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `slate trust`.
pub fn trust(args: TrustArgs) -> Result<()> {
    let TrustArgs {
        keys: key_files,
        threshold,
        out,
    } = args;
    let t = keys::trust(&key_files, threshold)?;
    std::fs::write(&out, toml::to_string(&t)?)?;
    println!(
        "{}: {} of {} keys",
        out.display(),
        t.threshold,
        t.keys.len()
    );
    Ok(())
}

/// The arguments of `slate bundle`.
#[derive(Args)]
pub struct BundleArgs {
    /// Output folder of `slate build`.
    #[arg(long)]
    pub build: PathBuf,
    /// Private key(s) to sign with; repeat for several.
    #[arg(long = "key", required = true)]
    pub keys: Vec<PathBuf>,
    /// Anti-rollback epoch: the image's (`slate build --security-epoch`) unless given;
    /// a different one is refused (the manifest and the image must agree).
    #[arg(long)]
    pub security_epoch: Option<u64>,
    /// Devices refuse the bundle after this (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or unix seconds).
    #[arg(long)]
    pub expires: Option<String>,
    /// Bundle file to write (*.slate).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `slate bundle`.
pub fn bundle(args: BundleArgs) -> Result<()> {
    let BundleArgs {
        build,
        keys: key_files,
        security_epoch,
        expires,
        out,
    } = args;
    let signers = key_files
        .iter()
        .map(|k| keys::load_private(k))
        .collect::<Result<Vec<_>>>()?;
    let expires = expires.map(|e| bundle::parse_time(&e)).transpose()?;
    let m = bundle::make(&build, &signers, security_epoch, expires, &out)?;
    println!(
        "{}: {} {} for {}, {} signature(s)",
        out.display(),
        m.product,
        m.version,
        m.board,
        signers.len()
    );
    Ok(())
}

/// The arguments of `slate sign`.
#[derive(Args)]
pub struct SignArgs {
    /// Private key.
    #[arg(long)]
    pub key: PathBuf,
    /// The bundle.
    pub bundle: PathBuf,
}

/// Runs `slate sign`.
pub fn sign(args: SignArgs) -> Result<()> {
    let SignArgs { key, bundle: path } = args;
    let n = bundle::sign(&path, &keys::load_private(&key)?)?;
    println!("{}: now {n} signature(s)", path.display());
    Ok(())
}

/// The arguments of `slate verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// Trust file the device has.
    #[arg(long)]
    pub trust: PathBuf,
    /// Build folder of the image the device runs (adds product, board and version checks).
    #[arg(long, value_name = "BUILD_DIR")]
    pub against: Option<PathBuf>,
    /// The device's security epoch.
    #[arg(long, default_value_t = 0)]
    pub security_epoch: u64,
    /// The db certificate (PEM) of a Secure Boot image: its bundles' UKIs must be signed
    /// by it (needed for such bundles).
    #[arg(long, value_name = "DB_CRT")]
    pub secure_boot_cert: Option<PathBuf>,
    /// The bundle.
    pub bundle: PathBuf,
}

/// Runs `slate verify`.
pub fn verify(args: VerifyArgs) -> Result<()> {
    let VerifyArgs {
        trust,
        against,
        security_epoch,
        secure_boot_cert,
        bundle: path,
    } = args;
    let text =
        std::fs::read_to_string(&trust).with_context(|| format!("reading {}", trust.display()))?;
    let t = slate_core::manifest::Trust::parse(&text)
        .with_context(|| format!("{}", trust.display()))?;
    let facts = against
        .map(|d| bundle::facts_from_build(&d, security_epoch, Vec::new()))
        .transpose()?;
    let m = bundle::verify(&path, &t, facts.as_ref(), secure_boot_cert.as_deref())
        .with_context(|| format!("{} is refused", path.display()))?;
    println!(
        "{}: OK ({} {} for {})",
        path.display(),
        m.product,
        m.version,
        m.board
    );
    Ok(())
}
