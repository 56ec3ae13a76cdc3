//! `cargo xtask`: the developer workflow for Slate.
//!
//! `deps` fetches the Debian packages images need and installs the host tools the tests use;
//! `image` builds the default image; `ci` runs what CI runs; `bench` compares Slate's imager
//! with the standard tools.

mod bench;
mod ci;
mod deps;
mod dev;
mod fleet;
mod fuzz;
mod gauntlet;
mod images;
mod install;
mod qemu;
mod soak;
mod timeline;
mod workspace;

use anyhow::Result;
use clap::{Parser, Subcommand};
use images::image;
use std::path::PathBuf;
use workspace::{e2e_command, run};

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
    /// the bytes sent again after a drop), `delta` (delta and static patches vs casync, zstd
    /// and xdelta3), `fleet` (a fleet server's deployment → committed vs `slate push`).
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

/// The QEMU suite; `full` adds the tests marked `#[ignore = "full e2e …"]`.
fn e2e(full: bool) -> Result<()> {
    deps::deps(false)?;
    // Benchmarks are figures, not scenarios (`cargo xtask bench …`), and the channel's needs
    // the channel to itself.
    let args: &[&str] = if full {
        &["--include-ignored", "--skip", "bench_"]
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
        Cmd::Ci => ci::ci(),
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
