//! Installing a bundle into the idle slot, in DESIGN §6's order, each step durable before the
//! next:
//!
//! 1. refuse while the running slot is on trial; verify signatures, compatibility, version,
//!    epoch, expiry (nothing is written before this passes) and that the root image fits;
//! 2. delete the idle slot's boot entries (the slot is now empty: nothing boots it);
//! 3. stream `rootfs.img` into the idle partition, hashing; fsync; drop the cache and read it
//!    back: the verity tree and root hash must match the manifest (sha256 checked while streaming);
//! 4. write kernel and initrd to `/slate/<slot>/` on the ESP (temporary name, check, rename);
//! 5. write the new entry `slate-<slot>-<version>+3.conf` last.
//!
//! A failure at any step leaves the running slot and its entry untouched.

use crate::esp::Esp;
use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use slate_core::bootentry::{Entry, EntryName};
use slate_core::bundle::BundleReader;
use slate_core::layout::Slot;
use slate_core::manifest::{self, DeviceFacts, Manifest, Signatures, Trust, Verifier};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Instant;

/// Tries a new entry gets.
pub const TRIES: u32 = 3;

/// Why an install did not happen.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The bundle or the moment is not acceptable (the client's problem); nothing changed
    /// except possibly the idle slot, which has no entry.
    #[error("{0}")]
    Refused(String),
    /// The device failed while installing.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

impl From<slate_core::bundle::BundleError> for InstallError {
    fn from(e: slate_core::bundle::BundleError) -> InstallError {
        InstallError::Refused(e.to_string())
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
}

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
    let s = Signatures::parse(&r.read_small("manifest.sig", n)?)
        .map_err(|e| InstallError::Refused(e.to_string()))?;
    Ok((m, s))
}

fn failed(e: anyhow::Error) -> InstallError {
    InstallError::Failed(e)
}

fn expect_artifact<R: Read>(
    r: &mut BundleReader<R>,
    a: &manifest::Artifact,
) -> Result<(), InstallError> {
    let size = r.expect_entry(&a.name, a.size)?;
    if size != a.size {
        return Err(InstallError::Refused(format!(
            "{} is {size} bytes in the archive but the manifest says {}",
            a.name, a.size
        )));
    }
    Ok(())
}

/// Runs the install from a bundle stream.
pub fn install<R: Read>(
    inst: &Installer<'_>,
    body: R,
    progress: &dyn Fn(&str),
) -> Result<Installed, InstallError> {
    let started = Instant::now();
    if inst.running_on_trial {
        return Err(InstallError::Refused(format!("slot {} is still on trial; an update waits until it is committed (the other slot is the fallback)", inst.running)));
    }
    let trust = inst.trust.ok_or_else(|| InstallError::Refused("this image has no trust file (/etc/slate/trust.toml) and refuses every update; build it with --trust".into()))?;
    let mut r = BundleReader::new(body);
    let (m_bytes, sigs) = read_head(&mut r)?;
    let m = Verifier { trust }
        .verify(&m_bytes, &sigs, &inst.facts, inst.force)
        .map_err(|e| InstallError::Refused(e.to_string()))?;
    let idle = inst.running.other();
    let dev = crate::stage1::find_partition(idle.label())
        .ok_or_else(|| failed(anyhow!("no partition labelled {}", idle.label())))?;
    let rootfs = m
        .artifact("rootfs.img")
        .ok_or_else(|| InstallError::Refused("no rootfs.img".into()))?
        .clone();
    let mut slot = File::options()
        .read(true)
        .write(true)
        .open(&dev)
        .with_context(|| format!("opening {dev}"))
        .map_err(failed)?;
    let slot_size = slot.seek(SeekFrom::End(0)).map_err(|e| failed(e.into()))?;
    if rootfs.size > slot_size {
        return Err(InstallError::Refused(format!(
            "rootfs.img is {} bytes but slot {idle} ({dev}) holds {slot_size}",
            rootfs.size
        )));
    }
    progress(&format!(
        "installing {} {} into slot {idle} ({dev})",
        m.product, m.version
    ));

    // 2. Nothing may boot a half-written slot.
    inst.esp.remove_slot(idle).map_err(failed)?;
    crate::hooks::cut_point("entry-removed");

    // 3. The root image, hashed as it streams, then read back from the disk.
    expect_artifact(&mut r, &rootfs)?;
    slot.seek(SeekFrom::Start(0))
        .map_err(|e| failed(e.into()))?;
    let mut h = Sha256::new();
    let mut streamed = 0u64;
    r.stream("rootfs.img", rootfs.size, |c| {
        h.update(c);
        streamed += c.len() as u64;
        if streamed * 2 >= rootfs.size && streamed * 2 < rootfs.size + 2 * c.len() as u64 {
            crate::hooks::cut_point("slot-partly-written");
        }
        slot.write_all(c)
    })?
    .with_context(|| format!("writing {dev}"))
    .map_err(failed)?;
    let got = hex::encode(h.finalize());
    if got != rootfs.sha256 {
        return Err(InstallError::Refused(format!(
            "rootfs.img sha256 {got} does not match the manifest's {}; slot {idle} is left empty",
            rootfs.sha256
        )));
    }
    slot.sync_all().map_err(|e| failed(e.into()))?;
    read_back(&mut slot, &rootfs).map_err(failed)?;
    crate::hooks::cut_point("slot-written");
    let mut written = rootfs.size;

    // 4. Kernel and initrd, each checked before it takes its final name.
    for name in ["vmlinuz", "initrd.img"] {
        let a = m
            .artifact(name)
            .ok_or_else(|| InstallError::Refused(format!("no {name}")))?
            .clone();
        expect_artifact(&mut r, &a)?;
        let mut stream_err = None;
        let rel = format!("slate/{idle}/{name}");
        let res = inst.esp.write_atomic(&rel, |f| {
            let mut h = Sha256::new();
            match r.stream(name, a.size, |c| {
                h.update(c);
                f.write_all(c)
            }) {
                Err(e) => {
                    stream_err = Some(e);
                    bail!("bundle stream failed")
                }
                Ok(Err(e)) => {
                    return Err(anyhow::Error::new(e).context(format!("writing {rel} on the ESP")))
                }
                Ok(Ok(())) => {}
            }
            let got = hex::encode(h.finalize());
            if got != a.sha256 {
                bail!(
                    "{name} sha256 {got} does not match the manifest's {}",
                    a.sha256
                );
            }
            if name == "initrd.img" {
                // Inside the ESP's read-write window, the temporary file not yet synced.
                crate::hooks::cut_point("boot-files-writing");
            }
            Ok(())
        });
        if let Some(e) = stream_err {
            return Err(e.into());
        }
        if let Err(e) = res {
            let msg = format!("{e:#}");
            return Err(if msg.contains("does not match") {
                InstallError::Refused(msg)
            } else {
                InstallError::Failed(e)
            });
        }
        written += a.size;
    }
    r.expect_end()?;
    crate::hooks::cut_point("boot-files-written");

    // 5. The entry, last.
    let info = rootfs
        .verity
        .as_ref()
        .ok_or_else(|| InstallError::Refused("rootfs.img has no verity parameters".into()))?
        .info()
        .map_err(|e| InstallError::Refused(e.to_string()))?;
    let entry = Entry {
        title: format!("{} {} (slot {idle})", m.product, m.version),
        version: m.version.clone(),
        linux: Entry::kernel_path(idle),
        initrd: Entry::initrd_path(idle),
        options: format!("{} slate.slot={idle} slate.verity={info}", m.options),
    };
    inst.esp
        .write_entry(&EntryName::trial(idle, m.version.clone(), TRIES), &entry)
        .map_err(failed)?;
    crate::hooks::cut_point("entry-written");
    Ok(Installed {
        manifest: m,
        slot: idle,
        bytes_written: written,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Drops the slot's cached pages and reads it back from the disk: the verity tree of its data
/// against the manifest's root hash, and the stored tree against the recomputed one.
fn read_back(slot: &mut File, a: &manifest::Artifact) -> Result<()> {
    // One pass over the disk: the verity root hash (signed in the manifest) covers every data
    // byte, and the stored tree is compared byte for byte, so a separate sha256 of the whole
    // image would only hash the same bytes again.
    let _ = rustix::fs::fadvise(&*slot, 0, None, rustix::fs::Advice::DontNeed);
    let vp = a
        .verity
        .as_ref()
        .context("rootfs.img without verity parameters")?;
    let info = vp.info()?;
    if let Err(why) = slate_core::verity::check_image(slot, &info, 2)? {
        bail!("the slot read back wrong ({why}): the disk did not keep what was written");
    }
    Ok(())
}
