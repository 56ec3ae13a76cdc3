//! `slate`: build, flash and inspect Slate images.
//!
//! Exit codes: 0 success; 1 failure (I/O, a host tool, a damaged image); 2 usage error;
//! 3 bad input (spec, board, package, output folder) that the user must fix.

use anyhow::Result;
use clap::{Parser, Subcommand};
use slate_imager::error::BuildError;
use std::process::ExitCode;

mod build;
mod bundle;
mod device;
mod lock;
mod repo;
mod sb;

use device::CaCommand;

/// Documented exit codes.
#[repr(u8)]
enum Exit {
    Failure = 1,
    BadInput = 3,
}

#[derive(Parser)]
#[command(name = "slate", version, about = "Build, flash and inspect Slate A/B images with a dm-verity root", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a disk image and its parts from an image spec.
    ///
    /// Writes rootfs.img, vmlinuz, initrd.img, disk.img, disk.img.bmap and build.toml into OUT.
    /// Needs no root. Every package (the root's, the board's kernel and boot loader) comes from
    /// image.lock beside the spec and the cache `slate fetch` fills; a spec with no packages
    /// and no lock takes the board's from --debs.
    Build(build::BuildArgs),
    /// Resolve the spec's Debian packages and their dependencies into image.lock.
    ///
    /// Downloads the suite's package lists ([debian] in the spec) for the board's
    /// architecture with a private apt configuration (never the host's apt state; no root),
    /// picks what apt would install, and writes image.lock beside the spec: every package's
    /// name, version, architecture, size and sha256. Commit the lock.
    Lock {
        #[command(flatten)]
        target: lock::SpecTarget,
    },
    /// Download exactly the files image.lock names into the cache, checking each sha256.
    Fetch {
        #[command(flatten)]
        target: lock::SpecTarget,
    },
    /// Write a disk image to a device or file: only mapped blocks, each checked by sha256.
    Flash(build::FlashArgs),
    /// Make an ed25519 signing key pair: NAME.pem (private, 0600) and NAME.pub.pem.
    Keygen(bundle::KeygenArgs),
    /// Make a trust file (k of n public keys) for an image to bake in.
    Trust(bundle::TrustArgs),
    /// Make a signed update bundle from a build folder.
    ///
    /// A Secure Boot build (one with signed UKIs) gives a format-2 bundle: uki-a.efi,
    /// uki-b.efi, then rootfs.img; any other build a format-1 bundle: rootfs.img, vmlinuz,
    /// initrd.img.
    Bundle(bundle::BundleArgs),
    /// Add a signature to a bundle in place.
    Sign(bundle::SignArgs),
    /// Check a bundle offline the way a device would.
    Verify(bundle::VerifyArgs),
    /// Send a bundle to a device's agent; with --wait, follow it to commit or rollback.
    ///
    /// The device is reached over mutual TLS: --identity presents the operator's certificate,
    /// and the device's certificate must match the fingerprint pinned on first contact (or
    /// given with --fingerprint). Exit status 0 only when the update was installed (and, with
    /// --wait, committed).
    Push(device::PushArgs),
    /// Apply the update staged on a device (`slate push --stage`, or one waiting for its
    /// maintenance window or its application's consent) now, and reboot it into it.
    ///
    /// Applying needs no network on the device: the update is in its idle slot, verified.
    /// Outside a maintenance window this is an operator's override (logged and counted);
    /// the application is still asked unless --now.
    Apply(device::ApplyArgs),
    /// Show a device's status (slots, versions, health, last update) over mutual TLS.
    Status(device::StatusArgs),
    /// Check a device's TPM quote: a fresh nonce, the attestation key's signature, PCR 11
    /// against what an image's UKI gives after stage 1 (and PCR 7, the key, when given).
    Attest(device::AttestArgs),
    /// Factory-reset a device: wipe /data (keeping its identity unless --new-identity, its
    /// security and clock floors, the TUF root it trusts and the operators' CRL) and reboot.
    /// Needs the operator roles reboot and force.
    Reset(device::ResetArgs),
    /// The operator CA whose certificate an image trusts, and the certificates it issues.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// The update channel's TUF repository: init, refresh, rotate-root, status.
    Repo {
        #[command(subcommand)]
        command: repo::RepoCommand,
    },
    /// Offer a signed bundle to devices through a repository, in waves; or set max_version.
    Publish(repo::PublishArgs),
    /// UEFI Secure Boot: make a fleet's PK, KEK and db keys, and enrol them.
    Sb {
        #[command(subcommand)]
        command: sb::SbCommand,
    },
    /// Compute a dm-verity tree for DATA and write it to HASH (for benchmarks and debugging).
    #[command(hide = true)]
    VerityFormat(build::VerityFormatArgs),
    /// Show a disk image (partitions, slots, boot entries) or a bundle (manifest, signers).
    Inspect(build::InspectArgs),
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Build(args) => build::build(args),
        Command::Flash(args) => build::flash(args),
        Command::Keygen(args) => bundle::keygen(args),
        Command::Trust(args) => bundle::trust(args),
        Command::Bundle(args) => bundle::bundle(args),
        Command::Sign(args) => bundle::sign(args),
        Command::Verify(args) => bundle::verify(args),
        Command::Push(args) => device::push(args),
        Command::Apply(args) => device::apply(args),
        Command::Status(args) => device::status(args),
        Command::Attest(args) => device::attest(args),
        Command::Reset(args) => device::reset(args),
        Command::VerityFormat(args) => build::verity_format(args),
        Command::Lock { target } => lock::lock(&target),
        Command::Fetch { target } => lock::fetch(&target),
        Command::Ca { command } => command.run(),
        Command::Repo { command } => command.run(),
        Command::Publish(args) => args.run(),
        Command::Sb { command } => command.run(),
        Command::Inspect(args) => build::inspect(args),
    }
}

fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;
    let text = std::env::var("SLATE_LOG").unwrap_or_else(|_| "warn".into());
    let filter = text
        .parse::<tracing_subscriber::filter::Targets>()
        .unwrap_or_else(|e| {
            eprintln!("warning: SLATE_LOG={text:?}: {e}; logging at warn");
            tracing_subscriber::filter::Targets::new().with_default(tracing::Level::WARN)
        });
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer));
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let code = if e.chain().any(|c| c.is::<BuildError>()) {
                Exit::BadInput
            } else {
                Exit::Failure
            };
            ExitCode::from(code as u8)
        }
    }
}
