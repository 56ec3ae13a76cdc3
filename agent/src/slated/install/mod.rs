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
//! 5. write the new entry `slate-<slot>-<version>+3.conf` last.
//!
//! On a Secure Boot image, steps 4 and 5 are one: the idle slot's signed UKI is the entry
//! `EFI/Linux/slate-<slot>-<version>+3.efi`, written under a temporary name, synced, renamed.
//!
//! A failure at any step leaves the running slot and its entry untouched.

pub mod uki;

use crate::boot::esp::Esp;
use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use slate_core::api::Marker;
use slate_core::bootentry::{Entry, EntryKind, EntryName};
use slate_core::bundle::{BundleError, BundleReader};
use slate_core::cmdline::BootParams;
use slate_core::layout::Slot;
use slate_core::manifest::{
    self, DeviceFacts, Manifest, ManifestError, Signatures, Trust, Verifier,
};
use slate_core::slots::TRIES;
use slate_core::Digest32;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Instant;

/// Why a bundle, or the moment it came, was not acceptable: the client's problem, decided by
/// type (never by the wording of a message). Nothing bootable changed; at most the idle slot,
/// which has no entry, holds part of the bundle.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The running slot is not blessed yet; its fallback must not be overwritten.
    #[error("slot {running} is still on trial; an update waits until it is committed (the other slot is the fallback)")]
    OnTrial {
        /// The running slot.
        running: Slot,
    },
    /// Another install holds the lock.
    #[error("another install is in progress")]
    Busy,
    /// The image has no (usable) trust file.
    #[error("this image has no trust file (/etc/slate/trust.toml) and refuses every update; build it with --trust")]
    NoTrust,
    /// The ESP did not mount at boot.
    #[error("the ESP is not mounted; updates are off")]
    NoEsp,
    /// The bundle boots its slot in another way than this image does: a kernel and an
    /// initramfs for a Secure Boot image (its firmware would refuse them), or signed UKIs
    /// for an image that boots `.conf` entries.
    #[error("{}", boot_kind_message(*.bundle_ukis))]
    BootKind {
        /// The bundle carries UKIs (format 2).
        bundle_ukis: bool,
    },
    /// A Secure Boot image whose db certificate cannot be read cannot check a UKI.
    #[error("this Secure Boot image cannot read its db certificate ({why}), so it cannot check a bundle's UKIs and refuses every update")]
    NoSecureBootCert {
        /// What went wrong.
        why: String,
    },
    /// A UKI the firmware would refuse, or whose command line or version is not the
    /// manifest's: refused before anything was written.
    #[error("{0}; nothing was written")]
    Uki(#[from] slate_core::uki::UkiError),
    /// The archive is malformed, truncated or out of order (the error names the byte offset).
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The manifest, its signatures or its rules (compatibility, version, epoch, expiry).
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// An artifact's bytes are not what the signed manifest says.
    #[error("{artifact} sha256 {got} does not match the manifest's {expected}; slot {slot} is left without an entry")]
    DigestMismatch {
        /// Which artifact.
        artifact: String,
        /// The manifest's digest.
        expected: Digest32,
        /// The digest of what arrived.
        got: Digest32,
        /// The idle slot, now empty.
        slot: Slot,
    },
    /// The root image does not fit the idle slot.
    #[error("rootfs.img is {size} bytes but slot {slot} ({device}) holds {capacity}")]
    TooLarge {
        /// Bytes the image needs.
        size: u64,
        /// The idle slot.
        slot: Slot,
        /// Its device node.
        device: String,
        /// Bytes it holds.
        capacity: u64,
    },
    /// The client stopped sending, or sent slower than the image's minimum rate.
    #[error(
        "upload cut off after {seconds} s, slower than the minimum {min_kib_s} KiB/s: {inner}"
    )]
    Stalled {
        /// Seconds from the start of the upload.
        seconds: u64,
        /// The minimum rate (`[agent] min_upload_kib_s`).
        min_kib_s: u32,
        /// What the installer saw when the stream stopped.
        inner: Box<Refusal>,
    },
}

impl Refusal {
    /// The HTTP status of the refusal: 409 when the moment is wrong (try again later), 400 when
    /// the bundle is.
    pub fn http_status(&self) -> u16 {
        match self {
            Refusal::OnTrial { .. } | Refusal::Busy => 409,
            Refusal::Stalled { inner, .. } => inner.http_status(),
            _ => 400,
        }
    }

    /// A stable word for programs (`kind` in the upload answer).
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::OnTrial { .. } => "on-trial",
            Refusal::Busy => "busy",
            Refusal::NoTrust => "no-trust",
            Refusal::NoEsp => "no-esp",
            Refusal::BootKind { .. } => "boot-kind",
            Refusal::NoSecureBootCert { .. } => "no-secure-boot-cert",
            Refusal::Uki(_) => "uki",
            Refusal::Bundle(_) => "bundle",
            Refusal::Manifest(_) => "manifest",
            Refusal::DigestMismatch { .. } => "digest-mismatch",
            Refusal::TooLarge { .. } => "too-large",
            Refusal::Stalled { .. } => "stalled",
        }
    }
}

fn boot_kind_message(bundle_ukis: bool) -> &'static str {
    if bundle_ukis {
        "the bundle carries signed UKIs (manifest format 2, for Secure Boot images), and this image boots a kernel and an initramfs: make the bundle from a build without [secure_boot]"
    } else {
        "this image boots signed UKIs (Secure Boot), and the bundle carries a kernel and an initramfs its firmware would refuse: make the bundle from a build with the image's db key (`slate build --secure-boot-key --secure-boot-cert`)"
    }
}

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
    /// The mounted ESP.
    pub esp: &'a Esp,
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
    /// A Secure Boot image: the public key of its db certificate (`RSAPublicKey`, DER) that
    /// a bundle's UKIs must be signed by, or why it could not be read. None for an image that
    /// boots `.conf` entries.
    pub secure_boot_db: Option<Result<&'a [u8], String>>,
    /// Told, every [`CHECKPOINT_BYTES`] of the root image, the bundle offset of its first byte
    /// and how many of its bytes are now synced into the idle slot (a pull's resume state).
    pub checkpoint: Option<&'a Checkpoint<'a>>,
}

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
}

fn read_head<R: Read>(r: &mut BundleReader<R>) -> Result<(Vec<u8>, Signatures), InstallError> {
    let n = r.expect_entry("manifest.toml", manifest::MAX_MANIFEST)?;
    let m = r.read_small("manifest.toml", n)?;
    let n = r.expect_entry("manifest.sig", manifest::MAX_SIGNATURES)?;
    let s = Signatures::parse(&r.read_small("manifest.sig", n)?)?;
    Ok((m, s))
}

fn failed(e: anyhow::Error) -> InstallError {
    InstallError::Failed(e)
}

/// `got`, the sha256 of what arrived for `a`, is the signed manifest's, or a refusal that
/// names both (the idle slot `slot` is left without an entry).
pub(crate) fn check_digest(
    a: &manifest::Artifact,
    got: Digest32,
    slot: Slot,
) -> Result<(), Refusal> {
    if got == a.sha256 {
        return Ok(());
    }
    Err(Refusal::DigestMismatch {
        artifact: a.name.clone(),
        expected: a.sha256,
        got,
        slot,
    })
}

pub(crate) fn expect_artifact<R: Read>(
    r: &mut BundleReader<R>,
    a: &manifest::Artifact,
) -> Result<(), InstallError> {
    let size = r.expect_entry(&a.name, a.size)?;
    if size != a.size {
        return Err(BundleError::SizeMismatch {
            name: a.name.clone(),
            expected: a.size,
            found: size,
        }
        .into());
    }
    Ok(())
}

/// Runs the install from a bundle stream.
pub fn install<R: Read>(
    inst: &Installer<'_>,
    body: R,
    progress: &dyn Fn(&Marker),
) -> Result<Installed, InstallError> {
    let started = Instant::now();
    if inst.running_on_trial {
        return Err(Refusal::OnTrial {
            running: inst.running,
        }
        .into());
    }
    let trust = inst.trust.ok_or(Refusal::NoTrust)?;
    let mut r = BundleReader::new(body);
    let span = tracing::info_span!("install", step = "verify").entered();
    let (m_bytes, sigs) = read_head(&mut r)?;
    let m = Verifier { trust }.verify(&m_bytes, &sigs, &inst.facts, inst.force)?;
    tracing::info!(product = %m.product, version = %m.version, signatures = sigs.signatures.len(), epoch = m.security_epoch, "manifest verified");
    drop(span);
    if m.carries_ukis() != inst.secure_boot_db.is_some() {
        return Err(Refusal::BootKind {
            bundle_ukis: m.carries_ukis(),
        }
        .into());
    }
    let idle = inst.running.other();
    let dev = crate::partitions::find(idle.label()).map_err(failed)?;
    // Manifest::parse guarantees the root image, with verity parameters.
    let rootfs = m
        .rootfs()
        .cloned()
        .ok_or_else(|| failed(anyhow!("a parsed manifest without rootfs.img")))?;
    let verity = rootfs
        .verity
        .clone()
        .ok_or_else(|| failed(anyhow!("a parsed manifest without verity parameters")))?;
    let mut slot = File::options()
        .read(true)
        .write(true)
        .open(&dev)
        .with_context(|| format!("opening {dev}"))
        .map_err(failed)?;
    let slot_size = slot.seek(SeekFrom::End(0)).map_err(|e| failed(e.into()))?;
    if rootfs.size > slot_size {
        return Err(Refusal::TooLarge {
            size: rootfs.size,
            slot: idle,
            device: dev,
            capacity: slot_size,
        }
        .into());
    }
    progress(&Marker::Installing {
        product: m.product.clone(),
        version: m.version.to_string(),
        slot: idle,
        device: dev.clone(),
    });

    // A Secure Boot bundle's UKIs come first and are checked before anything is written.
    let uki = match inst.secure_boot_db.as_ref() {
        Some(Ok(key)) => Some(crate::slated::install::uki::take(&mut r, &m, idle, key)?),
        Some(Err(why)) => return Err(Refusal::NoSecureBootCert { why: why.clone() }.into()),
        None => None,
    };

    // The root image's archive header comes before the first write too: a bundle whose
    // entries are out of order or disguised is refused with the fallback slot untouched.
    expect_artifact(&mut r, &rootfs)?;

    // 2. Nothing may boot a half-written slot.
    let span = tracing::info_span!("install", step = "remove-entry", slot = %idle).entered();
    inst.esp.remove_slot(idle).map_err(failed)?;
    drop(span);
    crate::hooks::cut_point("entry-removed");

    // 3. The root image, hashed as it streams, then read back from the disk.
    let span =
        tracing::info_span!("install", step = "write-root", slot = %idle, device = %dev).entered();
    slot.seek(SeekFrom::Start(0))
        .map_err(|e| failed(e.into()))?;
    let mut h = Sha256::new();
    let mut streamed = 0u64;
    let root_at = r.offset();
    let mut unsynced = 0u64;
    r.stream("rootfs.img", rootfs.size, |c| {
        h.update(c);
        streamed += c.len() as u64;
        if streamed * 2 >= rootfs.size && streamed * 2 < rootfs.size + 2 * c.len() as u64 {
            crate::hooks::cut_point("slot-partly-written");
        }
        slot.write_all(c)?;
        unsynced += c.len() as u64;
        if let Some(note) = inst.checkpoint.filter(|_| unsynced >= CHECKPOINT_BYTES) {
            slot.sync_data()?;
            unsynced = 0;
            note(root_at, streamed);
        }
        Ok::<(), std::io::Error>(())
    })?
    .with_context(|| format!("writing {dev}"))
    .map_err(failed)?;
    check_digest(&rootfs, Digest32(h.finalize().into()), idle)?;
    slot.sync_all().map_err(|e| failed(e.into()))?;
    tracing::info!(bytes = rootfs.size, "root image written and synced");
    read_back(&mut slot, &verity).map_err(failed)?;
    tracing::info!(root_hash = %verity.root_hash, "root image read back and verified");
    drop(span);
    crate::hooks::cut_point("slot-written");
    let mut written = rootfs.size;

    let name = EntryName::trial(idle, m.version.clone(), TRIES);
    if let Some(uki) = uki {
        // 4–5. The signed UKI is the entry: written under a temporary name, synced, renamed.
        r.expect_end()?;
        let name = name.with_kind(EntryKind::Uki);
        let _span = tracing::info_span!("install", step = "entry", entry = %name).entered();
        crate::slated::install::uki::write_entry(inst.esp, &name, &uki).map_err(failed)?;
        written += uki.len() as u64;
        return Ok(finish(inst, m, idle, name, written, started));
    }

    // 4. Kernel and initrd: streamed into the staging folder on /data and checked there, then
    //    copied onto the ESP in one short read-write window, so a slow or stalled client never
    //    holds the ESP writable (a power cut then could leave it dirty).
    let span = tracing::info_span!("install", step = "boot-files", slot = %idle).entered();
    let staging = &inst.staging;
    let _ = std::fs::remove_dir_all(staging);
    std::fs::create_dir_all(staging)
        .with_context(|| format!("creating {}", staging.display()))
        .map_err(failed)?;
    let mut staged = Vec::new();
    for a in m.boot_artifacts().cloned() {
        let name = a.name.as_str();
        tracing::debug!(artifact = name, bytes = a.size, "staging");
        expect_artifact(&mut r, &a)?;
        let path = staging.join(name);
        let mut f = File::create(&path)
            .with_context(|| format!("creating {}", path.display()))
            .map_err(failed)?;
        let mut h = Sha256::new();
        r.stream(name, a.size, |c| {
            h.update(c);
            f.write_all(c)
        })?
        .with_context(|| format!("writing {}", path.display()))
        .map_err(failed)?;
        if let Err(e) = check_digest(&a, Digest32(h.finalize().into()), idle) {
            let _ = std::fs::remove_dir_all(staging);
            return Err(e.into());
        }
        staged.push((format!("slate/{idle}/{name}"), path));
        written += a.size;
    }
    // Nothing may follow the last artifact; checked before the ESP is touched.
    r.expect_end()?;
    inst.esp
        .copy_in(&staged, |rel| {
            if rel.ends_with("initrd.img") {
                // Inside the ESP's read-write window, the temporary file not yet synced.
                crate::hooks::cut_point("boot-files-writing");
            }
        })
        .map_err(failed)?;
    let _ = std::fs::remove_dir_all(staging);
    drop(span);
    crate::hooks::cut_point("boot-files-written");

    // 5. The entry, last.
    let entry = Entry {
        title: format!("{} {} (slot {idle})", m.product, m.version),
        version: m.version.clone(),
        linux: Entry::kernel_path(idle),
        initrd: Entry::initrd_path(idle),
        options: BootParams { slot: idle, verity }.options(&m.options),
    };
    let _span = tracing::info_span!("install", step = "entry", entry = %name).entered();
    inst.esp.write_entry(&name, &entry).map_err(failed)?;
    Ok(finish(inst, m, idle, name, written, started))
}

/// After the entry is written: an older version is booted next by a one-shot choice.
fn finish(
    inst: &Installer<'_>,
    m: Manifest,
    idle: Slot,
    name: EntryName,
    written: u64,
    started: Instant,
) -> Installed {
    if m.version <= inst.facts.version {
        // Not newer: systemd-boot's version order would boot the running entry again.
        if let Err(e) = crate::boot::efivars::set_one_shot(&name.to_string()) {
            crate::marker::warn(format!(
                "{name} is installed but older than the running version, and the boot loader cannot be told to try it next: {e:#}"
            ));
        }
    }
    tracing::info!(
        bytes = written,
        seconds = started.elapsed().as_secs_f64(),
        "install complete"
    );
    crate::hooks::cut_point("entry-written");
    Installed {
        manifest: m,
        slot: idle,
        bytes_written: written,
        seconds: started.elapsed().as_secs_f64(),
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
