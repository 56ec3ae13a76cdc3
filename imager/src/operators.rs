//! The operator side of the CLI: how `slate push` and `slate status` reach and trust a
//! device, and `slate ca`.

use anyhow::Result;
use clap::Subcommand;
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
    pub fn access(self) -> slate_imager::push::Access {
        slate_imager::push::Access {
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
        #[arg(long, default_value_t = slate_imager::ca::OPERATOR_DAYS)]
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
                let (crt, key) = slate_imager::ca::init(&out, &name)?;
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
                let (crt, key) = slate_imager::ca::issue(&ca, &name, days, &out)?;
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
