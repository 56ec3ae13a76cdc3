//! `slate build`: spec + board + packages → `rootfs.img`, `vmlinuz`, `initrd.img`, `disk.img`,
//! `disk.img.bmap` and `build.toml`.
//!
//! Order: parse and validate everything (pure), resolve packages and binaries (I/O, read-only),
//! then write into `<out>.partial/` and rename it into place only when every output is done, so
//! a failed build never leaves a half-written output folder.

use crate::agentbin;
use crate::bmap::Bmap;
use crate::board::LoadedBoard;
use crate::compose::{self, RootInputs};
use crate::cpio;
use crate::deb::DebCache;
use crate::disk::{self, Part};
use crate::error::BuildError;
use crate::esp::{self, EspFile};
use crate::ext4;
use crate::kernel;
use crate::progress::Progress;
use crate::provenance::{sha256_hex, DebUsed, Provenance};
use crate::spec::LoadedSpec;
use crate::squashfs;
use crate::tools;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use slate_core::bootentry::{Entry, EntryName, ENTRIES_DIR};
use slate_core::cmdline::BootParams;
use slate_core::layout::{self, Slot};
use slate_core::{verity, Digest32, Guid, Version};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// First line of every build report; how `slate build` recognises a previous output folder.
pub const REPORT_MAGIC: &str = "# Slate build report";
/// Timestamp used when `SOURCE_DATE_EPOCH` is not set: 1980-01-01, the earliest FAT can store.
pub const DEFAULT_EPOCH: i64 = 315_532_800;
/// Tries a new trial entry gets (DESIGN §6).
pub const TRIAL_TRIES: u32 = 3;

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
    /// Deb cache folder (default: `.cache/debs` of the workspace).
    pub debs: Option<PathBuf>,
    /// Boards folder (default: `boards/` beside the spec's folder, or of the workspace).
    pub boards: Option<PathBuf>,
    /// Folder with prebuilt `slate-init` and `slated`.
    pub agent_dir: Option<PathBuf>,
    /// Trust file overriding the spec's.
    pub trust: Option<PathBuf>,
}

/// `build.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// What was built.
    pub image: ImageReport,
    /// The slot image's dm-verity parameters.
    pub verity: VerityReport,
    /// Boot parameters shared by both slots.
    pub boot: BootReport,
    /// Disk layout.
    pub disk: DiskReport,
    /// Every output file.
    #[serde(rename = "output")]
    pub outputs: Vec<OutputReport>,
    /// Every input.
    pub provenance: toml::Table,
}

/// Identity of the image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageReport {
    /// Product name.
    pub name: String,
    /// Version.
    pub version: Version,
    /// Board.
    pub board: String,
    /// Kernel release.
    pub kernel_release: String,
}

/// dm-verity parameters: the typed [`verity::VerityInfo`] the manifest and the boot entries
/// carry (`root_hash`, `salt`, `data_blocks`, `hash_offset`), and the superblock's UUID.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerityReport {
    /// What the kernel needs to map the slot.
    #[serde(flatten)]
    pub info: verity::VerityInfo,
    /// UUID in the verity superblock.
    pub uuid: String,
}

/// Kernel command line parts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootReport {
    /// Options every entry carries besides `slate.slot=` and `slate.verity=`.
    pub options: String,
}

/// Disk layout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiskReport {
    /// Disk size in bytes.
    pub size: u64,
    /// Disk GUID.
    pub guid: String,
    /// ESP size, MiB.
    pub esp_mib: u64,
    /// Slot size, MiB.
    pub slot_mib: u64,
    /// Data size, MiB.
    pub data_mib: u64,
    /// Bytes the bmap maps.
    pub mapped_bytes: u64,
}

/// One output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputReport {
    /// File name in the output folder.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the file.
    pub sha256: Digest32,
}

impl Report {
    /// Reads `build.toml` from an output folder.
    pub fn load(dir: &Path) -> Result<Report> {
        let path = dir.join("build.toml");
        let bytes = std::fs::read(&path).map_err(|e| BuildError::Read {
            path: path.clone(),
            source: e,
        })?;
        Ok(crate::error::parse_toml(&path, &bytes)?)
    }
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

fn epoch() -> Result<i64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => s
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|&e| e >= DEFAULT_EPOCH)
            .with_context(|| format!("SOURCE_DATE_EPOCH={s:?} is not a number of seconds at or after 1980-01-01 ({DEFAULT_EPOCH})")),
        Err(_) => Ok(DEFAULT_EPOCH),
    }
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
    PathBuf::from(rel)
}

/// Runs a whole build.
pub fn build(opts: &BuildOptions) -> Result<Report> {
    let progress = Progress::new(opts.quiet);
    let spec = LoadedSpec::load(&opts.spec)?;
    let version = opts
        .version
        .clone()
        .unwrap_or_else(|| spec.spec.version.clone());
    let board_name = opts
        .board
        .clone()
        .unwrap_or_else(|| spec.spec.board.clone());
    let boards_dir = opts
        .boards
        .clone()
        .unwrap_or_else(|| default_dir(&spec.dir, "boards"));
    let board = LoadedBoard::load(&boards_dir, &board_name)?;
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
    progress.step(format!(
        "building {} {} for {}",
        spec.spec.name, version, board_name
    ));

    // Inputs: packages and device binaries.
    let debs_dir = opts
        .debs
        .clone()
        .unwrap_or_else(|| default_dir(&spec.dir, ".cache/debs"));
    let cache = DebCache::open(&debs_dir)?;
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
        ("sha256".into(), sha256_hex(&spec.bytes)),
    ]);
    prov.board = BTreeMap::from([
        ("name".into(), board_name.clone()),
        ("sha256".into(), sha256_hex(&board.bytes)),
    ]);
    let mut read_deb = |name: &str, role: &str| -> Result<Vec<u8>> {
        let (rec, bytes) = cache.read(name)?;
        prov.debs.push(DebUsed {
            name: rec.name,
            version: rec.version,
            role: role.into(),
            sha256: rec.sha256,
        });
        Ok(bytes)
    };
    let kernel_deb = read_deb(&board.board.kernel_package, "kernel")?;
    let boot_deb = read_deb(&board.board.bootloader_package, "bootloader")?;
    let mut packages = Vec::new();
    for p in &spec.spec.packages {
        packages.push((p.name.clone(), read_deb(&p.name, "rootfs")?));
    }
    let agent = agentbin::locate(opts.agent_dir.as_deref(), progress)?;
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

    // Trees.
    progress.step("composing the root tree");
    let mut root = compose::root(
        &RootInputs {
            spec: &spec,
            version: &version,
            board: &board.board,
            packages: &packages,
            agent: &agent,
            trust: trust.as_deref(),
        },
        &mut prov,
    )?;
    let prov_text = prov.to_toml();
    compose::add_provenance(&mut root, &prov_text)?;
    let kernel = kernel::extract(
        &kernel_deb,
        &board.board.kernel_package,
        &board.board.modules,
    )?;

    // Outputs, into a scratch folder beside the final one.
    let partial = partial_dir(&opts.out);
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing stale {}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let result = write_outputs(
        &agent, &partial, &spec, &version, &board, &root, &kernel, &boot_deb, epoch, &prov_text,
        progress,
    );
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

#[allow(clippy::too_many_arguments)]
fn write_outputs(
    agent: &agentbin::AgentBinaries,
    dir: &Path,
    spec: &LoadedSpec,
    version: &Version,
    board: &LoadedBoard,
    root: &crate::tree::Tree,
    kernel: &kernel::Kernel,
    boot_deb: &[u8],
    epoch: i64,
    prov_text: &str,
    progress: Progress,
) -> Result<Report> {
    let b = &board.board;
    let id = identity(spec, version, &b.name);
    let scratch = dir.join(".scratch");
    std::fs::create_dir_all(&scratch)?;
    let mtime = u32::try_from(epoch).context("SOURCE_DATE_EPOCH beyond 2106")?;

    // Root image: squashfs, then the verity tree appended.
    let tree_bytes = root.file_bytes()?;
    progress.step(format!(
        "squashfs (zstd {}) of {} entries, {:.1} MiB of files",
        spec.spec.squashfs.compression_level,
        root.len(),
        tree_bytes as f64 / 1048576.0
    ));
    let spinner = progress.spinner("compressing");
    let rootfs_path = dir.join("rootfs.img");
    let mut rootfs = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&rootfs_path)?;
    let data_len = squashfs::write(
        root,
        mtime,
        spec.spec.squashfs.compression_level,
        &mut rootfs,
    )?;
    spinner.finish_and_clear();
    let salt = Sha256::new()
        .chain_update(b"slate-verity-salt\0")
        .chain_update(&id)
        .finalize()
        .to_vec();
    let verity_uuid = Guid::derive("slate-verity-uuid", &id);
    rootfs.seek(SeekFrom::Start(0))?;
    let bar = progress.bytes(data_len, "dm-verity hash tree");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tree = verity::build(
        std::io::BufReader::new(&rootfs),
        data_len,
        &salt,
        verity_uuid,
        threads,
        &mut |n| bar.set_position(n),
    )?;
    bar.finish_and_clear();
    rootfs.seek(SeekFrom::Start(tree.info.hash_offset))?;
    rootfs.write_all(&tree.area)?;
    rootfs.sync_all()?;
    drop(rootfs);
    let image_bytes = tree.info.image_size();
    let slot_bytes = b.disk.slot_mib << 20;
    if image_bytes > slot_bytes {
        return Err(BuildError::RootTooLarge {
            image_bytes,
            image_mib: image_bytes as f64 / 1048576.0,
            slot_bytes,
            slot_mib: b.disk.slot_mib,
            board: b.name.clone(),
        }
        .into());
    }
    progress.step(format!(
        "root image {:.1} MiB, root hash {}",
        image_bytes as f64 / 1048576.0,
        tree.info.root_hash
    ));

    // Kernel and initramfs.
    progress.step(format!(
        "initramfs: slate-init + {} modules for kernel {}",
        kernel.modules.len(),
        kernel.release
    ));
    let initrd_tree = compose::initramfs(kernel, b, agent)?;
    let cpio = cpio::write(&initrd_tree, mtime, Vec::new())?;
    let initrd = zstd::bulk::compress(&cpio, 19).context("compressing the initramfs")?;
    std::fs::write(dir.join("initrd.img"), &initrd)?;
    std::fs::write(dir.join("vmlinuz"), &kernel.vmlinuz)?;

    // ESP.
    let mut boot_efi = None;
    crate::deb::for_each_entry(boot_deb, &b.bootloader_package, |e, r| {
        if e.path == b.bootloader_path.trim_start_matches('/') {
            let mut v = Vec::new();
            std::io::Read::read_to_end(r, &mut v)?;
            boot_efi = Some(v);
        }
        Ok(())
    })?;
    let boot_efi = boot_efi.with_context(|| {
        format!(
            "{} has no {}; check the board's bootloader_path",
            b.bootloader_package, b.bootloader_path
        )
    })?;
    let mut options = vec![format!("console={}", b.console), "panic=5".to_string()];
    options.extend(b.cmdline.iter().cloned());
    let options = options.join(" ");
    let entry = Entry {
        title: format!("{} {} (slot a)", spec.spec.name, version),
        version: version.clone(),
        linux: Entry::kernel_path(Slot::A),
        initrd: Entry::initrd_path(Slot::A),
        options: BootParams {
            slot: Slot::A,
            verity: tree.info.clone(),
        }
        .options(&options),
    };
    let entry_name = EntryName::good(Slot::A, version.clone());
    let loader_conf = "timeout 0\neditor no\nauto-entries no\nauto-firmware no\nconsole-mode keep\nrandom-seed-mode off\n";
    let esp_files = vec![
        EspFile {
            path: format!("EFI/BOOT/{}", b.arch.default_efi_name()),
            bytes: boot_efi,
        },
        EspFile {
            path: "loader/loader.conf".into(),
            bytes: loader_conf.into(),
        },
        EspFile {
            path: format!("{ENTRIES_DIR}/{entry_name}"),
            bytes: entry.render().into_bytes(),
        },
        EspFile {
            path: Entry::kernel_path(Slot::A).trim_start_matches('/').into(),
            bytes: kernel.vmlinuz.clone(),
        },
        EspFile {
            path: Entry::initrd_path(Slot::A).trim_start_matches('/').into(),
            bytes: initrd.clone(),
        },
    ];
    let table = layout::table(b.arch, b.disk.sizes(), &id);
    let esp_part = table
        .by_name(layout::ESP_LABEL)
        .context("layout has no ESP")?;
    progress.step("ESP (FAT32, mtools) and data (ext4)");
    let esp_img = scratch.join("esp.img");
    let serial = u32::from_le_bytes(Guid::derive("slate-esp-serial", &id).0[..4].try_into()?);
    esp::build(
        &esp_img,
        esp_part.size(),
        &esp_files,
        serial,
        epoch,
        esp_part.first_lba,
        &scratch.join("esp"),
    )?;
    let data_img = scratch.join("data.img");
    let data_part = table
        .by_name(layout::DATA_LABEL)
        .context("layout has no data partition")?;
    ext4::build(
        &data_img,
        data_part.size(),
        Guid::derive("slate-data-uuid", &id),
        Guid::derive("slate-data-hash-seed", &id),
        epoch,
    )?;

    // Disk and block map.
    let disk_path = dir.join("disk.img");
    let parts = [
        Part {
            label: layout::ESP_LABEL,
            source: &esp_img,
            whole: false,
        },
        Part {
            label: Slot::A.label(),
            source: &rootfs_path,
            whole: true,
        },
        Part {
            label: layout::DATA_LABEL,
            source: &data_img,
            whole: false,
        },
    ];
    let bar = progress.bytes(
        esp_part.size() + image_bytes + data_part.size(),
        "writing disk.img",
    );
    let mapped = disk::assemble(&disk_path, &table, &parts, &|n| bar.set_position(n))?;
    bar.finish_and_clear();
    let mut disk_file = File::open(&disk_path)?;
    let mapped_total: u64 = mapped.iter().map(|m| m.1).sum();
    let bar = progress.bytes(mapped_total, "block map checksums");
    let bmap = Bmap::compute(&mut disk_file, &mapped, &|n| bar.set_position(n))?;
    bar.finish_and_clear();
    std::fs::write(dir.join("disk.img.bmap"), bmap.render())?;
    std::fs::remove_dir_all(&scratch)?;

    // Report.
    let mut outputs = Vec::new();
    for name in [
        "rootfs.img",
        "vmlinuz",
        "initrd.img",
        "disk.img",
        "disk.img.bmap",
    ] {
        let (size, sha256) = crate::hashing::hash_file(&dir.join(name))?;
        outputs.push(OutputReport {
            name: name.into(),
            size,
            sha256,
        });
    }
    let report = Report {
        image: ImageReport {
            name: spec.spec.name.clone(),
            version: version.clone(),
            board: b.name.clone(),
            kernel_release: kernel.release.clone(),
        },
        verity: VerityReport {
            info: tree.info.clone(),
            uuid: verity_uuid.to_string(),
        },
        boot: BootReport { options },
        disk: DiskReport {
            size: table.total_sectors * slate_core::gpt::SECTOR,
            guid: table.disk_guid.to_string(),
            esp_mib: b.disk.esp_mib,
            slot_mib: b.disk.slot_mib,
            data_mib: b.disk.data_mib,
            mapped_bytes: bmap.mapped_bytes(),
        },
        outputs,
        provenance: toml::from_str(prov_text).context("re-reading provenance")?,
    };
    let text = format!(
        "{REPORT_MAGIC}: written by `slate build`; read by `slate inspect` and the tools that follow.\n{}",
        toml::to_string(&report).context("serialising build.toml")?
    );
    std::fs::write(dir.join("build.toml"), text)?;
    Ok(report)
}
