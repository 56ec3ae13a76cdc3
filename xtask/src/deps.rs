//! `cargo xtask deps`: the boards' kernel and boot loader packages into `.cache/debs` (with an
//! index of resolved name, version and sha256), the repository specs' locked packages into
//! `.cache/slate` (`slate lock`/`slate fetch`), and the host tools the build and the tests use.
//!
//! Nothing is hard-coded about versions: `linux-image-amd64` is resolved through apt to the
//! versioned kernel package of the day, so Debian's security updates flow in.

use crate::workspace::root;
use anyhow::{bail, Context, Result};
use slate_imager::image::debian::deb::{DebIndex, DebRecord, INDEX};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Debian packages providing the host tools: the imager's (mtools, e2fsprogs), the oracles the
/// tests use (gdisk, dosfstools, squashfs-tools, cryptsetup-bin, bmap-tools, cpio, zstd,
/// openssl, qemu-io), QEMU with OVMF for the boot tests, nginx (the channel scenario's static
/// HTTPS server) and the font fleet-sim's plot is drawn with.
pub const HOST_PACKAGES: &[&str] = &[
    "mtools",
    "e2fsprogs",
    "gdisk",
    "dosfstools",
    "squashfs-tools",
    "cryptsetup-bin",
    "bmap-tools",
    "cpio",
    "zstd",
    "openssl",
    "qemu-system-x86",
    "qemu-utils",
    "ovmf",
    "time",
    "fonts-dejavu-core",
    "nginx",
    // The qemu-arm64 board: its QEMU and firmware, and the cross linker (and C compiler, for
    // AWS-LC) of its static device binaries.
    "qemu-system-arm",
    "qemu-efi-aarch64",
    "gcc-aarch64-linux-gnu",
    // Its C library headers: only a Recommends of the compiler, which --no-install-recommends
    // leaves out, and AWS-LC's C needs them (a fresh machine failed on sys/types.h).
    "libc6-dev-arm64-cross",
    // Secure Boot images: sbsign and sbverify (signing UKIs and systemd-boot; the tests'
    // oracle), sbattach (the tests' unsigned UKI).
    "sbsigntool",
    // `ip` for the DHCP client's test (a network namespace with a rogue server), and the zone
    // database `[update] timezone` is resolved from (both in most installs, not in all).
    "iproute2",
    "tzdata",
    // Measured boot: a software TPM for QEMU and the tests (swtpm, swtpm_setup), and the
    // TPM software stack `systemd-measure sign` (the signed PCR policies' oracle) and
    // tpm2-tools need.
    "swtpm",
    "swtpm-tools",
    "tpm2-tools",
];

/// Rust targets of the boards' device binaries besides the host's, and of the boot-retry
/// loader of Secure Boot images (`bootretry/`, a UEFI application).
const RUST_TARGETS: &[&str] = &["aarch64-unknown-linux-gnu", "x86_64-unknown-uefi"];

/// The repository's specs built for a board of another architecture than their own
/// board's: each has its own lock (`image.<arch>.lock`).
const OTHER_ARCH_BUILDS: &[(&str, &str)] = &[("rootfs/image.toml", "qemu-arm64")];

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn apt_show(pkg: &str) -> Result<Option<(String, String, String)>> {
    let out = Command::new("apt-cache")
        .args(["show", "--no-all-versions", pkg])
        .output()
        .context("running apt-cache")?;
    if !out.status.success() || out.stdout.is_empty() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or("")
            .to_string()
    };
    Ok(Some((field("Package"), field("Version"), field("Depends"))))
}

/// Resolves a kernel metapackage (`linux-image-amd64`) to the versioned package it depends on.
fn resolve(pkg: &str) -> Result<(String, String)> {
    let (name, version, depends) = apt_show(pkg)?
        .with_context(|| format!("apt knows no package {pkg:?} (run `apt-get update`?)"))?;
    if name.starts_with("linux-image-") {
        if let Some(dep) = depends
            .split(',')
            .map(|d| d.trim().split(' ').next().unwrap_or(""))
            .find(|d| {
                d.starts_with("linux-image-")
                    && d.as_bytes().get(12).is_some_and(u8::is_ascii_digit)
            })
        {
            let (n, v, _) =
                apt_show(dep)?.with_context(|| format!("apt knows no package {dep:?}"))?;
            return Ok((n, v));
        }
    }
    Ok((name, version))
}

/// Package names every spec and board of the host's architecture asks for. Other boards'
/// packages (`qemu-arm64`'s) come through a spec's lock for that architecture (`slate lock`,
/// `slate fetch`): the host's apt knows only its own architecture.
fn wanted_packages() -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("boards"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let b = slate_imager::image::board::LoadedBoard::load(&root().join("boards"), &stem)?;
            if b.board.arch != slate_core::layout::Arch::X86_64 {
                continue;
            }
            names.insert(b.board.kernel_package.clone());
            names.insert(b.board.bootloader_package.clone());
        }
    }
    Ok(names)
}

/// The repository's own specs with their boards folders: the demo, the examples and the
/// imager tests' spec. Their root packages come through `image.lock` like a user's.
pub fn repo_specs() -> Result<Vec<(std::path::PathBuf, std::path::PathBuf)>> {
    let mut specs = vec![
        (root().join("rootfs/image.toml"), root().join("boards")),
        (
            root().join("imager/tests/data/spec/image.toml"),
            root().join("imager/tests/data/boards"),
        ),
    ];
    let mut examples: Vec<_> = std::fs::read_dir(root().join("examples"))?
        .flatten()
        .map(|e| e.path().join("image.toml"))
        .filter(|p| p.is_file())
        .collect();
    examples.sort();
    specs.extend(examples.into_iter().map(|p| (p, root().join("boards"))));
    Ok(specs)
}

/// Where the repository keeps what `slate fetch` downloads for its own specs.
pub fn lock_cache() -> std::path::PathBuf {
    root().join(".cache/slate")
}

/// `slate fetch` for every repository spec; `slate lock` first where the lock is missing or
/// stale, or where the archive no longer has a locked version (Debian keeps only the newest of
/// a suite, so a committed lock ages: it is locked again, and the change shows in `git diff`).
type Build = (std::path::PathBuf, std::path::PathBuf, Option<String>);

/// Every repository spec for its own board, and [`OTHER_ARCH_BUILDS`].
fn all_builds() -> Result<Vec<Build>> {
    Ok(repo_specs()?
        .into_iter()
        .map(|(spec, boards)| (spec, boards, None))
        .chain(OTHER_ARCH_BUILDS.iter().map(|(spec, board)| {
            (
                root().join(spec),
                root().join("boards"),
                Some(board.to_string()),
            )
        }))
        .collect())
}

fn fetch_locked(builds: Vec<Build>) -> Result<()> {
    use slate_imager::image::{build, debian::apt::Apt, debian::lock, spec::LoadedSpec};
    let cache = lock_cache();
    for (spec_path, boards, board_name) in builds {
        let spec = LoadedSpec::load(&spec_path)?;
        if spec.spec.packages.is_empty() {
            continue;
        }
        let (_, board) = build::board_for(&spec, board_name.as_deref(), Some(&boards))?;
        let (wanted, path) = lock::wanted_by(&spec, &board.board);
        let apt = Apt::new(&cache, &spec.spec.debian, &wanted.architecture)?;
        let current = lock::Lock::read(&path)
            .ok()
            .filter(|l| l.check_fresh(&wanted, &path).is_ok());
        let fetched = match &current {
            Some(l) => lock::fetch(&apt, l, &cache.join("debs")).map(|_| ()),
            None => Err(anyhow::anyhow!("no fresh lock")),
        };
        if let Err(e) = fetched {
            eprintln!("deps: locking {} again ({e:#})", spec_path.display());
            let l = lock::lock(&apt, wanted, &path)?;
            lock::fetch(&apt, &l, &cache.join("debs"))?;
        }
        eprintln!("deps: {} fetched", path.display());
    }
    Ok(())
}

fn fetch(cache: &Path) -> Result<()> {
    std::fs::create_dir_all(cache)?;
    let wanted = wanted_packages()?;
    if wanted.iter().any(|p| apt_show(p).ok().flatten().is_none()) {
        if is_root() {
            crate::workspace::run(Command::new("apt-get").args(["update", "-q"]))?;
        } else {
            bail!("apt does not know some of {wanted:?}; run `sudo apt-get update` first");
        }
    }
    let mut index = DebIndex::default();
    for requested in &wanted {
        let (name, version) = resolve(requested)?;
        let existing = std::fs::read_dir(cache)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|f| {
                f.starts_with(&format!("{name}_{}_", version.replace(':', "%3a")))
                    && f.ends_with(".deb")
            });
        let file = match existing {
            Some(f) => f,
            None => {
                let tmp = cache.join(".download");
                let _ = std::fs::remove_dir_all(&tmp);
                std::fs::create_dir_all(&tmp)?;
                // apt drops to the _apt user to download; let it write here.
                std::fs::set_permissions(
                    &tmp,
                    std::os::unix::fs::PermissionsExt::from_mode(0o777),
                )?;
                let status = Command::new("apt-get")
                    .current_dir(&tmp)
                    .args(["download", "-q", &format!("{name}={version}")])
                    .status()
                    .context("running apt-get download")?;
                if !status.success() {
                    bail!("apt-get download {name}={version} failed ({status})");
                }
                let f = std::fs::read_dir(&tmp)?
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .find(|f| f.ends_with(".deb"))
                    .with_context(|| format!("apt-get download {name} left no .deb"))?;
                std::fs::rename(tmp.join(&f), cache.join(&f))?;
                std::fs::remove_dir_all(&tmp)?;
                f
            }
        };
        let bytes = std::fs::read(cache.join(&file))?;
        let sha256 = slate_core::Digest32::of(&bytes);
        eprintln!(
            "  {requested:<20} → {name} {version} ({file}, sha256 {})",
            &sha256.to_string()[..16]
        );
        index.packages.push(DebRecord {
            requested: requested.clone(),
            name,
            version,
            file,
            sha256,
        });
    }
    std::fs::write(cache.join(INDEX), toml::to_string(&index)?)?;
    Ok(())
}

fn missing_host_packages() -> Vec<&'static str> {
    HOST_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect()
}

/// Installs the host packages that are missing. A second pass catches packages that the first
/// one removed: a machine with a newer qemu-utils (backports) loses it when bookworm's
/// qemu-system-x86 comes in, and the NBD and qemu-io tests need it.
fn host_tools() -> Result<()> {
    for pass in 1..=2 {
        let missing = missing_host_packages();
        if missing.is_empty() {
            return Ok(());
        }
        if !is_root() {
            bail!(
                "missing host packages; run: sudo apt-get install -y {}",
                missing.join(" ")
            );
        }
        if pass == 1 {
            crate::workspace::run(Command::new("apt-get").args(["update", "-q"]))?;
        }
        crate::workspace::run(
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    let missing = missing_host_packages();
    if !missing.is_empty() {
        bail!(
            "apt-get could not install these host packages together: {}",
            missing.join(" ")
        );
    }
    Ok(())
}

/// `rustup target add` for the boards' other targets (a no-op when installed).
fn rust_targets() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context(
            "running rustup (the arm64 device binaries and the boot-retry loader need its targets)",
        )?;
    let installed = String::from_utf8_lossy(&installed.stdout).into_owned();
    for t in RUST_TARGETS {
        if !installed.lines().any(|l| l.trim() == *t) {
            crate::workspace::run(Command::new("rustup").args(["target", "add", t]))?;
        }
    }
    Ok(())
}

/// Python packages from PyPI, pinned so a new release cannot change what the tests accept,
/// each with the import that shows it is there: python-tuf (the independent TUF client the
/// channel tests read repositories with) and virt-firmware (`virt-fw-vars`, which
/// `slate sb vars` enrols Secure Boot keys with).
const PYTHON_PACKAGES: &[(&str, &str)] = &[
    ("tuf==7.0.1", "import tuf.ngclient"),
    ("virt-firmware==26.10", "import virt.firmware.varstore.edk2"),
];

/// Installs each of [`PYTHON_PACKAGES`] with pip when `python3` cannot import it.
fn python_tools() -> Result<()> {
    for (package, import) in PYTHON_PACKAGES {
        let has = || {
            Command::new("python3")
                .args(["-c", import])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if has() {
            continue;
        }
        let pip = |extra: &[&str]| {
            Command::new("python3")
                .args(["-m", "pip", "install", "-q", package])
                .args(extra)
                .status()
                .is_ok_and(|s| s.success())
        };
        // A Debian-managed python3 refuses plain pip installs (PEP 668); a pyenv one does not.
        if !pip(&[]) && !pip(&["--break-system-packages"]) {
            bail!("could not install {package} with pip (python3 -m pip install {package})");
        }
        if !has() {
            bail!("{package} installed, but python3 still cannot `{import}`");
        }
    }
    Ok(())
}

/// goosebit, the third-party DDI server the fleet tests run, pinned; it lives in a virtual
/// environment of its own (`.cache/goosebit/venv`: its web stack must not meet the other
/// tools' packages), with what pip resolved written beside it (`resolved.txt`).
const GOOSEBIT: &str = "goosebit==0.2.12";

/// Makes [`GOOSEBIT`]'s virtual environment when its python cannot import it.
fn goosebit() -> Result<()> {
    let dir = root().join(".cache/goosebit");
    let python = dir.join("venv/bin/python");
    let has = || {
        Command::new(&python)
            .args(["-c", "import goosebit, uvicorn"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has() {
        return Ok(());
    }
    std::fs::create_dir_all(&dir)?;
    crate::workspace::run(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(dir.join("venv")),
    )
    .context("making goosebit's virtual environment (python3 -m venv; on Debian's python3 it needs the python3-venv package)")?;
    crate::workspace::run(Command::new(&python).args(["-m", "pip", "install", "-q", GOOSEBIT]))
        .with_context(|| format!("installing {GOOSEBIT} from PyPI"))?;
    let freeze = Command::new(&python)
        .args(["-m", "pip", "freeze", "--all"])
        .output()
        .context("pip freeze")?;
    std::fs::write(dir.join("resolved.txt"), &freeze.stdout)?;
    if !has() {
        bail!("{GOOSEBIT} installed, but its python cannot import it");
    }
    Ok(())
}

/// Runs `cargo xtask deps`.
pub fn deps(no_tools: bool) -> Result<()> {
    deps_for(no_tools, None)
}

/// `cargo xtask deps [--board B]`: with a board, only what `cargo xtask qemu --board B`
/// needs: the host's tools, B's kernel and boot loader, and the demo spec's locked packages
/// for B (through its lock for B's architecture).
pub fn deps_for(no_tools: bool, board: Option<&str>) -> Result<()> {
    if !no_tools {
        host_tools()?;
        python_tools()?;
        goosebit()?;
        rust_targets()?;
    }
    let boards = root().join("boards");
    let host_arch = match board {
        None => true,
        Some(b) => {
            slate_imager::image::board::LoadedBoard::load(&boards, b)?
                .board
                .arch
                == slate_core::layout::Arch::X86_64
        }
    };
    if host_arch {
        let cache = root().join(".cache/debs");
        fetch(&cache)?;
        eprintln!(
            "deps: board packages in {} (index {INDEX})",
            cache.display()
        );
    }
    match board {
        None => fetch_locked(all_builds()?),
        Some(b) => fetch_locked(vec![(
            root().join("rootfs/image.toml"),
            boards,
            Some(b.to_string()),
        )]),
    }
}
