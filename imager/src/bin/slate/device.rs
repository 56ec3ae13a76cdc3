//! The operator side of the CLI: how `slate push` and `slate status` reach and trust a
//! device, and `slate ca`.

use anyhow::Result;
use clap::{Args, Subcommand};
use slate_imager::progress::Progress;
use std::path::PathBuf;

/// How to reach and trust a device (`slate push`, `slate status`).
#[derive(clap::Args)]
pub struct AccessArgs {
    /// Operator certificate pair NAME (NAME.crt.pem and NAME.key.pem, from `slate ca issue`).
    #[arg(long, value_name = "NAME")]
    identity: Option<PathBuf>,
    /// The device's certificate fingerprint (sha256:…, from its console), instead of pinning
    /// it on first contact.
    #[arg(long, value_name = "sha256:HEX")]
    fingerprint: Option<slate_core::Fingerprint>,
    /// Known-devices file [default: $SLATE_KNOWN_DEVICES, or ~/.config/slate/known_devices].
    #[arg(long, value_name = "FILE")]
    known_devices: Option<PathBuf>,
}

impl AccessArgs {
    pub fn access(self) -> slate_imager::operator::push::Access {
        slate_imager::operator::push::Access {
            identity: self.identity,
            fingerprint: self.fingerprint,
            known_devices: self.known_devices,
        }
    }
}

#[derive(Subcommand)]
pub enum CaCommand {
    /// Make an operator CA: NAME.crt.pem (bake it into images) and NAME.key.pem (0600, keep
    /// it offline).
    Init {
        /// Base name of the files.
        #[arg(long, value_name = "NAME")]
        out: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "Slate operator CA")]
        name: String,
    },
    /// Issue an operator certificate: OUT.crt.pem and OUT.key.pem (0600).
    Issue {
        /// The CA pair NAME (NAME.crt.pem, NAME.key.pem).
        #[arg(long, value_name = "NAME")]
        ca: PathBuf,
        /// Who it is for (the certificate's common name, shown in the device's log).
        #[arg(long)]
        name: String,
        /// Days it is valid.
        #[arg(long, default_value_t = slate_imager::operator::ca::OPERATOR_DAYS)]
        days: u32,
        /// Base name of the files.
        #[arg(long, value_name = "NAME")]
        out: PathBuf,
    },
}

impl CaCommand {
    /// `slate ca init` and `slate ca issue`.
    pub fn run(self) -> Result<()> {
        match self {
            CaCommand::Init { out, name } => {
                let (crt, key) = slate_imager::operator::ca::init(&out, &name)?;
                println!(
                    "operator CA: certificate {} (bake into images: --operators), key {} (keep it offline)",
                    crt.display(),
                    key.display()
                );
            }
            CaCommand::Issue {
                ca,
                name,
                days,
                out,
            } => {
                let (crt, key) = slate_imager::operator::ca::issue(&ca, &name, days, &out)?;
                println!(
                    "operator certificate for {name:?}, valid {days} days: {} and {} (use with --identity {})",
                    crt.display(),
                    key.display(),
                    out.display()
                );
            }
        }
        Ok(())
    }
}

/// The arguments of `slate push`.
#[derive(Args)]
pub struct PushArgs {
    /// The agent, e.g. https://10.0.0.7:8080 (http:// for an insecure_http image).
    #[arg(long)]
    pub device: String,
    #[command(flatten)]
    pub access: AccessArgs,
    /// Removed (the bearer token is gone): use --identity.
    #[arg(long, hide = true)]
    pub token: Option<String>,
    /// Follow the device through its reboot to the outcome.
    #[arg(long, conflicts_with = "no_reboot")]
    pub wait: bool,
    /// Install but do not reboot (the new slot is tried at the next reboot).
    #[arg(long)]
    pub no_reboot: bool,
    /// With --wait: seconds to wait for the outcome.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
    /// The bundle.
    pub bundle: PathBuf,
}

/// Runs `slate push`.
pub fn push(args: PushArgs) -> Result<()> {
    let PushArgs {
        device,
        access,
        token,
        wait,
        no_reboot,
        timeout,
        quiet,
        bundle: path,
    } = args;
    if token.is_some() {
        anyhow::bail!("--token is gone with the bearer token: devices authorise operators by certificate; use --identity NAME (see `slate ca issue`)");
    }
    let wait = wait.then(|| std::time::Duration::from_secs(timeout));
    let p = slate_imager::operator::push::push(
        &device,
        &path,
        &access.access(),
        !no_reboot,
        wait,
        Progress::new(quiet),
    )?;
    println!("device: {}", serde_json::to_string(&p.answer)?);
    if let Some(s) = p.outcome {
        match &s.last_attempt {
            Some(a) if a.outcome == slate_core::api::Outcome::Committed => {
                println!("committed: slot {} runs {}", s.slot, s.version)
            }
            Some(a) => anyhow::bail!(
                "rolled back: {} on slot {} failed ({}); the device runs {} on slot {}",
                a.version
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                a.slot,
                a.reason,
                s.version,
                s.slot
            ),
            None => anyhow::bail!("the device reports no update attempt"),
        }
    }
    Ok(())
}

/// The arguments of `slate status`.
#[derive(Args)]
pub struct StatusArgs {
    /// The agent, e.g. https://10.0.0.7:8080.
    #[arg(long)]
    pub device: String,
    #[command(flatten)]
    pub access: AccessArgs,
    /// The status as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `slate status`.
pub fn status(args: StatusArgs) -> Result<()> {
    let StatusArgs {
        device,
        access,
        json,
    } = args;
    let dev = slate_imager::operator::push::Device::open(&device, &access.access())?;
    let s = dev.status()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", slate_imager::operator::inspect::render_status(&s));
    }
    Ok(())
}
