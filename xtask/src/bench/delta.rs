//! `cargo xtask bench delta`: what an update costs on the wire, Slate's two delta tiers beside
//! the standard tools, on the same pairs of signed bundles.
//!
//! Pairs (built here from `xtask/data/delta-app`, locked from the Debian archive at run time):
//! - **M** (minor): the application image locked against bookworm alone → the same spec
//!   locked against bookworm, bookworm-updates and bookworm-security.
//! - **U** (unrelated): the e2e demo image → the application image (v2).
//! - **E1**: v2 → v2 with 1 MiB of random bytes added.
//! - **E2**: v2 with an application executable (`slated`, 6 MB, static) → the same with 3
//!   stretches of 64 bytes of it changed (a small code change in one binary).
//!
//! Columns: the full bundle; Slate dynamic (the chunk index, head, missing ranges and
//! requests — the index's, the head's, and the stretches up to 32 to a request — planned by
//! the device's own code over the images' bytes — or the full bundle
//! when that is not worth it, as the device decides); Slate static (`slate publish --from`'s
//! patch, checked to rebuild the bundle); Debian's `casync` with 16 and 64 KiB average chunks
//! (the compressed chunk files the new bundle has and the old one's store lacks, plus the
//! new index; a request per chunk); `zstd --patch-from` and `xdelta3` as static floors (one
//! file each). Every figure is measured from the bytes; nothing is estimated.
//!
//! A row "changed blocks" says where the bytes go: the new image's compressed squashfs blocks
//! that the old one lacks, and its changed boot files (`squashfs_floor`).
//!
//! Then the device's install time by mode (full, dynamic, static) under QEMU, on the e2e
//! demo images (`tests/e2e/bench_delta.rs`): the application image is not booted.

use crate::workspace::{root, run};
use anyhow::{bail, Context, Result};
use slate_core::delta::{plan, ChunkIndex, Params, DEFAULT_AVG, HEAD_PROBE};
use slate_core::manifest::{Manifest, ROOTFS};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A signed bundle, opened.
struct Bundle {
    path: PathBuf,
    len: u64,
    manifest: Manifest,
    /// Each artifact's bytes, in the manifest's order.
    artifacts: Vec<Vec<u8>>,
}

impl Bundle {
    fn open(path: &Path) -> Result<Bundle> {
        let (manifest, artifacts) = slate_imager::operator::repo::patches::artifacts(path)?;
        Ok(Bundle {
            path: path.to_path_buf(),
            len: std::fs::metadata(path)?.len(),
            manifest,
            artifacts,
        })
    }

    /// The root image's data (without its verity tree): what the chunk index covers.
    fn root_data(&self) -> Result<&[u8]> {
        let (a, bytes) = self
            .manifest
            .artifacts
            .iter()
            .zip(&self.artifacts)
            .find(|(a, _)| a.name == ROOTFS)
            .context("no root image")?;
        let end = a.verity.as_ref().context("no verity")?.hash_offset;
        Ok(&bytes[..usize::try_from(end)?])
    }

    /// Boot files (kernel, initramfs) of `self` that `old` has byte for byte: a device copies
    /// them from its ESP.
    fn same_boot_bytes(&self, old: &Bundle) -> u64 {
        self.manifest
            .artifacts
            .iter()
            .zip(&self.artifacts)
            .filter(|(a, _)| a.name != ROOTFS)
            .filter(|(a, bytes)| {
                old.manifest
                    .artifacts
                    .iter()
                    .zip(&old.artifacts)
                    .any(|(o, ob)| o.name == a.name && ob == *bytes)
            })
            .map(|(a, _)| a.size)
            .sum()
    }
}

/// One tool's figures for one pair.
struct Cost {
    bytes: u64,
    requests: u64,
    note: String,
}

/// Slate's dynamic tier, as the device plans it.
fn slate_dynamic(old: &Bundle, new: &Bundle) -> Result<Cost> {
    let params = Params::around(DEFAULT_AVG);
    let ni = ChunkIndex::of(new.root_data()?, params);
    let oi = ChunkIndex::of(old.root_data()?, params);
    let index = ni.to_bytes().len() as u64;
    let p = plan::plan(&ni, &oi, plan::COALESCE_GAP);
    // The verity levels are computed on the device (only their superblock block is fetched).
    let levels = new
        .manifest
        .rootfs()
        .and_then(|a| Some(a.size.saturating_sub(a.verity.as_ref()?.hash_offset + 4096)))
        .context("no root image")?;
    let (cost, requests) = plan::BundleDelta {
        root: &p,
        ukis: &[],
        index_len: index,
        head_len: HEAD_PROBE,
        bundle_len: new.len,
        local: new.same_boot_bytes(old) + levels,
    }
    .cost();
    let share = index as f64 * 100.0 / new.root_data()?.len() as f64;
    // Every stretch but the head's probe goes up to RANGES_PER_REQUEST to a request (nginx
    // answers them in one multipart body); the index is a request of its own.
    let stretches = requests - 1;
    let http = 2 + stretches.div_ceil(plan::RANGES_PER_REQUEST as u64);
    Ok(if plan::worth_it(cost, new.len) {
        Cost {
            bytes: cost,
            requests: http,
            note: format!("index {index} B ({share:.3}%), {stretches} stretches"),
        }
    } else {
        // The device fetches the index and the head, then the whole bundle.
        Cost {
            bytes: index + HEAD_PROBE + new.len + 3 * plan::REQUEST_OVERHEAD,
            requests: 3,
            note: format!("full (delta {cost} B not worth it)"),
        }
    })
}

/// The compressed units of the new bundle that changed (`squashfs_floor`), and its boot files
/// that are not the old ones: where the bytes of any delta of the image as stored go.
fn changed_blocks(old: &Bundle, new: &Bundle) -> Result<Cost> {
    let (root, metadata) =
        super::squashfs_floor::new_unit_bytes(old.root_data()?, new.root_data()?)?;
    let boot: u64 = new
        .manifest
        .artifacts
        .iter()
        .filter(|a| a.name != ROOTFS)
        .map(|a| a.size)
        .sum::<u64>()
        - new.same_boot_bytes(old);
    Ok(Cost {
        bytes: root + boot,
        requests: 0,
        note: format!(
            "root image {root} B ({metadata} B of it metadata tables), boot files {boot} B"
        ),
    })
}

/// Slate's static tier: `slate publish --from`'s patch (none between two products).
fn slate_static(old: &Bundle, new: &Bundle) -> Result<Cost> {
    if old.manifest.product != new.manifest.product {
        return Ok(Cost {
            bytes: 0,
            requests: 0,
            note: "n/a: another product (slate publish --from refuses it)".into(),
        });
    }
    let p =
        slate_imager::operator::repo::patches::from_previous(&old.path, &new.path, &new.manifest)?;
    let bytes = p.bytes.len() as u64 + plan::REQUEST_OVERHEAD;
    Ok(Cost {
        bytes,
        requests: 1,
        note: if plan::worth_it(bytes, new.len) {
            String::new()
        } else {
            "not published (≥ 95%)".into()
        },
    })
}

/// casync with `avg` average chunks: the new bundle's chunk files the old store lacks, and the
/// new index.
fn casync(old: &Bundle, new: &Bundle, avg: u32, scratch: &Path) -> Result<Cost> {
    let dir = scratch.join(format!("casync-{avg}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let make = |input: &Path, name: &str| -> Result<PathBuf> {
        let store = dir.join(format!("{name}.castr"));
        let index = dir.join(format!("{name}.caibx"));
        run(Command::new("casync")
            .arg("make")
            .arg(format!("--store={}", store.display()))
            .arg(format!("--chunk-size={}", avg))
            .arg(&index)
            .arg(input))?;
        Ok(store)
    };
    let old_store = make(&old.path, "old")?;
    let new_store = make(&new.path, "new")?;
    let index_len = std::fs::metadata(dir.join("new.caibx"))?.len();
    let have = chunk_files(&old_store)?;
    let (mut bytes, mut chunks) = (0u64, 0u64);
    for (name, len) in chunk_files(&new_store)? {
        if !have.contains_key(&name) {
            bytes += len;
            chunks += 1;
        }
    }
    Ok(Cost {
        bytes: index_len + bytes + (chunks + 1) * plan::REQUEST_OVERHEAD,
        requests: chunks + 1,
        note: format!("index {index_len} B"),
    })
}

/// A casync store's chunk files by name, with their sizes.
fn chunk_files(store: &Path) -> Result<std::collections::HashMap<String, u64>> {
    let mut out = std::collections::HashMap::new();
    for d in std::fs::read_dir(store)? {
        let d = d?;
        if !d.file_type()?.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(d.path())? {
            let f = f?;
            out.insert(
                f.file_name().to_string_lossy().into_owned(),
                f.metadata()?.len(),
            );
        }
    }
    Ok(out)
}

/// One file made by a patch tool from old to new.
fn one_file(cmd: &mut Command, out: &Path) -> Result<Cost> {
    let _ = std::fs::remove_file(out);
    run(cmd)?;
    Ok(Cost {
        bytes: std::fs::metadata(out)?.len() + plan::REQUEST_OVERHEAD,
        requests: 1,
        note: String::new(),
    })
}

fn zstd_patch(old: &Bundle, new: &Bundle, scratch: &Path) -> Result<Cost> {
    let out = scratch.join("zstd.patch");
    one_file(
        Command::new("zstd")
            .args(["-q", "-19", "--long=28", "-f"])
            .arg(format!("--patch-from={}", old.path.display()))
            .arg(&new.path)
            .arg("-o")
            .arg(&out),
        &out,
    )
}

fn xdelta(old: &Bundle, new: &Bundle, scratch: &Path) -> Result<Cost> {
    let out = scratch.join("xdelta3.vcdiff");
    one_file(
        Command::new("xdelta3")
            .args(["-e", "-9", "-f", "-B", "1073741824", "-s"])
            .arg(&old.path)
            .arg(&new.path)
            .arg(&out),
        &out,
    )
}

/// The tools the comparison runs, installed from Debian when missing.
fn tools() -> Result<()> {
    let missing: Vec<&str> = [
        ("casync", "casync"),
        ("xdelta3", "xdelta3"),
        ("zstd", "zstd"),
    ]
    .into_iter()
    .filter(|(bin, _)| Command::new(bin).arg("--version").output().is_err())
    .map(|(_, pkg)| pkg)
    .collect();
    if !missing.is_empty() {
        run(Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(&missing))?;
    }
    Ok(())
}

/// Builds the application image from `spec_dir` (locked there first when `lock`) and signs
/// it with the development key.
fn build(spec_dir: &Path, out_bundle: &Path, lock: bool) -> Result<()> {
    if out_bundle.exists() {
        println!(
            "reusing {} (remove target/bench-delta to lock and build again)",
            out_bundle.display()
        );
        return Ok(());
    }
    let slate = crate::images::release_imager()?;
    let agent = slate_imager::image::agentbin::locate(
        None,
        slate_core::layout::Arch::X86_64,
        slate_imager::progress::Progress::new(true),
    )?;
    let agent_dir = agent.init.parent().context("device binaries' folder")?;
    let spec = spec_dir.join("image.toml");
    let cmd = |args: &[&str]| {
        let mut c = Command::new(&slate);
        c.args(args)
            .arg("--spec")
            .arg(&spec)
            .arg("--boards")
            .arg(root().join("boards"));
        c
    };
    if lock {
        run(&mut cmd(&["lock"]))?;
    }
    run(&mut cmd(&["fetch"]))?;
    let out = spec_dir.join("out");
    run(cmd(&["build", "--quiet"])
        .arg("--debs")
        .arg(root().join(".cache/debs"))
        .arg("--agent-dir")
        .arg(agent_dir)
        .arg("--out")
        .arg(&out))?;
    let key = crate::dev::dev_trust()?.with_file_name("dev.pem");
    run(Command::new(&slate)
        .args(["bundle", "--build"])
        .arg(&out)
        .arg("--key")
        .arg(&key)
        .arg("--out")
        .arg(out_bundle))?;
    Ok(())
}

/// A copy of the application spec in `dir`, with `edit` applied to its text and its lock
/// taken from `lock_from` when given.
fn spec_copy(dir: &Path, version: &str, extra: &str, lock_from: Option<&Path>) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let text = std::fs::read_to_string(root().join("xtask/data/delta-app/image.toml"))?
        .replace("version = \"1.0.0\"", &format!("version = \"{version}\""));
    std::fs::write(dir.join("image.toml"), format!("{text}{extra}"))?;
    if let Some(from) = lock_from {
        std::fs::copy(from.join("image.lock"), dir.join("image.lock"))?;
    }
    Ok(())
}

/// The demo bundle of the e2e suite (pair U's start).
fn demo_bundle(scratch: &Path) -> Result<PathBuf> {
    let images = root().join("target/e2e-images");
    let demo = images.join("1.0.0-Demo-epoch0-hooks");
    if !demo.is_dir() {
        bail!(
            "no demo image in {}: run the e2e suite first (cargo xtask e2e)",
            images.display()
        );
    }
    let out = scratch.join("demo.slate");
    let key = crate::dev::dev_trust()?.with_file_name("dev.pem");
    run(Command::new(crate::images::release_imager()?)
        .args(["bundle", "--build"])
        .arg(&demo)
        .arg("--key")
        .arg(&key)
        .arg("--out")
        .arg(&out))?;
    Ok(out)
}

/// Runs the comparison (builds four application images: most of ten minutes).
pub fn measure() -> Result<()> {
    tools()?;
    let scratch = root().join("target/bench-delta");
    std::fs::create_dir_all(&scratch)?;
    let s = scratch.as_path();

    // v1: bookworm alone; v2: with its updates and security pockets.
    let (d1, d2, de1, de0, de2) = (
        s.join("v1"),
        s.join("v2"),
        s.join("e-random"),
        s.join("e-exe-1"),
        s.join("e-exe-2"),
    );
    spec_copy(&d1, "1.0.0", "", None)?;
    let t = std::fs::read_to_string(d1.join("image.toml"))?.replace(
        "[debian]\nsuite = \"bookworm\"\n",
        "[debian]\nsuite = \"bookworm\"\nupdates = false\nsecurity = \"\"\n",
    );
    std::fs::write(d1.join("image.toml"), t)?;
    build(&d1, &s.join("v1.slate"), true)?;
    spec_copy(&d2, "2.0.0", "", None)?;
    build(&d2, &s.join("v2.slate"), true)?;
    let changed = changed_packages(&d1, &d2)?;

    // E1: 1 MiB of random bytes added.
    spec_copy(
        &de1,
        "2.1.0",
        "\n[[file]]\nsource = \"random.bin\"\ndest = \"/opt/random.bin\"\n",
        Some(&d2),
    )?;
    let mut random = vec![0u8; 1 << 20];
    getrandom(&mut random)?;
    std::fs::write(de1.join("random.bin"), &random)?;
    build(&de1, &s.join("e-random.slate"), false)?;

    // E2: an executable, then the same with three stretches changed.
    let slated = slate_imager::image::agentbin::locate(
        None,
        slate_core::layout::Arch::X86_64,
        slate_imager::progress::Progress::new(true),
    )?
    .init
    .with_file_name("slated");
    let exe = std::fs::read(&slated).with_context(|| format!("reading {}", slated.display()))?;
    let file = "\n[[file]]\nsource = \"tool\"\ndest = \"/opt/app/tool\"\nmode = \"0755\"\n";
    spec_copy(&de0, "2.2.0", file, Some(&d2))?;
    std::fs::write(de0.join("tool"), &exe)?;
    build(&de0, &s.join("e-exe-1.slate"), false)?;
    spec_copy(&de2, "2.3.0", file, Some(&d2))?;
    let mut edited = exe.clone();
    for k in 1..=3 {
        let at = edited.len() * k / 4;
        for b in &mut edited[at..at + 64] {
            *b = b.wrapping_add(1);
        }
    }
    std::fs::write(de2.join("tool"), &edited)?;
    build(&de2, &s.join("e-exe-2.slate"), false)?;

    let demo = demo_bundle(s)?;
    let pairs = [
        (
            "M  minor (Debian updates)",
            s.join("v1.slate"),
            s.join("v2.slate"),
        ),
        ("U  unrelated (demo → app)", demo, s.join("v2.slate")),
        (
            "E1 +1 MiB random",
            s.join("v2.slate"),
            s.join("e-random.slate"),
        ),
        (
            "E2 one executable changed",
            s.join("e-exe-1.slate"),
            s.join("e-exe-2.slate"),
        ),
    ];
    println!("\nPair M: {changed} of the image's packages changed between the two locks.");
    println!(
        "\n{:<27} {:<16} {:>12} {:>9} {:>8}  note",
        "pair", "method", "bytes", "requests", "of full"
    );
    for (name, old, new) in pairs {
        let (old, new) = (Bundle::open(&old)?, Bundle::open(&new)?);
        let root_mib = new.root_data()?.len() as f64 / 1048576.0;
        let rows: Vec<(&str, Cost)> = vec![
            (
                "full bundle",
                Cost {
                    bytes: new.len + plan::REQUEST_OVERHEAD,
                    requests: 1,
                    note: format!("root image {root_mib:.1} MiB"),
                },
            ),
            ("changed blocks", changed_blocks(&old, &new)?),
            ("Slate dynamic", slate_dynamic(&old, &new)?),
            ("Slate static", slate_static(&old, &new)?),
            ("casync 16K", casync(&old, &new, 16 << 10, s)?),
            ("casync 64K", casync(&old, &new, 64 << 10, s)?),
            ("zstd --patch-from", zstd_patch(&old, &new, s)?),
            ("xdelta3", xdelta(&old, &new, s)?),
        ];
        for (method, c) in rows {
            // "—": a row that does not apply, or one that is no download (no requests).
            let or_dash = |v: u64| {
                if v == 0 {
                    "—".to_string()
                } else {
                    v.to_string()
                }
            };
            let share = match c.bytes {
                0 => "—".to_string(),
                b => format!("{:.1}%", b as f64 * 100.0 / new.len as f64),
            };
            println!(
                "{:<27} {:<16} {:>12} {:>9} {:>8}  {}",
                name,
                method,
                or_dash(c.bytes),
                or_dash(c.requests),
                share,
                c.note
            );
        }
    }
    println!(
        "\n(bytes include {} per request for its head; casync's are its compressed chunk files)",
        plan::REQUEST_OVERHEAD
    );
    // The device's install time by mode, under QEMU (the e2e demo images).
    crate::deps::deps(false)?;
    run(&mut crate::workspace::e2e_command(
        None,
        &[
            "--ignored",
            "--exact",
            "bench_delta::install_time_by_mode",
            "--nocapture",
        ],
    ))
}

/// Packages whose version differs between two locks.
fn changed_packages(a: &Path, b: &Path) -> Result<usize> {
    use slate_imager::image::debian::lock::Lock;
    let (la, lb) = (
        Lock::read(&a.join("image.lock"))?,
        Lock::read(&b.join("image.lock"))?,
    );
    let old: std::collections::HashMap<_, _> = la
        .packages
        .iter()
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect();
    Ok(lb
        .packages
        .iter()
        .filter(|p| old.get(&p.name) != Some(&p.version))
        .count())
}

/// Random bytes from the kernel.
fn getrandom(buf: &mut [u8]) -> Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)?;
    Ok(())
}
