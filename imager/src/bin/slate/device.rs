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
        /// What it may do (repeatable): status (read status and metrics), push (upload
        /// updates), reboot (reboot, power off), force (force=true: failed or older versions,
        /// reboots during a trial) [default: all four].
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<slate_core::operator::Role>,
        /// Base name of the files.
        #[arg(long, value_name = "NAME")]
        out: PathBuf,
    },
    /// Revoke operator certificates: adds them to NAME.crl.pem (signed by the CA, made on
    /// first use). Devices refuse them once they have the list: `slate push --crl
    /// NAME.crl.pem`, or `slate publish --crl` for a channel.
    Revoke {
        /// The CA pair NAME (NAME.crt.pem, NAME.key.pem).
        #[arg(long, value_name = "NAME")]
        ca: PathBuf,
        /// The certificates to revoke (PEM).
        #[arg(long = "cert", value_name = "FILE", required = true)]
        certs: Vec<PathBuf>,
    },
}

impl CaCommand {
    /// `slate ca init`, `slate ca issue` and `slate ca revoke`.
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
                roles,
                out,
            } => {
                let roles = if roles.is_empty() {
                    slate_core::operator::Roles::all()
                } else {
                    roles.into_iter().collect()
                };
                let (crt, key) = slate_imager::operator::ca::issue(&ca, &name, days, roles, &out)?;
                println!(
                    "operator certificate for {name:?}, valid {days} days, roles {roles}: {} and {} (use with --identity {})",
                    crt.display(),
                    key.display(),
                    out.display()
                );
            }
            CaCommand::Revoke { ca, certs } => {
                let r = slate_imager::operator::ca::revoke(&ca, &certs)?;
                println!(
                    "{} lists {} revoked certificate(s), this_update={}: give it to devices with `slate push --device … --crl {}` or `slate publish --crl {}`",
                    r.crl.display(),
                    r.listed,
                    r.this_update,
                    r.crl.display(),
                    r.crl.display()
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
    /// Install even a version that failed on the device or is not newer (never one below its
    /// security floor); needs the operator role `force`. Logged and counted by the device.
    #[arg(long)]
    pub force: bool,
    /// Apply it now even outside the device's maintenance windows (`[update] windows`) and
    /// without asking its application (`[update] consent`); needs the operator role `force`.
    /// Logged and counted by the device.
    #[arg(long, conflicts_with = "stage")]
    pub now: bool,
    /// Install it into the idle slot, verified, and leave it staged until `slate apply`
    /// (download now, install later), whatever the device's policy says.
    #[arg(long, conflicts_with_all = ["wait", "no_reboot"])]
    pub stage: bool,
    /// Instead of a bundle, hand the device its operator CA's newer CRL (`slate ca revoke`):
    /// the certificates it lists are refused from the next connection on.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["wait", "no_reboot", "force", "now", "stage"])]
    pub crl: Option<PathBuf>,
    /// The bundle.
    #[arg(required_unless_present = "crl")]
    pub bundle: Option<PathBuf>,
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
        force,
        now,
        stage,
        crl,
        bundle,
    } = args;
    if token.is_some() {
        anyhow::bail!("--token is gone with the bearer token: devices authorise operators by certificate; use --identity NAME (see `slate ca issue`)");
    }
    if let Some(crl) = crl {
        slate_imager::operator::push::push_crl(&device, &crl, &access.access())?;
        println!("device: took {}", crl.display());
        return Ok(());
    }
    let Some(path) = bundle else {
        anyhow::bail!("name the bundle to push (or --crl FILE)");
    };
    let wait = wait.then(|| std::time::Duration::from_secs(timeout));
    let p = slate_imager::operator::push::push_with(
        &device,
        &path,
        &access.access(),
        slate_imager::operator::push::Options {
            reboot: !no_reboot,
            force,
            now,
            stage,
            wait,
        },
        Progress::new(quiet),
    )?;
    println!("device: {}", serde_json::to_string(&p.answer)?);
    if let Some(s) = p.outcome {
        report_outcome(&s)?;
    }
    Ok(())
}

/// The arguments of `slate apply`.
#[derive(Args)]
pub struct ApplyArgs {
    /// The agent, e.g. https://10.0.0.7:8080.
    #[arg(long)]
    pub device: String,
    #[command(flatten)]
    pub access: AccessArgs,
    /// Do not ask the device's application (`[update] consent`); needs the operator role
    /// `force`.
    #[arg(long)]
    pub now: bool,
    /// Follow the device through its reboot to the outcome.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: seconds to wait for the outcome.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Runs `slate apply`.
pub fn apply(args: ApplyArgs) -> Result<()> {
    let ApplyArgs {
        device,
        access,
        now,
        wait,
        timeout,
        quiet,
    } = args;
    let a = slate_imager::operator::apply::apply(
        &device,
        &access.access(),
        now,
        wait.then(|| std::time::Duration::from_secs(timeout)),
        Progress::new(quiet),
    )?;
    println!("device: applying {}; it reboots into it", a.version);
    if let Some(s) = a.outcome {
        report_outcome(&s)?;
    }
    Ok(())
}

/// Prints a followed update's outcome; an error unless it committed.
fn report_outcome(s: &slate_core::api::Status) -> Result<()> {
    match &s.last_attempt {
        Some(a) if a.outcome == slate_core::api::Outcome::Committed => {
            println!("committed: slot {} runs {}", s.slot, s.version);
            Ok(())
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
    /// Follow the device: its update's live progress as a bar (downloading, writing,
    /// verifying, applying), every second, until interrupted.
    #[arg(long, conflicts_with = "json")]
    pub watch: bool,
}

/// `slate attest`.
#[derive(Args)]
pub struct AttestArgs {
    /// The agent, e.g. https://10.0.0.7:8080.
    #[arg(long)]
    pub device: String,
    #[command(flatten)]
    pub access: AccessArgs,
    /// The image's build folder: PCR 11 is expected to be what its UKI for the slot the
    /// device runs gives (`uki-a.efi` or `uki-b.efi`).
    #[arg(long, conflicts_with = "uki")]
    pub image: Option<PathBuf>,
    /// A UKI whose PCR 11 is expected.
    #[arg(long)]
    pub uki: Option<PathBuf>,
    /// PCR 7 expected (hex; the Secure Boot policy, as an earlier attestation showed it).
    #[arg(long)]
    pub pcr7: Option<String>,
    /// The attestation key expected (its fingerprint, as an earlier attestation printed it).
    #[arg(long)]
    pub ak: Option<String>,
}

/// Runs `slate attest`.
pub fn attest(args: AttestArgs) -> Result<()> {
    use slate_imager::operator::attest;
    let dev = slate_imager::operator::push::Device::open(&args.device, &args.access.access())?;
    let uki = match (&args.image, &args.uki) {
        (Some(dir), _) => {
            let slot = dev.status()?.slot;
            Some(dir.join(format!("uki-{slot}.efi")))
        }
        (None, Some(u)) => Some(u.clone()),
        (None, None) => None,
    };
    let want = attest::Expected {
        pcr11: uki.as_deref().map(attest::pcr11_of_uki).transpose()?,
        pcr7: args.pcr7.clone(),
        ak: args.ak.clone(),
    };
    let a = attest::attest(&dev, &want)?;
    println!("attested: the quote is signed by attestation key {}", a.ak);
    match &uki {
        Some(u) => println!("PCR 11 {} = {} after stage 1", a.pcr11, u.display()),
        None => println!("PCR 11 {} (not compared: give --image or --uki)", a.pcr11),
    }
    match &args.pcr7 {
        Some(_) => println!("PCR 7  {} as expected", a.pcr7),
        None => println!("PCR 7  {} (not compared: give --pcr7)", a.pcr7),
    }
    Ok(())
}

/// Runs `slate status`.
pub fn status(args: StatusArgs) -> Result<()> {
    let StatusArgs {
        device,
        access,
        json,
        watch,
    } = args;
    let dev = slate_imager::operator::push::Device::open(&device, &access.access())?;
    if watch {
        return watch_status(&dev);
    }
    let s = dev.status()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", slate_imager::operator::inspect::render_status(&s));
    }
    Ok(())
}

/// `slate status --watch`: the device's progress as a bar, redrawn every second; the status
/// line when it is idle; a note while it cannot be reached (rebooting).
fn watch_status(dev: &slate_imager::operator::push::Device) -> Result<()> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:40} [{bar:30}] {bytes}/{total_bytes}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    loop {
        match dev.poll_status()? {
            Some(s) => match &s.progress {
                Some(p) => {
                    bar.set_length(p.total);
                    bar.set_position(p.bytes.min(p.total));
                    bar.set_message(slate_imager::operator::push::render_progress(p));
                }
                None => {
                    bar.set_length(0);
                    bar.set_message(format!(
                        "idle: {} {} on slot {} ({:?})",
                        s.name, s.version, s.slot, s.health.state
                    ));
                }
            },
            None => bar.set_message("not answering (rebooting?)"),
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// The arguments of `slate reset`.
#[derive(Args)]
pub struct ResetArgs {
    /// The agent, e.g. https://10.0.0.7:8080.
    #[arg(long)]
    pub device: String,
    #[command(flatten)]
    pub access: AccessArgs,
    /// Make a new device identity too (operators pin its new fingerprint).
    #[arg(long)]
    pub new_identity: bool,
    /// Do not ask; reset.
    #[arg(long)]
    pub yes: bool,
}

/// Runs `slate reset`.
pub fn reset(args: ResetArgs) -> Result<()> {
    let ResetArgs {
        device,
        access,
        new_identity,
        yes,
    } = args;
    slate_imager::operator::reset::reset(&device, &access.access(), new_identity, |c| {
        if yes {
            return Ok(true);
        }
        eprintln!("{device} will wipe {}.", c.wipes);
        eprint!("Type \"reset\" to go on: ");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        Ok(line.trim() == "reset")
    })?;
    println!("{device}: factory reset asked for; it reboots and wipes /data (console: `slate: factory reset`)");
    Ok(())
}
