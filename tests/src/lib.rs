//! Fixtures for Slate's end-to-end tests: real device binaries, real images, real QEMU.
//!
//! Images are built once per test process with the product's own build path (the imager
//! library, the agent crate compiled static) and copied per test so every boot starts from
//! the same bytes.

use anyhow::{Context, Result};
use slate_imager::build::{self, BuildOptions, Report};
use slate_qemu::{Vm, VmConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// Generous bound for one boot to the healthy marker under TCG on a loaded CI machine.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Builds the agent's static release binaries once, in their own target folder so the
/// nested cargo never waits on the lock of the cargo running the tests.
pub fn agent_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = workspace().join("target/e2e-agent");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace())
            .args([
                "build",
                "--release",
                "--locked",
                "--quiet",
                "-p",
                "slate-agent",
                "--target",
                "x86_64-unknown-linux-gnu",
            ])
            .arg("--target-dir")
            .arg(&target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env(
                "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
                "-C target-feature=+crt-static",
            )
            .status()
            .expect("running cargo to build the agent");
        assert!(status.success(), "building slate-agent failed");
        target.join("x86_64-unknown-linux-gnu/release")
    })
}

/// A built image: its folder and report.
pub struct Image {
    /// Output folder of `slate build`.
    pub dir: PathBuf,
    /// Its build.toml.
    pub report: Report,
}

/// Builds `rootfs/image.toml` for the QEMU board at `version` (cached per version).
pub fn image(version: &str) -> &'static Image {
    static IMAGES: std::sync::Mutex<Vec<(String, &'static Image)>> =
        std::sync::Mutex::new(Vec::new());
    let mut images = IMAGES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, img)) = images.iter().find(|(v, _)| v == version) {
        return img;
    }
    let out = workspace().join("target/e2e-images").join(version);
    let opts = BuildOptions {
        spec: workspace().join("rootfs/image.toml"),
        board: Some("qemu-x86_64".into()),
        version: Some(version.parse().expect("test version")),
        out: out.clone(),
        force: true,
        quiet: true,
        debs: Some(workspace().join(".cache/debs")),
        boards: Some(workspace().join("boards")),
        agent_dir: Some(agent_dir().to_path_buf()),
        trust: None,
    };
    let report = build::build(&opts).unwrap_or_else(|e| {
        panic!("building the test image {version}: {e:#} (run `cargo xtask deps` first)")
    });
    let img: &'static Image = Box::leak(Box::new(Image { dir: out, report }));
    images.push((version.to_string(), img));
    img
}

/// A private copy of a disk image (sparse), in a temp folder that holds the VM's files too.
pub fn copy_disk(src: &Path) -> Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::Builder::new().prefix("slate-e2e-").tempdir()?;
    let disk = dir.path().join("disk.img");
    let ok = Command::new("cp")
        .arg("--sparse=always")
        .arg(src)
        .arg(&disk)
        .status()?
        .success();
    anyhow::ensure!(ok, "copying {}", src.display());
    Ok((dir, disk))
}

/// Boots `disk` with default settings plus `tweak`.
pub fn boot(disk: &Path, work: &Path, tweak: impl FnOnce(&mut VmConfig)) -> Result<Vm> {
    let mut cfg = VmConfig::new(disk, work);
    tweak(&mut cfg);
    Vm::start(&cfg).context("starting QEMU")
}

/// Byte offset and size of a partition, read from the disk's GPT.
pub fn partition(disk: &Path, label: &str) -> Result<(u64, u64)> {
    use std::io::Read;
    let mut head = vec![0u8; 34 * 512];
    std::fs::File::open(disk)?.read_exact(&mut head)?;
    let t = slate_core::gpt::Table::decode(&head)?;
    let p = t
        .by_name(label)
        .with_context(|| format!("no partition {label}"))?;
    Ok((p.offset(), p.size()))
}

/// Offset inside a squashfs image of the first data block of the file at `path`.
pub fn squashfs_file_offset(image: &Path, path: &str) -> Result<u64> {
    let f = std::io::BufReader::new(std::fs::File::open(image)?);
    let fs = backhand::FilesystemReader::from_reader(f)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", image.display()))?;
    for node in fs.files() {
        if node.fullpath == Path::new(path) {
            if let backhand::InnerNode::File(backhand::SquashfsFileReader::Basic(b)) = &node.inner {
                return Ok(u64::from(b.blocks_start));
            }
            if let backhand::InnerNode::File(backhand::SquashfsFileReader::Extended(e)) =
                &node.inner
            {
                return Ok(e.blocks_start);
            }
        }
    }
    anyhow::bail!("{path} not found as a file in {}", image.display())
}

/// Flips one bit of the byte at `offset` in `file`.
pub fn flip_byte(file: &Path, offset: u64) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)?;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(&mut b)?;
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(&[b[0] ^ 0x10])?;
    f.sync_all()?;
    Ok(())
}
