//! `slate sb`: Secure Boot keys and their enrolment.

use anyhow::Result;
use clap::Subcommand;
use slate_imager::operator::secure_boot;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum SbCommand {
    /// Make a fleet's Secure Boot keys: PK, KEK and db (RSA 2048, PEM and DER) and an owner
    /// GUID. db.key signs images (`slate build --secure-boot-key`); keep all keys offline.
    Keygen {
        /// Folder to create them in (existing keys are never overwritten).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Common-name prefix of the certificates.
        #[arg(long, default_value = "Slate")]
        name: String,
    },
    /// Enrol the keys: a QEMU/OVMF variables file with PK, KEK and db and Secure Boot on, and
    /// optionally the .auth files a real firmware takes (`efi-updatevar`, or its setup screen).
    Vars {
        /// Keys folder (`slate sb keygen`).
        #[arg(long, value_name = "DIR")]
        keys: PathBuf,
        /// The variables file to write.
        #[arg(long, value_name = "OVMF_VARS.fd")]
        out: PathBuf,
        /// The empty variables file to start from.
        #[arg(long, value_name = "FILE", default_value = secure_boot::OVMF_VARS_TEMPLATE)]
        template: PathBuf,
        /// Also write PK.auth, KEK.auth and db.auth into this folder.
        #[arg(long, value_name = "DIR")]
        auth: Option<PathBuf>,
    },
}

impl SbCommand {
    pub fn run(self) -> Result<()> {
        match self {
            SbCommand::Keygen { out, name } => {
                let guid = secure_boot::keygen(&out, &name)?;
                eprintln!(
                    "made PK, KEK and db in {} (owner {guid}); build with --secure-boot-key {}/db.key --secure-boot-cert {}/db.crt",
                    out.display(),
                    out.display(),
                    out.display()
                );
            }
            SbCommand::Vars {
                keys,
                out,
                template,
                auth,
            } => {
                secure_boot::vars(&keys, &template, &out, auth.as_deref())?;
                eprintln!(
                    "wrote {} (PK, KEK, db enrolled; Secure Boot on)",
                    out.display()
                );
                if let Some(dir) = auth {
                    eprintln!("wrote the .auth files into {}", dir.display());
                }
            }
        }
        Ok(())
    }
}
