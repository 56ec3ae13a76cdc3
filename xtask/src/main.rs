//! `cargo xtask`: the developer workflow for Slate.
//!
//! `deps` fetches the Debian packages images need and installs the host tools the tests use;
//! `image` builds the default image; `ci` runs what CI runs; `bench` compares Slate's imager
//! with the standard tools.

mod bench;
mod deps;
mod fleet;
mod fuzz;
mod gauntlet;
mod images;
mod install;
mod qemu;
mod soak;
mod timeline;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Slate developer workflow")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Fetch the Debian packages images need into .cache/debs and install missing host tools.
    Deps {
        /// Only fetch packages; do not install host tools.
        #[arg(long)]
        no_tools: bool,
        /// Only what this board needs (its kernel and boot loader, the demo's packages for
        /// its architecture) [default: every board and spec in the repository].
        #[arg(long)]
        board: Option<String>,
    },
    /// Build the default image (rootfs/image.toml) into out/<board>.
    Image {
        /// Board.
        #[arg(long, default_value = "qemu-x86_64")]
        board: String,
        /// Spec.
        #[arg(long, default_value = "rootfs/image.toml")]
        spec: PathBuf,
        /// Build for Secure Boot with the development keys (into out/<board>-secure-boot).
        #[arg(long)]
        secure_boot: bool,
    },
    /// Boot the default image in QEMU (building it first when missing or stale).
    ///
    /// Interactive by default: the serial console is this terminal (quit: Ctrl-A X).
    Qemu {
        /// Spec.
        #[arg(long, default_value = "rootfs/image.toml")]
        spec: PathBuf,
        /// Board.
        #[arg(long, default_value = "qemu-x86_64")]
        board: String,
        /// Rebuild the image even if it looks fresh.
        #[arg(long)]
        rebuild: bool,
        /// No terminal: wait for a marker, print timings, power off, exit 0/1.
        #[arg(long)]
        headless: bool,
        /// With --headless: healthy (default), stage2 or stage1.
        #[arg(long)]
        until: Option<String>,
        /// With --headless: seconds to wait.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Also forward this guest TCP port to a free port on 127.0.0.1 (an application's,
        /// such as the nginx example's 80); repeatable. The host port is printed.
        #[arg(long, value_name = "PORT")]
        forward: Vec<u16>,
        /// Build the image for Secure Boot (signed UKIs, with development keys made once in
        /// .cache/keys/secure-boot) and boot it on OVMF's Secure Boot build with those keys
        /// enrolled (into out/<board>-secure-boot).
        #[arg(long)]
        secure_boot: bool,
    },
    /// Install `slate`, the static device binaries and the boards under a prefix, so `slate
    /// build` works outside the source tree.
    Install {
        /// Prefix: bin/slate, lib/slate/, share/slate/boards/.
        #[arg(long, default_value = "/usr/local")]
        prefix: PathBuf,
    },
    /// Fuzz every parser that takes outside input (cargo fuzz, nightly).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only this target.
        #[arg(long)]
        target: Option<String>,
    },
    /// A→B→A updates back to back on one device; outcomes and RSS per cycle.
    Soak {
        /// Updates to run.
        #[arg(long, default_value_t = 10)]
        cycles: u32,
    },
    /// Power cuts at every update step and at random moments; --full runs ≥ 300 cuts.
    Gauntlet {
        /// 22 step cuts (11 steps, plain and volatile disk) and 278 random ones (300 cuts).
        #[arg(long)]
        full: bool,
        /// Number of random cuts (default 10, or 278 with --full).
        #[arg(long)]
        random: Option<u64>,
        /// Seed of the random cuts (default: fresh, printed).
        #[arg(long)]
        seed: Option<u64>,
        /// Machines cutting at once (one TCG machine keeps about one core busy).
        #[arg(long, default_value_t = 2)]
        jobs: u64,
    },
    /// Simulate one release's rollout to a fleet (100,000 devices by default) with the
    /// agent's own channel code: rollout curve, per-wave times, the server's peak request rate,
    /// and a PNG plot.
    FleetSim(fleet::Args),
    /// Run what CI runs: deps, fmt, clippy -D warnings, tests, and the README's build sequence.
    Ci,
    /// The end-to-end QEMU suite alone; `--full` adds the scenarios CI leaves out for time
    /// (the plain-disk twin of every step cut, among others).
    E2e {
        /// Also run the scenarios marked for the full suite.
        #[arg(long)]
        full: bool,
    },
    /// Benchmarks beside the standard tools: `imager` (slate build vs mksquashfs, veritysetup,
    /// mkfs.vfat, sgdisk, dd), `verity` (vs veritysetup format), `boot` (vs a busybox initrd),
    /// `boards` (boot per board on its own machine, and the first boot's grow onto 4 GiB),
    /// `secure-boot` (the demo booted plain, as signed UKIs on Secure Boot firmware, and as
    /// UKIs without it; the UKI's size beside kernel + initramfs), `install` (vs dd and sha256sum), `api` (slated over mutual TLS vs plain HTTP), `apps`
    /// (the nginx example vs debootstrap), `channel` (publish → committed vs `slate push`, and
    /// the bytes sent again after a drop).
    Bench {
        /// Which benchmark.
        #[arg(default_value = "imager")]
        what: String,
        /// Size of the synthetic part of the tree, MiB.
        #[arg(long, default_value_t = 400)]
        mib: u64,
        /// Rounds (each runs both pipelines, alternating).
        #[arg(long, default_value_t = 3)]
        rounds: u32,
    },
}

/// The workspace root (this crate's parent).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Cargo's target folder: `CARGO_TARGET_DIR` when set (relative to the workspace, as cargo
/// reads it), else `target/` of the workspace. Built binaries are looked for here.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root().join(dir),
        _ => root().join("target"),
    }
}

/// Runs a command in the workspace, failing with its status.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The development signing key and the trust file the demo image ships, made once in
/// `.cache/keys` (never committed). Bundles for the demo image are signed with `dev.pem`.
pub fn dev_trust() -> Result<PathBuf> {
    let dir = root().join(".cache/keys");
    let trust = dir.join("trust.toml");
    if !trust.exists() {
        std::fs::create_dir_all(&dir)?;
        let (_, public, id) = slate_imager::operator::keys::keygen(&dir.join("dev"))?;
        let t = slate_imager::operator::keys::trust(&[public], 1)?;
        std::fs::write(&trust, toml::to_string(&t)?)?;
        eprintln!(
            "made development key {id} in {} (sign demo bundles with dev.pem)",
            dir.display()
        );
    }
    Ok(trust)
}

/// The development operator CA the demo image trusts (`.cache/keys/operators-ca.crt.pem`) and
/// the operator certificate `cargo xtask` and the README's commands use
/// (`.cache/keys/operator.{crt,key}.pem`), made once and never committed. Returns the CA
/// certificate.
pub fn dev_operators() -> Result<PathBuf> {
    let dir = root().join(".cache/keys");
    std::fs::create_dir_all(&dir)?;
    let ca = dir.join("operators-ca");
    let (ca_crt, _) = slate_imager::operator::ca::pair_paths(&ca);
    if !ca_crt.exists() {
        slate_imager::operator::ca::init(&ca, "Slate development operator CA")?;
        eprintln!("made the development operator CA in {}", dir.display());
    }
    let op = dir.join("operator");
    if !slate_imager::operator::ca::pair_paths(&op).0.exists() {
        slate_imager::operator::ca::issue(&ca, "developer", 3650, &op)?;
    }
    Ok(ca_crt)
}

/// The development Secure Boot keys (`.cache/keys/secure-boot/`: PK, KEK, db) and the OVMF
/// variables file with them enrolled (`OVMF_VARS.fd` there), made once and never committed.
/// Returns the folder.
pub fn dev_secure_boot() -> Result<PathBuf> {
    let dir = root().join(".cache/keys/secure-boot");
    if !dir.join("owner.guid").exists() {
        let guid = slate_imager::operator::secure_boot::keygen(&dir, "Slate development")?;
        eprintln!(
            "made development Secure Boot keys in {} (owner {guid})",
            dir.display()
        );
    }
    let vars = dir.join("OVMF_VARS.fd");
    if !vars.exists() {
        slate_imager::operator::secure_boot::vars(
            &dir,
            Path::new(slate_imager::operator::secure_boot::OVMF_VARS_TEMPLATE),
            &vars,
            None,
        )?;
    }
    Ok(dir)
}

/// The development operator pair (base name) made by [`dev_operators`].
pub fn dev_operator() -> Result<PathBuf> {
    dev_operators()?;
    Ok(root().join(".cache/keys/operator"))
}

/// A VM configuration that talks to the agent as the development operator.
pub fn dev_vm(disk: &Path, work: &Path) -> Result<slate_qemu::VmConfig> {
    let mut cfg = slate_qemu::VmConfig::new(disk, work);
    cfg.tls = Some(slate_imager::operator::tls::unpinned_client(Some(&dev_operator()?))?);
    Ok(cfg)
}

/// How `cargo xtask` pushes to its VMs: the development operator, pins kept in `work`.
pub fn dev_access(work: &Path) -> Result<slate_imager::operator::push::Access> {
    Ok(slate_imager::operator::push::Access {
        identity: Some(dev_operator()?),
        fingerprint: None,
        known_devices: Some(work.join("known_devices")),
    })
}

/// Builds the release `slate` binary (a no-op when fresh) and returns its path.
pub fn release_imager() -> Result<PathBuf> {
    run(cargo().args(["build", "--release", "--locked", "-p", "slate-imager"]))?;
    Ok(target_dir().join("release/slate"))
}

/// Builds `spec` for `board` into out/<board> with the release imager (the README's sequence),
/// trusting the development signing key and operator CA.
pub fn image(board: &str, spec: &Path, secure_boot: bool) -> Result<PathBuf> {
    build_image(&release_imager()?, None, board, spec, secure_boot)
}

/// `slate build` of `spec` for `board` into out/<board> with `imager`; `agent_dir` holds
/// ready device binaries (else `slate build` builds them).
fn build_image(
    imager: &Path,
    agent_dir: Option<&Path>,
    board: &str,
    spec: &Path,
    secure_boot: bool,
) -> Result<PathBuf> {
    let out = root()
        .join("out")
        .join(images::out_name(board, secure_boot));
    let trust = dev_trust()?;
    let operators = dev_operators()?;
    let mut cmd = Command::new(imager);
    cmd.arg("build");
    if let Some(dir) = agent_dir {
        cmd.arg("--agent-dir").arg(dir);
    }
    if secure_boot {
        let keys = dev_secure_boot()?;
        cmd.arg("--secure-boot-key")
            .arg(keys.join("db.key"))
            .arg("--secure-boot-cert")
            .arg(keys.join("db.crt"));
    }
    run(cmd
        .arg("--spec")
        .arg(spec)
        .args(["--board", board])
        .arg("--trust")
        .arg(&trust)
        .arg("--operators")
        .arg(&operators)
        // The demo image keeps its debug shell on the console.
        .arg("--allow-debug")
        .arg("--out")
        .arg(&out))?;
    Ok(out)
}

/// The cargo-deny release CI installs when it is missing (pinned, so a new release cannot
/// change what CI accepts).
const CARGO_DENY_VERSION: &str = "0.18.3";

/// Licenses, banned crates and sources of every dependency, as `deny.toml` says.
fn deny() -> Result<()> {
    let installed = Command::new("cargo")
        .args(["deny", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        run(Command::new("cargo").args([
            "install",
            "cargo-deny",
            "--locked",
            "--version",
            CARGO_DENY_VERSION,
        ]))?;
    }
    run(cargo().args(["deny", "--locked", "check", "licenses", "bans", "sources"]))?;
    // The boot-retry loader is its own workspace (built for UEFI): the same rules.
    run(cargo()
        .args(["deny", "--locked", "--manifest-path"])
        .arg(root().join("bootretry/Cargo.toml"))
        .args(["check", "--config"])
        .arg(root().join("deny.toml"))
        .args(["licenses", "bans", "sources"]))
}

fn ci() -> Result<()> {
    deps::deps(false)?;
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The boot-retry loader is its own workspace, built for UEFI (`run` works in the root
    // folder, so it is named by its manifest).
    let bootretry = root().join("bootretry/Cargo.toml");
    run(cargo()
        .arg("fmt")
        .arg("--manifest-path")
        .arg(&bootretry)
        .args(["--", "--check"]))?;
    run(cargo()
        .arg("clippy")
        .arg("--manifest-path")
        .arg(&bootretry)
        .args(["--release", "--locked", "--target"])
        .arg(slate_imager::image::bootretry::TARGET)
        .arg("--target-dir")
        .arg(root().join("target/bootretry"))
        .args(["--", "-D", "warnings"]))?;
    deny()?;
    // The tests' scratch (VM disks, snapshots, repositories; some held for the whole test
    // process) goes under target/ci-tmp and is freed once they pass, with the images they
    // built: the steps after need only the imager and the production agent.
    let scratch = root().join("target/ci-tmp");
    std::fs::create_dir_all(&scratch)?;
    disk_report("before the tests");
    run(cargo()
        .args(["test", "--workspace", "--locked"])
        .env("TMPDIR", &scratch))?;
    disk_report("after the tests");
    for done in ["target/ci-tmp", "target/e2e-images", "target/e2e-specs"] {
        let dir = root().join(done);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    // A short smoke of every fuzz target (the long runs are `cargo xtask fuzz --seconds N`).
    fuzz::fuzz(5, None, fuzz::Build::Dev)?;
    disk_report("after the fuzz smoke");
    // The README's `slate build` of the default image, then the result checked by the standard
    // tools. It uses the imager and the production device binaries the tests above built:
    // building both again in release would repeat eight minutes of compiling for the same code.
    let debug_imager = target_dir().join("debug/slate");
    if !debug_imager.is_file() {
        bail!(
            "{} is missing: `cargo test --workspace` builds it for the imager's tests",
            debug_imager.display()
        );
    }
    let production = root().join("target/e2e-agent/production");
    let agent = production
        .join("slated")
        .is_file()
        .then_some(production.as_path());
    let out = build_image(
        &debug_imager,
        agent,
        "qemu-x86_64",
        Path::new("rootfs/image.toml"),
        false,
    )?;
    run(Command::new(&debug_imager)
        .arg("inspect")
        .arg(out.join("disk.img")))?;
    // sgdisk exits 0 whenever the table loads: its verdict is in what it prints.
    let v = Command::new("sgdisk")
        .arg("-v")
        .arg(out.join("disk.img"))
        .output()
        .context("running sgdisk -v")?;
    let text = String::from_utf8_lossy(&v.stdout);
    if !v.status.success() || !text.contains("No problems found") {
        bail!("sgdisk -v found problems in the README's image:\n{text}");
    }
    // The QEMU tests must not leave a VM behind, pass or fail.
    let left = Command::new("pgrep").args(["-a", "qemu-system"]).output()?;
    if !left.stdout.is_empty() {
        bail!(
            "QEMU processes left behind by the tests:\n{}",
            String::from_utf8_lossy(&left.stdout)
        );
    }
    eprintln!("ci: all green");
    Ok(())
}

/// Prints the free space of the disk that holds the build and the largest users under
/// target/, so that a CI run that comes near a full disk says where the bytes went.
fn disk_report(when: &str) {
    let free = Command::new("df")
        .args(["-h", "--output=avail"])
        .arg(root())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .last()
                .unwrap_or("?")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|e| format!("? ({e})"));
    let used = Command::new("du")
        .args(["-sh", "--"])
        .args(
            std::fs::read_dir(root().join("target"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path()),
        )
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).replace('\n', "; "))
        .unwrap_or_default();
    eprintln!("ci: disk {when}: {free} free; {used}");
}

/// `cargo test --locked -p slate-tests --test e2e [FILTER] -- ARGS`: the QEMU suite, or part
/// of it.
pub fn e2e_command(filter: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = cargo();
    cmd.args(["test", "--locked", "-p", "slate-tests", "--test", "e2e"]);
    cmd.args(filter);
    cmd.arg("--").args(args);
    cmd
}

/// The QEMU suite; `full` adds the tests marked `#[ignore = "full e2e …"]`.
fn e2e(full: bool) -> Result<()> {
    deps::deps(false)?;
    // The channel benchmark is a figure, not a scenario, and needs the channel to itself.
    let args: &[&str] = if full {
        &["--include-ignored", "--skip", "bench_channel::"]
    } else {
        &[]
    };
    run(&mut e2e_command(None, args))
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Deps { no_tools, board } => deps::deps_for(no_tools, board.as_deref()),
        Cmd::Image {
            board,
            spec,
            secure_boot,
        } => image(&board, &spec, secure_boot).map(|out| eprintln!("image in {}", out.display())),
        Cmd::Ci => ci(),
        Cmd::E2e { full } => e2e(full),
        Cmd::FleetSim(args) => fleet::fleet_sim(&args),
        Cmd::Install { prefix } => install::install(&prefix),
        Cmd::Gauntlet {
            full,
            random,
            seed,
            jobs,
        } => gauntlet::gauntlet(full, random, seed, jobs),
        Cmd::Soak { cycles } => soak::soak(cycles),
        Cmd::Fuzz { seconds, target } => {
            fuzz::fuzz(seconds, target.as_deref(), fuzz::Build::Release)
        }
        Cmd::Qemu {
            spec,
            board,
            rebuild,
            headless,
            until,
            timeout,
            forward,
            secure_boot,
        } => qemu::qemu(
            &spec,
            &board,
            qemu::Run {
                rebuild,
                headless,
                until: until.as_deref(),
                timeout,
                forward: &forward,
                secure_boot,
            },
        ),
        Cmd::Bench { what, mib, rounds } => bench::bench(&what, mib, rounds),
    }
}
