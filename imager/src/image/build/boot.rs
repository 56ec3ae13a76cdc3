//! What boots a slot: the initramfs (slate-init and the board's modules, cpio + zstd), the
//! kernel, and slot A's boot entry with its command line (for a Secure Boot or measured-boot
//! image, all of it in one UKI, signed for Secure Boot).

use super::Inputs;
use crate::image::cache;
use crate::image::compose;
use crate::image::write::cpio;
use crate::image::write::esp::EspFile;
use crate::image::write::uki;
use anyhow::{Context, Result};
use slate_core::bootentry::{Entry, EntryKind, EntryName};
use slate_core::cmdline::BootParams;
use slate_core::layout::Slot;
use slate_core::verity::VerityInfo;
use std::path::Path;

/// systemd-boot's settings: no menu, no editor, only Slate's entries.
const LOADER_CONF: &str = "timeout 0\neditor no\nauto-entries no\nauto-firmware no\nconsole-mode keep\nrandom-seed-mode off\n";

/// The initramfs, compressed: deterministic (fixed mtimes, sorted entries, one zstd frame).
/// Independent of the root image, so the build runs it beside the squashfs. zstd -19 takes
/// seconds, so the result is kept in the extraction cache under the sha256 of the archive: a
/// rebuild with the same initramfs content reuses the same bytes.
pub fn initramfs(inp: &Inputs<'_>) -> Result<Vec<u8>> {
    let template = match inp.sealed_data {
        Some(_) => Some(crate::image::write::ext4::template(
            &inp.dir.join(".scratch"),
            slate_core::Guid::derive("slate-data-uuid", &inp.id),
            slate_core::Guid::derive("slate-data-hash-seed", &inp.id),
            inp.epoch,
        )?),
        None => None,
    };
    let sealed = match (inp.sealed_data, &template, inp.pcr) {
        (Some(config), Some(template), Some(pcr)) => Some(compose::SealedInitrd {
            config,
            template,
            pcr_public_pem: pcr.public_pem(),
        }),
        _ => None,
    };
    let tree = compose::initramfs(
        inp.kernel,
        &inp.board.board,
        inp.agent,
        compose::InitrdOptions {
            security_epoch: inp.security_epoch,
            test_hooks: inp.spec.spec.agent.test_hooks,
            secure_boot: inp.secure_boot.is_some(),
            measured_boot: inp.pcr.is_some(),
            sealed,
        },
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

/// A file of the boot loader package (systemd-boot, its EFI stub).
fn from_boot_package(inp: &Inputs<'_>, path: &str, field: &str) -> Result<Vec<u8>> {
    let b = &inp.board.board;
    let mut found = None;
    crate::image::debian::deb::for_each_entry(inp.boot_deb, &b.bootloader_package, |e, r| {
        if e.path == path.trim_start_matches('/') {
            let mut v = Vec::new();
            std::io::Read::read_to_end(r, &mut v)?;
            found = Some(v);
        }
        Ok(())
    })?;
    found.with_context(|| {
        format!(
            "{} has no {path}; check the board's {field}",
            b.bootloader_package
        )
    })
}

/// The files of the ESP: systemd-boot (from the boot loader package), its settings, and slot
/// A's entry with what it boots. A plain image has a `.conf` entry naming the kernel and
/// initramfs on the ESP; a Secure Boot image has one signed UKI, a signed systemd-boot, and
/// on x86-64 the signed boot-retry loader as `BOOTX64.EFI` in front of it; a measured-boot
/// image without Secure Boot has one unsigned UKI.
pub fn esp_files(
    inp: &Inputs<'_>,
    verity: &VerityInfo,
    options: &str,
    initrd: &[u8],
    scratch: &Path,
) -> Result<EspFiles> {
    let b = &inp.board.board;
    let boot_efi = from_boot_package(inp, &b.bootloader_path, "bootloader_path")?;
    let (boot_efi, entry_files, ukis) = match inp.secure_boot {
        Some(pair) => {
            let ukis = slot_ukis(inp, Some(pair), verity, options, initrd, scratch)?;
            let name = EntryName::good(Slot::A, inp.version.clone()).with_kind(EntryKind::Uki);
            let entry = EspFile {
                path: name.path(),
                bytes: ukis[0].1.clone(),
            };
            let systemd_boot = uki::sign(&boot_efi, pair, &scratch.join("systemd-boot"))?;
            match inp.boot_retry {
                // The loader is BOOTX64.EFI and starts systemd-boot from its usual place.
                Some(loader) => {
                    let loader = uki::sign(loader, pair, &scratch.join("bootretry"))?;
                    let systemd_boot = EspFile {
                        path: crate::image::bootretry::SYSTEMD_BOOT_PATH.into(),
                        bytes: systemd_boot,
                    };
                    (loader, vec![systemd_boot, entry], ukis)
                }
                None => (systemd_boot, vec![entry], ukis),
            }
        }
        // A measured-boot image without Secure Boot: the same UKIs, unsigned (the firmware
        // checks nothing; the TPM unseals /data only for a PCR 11 the vendor signed).
        None if inp.pcr.is_some() => {
            let ukis = slot_ukis(inp, None, verity, options, initrd, scratch)?;
            let name = EntryName::good(Slot::A, inp.version.clone()).with_kind(EntryKind::Uki);
            let entry = EspFile {
                path: name.path(),
                bytes: ukis[0].1.clone(),
            };
            (boot_efi, vec![entry], ukis)
        }
        None => (
            boot_efi,
            conf_entry_files(inp, verity, options, initrd),
            Vec::new(),
        ),
    };
    let mut files = vec![
        EspFile {
            path: format!("EFI/BOOT/{}", b.arch.default_efi_name()),
            bytes: boot_efi,
        },
        EspFile {
            path: "loader/loader.conf".into(),
            bytes: LOADER_CONF.into(),
        },
    ];
    files.extend(entry_files);
    Ok(EspFiles { files, ukis })
}

/// Slot A's `.conf` entry, kernel and initramfs.
fn conf_entry_files(
    inp: &Inputs<'_>,
    verity: &VerityInfo,
    options: &str,
    initrd: &[u8],
) -> Vec<EspFile> {
    let entry = Entry::for_slot(
        &inp.spec.spec.name,
        inp.version,
        Slot::A,
        verity.clone(),
        options,
    );
    vec![
        EspFile {
            path: EntryName::good(Slot::A, inp.version.clone()).path(),
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
    ]
}

/// One UKI per slot, signed with `pair` for Secure Boot: the slot is part of the command
/// line, so the image's bundles carry both and a device installs the one for its idle slot.
fn slot_ukis(
    inp: &Inputs<'_>,
    pair: Option<&uki::SigningPair>,
    verity: &VerityInfo,
    options: &str,
    initrd: &[u8],
    scratch: &Path,
) -> Result<Vec<(Slot, Vec<u8>)>> {
    let stub_path = inp
        .board
        .board
        .uki_stub_path
        .as_deref()
        .context("the board has no uki_stub_path")?;
    let stub = from_boot_package(inp, stub_path, "uki_stub_path")?;
    let mut ukis = Vec::new();
    for slot in [Slot::A, Slot::B] {
        let cmdline = BootParams {
            slot,
            verity: verity.clone(),
        }
        .options(options);
        let os_release = slate_core::osrelease::OsRelease {
            name: inp.spec.spec.name.clone(),
            version: inp.version.clone(),
            board: None,
            slot: Some(slot),
            security_epoch: inp.security_epoch,
        }
        .render();
        let work = scratch.join(format!("uki-{slot}"));
        let unsigned = uki::assemble(
            &stub,
            &uki::UkiParts {
                kernel: &inp.kernel.vmlinuz,
                initrd,
                cmdline: &cmdline,
                os_release: &os_release,
                pcr: inp.pcr,
                sealed_epoch: inp.sealed_data.map(|_| inp.security_epoch),
            },
            &work,
        )?;
        ukis.push((
            slot,
            match pair {
                Some(pair) => uki::sign(&unsigned, pair, &work)?,
                None => unsigned,
            },
        ));
    }
    Ok(ukis)
}

/// What [`esp_files`] made.
pub struct EspFiles {
    /// The ESP's files.
    pub files: Vec<EspFile>,
    /// The UKIs of a Secure Boot (signed) or measured-boot image, one per slot (slot A's is
    /// on the ESP); outputs `uki-a.efi` and `uki-b.efi`, what its bundles carry.
    pub ukis: Vec<(Slot, Vec<u8>)>,
}
