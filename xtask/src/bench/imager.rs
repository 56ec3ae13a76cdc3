//! `cargo xtask bench imager`: `slate build` beside the standard pipeline on the same tree.

use super::{deb_file, summarize, timed};
use crate::{workspace::root, workspace::run};
use anyhow::{Context, Result};
use std::process::Command;

/// The standard pipeline as one shell script, the way a person would write it.
const PIPELINE: &str = r#"set -euo pipefail
W=$1; TREE=$2; KDEB=$3; BOOTDEB=$4; LEVEL=$5
rm -rf "$W" && mkdir -p "$W/k" "$W/b" "$W/initrd"
# only what the image needs from the kernel package, as a person would take it
dpkg-deb --fsys-tarfile "$KDEB" | tar -x -C "$W/k" --wildcards './boot/vmlinuz-*' './lib/modules/*/kernel/drivers/md/*'
dpkg-deb -x "$BOOTDEB" "$W/b"
KREL=$(ls "$W/k/lib/modules")
# initramfs: init + the verity modules, newc + zstd
mkdir -p "$W/initrd/lib/modules" && cp -a "$W/k/lib/modules/$KREL/kernel/drivers/md" "$W/initrd/lib/modules/"
cp /bin/true "$W/initrd/init"
(cd "$W/initrd" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | zstd -19 -q -o "$W/initrd.img")
# root: squashfs + verity
mksquashfs "$TREE" "$W/root.sqfs" -comp zstd -Xcompression-level "$LEVEL" -all-root -noappend -quiet -no-progress >/dev/null
SZ=$(stat -c %s "$W/root.sqfs"); PAD=$(( (SZ + 4095) / 4096 * 4096 )); truncate -s $PAD "$W/root.sqfs"
veritysetup format "$W/root.sqfs" "$W/root.sqfs" --hash-offset=$PAD --salt=$(printf '%064d' 0) >/dev/null
# ESP
mkfs.vfat -F 32 -n ESP -C "$W/esp.img" $((128*1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
mmd -i "$W/esp.img" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries ::/slate ::/slate/a
mcopy -i "$W/esp.img" "$W/b/usr/lib/systemd/boot/efi/systemd-bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$W/esp.img" "$W/k/boot/vmlinuz-$KREL" ::/slate/a/vmlinuz
mcopy -i "$W/esp.img" "$W/initrd.img" ::/slate/a/initrd.img
printf 'title x\nlinux /slate/a/vmlinuz\n' > "$W/e.conf"; mcopy -i "$W/esp.img" "$W/e.conf" ::/loader/entries/slate-a-1.0.0.conf
# data
truncate -s 128M "$W/data.img"; mkfs.ext4 -q -F -L data "$W/data.img"
# disk
SLOT=1024
truncate -s $(( (1 + 128 + 2*SLOT + 128 + 1) ))M "$W/disk.img"
sgdisk -n1:1M:+128M -t1:ef00 -c1:esp -n2:0:+${SLOT}M -t2:4f68bce3-e8cd-4db1-96e7-fbcaf984b709 -c2:root-a \
  -n3:0:+${SLOT}M -t3:4f68bce3-e8cd-4db1-96e7-fbcaf984b709 -c3:root-b -n4:0:+128M -t4:8300 -c4:data "$W/disk.img" >/dev/null
dd if="$W/esp.img" of="$W/disk.img" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$W/root.sqfs" of="$W/disk.img" bs=1M seek=129 conv=notrunc status=none
dd if="$W/data.img" of="$W/disk.img" bs=1M seek=$((129 + 2*SLOT)) conv=notrunc,sparse status=none
"#;

pub(super) fn measure(mib: u64, rounds: u32) -> Result<()> {
    let slate = crate::images::release_imager()?;
    let scratch = root().join("target/bench-imager");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let kdeb = deb_file("linux-image-amd64")?;
    let bootdeb = deb_file("systemd-boot-efi")?;

    // The tree: the kernel's modules (+ busybox via the spec), trimmed or padded to ~`mib`.
    let spec_dir = scratch.join("spec");
    let tree = spec_dir.join("tree");
    std::fs::create_dir_all(&tree)?;
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&kdeb)
        .arg(scratch.join("kernel")))?;
    run(Command::new("cp")
        .arg("-a")
        .arg(scratch.join("kernel/lib"))
        .arg(&tree))?;
    let bb = scratch.join("bb");
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb_file("busybox-static")?)
        .arg(&bb))?;
    run(Command::new("cp").arg("-a").arg(bb.join("bin")).arg(&tree))?;
    let size_out = Command::new("du").args(["-sm"]).arg(&tree).output()?;
    let du = String::from_utf8_lossy(&size_out.stdout);
    let tree_mib: u64 = du
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("du -sm printed {du:?}"))?;
    if tree_mib < mib {
        // Pad with distinct pseudo-random files so the tree reaches the asked size: identical
        // files would be stored once by Slate (duplicate detection) and once each by
        // mksquashfs's default, which measures deduplication, not compression.
        let pad = tree.join("usr/share/pad");
        std::fs::create_dir_all(&pad)?;
        for i in 0..(mib - tree_mib) {
            std::fs::write(pad.join(format!("{i}.bin")), pseudo_random(1 << 20, i))?;
        }
    }
    let level = 15;
    std::fs::write(spec_dir.join("image.toml"), format!("name = \"bench\"\nversion = \"1.0.0\"\nboard = \"bench\"\noverlays = [\"tree\"]\n[squashfs]\ncompression_level = {level}\n"))?;
    let boards = scratch.join("boards");
    std::fs::create_dir_all(&boards)?;
    let board = std::fs::read_to_string(root().join("boards/qemu-x86_64.toml"))?
        .replace("name = \"qemu-x86_64\"", "name = \"bench\"")
        .replace("slot_mib = 256", "slot_mib = 1024");
    std::fs::write(boards.join("bench.toml"), board)?;
    let total = Command::new("du").args(["-sh"]).arg(&tree).output()?;
    println!("imager: tree of {} (kernel modules + busybox{}), zstd level {level}, {rounds} rounds alternating", String::from_utf8_lossy(&total.stdout).split_whitespace().next().unwrap_or("?"), if tree_mib < mib { " + distinct pseudo-random padding" } else { "" });

    // The device binaries are built once here, untimed: a fresh checkout has none yet, and
    // the timed builds below take them from --agent-dir so they measure the imager alone.
    let agent = slate_imager::image::agentbin::locate(
        None,
        slate_core::layout::Arch::X86_64,
        slate_imager::progress::Progress::new(false),
    )?;
    let agent_dir = agent
        .init
        .parent()
        .context("the slate-init path has no parent folder")?
        .to_path_buf();
    // Cold: no extraction cache (the kernel package is decompressed, the initramfs compressed).
    // Warm: the same build again after one overlay file changed, as a developer rebuilds.
    let extracted = root()
        .join(".cache/debs")
        .join(slate_imager::image::build::EXTRACTED);
    let changed = tree.join("etc/bench-changed.txt");
    let build = |scratch: &std::path::Path| -> Result<super::Sample> {
        let mut s = Command::new(&slate);
        s.args(["build", "--quiet", "--force", "--timings", "--spec"])
            .arg(spec_dir.join("image.toml"))
            .arg("--boards")
            .arg(&boards)
            .arg("--out")
            .arg(scratch.join("slate-out"))
            .arg("--agent-dir")
            .arg(&agent_dir);
        timed(&mut s, scratch)
    };
    let (mut ours, mut warm, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        eprintln!("  round {}/{rounds}", r + 1);
        std::fs::create_dir_all(changed.parent().context("overlay folder")?)?;
        std::fs::write(&changed, format!("round {r} cold\n"))?;
        match std::fs::remove_dir_all(&extracted) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context("emptying the extraction cache"),
        }
        ours.push(build(&scratch)?);
        std::fs::write(&changed, format!("round {r} warm\n"))?;
        warm.push(build(&scratch)?);
        let mut p = Command::new("bash");
        p.arg("-c")
            .arg(PIPELINE)
            .arg("pipeline")
            .arg(scratch.join("std-out"))
            .arg(&tree)
            .arg(&kdeb)
            .arg(&bootdeb)
            .arg(level.to_string());
        theirs.push(timed(&mut p, &scratch)?);
    }
    println!(
        "\n  {:<34} {:>10} {:>11} {:>13}",
        "full image build (median)", "wall", "cpu", "peak RSS"
    );
    let a = summarize("slate build, cold (no cache)", &ours);
    let w = summarize("slate build, one overlay file changed", &warm);
    let b = summarize("standard pipeline", &theirs);
    println!(
        "  {:<34} {:>8.2}×  {:>8.2}×   (warm slate / standard; goal wall ≤ 0.25×)",
        "ratio, warm rebuild",
        w.wall / b.wall,
        w.cpu / b.cpu
    );
    if let (Some(c), Some(h)) = (ours.last(), warm.last()) {
        println!(
            "\n  slate build --timings, last cold build:\n{}",
            indent(&c.stderr)
        );
        println!(
            "  slate build --timings, last warm build:\n{}",
            indent(&h.stderr)
        );
    }
    println!(
        "  {:<34} {:>8.2}×  {:>8.2}×  {:>11.2}×   (cold slate / standard; goal wall ≤ 0.8×, CPU ≤ 1.0×)",
        "ratio, cold build",
        a.wall / b.wall,
        a.cpu / b.cpu,
        a.rss_mib / b.rss_mib
    );
    let sq_ours = std::fs::metadata(scratch.join("slate-out/rootfs.img"))?.len();
    let sq_theirs = std::fs::metadata(scratch.join("std-out/root.sqfs"))?.len();
    println!(
        "  root image size: slate {:.1} MiB, standard {:.1} MiB",
        sq_ours as f64 / 1048576.0,
        sq_theirs as f64 / 1048576.0
    );
    Ok(())
}

/// The lines of a `--timings` table (warnings dropped), indented under the figure.
fn indent(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("warning:"))
        .map(|l| format!("    {l}\n"))
        .collect()
}

/// `len` bytes of xorshift64* output from `seed`: different for every seed, the same every run.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}
