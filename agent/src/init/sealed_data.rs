//! Stage 1's sealed `/data` (`[tpm]`): the partition starts with a header (the TPM-sealed
//! key, where enrolment stands: `slate_core::tpm::header`) and holds an ext4 encrypted by
//! dm-crypt after it.
//!
//! ```text
//! extend PCR 11 "enter-initrd"; the TPM's epoch index made and written on a first boot
//! no header  → enrol: a new key from the TPM and the kernel, sealed to "any PCR 11 policy the
//!              image's vendor key signed"; header "formatting"      (cut: enrol again)
//! formatting → unseal; write the template ext4 through dm-crypt; header "ready"
//!                                                                   (cut: write it again)
//! ready      → unseal by the UKI's signed policy (/.extra/tpm2-pcr-signature.json): the
//!              epoch index ≤ this image's epoch, PCR 11 as signed
//! mount /dev/mapper/data, grow it; raise the epoch index to the committed floor on /data
//! extend PCR 11 "leave-initrd"  — nothing started later can unseal the key or write the index
//! ```
//! Without a TPM: an image that requires one stops here (stage 1 fails, boot counting falls
//! back); any other writes the template plain behind a dm-linear mapping (header "plain") and
//! says so. A sealed header with no TPM, or a TPM that will not unseal (another TPM, an
//! image the vendor did not sign), stops the boot with the TPM's reason: `/data` is never
//! reformatted over a key that exists.

use crate::init::grow;
use crate::partitions::sectors_of;
use crate::{marker, sys, uptime_ms};
use anyhow::{anyhow, bail, Context, Result};
use slate_core::api::Marker;
use slate_core::config::{paths, SealedData};
use slate_core::gpt::SECTOR;
use slate_core::tpm::client::{Tpm, Transport};
use slate_core::tpm::header::{self, Header, HeaderError, State};
use slate_core::tpm::{self as tpmcore, PcrSig, ENTER_INITRD, LEAVE_INITRD, PCR_KERNEL_BOOT};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

/// The device-mapper name of the opened `/data` (`/dev/mapper/data`).
pub const DM_NAME: &str = "data";
/// Where systemd-stub leaves the UKI's `.pcrsig` for the initrd.
pub const SIGNATURE: &str = "/.extra/tpm2-pcr-signature.json";

/// The image's signed policies and the key they are signed with.
struct Vendor {
    key: (Vec<u8>, u32),
    signatures: Vec<slate_core::tpm::PolicySignature>,
}

impl Vendor {
    fn key(&self) -> (&[u8], u32) {
        (&self.key.0, self.key.1)
    }
}

/// Opens the data partition `part` as `cfg` says and mounts it at `target`; `epoch` is this
/// image's security epoch. With a TPM, PCR 11 leaves the "enter-initrd" value on every path
/// out of here, failures included.
pub fn mount(cfg: &SealedData, part: &str, target: &str, epoch: u64) -> Result<()> {
    let started = uptime_ms();
    let mut tpm = crate::tpm::open(Duration::from_secs(1))
        .with_context(|| format!("opening {}", crate::tpm::DEVICE))?;
    let result = match tpm.as_mut() {
        Some(t) => t
            .extend(PCR_KERNEL_BOOT, ENTER_INITRD.as_bytes())
            .context("extending PCR 11 with enter-initrd")
            .and_then(|()| open_and_mount(cfg, part, target, epoch, Some(t))),
        None => open_and_mount::<crate::tpm::DevTpm>(cfg, part, target, epoch, None),
    };
    if let Some(t) = tpm.as_mut() {
        t.extend(PCR_KERNEL_BOOT, LEAVE_INITRD.as_bytes())
            .context("extending PCR 11 with leave-initrd")?;
    }
    if let Some(how) = result? {
        marker::emit(&Marker::DataSealed {
            how,
            ms: uptime_ms().saturating_sub(started),
        });
    }
    Ok(())
}

/// Everything between the two phases: the sealed (`Some(how)`) or plain (`None`) `/data`.
fn open_and_mount<T: Transport>(
    cfg: &SealedData,
    part: &str,
    target: &str,
    epoch: u64,
    mut tpm: Option<&mut Tpm<T>>,
) -> Result<Option<&'static str>> {
    let name = Path::new(part).file_name().context("partition name")?;
    let part_bytes = sectors_of(&Path::new("/sys/class/block").join(name))? * SECTOR;
    let payload_bytes = part_bytes
        .checked_sub(header::PAYLOAD_OFFSET)
        .filter(|&b| b >= header::TEMPLATE_BYTES)
        .ok_or_else(|| anyhow!("the data partition {part} is too small for a sealed /data"))?;
    let dev = File::options()
        .read(true)
        .write(true)
        .open(part)
        .with_context(|| format!("opening {part}"))?;
    let mut area = vec![0u8; 2 * header::COPY_BYTES];
    dev.read_exact_at(&mut area, 0)
        .with_context(|| format!("reading the header of {part}"))?;
    let found = Header::pick(&area);
    let mut vendor = None;
    let mut index = 0;
    if let Some(t) = tpm.as_deref_mut() {
        let v = Vendor {
            key: vendor_key()?,
            signatures: signatures()?,
        };
        index = match t.epoch_index(v.key(), &v.signatures, found == Err(HeaderError::Absent)) {
            Ok(index) => index,
            Err(e) => {
                // A sealed key whose index is missing: another TPM (or this one cleared) is
                // the plainer reason, and the one the console should say.
                if let Ok(h) = &found {
                    if h.state != State::Plain {
                        t.loads(&h.sealed).context("unsealing the /data key")?;
                    }
                }
                return Err(e).context("the TPM's epoch index");
            }
        };
        if index > epoch {
            return Err(slate_core::tpm::client::Error::BelowTpmFloor {
                epoch,
                floor: index,
            })
            .context("unsealing the /data key");
        }
        vendor = Some(v);
    }

    let how = match (found, tpm.as_deref_mut()) {
        (Err(HeaderError::Damaged(why)), _) => bail!(
            "the header of the sealed data partition {part} is damaged ({why}); /data cannot be unlocked (recovery: docs/tpm.md)"
        ),
        (Err(HeaderError::Absent), None) if cfg.required => bail!(
            "this image requires a TPM ([tpm] required) and this machine has none ({} is missing)",
            crate::tpm::DEVICE
        ),
        (Err(HeaderError::Absent), None) => {
            let h = Header {
                generation: 1,
                state: State::Plain,
                cipher: String::new(),
                key_bytes: 0,
                sealed: Default::default(),
            };
            let mapped = open_plain(part, payload_bytes)?;
            write_template(&mapped)?;
            write_header(&dev, &h)?;
            marker::emit(&Marker::DataPlain {
                why: format!(
                    "this machine has no TPM ({} is missing): /data is not encrypted",
                    crate::tpm::DEVICE
                ),
            });
            mount_and_grow(&mapped, target, payload_bytes)?;
            return Ok(None);
        }
        (Ok(h), _) if h.state == State::Plain => {
            let mapped = open_plain(part, payload_bytes)?;
            marker::emit(&Marker::DataPlain {
                why: "enrolled without a TPM: /data is not encrypted (a factory reset with a TPM present seals it)".into(),
            });
            mount_and_grow(&mapped, target, payload_bytes)?;
            return Ok(None);
        }
        (Ok(_), None) => bail!(
            "/data is sealed by a TPM and this machine has none ({} is missing): it cannot be unlocked",
            crate::tpm::DEVICE
        ),
        (Err(HeaderError::Absent), Some(t)) => {
            let v = vendor.as_ref().context("the vendor key")?;
            let (key, sealed) = enrol(t, v)?;
            let h = Header {
                generation: 1,
                state: State::Formatting,
                cipher: header::CIPHER.into(),
                key_bytes: header::KEY_BYTES,
                sealed,
            };
            write_header(&dev, &h)?;
            crate::hooks::cut_point(slate_core::api::CutPoint::EnrolKeySealed);
            let mapped = open_crypt(part, key, payload_bytes)?;
            format(&dev, &mapped, h)?;
            "enrolled"
        }
        (Ok(h), Some(t)) => {
            if h.cipher != header::CIPHER || h.key_bytes != header::KEY_BYTES {
                bail!(
                    "the data partition's header names cipher {:?} with a {}-byte key; this image opens only {} with {} bytes",
                    h.cipher,
                    h.key_bytes,
                    header::CIPHER,
                    header::KEY_BYTES
                );
            }
            let v = vendor.as_ref().context("the vendor key")?;
            let seed = crate::tpm::session_seed(&t.random(32)?);
            let key = t
                .unseal_signed(
                    &h.sealed,
                    v.key(),
                    &v.signatures,
                    epoch,
                    &mut crate::tpm::LocalCrypto { seed },
                )
                .context("unsealing the /data key")?;
            let mapped = open_crypt(part, key, payload_bytes)?;
            if h.state == State::Formatting {
                format(&dev, &mapped, h)?;
                "enrolled"
            } else {
                "unlocked"
            }
        }
    };
    let mapped = format!("/dev/mapper/{DM_NAME}");
    mount_and_grow(&mapped, target, payload_bytes)?;
    if let (Some(t), Some(v)) = (tpm, vendor.as_ref()) {
        raise_to_floor(t, v, index, epoch)?;
    }
    Ok(Some(how))
}

/// Raises the TPM's epoch index (now `index`) to the floor the agent committed on `/data`
/// (never above this image's epoch: the floor's own check stops such a boot right after), so
/// that older images' policies no longer unseal.
fn raise_to_floor<T: Transport>(t: &mut Tpm<T>, v: &Vendor, index: u64, epoch: u64) -> Result<()> {
    let floor = crate::floor::read().min(epoch);
    if floor > index {
        t.raise_epoch(v.key(), &v.signatures, floor)
            .with_context(|| format!("raising the TPM's epoch index to {floor}"))?;
    }
    Ok(())
}

/// A new key, from the TPM's generator and the kernel's together, sealed to the image's
/// vendor key.
fn enrol<T: Transport>(
    t: &mut Tpm<T>,
    v: &Vendor,
) -> Result<(Vec<u8>, slate_core::tpm::client::Sealed)> {
    let mut key = t.random(usize::from(header::KEY_BYTES))?;
    let mut kernel = vec![0u8; key.len()];
    rustix::rand::getrandom(&mut kernel, rustix::rand::GetRandomFlags::empty())
        .context("reading the kernel's random numbers")?;
    for (k, r) in key.iter_mut().zip(&kernel) {
        *k ^= r;
    }
    wipe(&mut kernel);
    let sealed = t.seal_to_vendor(&key, v.key())?;
    Ok((key, sealed))
}

/// The UKI's signed policies, as systemd-stub passed them.
fn signatures() -> Result<Vec<slate_core::tpm::PolicySignature>> {
    let text = std::fs::read_to_string(SIGNATURE).with_context(|| {
        format!("reading {SIGNATURE}: the UKI carries no signed PCR policy (.pcrsig), so /data cannot be unlocked")
    })?;
    let sig: PcrSig =
        serde_json::from_str(&text).with_context(|| format!("parsing {SIGNATURE}"))?;
    Ok(sig.sha256)
}

/// The image's PCR-signing key (in the measured initramfs): modulus and exponent.
fn vendor_key() -> Result<(Vec<u8>, u32)> {
    let path = format!("/{}", paths::PCR_PUBLIC_KEY);
    let pem = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let der = tpmcore::rsa_public_key_der(&pem).map_err(|e| anyhow!("{path}: {e}"))?;
    tpmcore::rsa_public_numbers(&der).map_err(|e| anyhow!("{path}: {e}"))
}

fn payload_sectors(payload_bytes: u64) -> u64 {
    payload_bytes / SECTOR
}

/// Opens `/dev/mapper/data` with `key`, which is wiped (as are its hex copies) whatever
/// happens: the kernel keeps the one copy it needs.
fn open_crypt(part: &str, mut key: Vec<u8>, payload_bytes: u64) -> Result<String> {
    let hex_key = hex::encode(&key);
    wipe(&mut key);
    let params = format!(
        "{} {hex_key} 0 {part} {}",
        header::CIPHER,
        header::PAYLOAD_OFFSET / SECTOR
    );
    let result = sys::dm_create_writable(
        DM_NAME,
        (0, payload_sectors(payload_bytes), "crypt", &params),
    );
    wipe(&mut params.into_bytes());
    wipe(&mut hex_key.into_bytes());
    result.context("opening /data with dm-crypt (are dm_crypt, xts and ecb in the initramfs?)")?;
    Ok(format!("/dev/mapper/{DM_NAME}"))
}

/// Zeroes `bytes` in a way the optimiser keeps (best effort: earlier moves of a buffer may
/// have left copies).
fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    std::hint::black_box(&bytes);
}

fn open_plain(part: &str, payload_bytes: u64) -> Result<String> {
    let params = format!("{part} {}", header::PAYLOAD_OFFSET / SECTOR);
    sys::dm_create_writable(
        DM_NAME,
        (0, payload_sectors(payload_bytes), "linear", &params),
    )?;
    Ok(format!("/dev/mapper/{DM_NAME}"))
}

/// Writes the template through `mapped` and marks the header ready.
fn format(dev: &File, mapped: &str, formatting: Header) -> Result<()> {
    write_template(mapped)?;
    crate::hooks::cut_point(slate_core::api::CutPoint::EnrolFormatted);
    write_header(
        dev,
        &Header {
            generation: formatting.generation + 1,
            state: State::Ready,
            ..formatting
        },
    )
}

/// The empty file system from the initramfs, every byte of it (zeros too: through dm-crypt
/// a block never written reads as noise), flushed.
fn write_template(mapped: &str) -> Result<()> {
    let path = format!("/{}", paths::DATA_TEMPLATE);
    let encoded = std::fs::read(&path).with_context(|| format!("reading {path}"))?;
    let (len, runs) = slate_core::sparse::decode(&encoded).with_context(|| path.clone())?;
    let mut bytes = vec![0u8; slate_core::num::usize_of(len)];
    for r in runs {
        let at = slate_core::num::usize_of(r.offset);
        bytes[at..at + r.bytes.len()].copy_from_slice(r.bytes);
    }
    let f = File::options()
        .write(true)
        .open(mapped)
        .with_context(|| format!("opening {mapped}"))?;
    f.write_all_at(&bytes, 0)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing the empty file system to {mapped}"))?;
    Ok(())
}

/// Both copies of `h`, each flushed before the next: a cut tears at most one.
fn write_header(dev: &File, h: &Header) -> Result<()> {
    let bytes = h
        .encode()
        .context("the sealed key does not fit the header")?;
    for copy in 0..2u64 {
        dev.write_all_at(&bytes, copy * header::COPY_BYTES as u64)
            .and_then(|()| dev.sync_data())
            .context("writing the data partition's header")?;
    }
    Ok(())
}

fn mount_and_grow(mapped: &str, target: &str, payload_bytes: u64) -> Result<()> {
    use sys::Flags;
    std::fs::create_dir_all(target).with_context(|| format!("creating {target}"))?;
    sys::mount(mapped, target, "ext4", Flags::NOSUID | Flags::NODEV, "")
        .with_context(|| format!("mounting {mapped} at {target}"))?;
    if let Err(e) = grow::grow_filesystem_to(mapped, target, payload_bytes) {
        marker::warn(format!("growing the data file system: {e:#}"));
    }
    Ok(())
}
