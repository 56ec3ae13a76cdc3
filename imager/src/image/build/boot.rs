//! What boots a slot: the initramfs (slate-init and the board's modules, cpio + zstd), the
//! kernel, and slot A's boot entry with its command line.

use super::Inputs;
use crate::cache;
use crate::compose;
use crate::cpio;
use crate::esp::EspFile;
use anyhow::{Context, Result};
use slate_core::bootentry::{Entry, EntryName, ENTRIES_DIR};
use slate_core::cmdline::BootParams;
use slate_core::layout::Slot;
use slate_core::verity::VerityInfo;

/// systemd-boot's settings: no menu, no editor, only Slate's entries.
const LOADER_CONF: &str = "timeout 0\neditor no\nauto-entries no\nauto-firmware no\nconsole-mode keep\nrandom-seed-mode off\n";

/// The initramfs, compressed: deterministic (fixed mtimes, sorted entries, one zstd frame).
/// Independent of the root image, so the build runs it beside the squashfs. zstd -19 takes
/// seconds, so the result is kept in the extraction cache under the sha256 of the archive: a
/// rebuild with the same initramfs content reuses the same bytes.
pub fn initramfs(inp: &Inputs<'_>) -> Result<Vec<u8>> {
    let tree = compose::initramfs(
        inp.kernel,
        &inp.board.board,
        inp.agent,
        inp.security_epoch,
        inp.spec.spec.agent.test_hooks,
    )?;
    let cpio = cpio::write(&tree, inp.mtime, Vec::new())?;
    let cached = inp.cache.map(|c| {
        c.join("initramfs")
            .join(format!("{}.zst", slate_core::Digest32::of(&cpio)))
    });
    if let Some(bytes) = cached.as_ref().and_then(|p| cache::load_zstd(p, &cpio)) {
        return Ok(bytes);
    }
    let compressed = zstd::bulk::compress(&cpio, 19).context("compressing the initramfs")?;
    if let Some(p) = &cached {
        if let Err(e) = cache::keep(p, &compressed) {
            tracing::warn!(cache = %p.display(), error = %e, "could not keep the initramfs");
        }
    }
    Ok(compressed)
}

/// Options every entry carries besides Slate's own parameters: console, panic, the board's.
pub fn options(inp: &Inputs<'_>) -> String {
    let b = &inp.board.board;
    // The main console last: the kernel makes the last `console=` /dev/console.
    let mut options: Vec<String> = b
        .also_consoles
        .iter()
        .chain(std::iter::once(&b.console))
        .map(|c| format!("console={c}"))
        .collect();
    options.push("panic=5".to_string());
    options.extend(b.cmdline.iter().cloned());
    options.join(" ")
}

/// systemd-boot (from the boot loader package), its settings, slot A's entry, kernel and
/// initramfs: the files of the ESP.
pub fn esp_files(
    inp: &Inputs<'_>,
    verity: &VerityInfo,
    options: &str,
    initrd: &[u8],
) -> Result<Vec<EspFile>> {
    let b = &inp.board.board;
    let mut boot_efi = None;
    crate::deb::for_each_entry(inp.boot_deb, &b.bootloader_package, |e, r| {
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
    let entry = Entry {
        title: format!("{} {} (slot a)", inp.spec.spec.name, inp.version),
        version: inp.version.clone(),
        linux: Entry::kernel_path(Slot::A),
        initrd: Entry::initrd_path(Slot::A),
        options: BootParams {
            slot: Slot::A,
            verity: verity.clone(),
        }
        .options(options),
    };
    let entry_name = EntryName::good(Slot::A, inp.version.clone());
    Ok(vec![
        EspFile {
            path: format!("EFI/BOOT/{}", b.arch.default_efi_name()),
            bytes: boot_efi,
        },
        EspFile {
            path: "loader/loader.conf".into(),
            bytes: LOADER_CONF.into(),
        },
        EspFile {
            path: format!("{ENTRIES_DIR}/{entry_name}"),
            bytes: entry.render().into_bytes(),
        },
        EspFile {
            path: Entry::kernel_path(Slot::A).trim_start_matches('/').into(),
            bytes: inp.kernel.vmlinuz.clone(),
        },
        EspFile {
            path: Entry::initrd_path(Slot::A).trim_start_matches('/').into(),
            bytes: initrd.to_vec(),
        },
    ])
}
