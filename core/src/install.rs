//! The install step as a plan: what a verified bundle does to the idle slot and the ESP, in
//! DESIGN §6's order, decided without touching a device.
//!
//! ```text
//! plan(manifest, facts, running, on trial, boot kind, slot size) -> InstallPlan | Refusal
//!   RemoveEntry → WriteRoot (stream, hash) → ReadBack (sha256 + verity)
//!   → WriteBootFiles (kernel, initrd; none for a UKI) → WriteEntry (+3) → [OneShot]
//! ```
//!
//! Push, channel and every later source enter through the same plan, so a refusal, a cut
//! point or a status field means the same thing wherever the bundle came from. The agent
//! carries the steps out, one span and one cut point each; the rules that keep a device
//! bootable are here, where a unit test can break them: the running slot's entry is never
//! touched, nothing boots the idle slot until its entry is written, and the entry is written
//! last.

use crate::api::RefusalKind;
use crate::bootentry::{Entry, EntryKind, EntryName};
use crate::bundle::{BundleError, BundleReader};
use crate::layout::Slot;
use crate::manifest::{
    uki_artifact, Artifact, DeviceFacts, Manifest, ManifestError, ARTIFACTS, UKI_ARTIFACTS,
};
use crate::manifest::{Signatures, MAX_MANIFEST, MAX_SIGNATURES};
use crate::slots::TRIES;
use crate::verity::VerityInfo;
use crate::Digest32;
use sha2::{Digest, Sha256};
use std::io::Read;

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
    #[error("another install is in progress ({holder})")]
    Busy {
        /// Who holds the lock, as far as the device can tell (process name and PID).
        holder: String,
    },
    /// An apply with no staged update on the device.
    #[error("no update is staged on this device; push one with `slate push --stage`, or see `slate status` for the last install")]
    NothingStaged,
    /// The application (`[update] consent`) held the update back.
    #[error("the application holds the update back ({reason}); it is asked again at {ask_again_at} (Unix time); `slate apply --now` applies it anyway")]
    ConsentHeld {
        /// What it said.
        reason: String,
        /// When it is asked again.
        ask_again_at: i64,
    },
    /// The image has no (usable) trust file.
    #[error("this image has no trust file (/etc/slate/trust.toml) and refuses every update; build it with --trust")]
    NoTrust,
    /// The ESP did not mount at boot.
    #[error("the ESP is not mounted; updates are off")]
    NoEsp,
    /// The bundle boots its slot in another way than this image does: a kernel and an
    /// initramfs for an image that boots UKIs (a Secure Boot image's firmware would refuse
    /// them; a measured-boot image's TPM would not unseal), or UKIs for an image that boots
    /// `.conf` entries.
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
    Uki(#[from] crate::uki::UkiError),
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
            Refusal::OnTrial { .. }
            | Refusal::Busy { .. }
            | Refusal::NothingStaged
            | Refusal::ConsentHeld { .. } => 409,
            Refusal::Stalled { inner, .. } => inner.http_status(),
            _ => 400,
        }
    }

    /// A stable word for programs (`kind` in the upload answer).
    pub fn kind(&self) -> RefusalKind {
        match self {
            Refusal::OnTrial { .. } => RefusalKind::OnTrial,
            Refusal::Busy { .. } => RefusalKind::Busy,
            Refusal::NothingStaged => RefusalKind::NothingStaged,
            Refusal::ConsentHeld { .. } => RefusalKind::Consent,
            Refusal::NoTrust => RefusalKind::NoTrust,
            Refusal::NoEsp => RefusalKind::NoEsp,
            Refusal::BootKind { .. } => RefusalKind::BootKind,
            Refusal::NoSecureBootCert { .. } => RefusalKind::NoSecureBootCert,
            Refusal::Uki(_) => RefusalKind::Uki,
            Refusal::Bundle(_) => RefusalKind::Bundle,
            Refusal::Manifest(_) => RefusalKind::Manifest,
            Refusal::DigestMismatch { .. } => RefusalKind::DigestMismatch,
            Refusal::TooLarge { .. } => RefusalKind::TooLarge,
            Refusal::Stalled { .. } => RefusalKind::Stalled,
        }
    }
}

fn boot_kind_message(bundle_ukis: bool) -> &'static str {
    if bundle_ukis {
        "the bundle carries UKIs (manifest format 2, for Secure Boot and measured-boot images), and this image boots a kernel and an initramfs: make the bundle from a build without [secure_boot] and [tpm]"
    } else {
        "this image boots UKIs (Secure Boot or measured boot), and the bundle carries a kernel and an initramfs: make the bundle from a build with the image's [secure_boot] and [tpm] settings (`slate build --secure-boot-key --secure-boot-cert`, `--pcr-key`)"
    }
}

/// Reads a bundle's head: the manifest's exact bytes (what the signatures cover) and its
/// signatures, each within its size limit. Nothing else of a bundle is read before the
/// signatures are checked.
pub fn read_head<R: Read>(r: &mut BundleReader<R>) -> Result<(Vec<u8>, Signatures), Refusal> {
    let n = r.expect_entry("manifest.toml", MAX_MANIFEST)?;
    let m = r.read_small("manifest.toml", n)?;
    let n = r.expect_entry("manifest.sig", MAX_SIGNATURES)?;
    let s = Signatures::parse(&r.read_small("manifest.sig", n)?)?;
    Ok((m, s))
}

/// The next archive entry is the artifact `a`, with exactly the signed size.
pub fn expect_artifact<R: Read>(r: &mut BundleReader<R>, a: &Artifact) -> Result<(), BundleError> {
    let size = r.expect_entry(&a.name, a.size)?;
    if size != a.size {
        return Err(BundleError::SizeMismatch {
            name: a.name.clone(),
            expected: a.size,
            found: size,
        });
    }
    Ok(())
}

/// Why an artifact's bytes were not what the signed manifest says.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The archive is malformed or cut short.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The bytes hash to another sha256 than the signed one.
    #[error("{artifact} sha256 {got} does not match the manifest's {expected}")]
    Digest {
        /// Which artifact.
        artifact: String,
        /// The manifest's digest.
        expected: Digest32,
        /// The digest of what arrived.
        got: Digest32,
    },
}

impl ArtifactError {
    /// The refusal of an install into `slot` (whose entry is gone by then).
    pub fn refusal(self, slot: Slot) -> Refusal {
        match self {
            ArtifactError::Bundle(e) => Refusal::Bundle(e),
            ArtifactError::Digest {
                artifact,
                expected,
                got,
            } => Refusal::DigestMismatch {
                artifact,
                expected,
                got,
                slot,
            },
        }
    }
}

/// Streams the artifact `a` (its header already read by [`expect_artifact`]) to `sink`,
/// hashing it: `Ok(Err(e))` when the sink failed, an error when the archive is cut short or
/// the bytes are not the signed sha256.
pub fn stream_artifact<R: Read, E>(
    r: &mut BundleReader<R>,
    a: &Artifact,
    mut sink: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<Result<(), E>, ArtifactError> {
    let mut h = Sha256::new();
    let streamed = r.stream(&a.name, a.size, |c| {
        h.update(c);
        sink(c)
    })?;
    if let Err(e) = streamed {
        return Ok(Err(e));
    }
    let got = Digest32(h.finalize().into());
    if got != a.sha256 {
        return Err(ArtifactError::Digest {
            artifact: a.name.clone(),
            expected: a.sha256,
            got,
        });
    }
    Ok(Ok(()))
}

/// [`stream_artifact`] for an install into `slot`: its errors as refusals.
pub fn stream_into_slot<R: Read, E>(
    r: &mut BundleReader<R>,
    a: &Artifact,
    slot: Slot,
    sink: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<Result<(), E>, Refusal> {
    stream_artifact(r, a, sink).map_err(|e| e.refusal(slot))
}

/// How the image boots a slot, which decides the bundles it takes and its last steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootKind {
    /// A `.conf` entry naming a kernel and an initramfs on the ESP (manifest format 1).
    Conf,
    /// A Unified Kernel Image per slot (format 2): signed and checked by the firmware on a
    /// Secure Boot image; measured into PCR 11 on a measured-boot image.
    Uki,
}

/// What the device knows that the plan depends on.
#[derive(Debug, Clone)]
pub struct Situation<'a> {
    /// Product, board, version, epoch, failed versions, now.
    pub facts: &'a DeviceFacts,
    /// The slot running now: its entry is the fallback and is never touched.
    pub running: Slot,
    /// The running slot is not blessed yet.
    pub on_trial: bool,
    /// How this image boots.
    pub boot: BootKind,
    /// Bytes the idle slot's partition holds.
    pub slot_size: u64,
    /// The idle slot's device node, for the messages.
    pub device: &'a str,
    /// Stage the update: its entry is written under a name the boot loader does not load,
    /// and it is applied later (a maintenance window, an operator's apply).
    pub stage: bool,
}

/// A boot file the ESP gets for the idle slot: a bundle artifact and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFile {
    /// The artifact in the bundle (`vmlinuz`, `initrd.img`).
    pub artifact: Artifact,
    /// Its path on the ESP, relative to the ESP's root (`slate/b/vmlinuz`).
    pub esp_path: String,
}

/// What the new entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryContent {
    /// A `.conf` entry (rendered by [`Entry::render`]).
    Conf(Entry),
    /// The slot's UKI (signed on a Secure Boot image), written as the entry itself.
    Uki(Artifact),
}

/// One step of an install, in the order the plan lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Remove every entry of the slot: from here nothing boots it.
    RemoveEntry {
        /// The idle slot.
        slot: Slot,
    },
    /// Stream the root image into the slot, hashing it.
    WriteRoot {
        /// The idle slot.
        slot: Slot,
        /// The root image's artifact (size and sha256 as signed).
        artifact: Artifact,
    },
    /// Drop the cache and read the slot back: the verity tree against the signed root hash.
    ReadBack {
        /// The idle slot.
        slot: Slot,
        /// The signed verity parameters.
        verity: VerityInfo,
    },
    /// Write the kernel and the initramfs onto the ESP (temporary names, renamed).
    WriteBootFiles {
        /// The idle slot.
        slot: Slot,
        /// The files, in bundle order.
        files: Vec<BootFile>,
    },
    /// Write the new entry, with its boot counter: the slot is a trial from here (or, staged,
    /// once the entry is renamed to its name).
    WriteEntry {
        /// Its name (`slate-<slot>-<version>+3.conf` or `.efi`).
        name: EntryName,
        /// What it holds.
        content: EntryContent,
        /// Written as `<name>.staged`, which the boot loader does not load.
        staged: bool,
    },
    /// Ask the boot loader to try the new entry at the next boot only: systemd-boot's version
    /// order would boot the running, newer-or-equal entry again.
    OneShot {
        /// The new entry.
        name: EntryName,
    },
}

impl Step {
    /// The slot whose entries or partition the step changes (None for the one-shot choice,
    /// which changes an EFI variable).
    pub fn slot(&self) -> Option<Slot> {
        match self {
            Step::RemoveEntry { slot }
            | Step::WriteRoot { slot, .. }
            | Step::ReadBack { slot, .. }
            | Step::WriteBootFiles { slot, .. } => Some(*slot),
            Step::WriteEntry { name, .. } => Some(name.slot),
            Step::OneShot { .. } => None,
        }
    }
}

/// An install decided: the idle slot and the steps that fill it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallPlan {
    /// The slot written.
    pub idle: Slot,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl InstallPlan {
    /// The new entry's name.
    pub fn entry(&self) -> Option<&EntryName> {
        self.steps.iter().find_map(|s| match s {
            Step::WriteEntry { name, .. } => Some(name),
            _ => None,
        })
    }
}

/// A manifest that [`Manifest::parse`] would not have given (one made by hand).
fn malformed(m: &Manifest, why: String) -> Refusal {
    Refusal::Manifest(ManifestError::Artifacts {
        format: m.format,
        expected: if m.carries_ukis() {
            UKI_ARTIFACTS
        } else {
            ARTIFACTS
        },
        why,
    })
}

/// Refuses an install that cannot start whatever the bundle holds, before a byte of it is
/// read: while the running slot is on trial, its fallback must not be overwritten.
pub fn admit(running: Slot, on_trial: bool) -> Result<(), Refusal> {
    if on_trial {
        return Err(Refusal::OnTrial { running });
    }
    Ok(())
}

/// Refuses a bundle that boots its slot in another way than the image (`boot`): known from
/// the manifest alone, so the agent asks before it opens the idle slot.
pub fn check_boot_kind(m: &Manifest, boot: BootKind) -> Result<(), Refusal> {
    let bundle_ukis = m.carries_ukis();
    if bundle_ukis != (boot == BootKind::Uki) {
        return Err(Refusal::BootKind { bundle_ukis });
    }
    Ok(())
}

/// Refuses a bundle whose signed manifest is not the version a channel's signed release
/// offered (`None`: a push, which offers what it carries).
pub fn check_offered(m: &Manifest, offered: Option<&crate::Version>) -> Result<(), Refusal> {
    match offered {
        Some(v) if *v != m.version => Err(Refusal::Manifest(ManifestError::NotOffered {
            offered: v.clone(),
            bundle: m.version.clone(),
        })),
        _ => Ok(()),
    }
}

/// The steps that install `m` (already verified against the trust file and `facts`) into the
/// idle slot, or why it must not be installed.
pub fn plan(m: &Manifest, s: &Situation<'_>) -> Result<InstallPlan, Refusal> {
    admit(s.running, s.on_trial)?;
    check_boot_kind(m, s.boot)?;
    let idle = s.running.other();
    let (rootfs, verity) = match m.rootfs() {
        Some(
            a @ Artifact {
                verity: Some(v), ..
            },
        ) => (a.clone(), v.clone()),
        // Manifest::parse guarantees both; a manifest made by hand may lack them.
        _ => {
            return Err(malformed(
                m,
                format!("no {} with verity parameters", crate::manifest::ROOTFS),
            ))
        }
    };
    if rootfs.size > s.slot_size {
        return Err(Refusal::TooLarge {
            size: rootfs.size,
            slot: idle,
            device: s.device.to_string(),
            capacity: s.slot_size,
        });
    }
    let mut steps = vec![
        Step::RemoveEntry { slot: idle },
        Step::WriteRoot {
            slot: idle,
            artifact: rootfs,
        },
        Step::ReadBack {
            slot: idle,
            verity: verity.clone(),
        },
    ];
    let trial = EntryName::trial(idle, m.version.clone(), TRIES);
    let name = match s.boot {
        BootKind::Uki => {
            let uki = m
                .artifact(uki_artifact(idle))
                .cloned()
                .ok_or_else(|| malformed(m, format!("no {}", uki_artifact(idle))))?;
            let name = trial.with_kind(EntryKind::Uki);
            steps.push(Step::WriteEntry {
                name: name.clone(),
                content: EntryContent::Uki(uki),
                staged: s.stage,
            });
            name
        }
        BootKind::Conf => {
            let files = m
                .boot_artifacts()
                .map(|a| BootFile {
                    artifact: a.clone(),
                    esp_path: format!("slate/{idle}/{}", a.name),
                })
                .collect();
            steps.push(Step::WriteBootFiles { slot: idle, files });
            let entry = Entry::for_slot(&m.product, &m.version, idle, verity, &m.options);
            steps.push(Step::WriteEntry {
                name: trial.clone(),
                content: EntryContent::Conf(entry),
                staged: s.stage,
            });
            trial
        }
    };
    // A staged entry's one-shot choice is made when it is applied.
    if m.version <= s.facts.version && !s.stage {
        steps.push(Step::OneShot { name });
    }
    Ok(InstallPlan { idle, steps })
}

#[cfg(test)]
mod tests;
