//! `slate build`: spec + board + packages → `rootfs.img`, `vmlinuz`, `initrd.img`, `disk.img`,
//! `disk.img.bmap` and `build.toml`.
//!
//! Order: parse and validate everything (pure), resolve packages and binaries (I/O, read-only),
//! then write into `<out>.partial/` and rename it into place only when every output is done, so
//! a failed build never leaves a half-written output folder.

//!
//! ```text
//! mod.rs     options, inputs (spec, board, binaries), the order of the stages
//! debs.rs    the packages: the lock's (root, kernel, boot loader) or the deb cache's
//! root.rs    rootfs.img: squashfs on every core, dm-verity tree
//! boot.rs    initramfs, kernel command line, the ESP's files
//! disk.rs    ESP image, data ext4, disk.img, disk.img.bmap
//! report.rs  build.toml
//! ```
//! Stages that do not depend on each other overlap: the initramfs and the data partition are
//! made on their own threads while the root image is compressed.

mod boot;
mod debs;
mod disk;
pub mod policy;
mod report;
mod root;

pub use report::{
    BootReport, DiskReport, ImageReport, OutputReport, Report, VerityReport, OUTPUTS,
};

use crate::error::BuildError;
use crate::image::agentbin;
use crate::image::board::LoadedBoard;
use crate::image::compose::{self, RootInputs};
use crate::image::debian::debroot;
use crate::image::kernel;
use crate::image::provenance::Provenance;
use crate::image::spec::LoadedSpec;
use crate::image::timings::Timings;
use crate::image::tools;
use crate::progress::Progress;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use slate_core::layout;
use slate_core::Version;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// First line of every build report; how `slate build` recognises a previous output folder.
pub const REPORT_MAGIC: &str = "# Slate build report";
/// Timestamp used when `SOURCE_DATE_EPOCH` is not set: 1980-01-01, the earliest FAT can store.
pub const DEFAULT_EPOCH: i64 = 315_532_800;
/// Folder of the deb cache that keeps what builds extracted from packages, by package sha256.
pub const EXTRACTED: &str = "extracted";
/// What `slate build` was asked to do.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Image spec file.
    pub spec: PathBuf,
    /// Board name (default: the spec's).
    pub board: Option<String>,
    /// Version (default: the spec's).
    pub version: Option<Version>,
    /// Output folder.
    pub out: PathBuf,
    /// Replace an output folder that is not a previous build.
    pub force: bool,
    /// No progress output.
    pub quiet: bool,
    /// Print each stage's wall and CPU time when done (`--timings`).
    pub timings: bool,
    /// Deb cache folder of the board's kernel and boot loader, for a spec without a lock
    /// (default: `.cache/debs` of the workspace).
    pub debs: Option<PathBuf>,
    /// Cache `slate fetch` filled with the lock's packages (default:
    /// [`lock::default_cache_for`]).
    pub cache: Option<PathBuf>,
    /// Boards folder (default: `boards/` beside the spec's folder, or of the workspace).
    pub boards: Option<PathBuf>,
    /// Folder with prebuilt `slate-init` and `slated`.
    pub agent_dir: Option<PathBuf>,
    /// Trust file overriding the spec's.
    pub trust: Option<PathBuf>,
    /// Operator CA certificate overriding the spec's.
    pub operators: Option<PathBuf>,
    /// Development conveniences allowed by name in an image with a trust file.
    pub allow: policy::Allow,
    /// Security epoch (anti-rollback) of the image; bundles made from it carry the same.
    pub security_epoch: u64,
    /// The db pair to sign UKIs and the boot loader with: a Secure Boot image (overrides the
    /// spec's `[secure_boot]`).
    pub secure_boot: Option<crate::image::write::uki::SigningPair>,
    /// The PCR-signing key of a measured-boot image (overrides the spec's `[tpm] pcr_key`).
    pub pcr_key: Option<PathBuf>,
}

/// Seeds for every derived value, from the spec's bytes, name, version and board.
fn identity(spec: &LoadedSpec, version: &Version, board: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(&spec.bytes);
    for part in [spec.spec.name.as_str(), &version.to_string(), board] {
        h.update([0]);
        h.update(part.as_bytes());
    }
    h.finalize().to_vec()
}

/// `SOURCE_DATE_EPOCH`, read here and nowhere else: None when unset, an error naming the
/// value when it is not a number of seconds at or after 1980-01-01 (the earliest time FAT and
/// the image's formats can hold).
pub fn source_date_epoch() -> Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => s
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|&e| e >= DEFAULT_EPOCH)
            .map(Some)
            .with_context(|| format!("SOURCE_DATE_EPOCH={s:?} is not a number of seconds at or after 1980-01-01 ({DEFAULT_EPOCH})")),
        Err(_) => Ok(None),
    }
}

/// The build's timestamps: `SOURCE_DATE_EPOCH`, else 1980-01-01 (a build never reads the
/// clock, so the same inputs give the same bytes).
fn epoch() -> Result<i64> {
    Ok(source_date_epoch()?.unwrap_or(DEFAULT_EPOCH))
}

/// Checks the output folder before any work: empty, missing or a previous build is fine.
fn check_out(out: &Path, force: bool) -> Result<(), BuildError> {
    if force || !out.exists() {
        return Ok(());
    }
    let is_build =
        std::fs::read_to_string(out.join("build.toml")).is_ok_and(|t| t.starts_with(REPORT_MAGIC));
    let is_empty = out.is_dir() && std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_none());
    if is_build || is_empty {
        Ok(())
    } else {
        Err(BuildError::OutputExists {
            path: out.to_path_buf(),
        })
    }
}

/// A folder the spec did not name (`boards`, `.cache/debs`): beside or above the spec, else
/// in the source tree `slate` was built from, else where an installed `slate` keeps it
/// (`<prefix>/share/slate/<rel>`, `cargo xtask install`).
fn default_dir(spec_dir: &Path, rel: &str) -> PathBuf {
    let candidates = [spec_dir.join("..").join(rel), spec_dir.join(rel)];
    for c in &candidates {
        if c.exists() {
            return c.clone();
        }
    }
    if let Some(ws) = agentbin::find_workspace() {
        return ws.join(rel);
    }
    let installed = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("../share/slate").join(rel)));
    match installed {
        Some(dir) if dir.exists() => dir,
        _ => PathBuf::from(rel),
    }
}

/// The board a spec is built for: `name`, else the spec's `board`; from `boards`, else the
/// default boards folder. Returns the name with the board.
pub fn board_for(
    spec: &LoadedSpec,
    name: Option<&str>,
    boards: Option<&Path>,
) -> Result<(String, LoadedBoard), BuildError> {
    let name = name.map_or_else(|| spec.spec.board.clone(), str::to_string);
    let dir = boards.map_or_else(|| default_dir(&spec.dir, "boards"), Path::to_path_buf);
    let board = LoadedBoard::load(&dir, &name)?;
    Ok((name, board))
}

/// Runs a whole build.
pub fn build(opts: &BuildOptions) -> Result<Report> {
    let progress = Progress::new(opts.quiet);
    let mut t = Timings::default();
    t.stage("inputs (spec, debs, agent)");
    let spec = LoadedSpec::load(&opts.spec)?;
    let version = opts
        .version
        .clone()
        .unwrap_or_else(|| spec.spec.version.clone());
    let (board_name, board) = board_for(&spec, opts.board.as_deref(), opts.boards.as_deref())?;
    check_out(&opts.out, opts.force)?;
    let epoch = epoch()?;
    let trust = opts
        .trust
        .clone()
        .or_else(|| spec.spec.agent.trust.as_ref().map(|t| spec.resolve(t)));
    if let Some(t) = &trust {
        if !t.is_file() {
            return Err(BuildError::MissingSource {
                path: t.clone(),
                field: "agent.trust (or --trust)".into(),
            }
            .into());
        }
    } else {
        eprintln!("warning: no trust file (spec agent.trust or --trust): this image will refuse every update");
    }
    let operators = opts
        .operators
        .clone()
        .or_else(|| spec.spec.agent.operators.as_ref().map(|t| spec.resolve(t)));
    let warnings = policy::check(
        &spec.path,
        &spec.spec,
        policy::Facts {
            trust: trust.is_some(),
            operators: operators.is_some(),
        },
        opts.allow,
    )?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    progress.step(format!(
        "building {} {} for {}",
        spec.spec.name, version, board_name
    ));

    // Inputs: packages and device binaries.
    let mut prov = Provenance {
        source_date_epoch: epoch,
        imager: format!("slate {}", env!("CARGO_PKG_VERSION")),
        ..Provenance::default()
    };
    let rel_name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    prov.spec = BTreeMap::from([
        ("file".into(), rel_name(&spec.path)),
        (
            "sha256".into(),
            slate_core::Digest32::of(&spec.bytes).to_string(),
        ),
    ]);
    prov.board = BTreeMap::from([
        ("name".into(), board_name.clone()),
        (
            "sha256".into(),
            slate_core::Digest32::of(&board.bytes).to_string(),
        ),
    ]);
    let debs = debs::read(&spec, &board, opts, &mut prov)?;
    for w in debroot::script_warnings(&debs.root) {
        eprintln!("warning: {w}");
    }
    let agent = agentbin::locate(opts.agent_dir.as_deref(), board.board.arch, progress)?;
    let secure_boot = opts.secure_boot.clone().or_else(|| {
        spec.spec
            .secure_boot
            .as_ref()
            .map(|sb| crate::image::write::uki::SigningPair {
                key: spec.resolve(&sb.key),
                cert: spec.resolve(&sb.cert),
            })
    });
    let pcr_key = opts
        .pcr_key
        .clone()
        .or_else(|| spec.spec.tpm.as_ref().map(|t| spec.resolve(&t.pcr_key)));
    // Secure Boot and measured boot both boot each slot as a Unified Kernel Image.
    let kind = match (secure_boot.is_some(), pcr_key.is_some()) {
        (true, _) => Some("a Secure Boot image"),
        (false, true) => Some("a measured-boot image ([tpm])"),
        (false, false) => None,
    };
    if let (Some(kind), None) = (kind, &board.board.uki_stub_path) {
        return Err(anyhow::anyhow!(
            "board {board_name} has no uki_stub_path: it cannot build {kind}, whose slots boot unified kernel images (add the path of systemd's linux*.efi.stub in {} to {})",
            board.board.bootloader_package,
            board.path.display()
        ));
    }
    let pcr = match &pcr_key {
        Some(key) => Some(crate::image::write::pcr_policy::PcrSigner::load(key)?),
        None => None,
    };
    // A measured-boot image seals /data to its signed policies unless the spec says not to.
    let tpm_spec = spec.spec.tpm.as_ref();
    let sealed_data = (pcr.is_some() && tpm_spec.is_none_or(|t| t.seal_data)).then(|| {
        slate_core::config::SealedData {
            required: tpm_spec.is_some_and(|t| t.required),
        }
    });
    let boot_retry = match &secure_boot {
        Some(_) => {
            crate::image::bootretry::locate(opts.agent_dir.as_deref(), board.board.arch, progress)?
        }
        None => None,
    };
    prov.tools = BTreeMap::from([
        (
            "mtools".into(),
            tools::version("mformat", "mtools", "--version")?,
        ),
        (
            "mkfs.ext4".into(),
            tools::version("mkfs.ext4", "e2fsprogs", "-V")?,
        ),
    ]);
    if kind.is_some() {
        prov.tools.insert(
            "objcopy".into(),
            tools::version("objcopy", "binutils", "--version")?,
        );
    }
    if secure_boot.is_some() {
        prov.tools.insert(
            "sbsign".into(),
            tools::version("sbsign", "sbsigntool", "--version")?,
        );
    }
    if pcr.is_some() {
        prov.tools.insert(
            "openssl".into(),
            tools::version("openssl", "openssl", "version")?,
        );
    }

    // Trees.
    t.stage("compose root tree");
    progress.step("composing the root tree");
    let mut root = compose::root(
        &RootInputs {
            spec: &spec,
            version: &version,
            board: &board.board,
            packages: &debs.root,
            agent: &agent,
            trust: trust.as_deref(),
            operators: operators.as_deref(),
            security_epoch: opts.security_epoch,
            secure_boot_cert: secure_boot.as_ref().map(|p| p.cert.as_path()),
            ukis: kind.is_some(),
        },
        &mut prov,
    )?;
    let prov_text = prov.to_toml();
    compose::add_provenance(&mut root, &prov_text)?;
    t.stage("kernel and modules");
    let extracted = &debs.extracted;
    let mut modules = board.board.modules.clone();
    if sealed_data.is_some() {
        modules.extend(SEALED_DATA_MODULES.iter().map(|m| m.to_string()));
    }
    let kernel = kernel::extract_cached(
        &debs.kernel,
        &debs.kernel_sha256,
        &board.board.kernel_package,
        &modules,
        Some(extracted),
    )?;

    // Outputs, into a scratch folder beside the final one.
    let partial = partial_dir(&opts.out);
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing stale {}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let inputs = Inputs {
        agent: &agent,
        dir: &partial,
        spec: &spec,
        version: &version,
        board: &board,
        root: &root,
        kernel: &kernel,
        boot_deb: &debs.boot,
        epoch,
        mtime: u32::try_from(epoch).context("SOURCE_DATE_EPOCH beyond 2106")?,
        id: identity(&spec, &version, &board.board.name),
        prov_text: &prov_text,
        progress,
        cache: Some(extracted),
        security_epoch: opts.security_epoch,
        secure_boot: secure_boot.as_ref(),
        boot_retry: boot_retry.as_deref(),
        pcr: pcr.as_ref(),
        sealed_data: sealed_data.as_ref(),
    };
    let result = write_outputs(&inputs, &mut t);
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
    };
    if opts.out.exists() {
        if opts.out.is_dir() {
            std::fs::remove_dir_all(&opts.out)
        } else {
            std::fs::remove_file(&opts.out)
        }
        .with_context(|| format!("replacing {}", opts.out.display()))?;
    }
    std::fs::rename(&partial, &opts.out)
        .with_context(|| format!("moving the build into {}", opts.out.display()))?;
    t.finish();
    if opts.timings {
        eprint!("{}", t.table());
    }
    Ok(report)
}

fn partial_dir(out: &Path) -> PathBuf {
    let mut name = out
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "out".into());
    name.push(".partial");
    out.with_file_name(name)
}

/// Everything the output stages read, gathered once (instead of a dozen parameters).
pub(crate) struct Inputs<'a> {
    agent: &'a agentbin::AgentBinaries,
    /// The output folder being written (`<out>.partial`).
    dir: &'a Path,
    spec: &'a LoadedSpec,
    version: &'a Version,
    board: &'a LoadedBoard,
    root: &'a crate::image::write::tree::Tree,
    kernel: &'a kernel::Kernel,
    boot_deb: &'a [u8],
    /// SOURCE_DATE_EPOCH.
    epoch: i64,
    /// The same, as the 32-bit mtime squashfs and cpio store.
    mtime: u32,
    /// Seed of every derived GUID and salt ([`identity`]).
    id: Vec<u8>,
    prov_text: &'a str,
    progress: Progress,
    /// The extraction cache (kernel package contents, compressed initramfs).
    cache: Option<&'a Path>,
    /// The image's security epoch (anti-rollback).
    security_epoch: u64,
    /// The db pair of a Secure Boot image.
    secure_boot: Option<&'a crate::image::write::uki::SigningPair>,
    /// A Secure Boot image's `BOOTX64.EFI`, the boot-retry loader ([`crate::image::bootretry`]).
    boot_retry: Option<&'a [u8]>,
    /// A measured-boot image's PCR-signing key (`[tpm]`).
    pcr: Option<&'a crate::image::write::pcr_policy::PcrSigner>,
    /// `/data` sealed by the TPM (`[tpm]`, `seal_data`).
    sealed_data: Option<&'a slate_core::config::SealedData>,
}

/// The kernel modules a sealed `/data` needs besides the board's: dm-crypt, and AES-XTS's
/// templates (AES itself is built into Debian's kernels).
const SEALED_DATA_MODULES: [&str; 3] = ["dm_crypt", "xts", "ecb"];

/// Writes every output into `inp.dir`, then `build.toml`.
fn write_outputs(inp: &Inputs<'_>, t: &mut Timings) -> Result<Report> {
    let b = &inp.board.board;
    let scratch = inp.dir.join(".scratch");
    std::fs::create_dir_all(&scratch)?;
    let table = layout::table(b.arch, b.disk.sizes(), &inp.id);
    let data_img = scratch.join("data.img");
    inp.progress.step(format!(
        "initramfs: slate-init + {} modules for kernel {} (beside the root image)",
        inp.kernel.modules.len(),
        inp.kernel.release
    ));
    let (root, initrd, data) = std::thread::scope(|s| {
        let initrd = s.spawn(|| boot::initramfs(inp));
        let data = s.spawn(|| disk::data_partition(inp, &table, &data_img));
        let root = root::write(inp, t);
        t.stage("initramfs and data (waiting)");
        let join = |what: &str| anyhow::anyhow!("{what}: the thread panicked");
        (
            root,
            initrd.join().map_err(|_| join("initramfs")),
            data.join().map_err(|_| join("data partition")),
        )
    });
    let (root, initrd) = (root?, initrd??);
    data??;
    std::fs::write(inp.dir.join("initrd.img"), &initrd)?;
    std::fs::write(inp.dir.join("vmlinuz"), &inp.kernel.vmlinuz)?;

    let options = boot::options(inp);
    let esp = boot::esp_files(inp, &root.info, &options, &initrd, &scratch)?;
    for (slot, uki) in &esp.ukis {
        std::fs::write(inp.dir.join(slate_core::manifest::uki_artifact(*slot)), uki)?;
    }
    let disk = disk::write(inp, table, &root, &esp.files, &data_img, &scratch, t)?;
    std::fs::remove_dir_all(&scratch)?;

    t.stage("report (sha256 of outputs)");
    let report = Report {
        image: ImageReport {
            name: inp.spec.spec.name.clone(),
            version: inp.version.clone(),
            board: b.name.clone(),
            kernel_release: inp.kernel.release.clone(),
            security_epoch: inp.security_epoch,
        },
        verity: VerityReport {
            info: root.info.clone(),
            uuid: root.uuid.to_string(),
        },
        boot: BootReport { options },
        disk: DiskReport {
            size: disk.table.total_sectors * slate_core::gpt::SECTOR,
            guid: disk.table.disk_guid.to_string(),
            esp_mib: b.disk.esp_mib,
            slot_mib: b.disk.slot_mib,
            data_mib: b.disk.data_mib,
            mapped_bytes: disk.mapped_bytes,
        },
        outputs: report::hash_outputs(inp.dir)?,
        provenance: toml::from_str(inp.prov_text).context("re-reading provenance")?,
    };
    report::write(inp.dir, &report)?;
    Ok(report)
}
