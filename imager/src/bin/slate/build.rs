//! `slate build`, and what is done with a built image: `flash`, `inspect`, `verity-format`.

use anyhow::{Context, Result};
use clap::Args;
use slate_imager::image::build::{self, BuildOptions};
use slate_imager::operator::{bundle, flash, inspect};
use slate_imager::progress::Progress;
use std::path::PathBuf;

/// The arguments of `slate build`.
#[derive(Args)]
pub struct BuildArgs {
    /// Image spec (TOML).
    #[arg(long, default_value = "rootfs/image.toml")]
    pub spec: PathBuf,
    /// Board name (a file in the boards folder); default: the spec's `board`.
    #[arg(long)]
    pub board: Option<String>,
    /// Image version (semver); default: the spec's `version`.
    #[arg(long = "version", value_name = "X.Y.Z")]
    pub image_version: Option<slate_core::Version>,
    /// Output folder; replaced only if it holds a previous build (or with --force).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace OUT even if it is not a previous build.
    #[arg(long)]
    pub force: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
    /// Deb cache folder (`cargo xtask deps`) of the board's kernel and boot loader, for a spec
    /// without a lock [default: .cache/debs of the source tree].
    #[arg(long, value_name = "DIR")]
    pub debs: Option<PathBuf>,
    /// Cache `slate fetch` filled with the lock's packages [default: ~/.cache/slate, or
    /// .cache/slate of the Slate source tree for a spec inside it].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Boards folder [default: boards/ of the source tree].
    #[arg(long, value_name = "DIR")]
    pub boards: Option<PathBuf>,
    /// Folder with prebuilt static slate-init and slated [default: build them].
    #[arg(long, value_name = "DIR")]
    pub agent_dir: Option<PathBuf>,
    /// Trust file to bake in at /etc/slate/trust.toml (overrides the spec).
    #[arg(long, value_name = "FILE")]
    pub trust: Option<PathBuf>,
    /// Operator CA certificate to bake in at /etc/slate/operators.pem (overrides the
    /// spec's `[agent] operators`): its client certificates may use the agent's API.
    #[arg(long, value_name = "CA.crt.pem")]
    pub operators: Option<PathBuf>,
    /// Allow `[agent] insecure_http` (plain HTTP, no authentication) in an image with a
    /// trust file. Development only.
    #[arg(long)]
    pub allow_insecure: bool,
    /// Allow `debug_shell` and `[agent] test_hooks` in an image with a trust file.
    /// Development only.
    #[arg(long)]
    pub allow_debug: bool,
    /// Security epoch (anti-rollback) of the image: recorded in build.toml, os-release,
    /// the initramfs and every bundle made from it. Devices never start an image below the
    /// highest epoch they committed. Raise it when an update fixes a vulnerability.
    #[arg(long, default_value_t = 0)]
    pub security_epoch: u64,
    /// Print each build stage's wall and CPU time at the end.
    #[arg(long)]
    pub timings: bool,
    /// Build for UEFI Secure Boot: each slot boots as a Unified Kernel Image signed with
    /// this db key, and so does the boot loader (overrides the spec's `[secure_boot]`).
    #[arg(long, value_name = "db.key", requires = "secure_boot_cert")]
    pub secure_boot_key: Option<PathBuf>,
    /// The db key's certificate, the one enrolled in the machines' db (`slate sb keygen`).
    #[arg(long, value_name = "db.crt", requires = "secure_boot_key")]
    pub secure_boot_cert: Option<PathBuf>,
    /// Measured boot: sign each slot's PCR 11 policy with this RSA-2048 key and carry it in
    /// the UKIs (`.pcrsig`, `.pcrpkey`), so a TPM-sealed secret unseals for the images this
    /// key signed (overrides the spec's `[tpm] pcr_key`; without Secure Boot the slots boot
    /// unsigned UKIs).
    #[arg(long, value_name = "pcr.key")]
    pub pcr_key: Option<PathBuf>,
}

/// Runs `slate build`.
pub fn build(args: BuildArgs) -> Result<()> {
    let BuildArgs {
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
        pcr_key,
    } = args;
    let opts = BuildOptions {
        secure_boot: secure_boot_key
            .zip(secure_boot_cert)
            .map(|(key, cert)| slate_imager::image::write::uki::SigningPair { key, cert }),
        pcr_key,
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
    Ok(())
}

/// The arguments of `slate flash`.
#[derive(Args)]
pub struct FlashArgs {
    /// The disk image (disk.img from `slate build`).
    pub image: PathBuf,
    /// Target block device or file.
    #[arg(long)]
    pub to: PathBuf,
    /// Block map [default: IMAGE.bmap].
    #[arg(long)]
    pub bmap: Option<PathBuf>,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Runs `slate flash`.
pub fn flash(args: FlashArgs) -> Result<()> {
    let FlashArgs {
        image,
        to,
        bmap,
        quiet,
    } = args;
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
    Ok(())
}

/// The arguments of `slate verity-format`.
#[derive(Args)]
pub struct VerityFormatArgs {
    /// Data file (a multiple of 4096 bytes).
    pub data: PathBuf,
    /// Where the superblock and hash tree go.
    pub hash: PathBuf,
    /// Salt (hex).
    #[arg(long, default_value = "")]
    pub salt: String,
    /// Threads hashing the lowest level [default: every core].
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Runs `slate verity-format`.
pub fn verity_format(args: VerityFormatArgs) -> Result<()> {
    let VerityFormatArgs {
        data,
        hash,
        salt,
        threads,
    } = args;
    let salt = hex::decode(&salt).map_err(|e| anyhow::anyhow!("--salt: {e}"))?;
    let f = std::fs::File::open(&data).with_context(|| format!("opening {}", data.display()))?;
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
    let mut out =
        std::fs::File::create(&hash).with_context(|| format!("creating {}", hash.display()))?;
    std::io::Write::write_all(&mut out, &tree.area)?;
    out.sync_all()?;
    println!("Root hash: {}", tree.info.root_hash);
    Ok(())
}

/// The arguments of `slate inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// A disk image or a *.slate bundle.
    pub image: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// Runs `slate inspect`: a bundle (`*.slate`) is described from its manifest, anything else
/// is read as a disk image.
pub fn inspect(args: InspectArgs) -> Result<()> {
    let InspectArgs { image, json } = args;
    if image.extension().is_some_and(|e| e == "slate") {
        if json {
            anyhow::bail!("--json is not available for bundles yet");
        }
        print!("{}", bundle::describe(&image)?);
        return Ok(());
    }
    let info = inspect::inspect(&image)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        print!("{}", inspect::render(&image, &info));
    }
    Ok(())
}
