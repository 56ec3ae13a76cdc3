//! Installing a bundle into the idle slot, in DESIGN §6's order, each step durable before the
//! next:
//!
//! 1. refuse while the running slot is on trial; verify signatures, compatibility, version,
//!    epoch, expiry (nothing is written before this passes) and that the root image fits;
//!    a Secure Boot image's bundle (format 2) has its UKIs read and checked here too
//!    ([`crate::slated::install::uki`]: the db signature, the signed command line);
//! 2. delete the idle slot's boot entries (the slot is now empty: nothing boots it);
//! 3. stream `rootfs.img` into the idle partition, hashing; fsync; drop the cache and read it
//!    back: the verity tree and root hash must match the manifest (sha256 checked while streaming);
//!    a pull also syncs every [`CHECKPOINT_BYTES`] and says how far the slot is durable, so a
//!    power cut in the download costs only the rest;
//! 4. stage kernel and initrd outside the ESP, check them and the end of the bundle, then copy
//!    them to `/slate/<slot>/` on the ESP in one read-write window (temporary name, rename);
//! 5. write the new entry `slate-<slot>-<version>+3.conf` last (or, for an update applied
//!    later, `….conf.staged`, which systemd-boot does not load: applying it is a rename).
//!
//! On a Secure Boot image, steps 4 and 5 are one: the idle slot's signed UKI is the entry
//! `EFI/Linux/slate-<slot>-<version>+3.efi`, written under a temporary name, synced, renamed.
//!
//! A failure at any step leaves the running slot and its entry untouched.

pub mod lock;
pub mod uki;

use crate::boot::BootBackend;
use anyhow::{anyhow, bail, Context, Result};
use slate_core::api::Marker;
use slate_core::bundle::{BundleError, BundleReader};
use slate_core::install::Refusal;
use slate_core::install::{self as plan, BootFile, BootKind, EntryContent, Situation, Step};
use slate_core::layout::Slot;
use slate_core::manifest::{self, DeviceFacts, Manifest, ManifestError, Trust, Verifier};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Instant;

/// Why an install did not happen.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The bundle or the moment is not acceptable (the client's problem).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The device failed while installing.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

impl From<BundleError> for InstallError {
    fn from(e: BundleError) -> InstallError {
        InstallError::Refused(e.into())
    }
}

impl From<ManifestError> for InstallError {
    fn from(e: ManifestError) -> InstallError {
        InstallError::Refused(e.into())
    }
}

/// What an install needs to know about the device.
pub struct Installer<'a> {
    /// The boot loader back-end (systemd-boot on the mounted ESP).
    pub boot: &'a dyn BootBackend,
    /// Trust anchors; None refuses everything.
    pub trust: Option<&'a Trust>,
    /// Product, board, version, epoch, failed versions, now.
    pub facts: DeviceFacts,
    /// Running slot.
    pub running: Slot,
    /// The running slot is not blessed yet.
    pub running_on_trial: bool,
    /// Install even a version that failed before or is not newer.
    pub force: bool,
    /// A folder outside the ESP where kernel and initrd are checked before they are copied in
    /// (emptied before and after each install).
    pub staging: std::path::PathBuf,
    /// How this image boots its slots, which decides the bundles it takes.
    pub boot_kind: BootKind,
    /// A Secure Boot image: the public key of its db certificate (`RSAPublicKey`, DER) that
    /// a bundle's UKIs must be signed by, or why it could not be read. None for an image
    /// whose firmware does not check (`.conf` entries, or a measured-boot image's UKIs).
    pub secure_boot_db: Option<Result<&'a [u8], String>>,
    /// The version a channel's signed release offered: the bundle's manifest must say the
    /// same (None for a push, which offers what it carries).
    pub offered: Option<slate_core::Version>,
    /// Told, every [`CHECKPOINT_BYTES`] of the root image, the bundle offset of its first byte
    /// and how many of its bytes are now synced into the idle slot (a pull's resume state).
    pub checkpoint: Option<&'a Checkpoint<'a>>,
    /// Told when a phase the status shows begins (verifying, once the root image is written).
    pub on_phase: Option<&'a (dyn Fn(slate_core::api::Phase) + 'a)>,
    /// Asked once the manifest is verified and before anything is written whether its version
    /// is applied at once or staged (the maintenance windows, the reboot policy, the
    /// application's consent); None: at once.
    pub gate: Option<&'a Gate<'a>>,
}

/// Whether an install's entry is bootable as soon as it is written, or staged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// The entry is a trial at once: the device reboots into it.
    Now,
    /// The entry is staged (the boot loader does not load it) until it is applied.
    Later,
}

/// What [`Installer::gate`] calls.
pub type Gate<'a> = dyn Fn(&slate_core::Version) -> Result<When, Refusal> + 'a;

/// What [`Installer::checkpoint`] calls: `(bundle offset of the root image, bytes durable)`.
pub type Checkpoint<'a> = dyn Fn(u64, u64) + 'a;

/// How often a pull's install syncs the slot and reports how far it is durable: small enough
/// that a cut costs little, large enough that the syncs cost little.
pub const CHECKPOINT_BYTES: u64 = 1 << 20;

/// A finished install.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The manifest installed.
    pub manifest: Manifest,
    /// Slot written.
    pub slot: Slot,
    /// Bytes written to the slot and the ESP.
    pub bytes_written: u64,
    /// Seconds from the first byte to the entry written.
    pub seconds: f64,
    /// Its entry is staged, not bootable yet.
    pub staged: bool,
    /// The entry (the name it has, or takes when the staged update is applied).
    pub entry: slate_core::bootentry::EntryName,
}

fn failed(e: anyhow::Error) -> InstallError {
    InstallError::Failed(e)
}

/// Runs the install from a bundle stream: the head is read and verified, the plan decided
/// ([`slate_core::install::plan`]), and its steps carried out in order, each in its span and
/// each followed by its cut point.
pub fn install<R: Read>(
    inst: &Installer<'_>,
    body: R,
    progress: &dyn Fn(&Marker),
) -> Result<Installed, InstallError> {
    let started = Instant::now();
    plan::admit(inst.running, inst.running_on_trial)?;
    let trust = inst.trust.ok_or(Refusal::NoTrust)?;
    let mut r = BundleReader::new(body);
    let span = tracing::info_span!("install", step = "verify").entered();
    let (m_bytes, sigs) = plan::read_head(&mut r)?;
    let m = Verifier { trust }.verify(&m_bytes, &sigs, &inst.facts, inst.force)?;
    tracing::info!(product = %m.product, version = %m.version, signatures = sigs.signatures.len(), epoch = m.security_epoch, "manifest verified");
    plan::check_offered(&m, inst.offered.as_ref())?;
    let stage = match inst.gate {
        Some(gate) => gate(&m.version)? == When::Later,
        None => false,
    };
    drop(span);
    let boot = inst.boot_kind;
    plan::check_boot_kind(&m, boot)?;
    let idle = inst.running.other();
    let dev = crate::partitions::find(idle.label()).map_err(failed)?;
    let mut slot = File::options()
        .read(true)
        .write(true)
        .open(&dev)
        .with_context(|| format!("opening {dev}"))
        .map_err(failed)?;
    let slot_size = slot.seek(SeekFrom::End(0)).map_err(|e| failed(e.into()))?;
    let planned = plan::plan(
        &m,
        &Situation {
            facts: &inst.facts,
            running: inst.running,
            on_trial: inst.running_on_trial,
            boot,
            slot_size,
            device: &dev,
            stage,
        },
    )?;
    progress(&Marker::Installing {
        product: m.product.clone(),
        version: m.version.to_string(),
        slot: idle,
        device: dev.clone(),
    });

    // A format-2 bundle's UKIs come first and are checked before anything is written.
    let uki = match (boot, inst.secure_boot_db.as_ref()) {
        (_, Some(Err(why))) => return Err(Refusal::NoSecureBootCert { why: why.clone() }.into()),
        (BootKind::Uki, db) => Some(crate::slated::install::uki::take(
            &mut r,
            &m,
            idle,
            db.and_then(|k| k.as_ref().ok().copied()),
        )?),
        (BootKind::Conf, _) => None,
    };

    // The root image's archive header comes before the first write too: a bundle whose
    // entries are out of order or disguised is refused with the fallback slot untouched.
    let rootfs = planned
        .steps
        .iter()
        .find_map(|s| match s {
            Step::WriteRoot { artifact, .. } => Some(artifact),
            _ => None,
        })
        .ok_or_else(|| failed(anyhow!("a plan without the root image")))?;
    plan::expect_artifact(&mut r, rootfs)?;

    let mut run = Run {
        inst,
        r,
        slot,
        dev,
        uki,
        written: 0,
    };
    for step in &planned.steps {
        run.step(step)?;
    }
    let name = planned
        .entry()
        .cloned()
        .ok_or_else(|| failed(anyhow!("a plan without an entry")))?;
    tracing::info!(
        bytes = run.written,
        seconds = started.elapsed().as_secs_f64(),
        "install complete"
    );
    crate::hooks::cut_point(if stage {
        slate_core::api::CutPoint::Staged
    } else {
        slate_core::api::CutPoint::EntryWritten
    });
    tracing::debug!(entry = %name, stage, "installed");
    let name = name.clone();
    Ok(Installed {
        manifest: m,
        slot: idle,
        bytes_written: run.written,
        seconds: started.elapsed().as_secs_f64(),
        staged: stage,
        entry: name,
    })
}

/// An install while its steps are carried out: the bundle stream, positioned at the next
/// artifact, and the idle slot's partition.
struct Run<'a, R> {
    inst: &'a Installer<'a>,
    r: BundleReader<R>,
    slot: File,
    dev: String,
    /// A Secure Boot bundle's UKI for the idle slot, read and checked before the first write.
    uki: Option<Vec<u8>>,
    /// Bytes written to the slot and the ESP.
    written: u64,
}

impl<R: Read> Run<'_, R> {
    fn step(&mut self, step: &Step) -> Result<(), InstallError> {
        match step {
            Step::RemoveEntry { slot } => {
                // 2. Nothing may boot a half-written slot.
                let _span =
                    tracing::info_span!("install", step = "remove-entry", slot = %slot).entered();
                self.inst.boot.remove_slot(*slot).map_err(failed)?;
                drop(_span);
                crate::hooks::cut_point(slate_core::api::CutPoint::EntryRemoved);
            }
            Step::WriteRoot { slot, artifact } => self.write_root(*slot, artifact)?,
            Step::ReadBack { slot, verity } => {
                if let Some(tell) = self.inst.on_phase {
                    tell(slate_core::api::Phase::Verifying);
                }
                let _span =
                    tracing::info_span!("install", step = "read-back", slot = %slot).entered();
                read_back(&mut self.slot, verity).map_err(failed)?;
                tracing::info!(root_hash = %verity.root_hash, "root image read back and verified");
                drop(_span);
                crate::hooks::cut_point(slate_core::api::CutPoint::SlotWritten);
            }
            Step::WriteBootFiles { slot, files } => self.write_boot_files(*slot, files)?,
            Step::WriteEntry {
                name,
                content,
                staged,
            } => {
                // Nothing may follow the last artifact; checked before the entry is written.
                if let EntryContent::Uki(_) = content {
                    self.r.expect_end()?;
                }
                let _span = tracing::info_span!("install", step = "entry", entry = %name).entered();
                match content {
                    EntryContent::Conf(entry) => self
                        .inst
                        .boot
                        .write_entry(name, entry, *staged)
                        .map_err(failed)?,
                    EntryContent::Uki(_) => {
                        // 4–5. The signed UKI is the entry: temporary name, synced, renamed.
                        let uki = self
                            .uki
                            .as_deref()
                            .ok_or_else(|| failed(anyhow!("no checked UKI for {name}")))?;
                        self.inst
                            .boot
                            .write_uki_entry(name, uki, *staged)
                            .map_err(failed)?;
                        self.written += uki.len() as u64;
                    }
                }
            }
            Step::OneShot { name } => {
                // Not newer: systemd-boot's version order would boot the running entry again.
                if let Err(e) = self.inst.boot.set_one_shot(name) {
                    crate::marker::warn(format!(
                        "{name} is installed but older than the running version, and the boot loader cannot be told to try it next: {e:#}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// 3. The root image, hashed as it streams, synced every checkpoint for a pull.
    fn write_root(&mut self, idle: Slot, rootfs: &manifest::Artifact) -> Result<(), InstallError> {
        let _span =
            tracing::info_span!("install", step = "write-root", slot = %idle, device = %self.dev)
                .entered();
        let slot = &mut self.slot;
        slot.seek(SeekFrom::Start(0))
            .map_err(|e| failed(e.into()))?;
        let mut streamed = 0u64;
        let root_at = self.r.offset();
        let mut unsynced = 0u64;
        let checkpoint = self.inst.checkpoint;
        plan::stream_into_slot(&mut self.r, rootfs, idle, |c| {
            streamed += c.len() as u64;
            if streamed * 2 >= rootfs.size && streamed * 2 < rootfs.size + 2 * c.len() as u64 {
                crate::hooks::cut_point(slate_core::api::CutPoint::SlotPartlyWritten);
            }
            slot.write_all(c)?;
            unsynced += c.len() as u64;
            if let Some(note) = checkpoint.filter(|_| unsynced >= CHECKPOINT_BYTES) {
                slot.sync_data()?;
                unsynced = 0;
                note(root_at, streamed);
            }
            Ok::<(), std::io::Error>(())
        })?
        .with_context(|| format!("writing {}", self.dev))
        .map_err(failed)?;
        slot.sync_all().map_err(|e| failed(e.into()))?;
        tracing::info!(bytes = rootfs.size, "root image written and synced");
        self.written += rootfs.size;
        Ok(())
    }

    /// 4. Kernel and initrd: streamed into the staging folder on /data and checked there,
    ///    then copied onto the ESP in one short read-write window, so a slow or stalled client
    ///    never holds the ESP writable (a power cut then could leave it dirty).
    fn write_boot_files(&mut self, idle: Slot, files: &[BootFile]) -> Result<(), InstallError> {
        let span = tracing::info_span!("install", step = "boot-files", slot = %idle).entered();
        let staging = &self.inst.staging;
        let _ = std::fs::remove_dir_all(staging);
        std::fs::create_dir_all(staging)
            .with_context(|| format!("creating {}", staging.display()))
            .map_err(failed)?;
        let mut staged = Vec::new();
        for file in files {
            let a = &file.artifact;
            tracing::debug!(artifact = %a.name, bytes = a.size, "staging");
            plan::expect_artifact(&mut self.r, a)?;
            let path = staging.join(&a.name);
            let mut f = File::create(&path)
                .with_context(|| format!("creating {}", path.display()))
                .map_err(failed)?;
            match plan::stream_into_slot(&mut self.r, a, idle, |c| f.write_all(c)) {
                Ok(written) => written
                    .with_context(|| format!("writing {}", path.display()))
                    .map_err(failed)?,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(staging);
                    return Err(e.into());
                }
            }
            staged.push((file.esp_path.clone(), path));
            self.written += a.size;
        }
        // Nothing may follow the last artifact; checked before the ESP is touched.
        self.r.expect_end()?;
        self.inst
            .boot
            .copy_in(&staged, &|rel| {
                if rel.ends_with("initrd.img") {
                    // Inside the ESP's read-write window, the temporary file not yet synced.
                    crate::hooks::cut_point(slate_core::api::CutPoint::BootFilesWriting);
                }
            })
            .map_err(failed)?;
        let _ = std::fs::remove_dir_all(staging);
        drop(span);
        crate::hooks::cut_point(slate_core::api::CutPoint::BootFilesWritten);
        Ok(())
    }
}

/// Drops the slot's cached pages and reads it back from the disk: the verity tree of its data
/// against the manifest's root hash, and the stored tree against the recomputed one.
fn read_back(slot: &mut File, info: &slate_core::verity::VerityInfo) -> Result<()> {
    // One pass over the disk: the verity root hash (signed in the manifest) covers every data
    // byte, and the stored tree is compared byte for byte, so a separate sha256 of the whole
    // image would only hash the same bytes again.
    let _ = rustix::fs::fadvise(&*slot, 0, None, rustix::fs::Advice::DontNeed);
    if let Err(why) = slate_core::verity::check_image(slot, info, 2)? {
        bail!("the slot read back wrong ({why}): the disk did not keep what was written");
    }
    Ok(())
}
