//! `slate`: build, flash and inspect Slate images.
//!
//! Exit codes: 0 success; 1 failure (I/O, a host tool, a damaged image); 2 usage error;
//! 3 bad input (spec, board, package, output folder) that the user must fix.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use slate_imager::build::{self, BuildOptions};
use slate_imager::error::BuildError;
use slate_imager::progress::Progress;
use slate_imager::{bundle, flash, inspect, keys};
use std::path::PathBuf;
use std::process::ExitCode;

mod channel;
mod operators;
mod packages;
mod sb;

use operators::{AccessArgs, CaCommand};

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
    Build {
        /// Image spec (TOML).
        #[arg(long, default_value = "rootfs/image.toml")]
        spec: PathBuf,
        /// Board name (a file in the boards folder); default: the spec's `board`.
        #[arg(long)]
        board: Option<String>,
        /// Image version (semver); default: the spec's `version`.
        #[arg(long = "version", value_name = "X.Y.Z")]
        image_version: Option<slate_core::Version>,
        /// Output folder; replaced only if it holds a previous build (or with --force).
        #[arg(long)]
        out: PathBuf,
        /// Replace OUT even if it is not a previous build.
        #[arg(long)]
        force: bool,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
        /// Deb cache folder (`cargo xtask deps`) of the board's kernel and boot loader, for a spec
        /// without a lock [default: .cache/debs of the source tree].
        #[arg(long, value_name = "DIR")]
        debs: Option<PathBuf>,
        /// Cache `slate fetch` filled with the lock's packages [default: ~/.cache/slate, or
        /// .cache/slate of the Slate source tree for a spec inside it].
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
        /// Boards folder [default: boards/ of the source tree].
        #[arg(long, value_name = "DIR")]
        boards: Option<PathBuf>,
        /// Folder with prebuilt static slate-init and slated [default: build them].
        #[arg(long, value_name = "DIR")]
        agent_dir: Option<PathBuf>,
        /// Trust file to bake in at /etc/slate/trust.toml (overrides the spec).
        #[arg(long, value_name = "FILE")]
        trust: Option<PathBuf>,
        /// Operator CA certificate to bake in at /etc/slate/operators.pem (overrides the
        /// spec's `[agent] operators`): its client certificates may use the agent's API.
        #[arg(long, value_name = "CA.crt.pem")]
        operators: Option<PathBuf>,
        /// Allow `[agent] insecure_http` (plain HTTP, no authentication) in an image with a
        /// trust file. Development only.
        #[arg(long)]
        allow_insecure: bool,
        /// Allow `debug_shell` and `[agent] test_hooks` in an image with a trust file.
        /// Development only.
        #[arg(long)]
        allow_debug: bool,
        /// Security epoch (anti-rollback) of the image: recorded in build.toml, os-release,
        /// the initramfs and every bundle made from it. Devices never start an image below the
        /// highest epoch they committed. Raise it when an update fixes a vulnerability.
        #[arg(long, default_value_t = 0)]
        security_epoch: u64,
        /// Print each build stage's wall and CPU time at the end.
        #[arg(long)]
        timings: bool,
        /// Build for UEFI Secure Boot: each slot boots as a Unified Kernel Image signed with
        /// this db key, and so does the boot loader (overrides the spec's `[secure_boot]`).
        #[arg(long, value_name = "db.key", requires = "secure_boot_cert")]
        secure_boot_key: Option<PathBuf>,
        /// The db key's certificate, the one enrolled in the machines' db (`slate sb keygen`).
        #[arg(long, value_name = "db.crt", requires = "secure_boot_key")]
        secure_boot_cert: Option<PathBuf>,
    },
    /// Resolve the spec's Debian packages and their dependencies into image.lock.
    ///
    /// Downloads the suite's package lists ([debian] in the spec) for the board's
    /// architecture with a private apt configuration (never the host's apt state; no root),
    /// picks what apt would install, and writes image.lock beside the spec: every package's
    /// name, version, architecture, size and sha256. Commit the lock.
    Lock {
        #[command(flatten)]
        target: packages::SpecTarget,
    },
    /// Download exactly the files image.lock names into the cache, checking each sha256.
    Fetch {
        #[command(flatten)]
        target: packages::SpecTarget,
    },
    /// Write a disk image to a device or file: only mapped blocks, each checked by sha256.
    Flash {
        /// The disk image (disk.img from `slate build`).
        image: PathBuf,
        /// Target block device or file.
        #[arg(long)]
        to: PathBuf,
        /// Block map [default: IMAGE.bmap].
        #[arg(long)]
        bmap: Option<PathBuf>,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Make an ed25519 signing key pair: NAME.pem (private, 0600) and NAME.pub.pem.
    Keygen {
        /// Base name of the key files.
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a trust file (k of n public keys) for an image to bake in.
    Trust {
        /// Public (or private) key PEM files; repeat for several.
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// Valid signatures a bundle needs.
        #[arg(long, default_value_t = 1)]
        threshold: usize,
        /// Where to write trust.toml.
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a signed update bundle from a build folder.
    ///
    /// A Secure Boot build (one with signed UKIs) gives a format-2 bundle: uki-a.efi,
    /// uki-b.efi, then rootfs.img; any other build a format-1 bundle: rootfs.img, vmlinuz,
    /// initrd.img.
    Bundle {
        /// Output folder of `slate build`.
        #[arg(long)]
        build: PathBuf,
        /// Private key(s) to sign with; repeat for several.
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// Anti-rollback epoch: the image's (`slate build --security-epoch`) unless given;
        /// a different one is refused (the manifest and the image must agree).
        #[arg(long)]
        security_epoch: Option<u64>,
        /// Devices refuse the bundle after this (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or unix seconds).
        #[arg(long)]
        expires: Option<String>,
        /// Bundle file to write (*.slate).
        #[arg(long)]
        out: PathBuf,
    },
    /// Add a signature to a bundle in place.
    Sign {
        /// Private key.
        #[arg(long)]
        key: PathBuf,
        /// The bundle.
        bundle: PathBuf,
    },
    /// Check a bundle offline the way a device would.
    Verify {
        /// Trust file the device has.
        #[arg(long)]
        trust: PathBuf,
        /// Build folder of the image the device runs (adds product, board and version checks).
        #[arg(long, value_name = "BUILD_DIR")]
        against: Option<PathBuf>,
        /// The device's security epoch.
        #[arg(long, default_value_t = 0)]
        security_epoch: u64,
        /// The db certificate (PEM) of a Secure Boot image: its bundles' UKIs must be signed
        /// by it (needed for such bundles).
        #[arg(long, value_name = "DB_CRT")]
        secure_boot_cert: Option<PathBuf>,
        /// The bundle.
        bundle: PathBuf,
    },
    /// Send a bundle to a device's agent; with --wait, follow it to commit or rollback.
    ///
    /// The device is reached over mutual TLS: --identity presents the operator's certificate,
    /// and the device's certificate must match the fingerprint pinned on first contact (or
    /// given with --fingerprint). Exit status 0 only when the update was installed (and, with
    /// --wait, committed).
    Push {
        /// The agent, e.g. https://10.0.0.7:8080 (http:// for an insecure_http image).
        #[arg(long)]
        device: String,
        #[command(flatten)]
        access: AccessArgs,
        /// Removed (the bearer token is gone): use --identity.
        #[arg(long, hide = true)]
        token: Option<String>,
        /// Follow the device through its reboot to the outcome.
        #[arg(long, conflicts_with = "no_reboot")]
        wait: bool,
        /// Install but do not reboot (the new slot is tried at the next reboot).
        #[arg(long)]
        no_reboot: bool,
        /// With --wait: seconds to wait for the outcome.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
        /// The bundle.
        bundle: PathBuf,
    },
    /// Show a device's status (slots, versions, health, last update) over mutual TLS.
    Status {
        /// The agent, e.g. https://10.0.0.7:8080.
        #[arg(long)]
        device: String,
        #[command(flatten)]
        access: AccessArgs,
        /// The status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The operator CA whose certificate an image trusts, and the certificates it issues.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// The update channel's TUF repository: init, refresh, rotate-root, status.
    Repo {
        #[command(subcommand)]
        command: channel::RepoCommand,
    },
    /// Offer a signed bundle to devices through a repository, in waves; or set max_version.
    Publish(channel::PublishArgs),
    /// UEFI Secure Boot: make a fleet's PK, KEK and db keys, and enrol them.
    Sb {
        #[command(subcommand)]
        command: sb::SbCommand,
    },
    /// Compute a dm-verity tree for DATA and write it to HASH (for benchmarks and debugging).
    #[command(hide = true)]
    VerityFormat {
        /// Data file (a multiple of 4096 bytes).
        data: PathBuf,
        /// Where the superblock and hash tree go.
        hash: PathBuf,
        /// Salt (hex).
        #[arg(long, default_value = "")]
        salt: String,
        /// Threads hashing the lowest level [default: every core].
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Show a disk image (partitions, slots, boot entries) or a bundle (manifest, signers).
    Inspect {
        /// A disk image or a *.slate bundle.
        image: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Build {
            spec,
            board,
            image_version,
            out,
            force,
            quiet,
            debs,
            cache,
            boards,
            agent_dir,
            trust,
            operators,
            allow_insecure,
            allow_debug,
            security_epoch,
            timings,
            secure_boot_key,
            secure_boot_cert,
        } => {
            let opts = BuildOptions {
                secure_boot: secure_boot_key
                    .zip(secure_boot_cert)
                    .map(|(key, cert)| slate_imager::uki::SigningPair { key, cert }),
                security_epoch,
                operators,
                allow: build::policy::Allow {
                    insecure: allow_insecure,
                    debug: allow_debug,
                },
                spec,
                board,
                version: image_version,
                out: out.clone(),
                force,
                quiet,
                debs,
                cache,
                boards,
                agent_dir,
                trust,
                timings,
            };
            let started = std::time::Instant::now();
            let report = build::build(&opts)?;
            if !quiet {
                eprintln!(
                    "built {} {} for {} in {:.1} s → {}/ (disk.img {:.0} MiB, {:.1} MiB mapped; root hash {})",
                    report.image.name,
                    report.image.version,
                    report.image.board,
                    started.elapsed().as_secs_f64(),
                    out.display(),
                    report.disk.size as f64 / 1048576.0,
                    report.disk.mapped_bytes as f64 / 1048576.0,
                    report.verity.info.root_hash
                );
            }
        }
        Command::Lock { target } => packages::lock(&target)?,
        Command::Repo { command } => command.run()?,
        Command::Publish(args) => args.run()?,
        Command::Sb { command } => command.run()?,
        Command::Fetch { target } => packages::fetch(&target)?,
        Command::Flash {
            image,
            to,
            bmap,
            quiet,
        } => {
            let bmap = bmap.unwrap_or_else(|| {
                let mut p = image.clone().into_os_string();
                p.push(".bmap");
                PathBuf::from(p)
            });
            let s = flash::flash(&image, &bmap, &to, Progress::new(quiet))?;
            if !quiet {
                eprintln!(
                    "flashed {} → {}: {:.1} MiB written of {:.1} MiB, verified, in {:.1} s",
                    image.display(),
                    to.display(),
                    s.written as f64 / 1048576.0,
                    s.image_size as f64 / 1048576.0,
                    s.seconds
                );
            }
        }
        Command::VerityFormat {
            data,
            hash,
            salt,
            threads,
        } => {
            let salt = hex::decode(&salt).map_err(|e| anyhow::anyhow!("--salt: {e}"))?;
            let f = std::fs::File::open(&data)
                .with_context(|| format!("opening {}", data.display()))?;
            let len = f.metadata()?.len();
            let threads = threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
                .max(1);
            let tree = slate_core::verity::build(
                std::io::BufReader::with_capacity(1 << 20, f),
                len,
                &salt,
                slate_core::Guid::NIL,
                threads,
                &mut |_| {},
            )?;
            // Written and synced, as veritysetup leaves its hash device.
            let mut out = std::fs::File::create(&hash)
                .with_context(|| format!("creating {}", hash.display()))?;
            std::io::Write::write_all(&mut out, &tree.area)?;
            out.sync_all()?;
            println!("Root hash: {}", tree.info.root_hash);
        }
        Command::Status {
            device,
            access,
            json,
        } => {
            let dev = slate_imager::push::Device::open(&device, &access.access())?;
            let s = dev.status()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", slate_imager::inspect::render_status(&s));
            }
        }
        Command::Ca { command } => command.run()?,
        Command::Push {
            device,
            access,
            token,
            wait,
            no_reboot,
            timeout,
            quiet,
            bundle: path,
        } => {
            if token.is_some() {
                anyhow::bail!("--token is gone with the bearer token: devices authorise operators by certificate; use --identity NAME (see `slate ca issue`)");
            }
            let wait = wait.then(|| std::time::Duration::from_secs(timeout));
            let p = slate_imager::push::push(
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
                        a.version,
                        a.slot,
                        a.reason,
                        s.version,
                        s.slot
                    ),
                    None => anyhow::bail!("the device reports no update attempt"),
                }
            }
        }
        Command::Keygen { out } => {
            let (private, public, id) = keys::keygen(&out)?;
            println!(
                "key {id}: private {} (keep it secret), public {}",
                private.display(),
                public.display()
            );
        }
        Command::Trust {
            keys: key_files,
            threshold,
            out,
        } => {
            let t = keys::trust(&key_files, threshold)?;
            std::fs::write(&out, toml::to_string(&t)?)?;
            println!(
                "{}: {} of {} keys",
                out.display(),
                t.threshold,
                t.keys.len()
            );
        }
        Command::Bundle {
            build,
            keys: key_files,
            security_epoch,
            expires,
            out,
        } => {
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
        }
        Command::Sign { key, bundle: path } => {
            let n = bundle::sign(&path, &keys::load_private(&key)?)?;
            println!("{}: now {n} signature(s)", path.display());
        }
        Command::Verify {
            trust,
            against,
            security_epoch,
            secure_boot_cert,
            bundle: path,
        } => {
            let text = std::fs::read_to_string(&trust)
                .with_context(|| format!("reading {}", trust.display()))?;
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
        }
        Command::Inspect { image, json } if image.extension().is_some_and(|e| e == "slate") => {
            if json {
                anyhow::bail!("--json is not available for bundles yet");
            }
            print!("{}", bundle::describe(&image)?);
        }
        Command::Inspect { image, json } => {
            let info = inspect::inspect(&image)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print!("{}", inspect::render(&image, &info));
            }
        }
    }
    Ok(())
}

/// Structured logs on stderr: quiet (`warn`) unless `SLATE_LOG` asks for more, in `RUST_LOG`'s
/// syntax (`SLATE_LOG=info` shows every build stage with its wall and CPU time).
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
