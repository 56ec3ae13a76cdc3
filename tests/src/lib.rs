//! Fixtures for Slate's end-to-end tests: real device binaries, real images, real QEMU.
//!
//! Images are built once per test process with the product's own build path (the imager
//! library, the agent crate compiled static) and copied per test so every boot starts from
//! the same bytes.

use anyhow::{Context, Result};
use slate_imager::image::build::{self, BuildOptions, Report};
use slate_qemu::{Vm, VmConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub mod apps;
pub mod channel;
pub mod corpus;
pub mod ddi;
pub mod disk;
pub mod faultproxy;
pub mod goosebit;
mod keys;
mod once;
mod operator;
mod variant;

pub use keys::{keys, secure_boot_keys, Keys};
pub use operator::{
    access, handshake_flood, operators, raw_exchange, raw_request, tls_stream, FloodCount,
    Operators,
};
pub use variant::Variant;

/// Generous bound for one boot to the healthy marker under TCG on a loaded CI machine.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Builds the agent's static device binaries for `arch`, once per process for each kind: with
/// the harness's cut points (`hooks`, the `test-hooks` feature) for the gauntlet's test images,
/// or as production builds them (no hooks compiled in). All share one target folder of their
/// own, so the nested cargo never waits on the lock of the cargo running the tests; each
/// result is copied out before another build replaces it.
pub fn agent_dir_for(hooks: bool) -> &'static Path {
    agent_dir_built(slate_core::layout::Arch::X86_64, hooks)
}

/// [`agent_dir_for`] for a board's architecture (arm64's is cross-compiled).
pub fn agent_dir_built(arch: slate_core::layout::Arch, hooks: bool) -> &'static Path {
    static DIRS: once::PerKey<(slate_core::layout::Arch, bool), PathBuf> = once::PerKey::new();
    DIRS.get((arch, hooks), || build_agent(arch, hooks))
}

/// One cargo build of the device binaries, copied out of the shared target folder. Builds
/// take turns: each overwrites the same files there, which must be copied before the next.
fn build_agent(arch: slate_core::layout::Arch, hooks: bool) -> PathBuf {
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    let target = workspace().join("target/e2e-agent");
    let triple = slate_imager::image::agentbin::target_for(arch);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace())
        .args([
            "build",
            "--profile",
            slate_imager::image::agentbin::DEVICE_PROFILE,
            "--locked",
            "--quiet",
            "-p",
            "slate-agent",
            "--target",
            triple,
        ])
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .envs(
            slate_imager::image::agentbin::cargo_env(arch).expect("the device target's toolchain"),
        );
    if hooks {
        cmd.args(["--features", "test-hooks"]);
    }
    let status = cmd.status().expect("running cargo to build the agent");
    assert!(status.success(), "building slate-agent for {triple} failed");
    let built = target
        .join(triple)
        .join(slate_imager::image::agentbin::DEVICE_PROFILE);
    let out = target.join(format!(
        "{}{}",
        if hooks {
            "with-test-hooks"
        } else {
            "production"
        },
        if arch == slate_core::layout::Arch::X86_64 {
            ""
        } else {
            "-arm64"
        }
    ));
    std::fs::create_dir_all(&out).expect("agent folder");
    for b in ["slate-init", "slated"] {
        std::fs::copy(built.join(b), out.join(b)).expect("copying the agent");
    }
    out
}

/// The agent with the harness's cut points, for test images.
pub fn agent_dir() -> &'static Path {
    agent_dir_for(true)
}

/// A built image: its folder and report.
pub struct Image {
    /// Output folder of `slate build`.
    pub dir: PathBuf,
    /// Its build.toml.
    pub report: Report,
}

/// Builds `rootfs/image.toml` (or its variant) for the QEMU board at `version` and security
/// epoch 0, trusting the test keys; cached per version and variant.
pub fn image_variant(version: &str, variant: Variant) -> &'static Image {
    image_at(version, variant, 0)
}

/// [`image_variant`] at a security epoch.
pub fn image_at(version: &str, variant: Variant, security_epoch: u64) -> &'static Image {
    image_built(version, variant, security_epoch, true)
}

/// [`image_at`] as production builds it: the agent without the harness's cut points
/// (compiled out) and no `test_hooks` in the spec.
pub fn production_image(version: &str, variant: Variant, security_epoch: u64) -> &'static Image {
    image_built(version, variant, security_epoch, false)
}

fn image_built(
    version: &str,
    variant: Variant,
    security_epoch: u64,
    hooks: bool,
) -> &'static Image {
    static IMAGES: once::PerKey<(String, Variant, u64, bool), Image> = once::PerKey::new();
    IMAGES.get(
        (version.to_string(), variant, security_epoch, hooks),
        || build_image(version, variant, security_epoch, hooks),
    )
}

/// One build of a test image: the demo spec with the harness's cut points enabled (never in
/// production images), changed as the variant asks ([`Variant::spec`]). Each key has its own
/// spec and output folders, so builds of different keys may run at once.
fn build_image(version: &str, variant: Variant, security_epoch: u64, hooks: bool) -> Image {
    let kind = if hooks { "hooks" } else { "production" };
    let dir = workspace().join(format!(
        "target/e2e-specs/{version}-{variant:?}-epoch{security_epoch}-{kind}"
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("spec dir");
    let ok = Command::new("cp")
        .arg("-a")
        .arg(workspace().join("rootfs/."))
        .arg(&dir)
        .status()
        .expect("cp");
    assert!(ok.success());
    let text = std::fs::read_to_string(dir.join("image.toml")).expect("spec");
    let text = variant.spec(text, hooks);
    std::fs::write(dir.join("image.toml"), text).expect("spec");
    let spec = dir.join("image.toml");
    let out = workspace().join("target/e2e-images").join(format!(
        "{version}-{variant:?}-epoch{security_epoch}-{kind}"
    ));
    let opts = BuildOptions {
        secure_boot: None,
        pcr_key: None,
        timings: false,
        spec,
        board: Some(variant.board().into()),
        version: Some(version.parse().expect("test version")),
        out: out.clone(),
        force: true,
        quiet: true,
        debs: Some(workspace().join(".cache/debs")),
        cache: Some(workspace().join(".cache/slate")),
        boards: Some(workspace().join("boards")),
        agent_dir: Some(agent_dir_built(variant.arch(), hooks).to_path_buf()),
        trust: Some(keys().trust_file.clone()),
        operators: Some(operators().ca_crt.clone()),
        // Test images keep the demo's debug shell and enable the harness's cut points.
        allow: build::policy::Allow {
            insecure: false,
            debug: true,
        },
        security_epoch,
    };
    let report = build::build(&opts).unwrap_or_else(|e| {
        panic!("building the test image {version}: {e:#} (run `cargo xtask deps` first)")
    });
    Image { dir: out, report }
}

/// The demo image at `version`.
pub fn image(version: &str) -> &'static Image {
    image_variant(version, Variant::Demo)
}

/// A bundle of `img` (at the image's security epoch) signed by both trusted keys, made once
/// per image.
pub fn bundle(img: &Image) -> PathBuf {
    static MADE: once::PerKey<PathBuf, PathBuf> = once::PerKey::new();
    let name = img
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out = img.dir.with_file_name(format!("{name}.slate"));
    MADE.get(out.clone(), || {
        slate_imager::operator::bundle::make(
            &img.dir,
            &[keys().k1.clone(), keys().k2.clone()],
            None,
            None,
            &out,
        )
        .expect("making a bundle");
        out
    })
    .clone()
}

/// A bundle taken apart, for crafting hostile variants.
#[derive(Clone)]
pub struct Parts {
    /// Manifest (re-serialised by `resign`).
    pub manifest: slate_core::manifest::Manifest,
    /// Exact manifest bytes written.
    pub manifest_bytes: Vec<u8>,
    /// Signatures written.
    pub sigs: slate_core::manifest::Signatures,
    /// Tar entries after the signature file, in order.
    pub entries: Vec<(String, Vec<u8>)>,
}

impl Parts {
    /// Reads a bundle whole.
    pub fn read(path: &Path) -> Parts {
        let f = std::fs::File::open(path).expect("bundle");
        let mut r = slate_core::bundle::BundleReader::new(std::io::BufReader::new(f));
        let (manifest_bytes, sigs) = slate_core::install::read_head(&mut r).expect("bundle head");
        let manifest = slate_core::manifest::Manifest::parse(&manifest_bytes).expect("manifest");
        let mut entries = Vec::new();
        for a in &manifest.artifacts {
            let n = r.expect_entry(&a.name, u64::MAX).expect("entry");
            entries.push((a.name.clone(), r.read_small(&a.name, n).expect("data")));
        }
        Parts {
            manifest,
            manifest_bytes,
            sigs,
            entries,
        }
    }

    /// Re-serialises the manifest (after edits) and signs it with `signers`.
    pub fn resign(&mut self, signers: &[&ed25519_dalek::SigningKey]) {
        use ed25519_dalek::Signer;
        self.manifest_bytes = self.manifest.to_bytes();
        self.sigs.signatures = signers
            .iter()
            .map(|k| slate_core::manifest::SignatureEntry {
                key_id: slate_core::manifest::key_id(&k.verifying_key()),
                signature: hex_encode(&k.sign(&self.manifest_bytes).to_bytes()),
            })
            .collect();
    }

    /// Replaces an artifact's bytes and fixes the manifest's size and sha256.
    pub fn replace_artifact(&mut self, name: &str, data: Vec<u8>) {
        use sha2_like::digest;
        let a = self
            .manifest
            .artifacts
            .iter_mut()
            .find(|a| a.name == name)
            .expect("artifact");
        a.size = data.len() as u64;
        a.sha256 = digest(&data);
        self.entries
            .iter_mut()
            .find(|(n, _)| n == name)
            .expect("entry")
            .1 = data;
    }

    /// Writes a bundle.
    pub fn write(&self, out: &Path) {
        let file = std::io::BufWriter::new(std::fs::File::create(out).expect("create"));
        let mut w = slate_core::bundle::Writer::new(file, 0);
        w.head(&self.manifest_bytes, &self.sigs.to_bytes())
            .expect("write");
        for (n, d) in &self.entries {
            w.entry(n, d).expect("write");
        }
        std::io::Write::flush(&mut w.finish().expect("write")).expect("flush");
    }
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

mod sha2_like {
    /// sha256 by the standard tool, so the tests do not share Slate's hashing code. A failed
    /// or empty answer panics: two failures must never compare equal.
    pub fn digest(data: &[u8]) -> slate_core::Digest32 {
        use std::io::Write;
        let mut child = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sha256sum");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(data)
            .expect("write");
        let out = child.wait_with_output().expect("sha256sum");
        assert!(out.status.success(), "sha256sum failed: {}", out.status);
        let text = String::from_utf8_lossy(&out.stdout);
        let hex = text.split_whitespace().next().unwrap_or_default();
        hex.parse()
            .unwrap_or_else(|e| panic!("sha256sum printed {text:?}: {e}"))
    }
}

/// sha256 of a byte range of a file (host side), for "byte-identical" checks.
pub fn hash_range(file: &Path, offset: u64, len: u64) -> slate_core::Digest32 {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(file).expect("open");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    let mut data = Vec::new();
    f.take(len).read_to_end(&mut data).expect("read");
    sha2_like::digest(&data)
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

/// Raises this process's descriptor limit to the hard limit (QEMU inherits it), so tests
/// that open thousands of connections to a guest are limited by the guest, not by the host.
pub fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    if let Some(max) = lim.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(max),
                maximum: Some(max),
            },
        );
    }
}

/// Boots `disk` with default settings plus `tweak`.
pub fn boot(disk: &Path, work: &Path, tweak: impl FnOnce(&mut VmConfig)) -> Result<Vm> {
    raise_fd_limit();
    let mut cfg = VmConfig::new(disk, work);
    cfg.tls = Some(operators().client.clone());
    tweak(&mut cfg);
    Vm::start(&cfg).context("starting QEMU")
}

/// Checks a disk image's ESP with `fsck.fat -n` (on a copy of the partition in `work`). Clean
/// means exit 0 *and* nothing reported: the tool exits 0 for some problems it only prints (a
/// dirty bit, a boot sector that differs from its backup), so its output must be exactly the
/// version line and the summary. Err carries what it printed.
pub fn esp_fsck(disk: &Path, work: &Path) -> Result<(), String> {
    use std::io::{Read, Seek, SeekFrom};
    let (off, len) = partition(disk, "esp").map_err(|e| format!("{e:#}"))?;
    let esp = work.join("esp-fsck.img");
    let copy = (|| -> std::io::Result<()> {
        let mut from = std::fs::File::open(disk)?;
        from.seek(SeekFrom::Start(off))?;
        let mut to = std::fs::File::create(&esp)?;
        let copied = std::io::copy(&mut from.take(len), &mut to)?;
        if copied != len {
            return Err(std::io::Error::other(format!(
                "copied {copied} of the ESP's {len} bytes"
            )));
        }
        Ok(())
    })();
    copy.map_err(|e| format!("copying the ESP of {}: {e}", disk.display()))?;
    let verdict = slate_oracles::fsck_fat(&esp);
    let _ = std::fs::remove_file(&esp);
    verdict
}

/// A disk that looks like a Slate disk to anything matching labels: the same four partition
/// names with other PARTUUIDs, and an ext4 `data` holding `DECOY`. A device must not use it.
pub fn decoy_disk(dir: &Path) -> Result<PathBuf> {
    use slate_core::layout::{self, Arch, Sizes};
    use std::io::{Seek, SeekFrom, Write};
    let sizes = Sizes {
        esp_mib: 1,
        slot_mib: 1,
        data_mib: 8,
    };
    let table = layout::table(Arch::X86_64, sizes, b"a decoy, not the boot disk");
    let gpt = table.encode()?;
    let files = dir.join("decoy-files");
    std::fs::create_dir_all(&files)?;
    std::fs::write(files.join("DECOY"), "not the device's data\n")?;
    let ext4 = dir.join("decoy-data.ext4");
    std::fs::File::create(&ext4)?.set_len(sizes.data_mib << 20)?;
    let out = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&files)
        .arg(&ext4)
        .output()
        .context("running mkfs.ext4 (e2fsprogs)")?;
    anyhow::ensure!(
        out.status.success(),
        "mkfs.ext4: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join("decoy.img");
    let mut f = std::fs::File::create(&path)?;
    f.set_len(sizes.disk_bytes())?;
    f.write_all(&gpt.primary)?;
    f.seek(SeekFrom::Start(gpt.backup_offset))?;
    f.write_all(&gpt.backup)?;
    let data = table
        .by_name(layout::DATA_LABEL)
        .context("the decoy table has no data partition")?;
    f.seek(SeekFrom::Start(data.offset()))?;
    f.write_all(&std::fs::read(&ext4)?)?;
    f.sync_all()?;
    Ok(path)
}

/// A disk image's partition by label, from its primary GPT.
fn gpt_partition(disk: &Path, label: &str) -> Result<slate_core::gpt::Partition> {
    use std::io::Read;
    let mut head = vec![0u8; slate_core::gpt::PRIMARY_BYTES];
    std::fs::File::open(disk)?.read_exact(&mut head)?;
    let t = slate_core::gpt::Table::decode(&head)?;
    t.by_name(label)
        .cloned()
        .with_context(|| format!("no partition labelled {label} in {}", disk.display()))
}

/// The PARTUUID of a disk image's partition.
pub fn part_uuid(disk: &Path, label: &str) -> Result<slate_core::guid::Guid> {
    Ok(gpt_partition(disk, label)?.unique_guid)
}

/// Byte offset and size of a partition, read from the disk's GPT.
pub fn partition(disk: &Path, label: &str) -> Result<(u64, u64)> {
    let p = gpt_partition(disk, label)?;
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

/// `GET /v1/status`, parsed into the agent's own type. A connection that fails (a handshake
/// that did not finish within the client's 10 s: an emulated arm64 guest beside another
/// machine on two cores) is tried again a few times: the machine being slow is not what a
/// test checks.
pub fn status(vm: &slate_qemu::Vm) -> slate_core::api::Status {
    let mut tries = 0;
    let (code, body) = loop {
        match vm.http("GET", slate_core::api::STATUS_ROUTE) {
            Ok(answer) => break answer,
            Err(e) if tries < 5 => {
                tries += 1;
                eprintln!("status: {e:#}; trying again ({tries} of 5)");
                std::thread::sleep(std::time::Duration::from_secs(2));
            }
            Err(e) => panic!("status: {e:#}"),
        }
    };
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("status {body}: {e}"))
}

/// The status's channel, once the agent has started pulling (it starts once the boot's health
/// checks have concluded, a moment after `committed`); panics after two minutes without.
pub fn channel_status(vm: &slate_qemu::Vm) -> slate_core::api::ChannelStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if let Some(c) = status(vm).channel {
            return c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the agent never started its channel"
        );
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// A slot's state and version as the status shows them (panics when the status has no such
/// slot).
pub fn slot_state(
    s: &slate_core::api::Status,
    slot: slate_core::layout::Slot,
) -> (slate_core::api::SlotState, String) {
    let v = s.slot_status(slot).expect("slot in status");
    let version = v.version.as_ref().map(|v| v.to_string());
    (v.state, version.unwrap_or_default())
}

/// The number after `key` (`bytes=`) in a console marker's text (panics naming the line when
/// there is none: a marker without its field is a failure, not a zero).
pub fn marker_number(text: &str, key: &str) -> u64 {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}

/// The slot an upload answer says was written (panics on a refusal, with its reason).
pub fn installed_slot(answer: &slate_core::api::UploadAnswer) -> slate_core::layout::Slot {
    match answer {
        slate_core::api::UploadAnswer::Installed { slot, .. } => *slot,
        other => panic!("not installed: {other:?}"),
    }
}
