//! Finding Slate's partitions on the disk the firmware booted from, and nowhere else.
//!
//! A partition label is not an identity: a USB stick with a partition named `data` must not
//! become /data. systemd-boot tells the OS which partition it was loaded from (the EFI
//! variable `LoaderDevicePartUUID`, the ESP's PARTUUID); the boot disk is the one whose GPT
//! holds that PARTUUID, and Slate's labels are looked up only in that disk's table (read with
//! [`slate_core::gpt`]). The device cannot recompute the PARTUUIDs the imager derived (their
//! seed is the spec of whichever image flashed the disk), so the ESP's PARTUUID is the anchor
//! and the other partitions are the entries of the same table. There is no udev in the
//! initramfs: partitions' device names come from sysfs.

use anyhow::{anyhow, bail, Context, Result};
use slate_core::gpt::{self, Table, SECTOR};
use slate_core::guid::Guid;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The efivarfs file in which systemd-boot leaves the ESP's PARTUUID.
fn loader_device_part_uuid_path() -> String {
    format!(
        "/sys/firmware/efi/efivars/LoaderDevicePartUUID-{}",
        crate::boot::efivars::LOADER_GUID
    )
}

/// The disk the firmware booted from.
#[derive(Debug, Clone)]
pub struct BootDisk {
    /// Kernel name of the whole disk (`vda`, `nvme0n1`).
    pub name: String,
    /// PARTUUID of the ESP the firmware loaded systemd-boot from.
    pub esp: Guid,
    table: Table,
}

impl BootDisk {
    /// The block device of the partition labelled `label` on this disk, once the kernel has
    /// made it (None if the table has no such label, or the device is not there yet).
    pub fn partition(&self, label: &str) -> Option<String> {
        let number = number_of(&self.table, label)?;
        let dir = std::fs::read_dir(Path::new("/sys/block").join(&self.name)).ok()?;
        for e in dir.flatten() {
            let Ok(uevent) = std::fs::read_to_string(e.path().join("uevent")) else {
                continue;
            };
            if let Some(dev) = device_of(&uevent, number) {
                return Some(dev);
            }
        }
        None
    }
}

/// The 1-based partition number of `label` in `table`, if exactly one entry has it (two
/// entries with one label are ambiguous, and neither is used).
fn number_of(table: &Table, label: &str) -> Option<u32> {
    let mut found = table
        .partitions
        .iter()
        .enumerate()
        .filter(|(_, p)| p.name == label);
    let (i, _) = found.next()?;
    if found.next().is_some() {
        return None;
    }
    u32::try_from(i + 1).ok()
}

/// `/dev/<DEVNAME>` when a partition's uevent file says it is partition `number`.
fn device_of(uevent: &str, number: u32) -> Option<String> {
    let wanted = format!("PARTN={number}");
    if !uevent.lines().any(|l| l == wanted) {
        return None;
    }
    let dev = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))?;
    Some(format!("/dev/{dev}"))
}

/// Whether `table` is the boot disk's: it holds the ESP's PARTUUID, on an entry labelled as
/// Slate's ESP.
fn holds_esp(table: &Table, esp: Guid) -> bool {
    table
        .partitions
        .iter()
        .any(|p| p.unique_guid == esp && p.name == slate_core::layout::ESP_LABEL)
}

/// The ESP's PARTUUID as systemd-boot reported it.
fn esp_part_uuid() -> Result<Guid> {
    let path = loader_device_part_uuid_path();
    let raw = std::fs::read(&path).with_context(|| {
        format!(
            "reading {path}: the firmware did not say which disk it booted from (Slate boots through systemd-boot, which sets it; is efivarfs mounted?)"
        )
    })?;
    let text = crate::boot::efivars::decode_efi_string(&raw)
        .ok_or_else(|| anyhow!("{path} does not hold UTF-16 text"))?;
    text.trim()
        .parse()
        .with_context(|| format!("{path} does not hold a PARTUUID"))
}

/// Reads the GPT of `/dev/<name>` (the primary, else the backup at the disk's end), if it has
/// one that Slate can read.
fn read_table(name: &str) -> Option<Table> {
    let size = sectors_of(&Path::new("/sys/block").join(name)).ok()?;
    if size == 0 {
        return None;
    }
    let disk = std::fs::File::open(format!("/dev/{name}")).ok()?;
    read_gpt(&disk, size).ok().map(|(t, _)| t)
}

/// Looks at every disk once for the one whose GPT holds `esp`.
fn scan(esp: Guid) -> Result<Option<BootDisk>> {
    let mut found: Option<BootDisk> = None;
    let mut names: Vec<String> = std::fs::read_dir("/sys/block")
        .context("listing /sys/block")?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("dm-") && !n.starts_with("loop") && !n.starts_with("ram"))
        .collect();
    names.sort();
    for name in names {
        let Some(table) = read_table(&name) else {
            continue;
        };
        if !holds_esp(&table, esp) {
            continue;
        }
        if let Some(other) = &found {
            bail!(
                "two disks, /dev/{} and /dev/{name}, hold the ESP this machine booted from (PARTUUID {esp}); remove the copy",
                other.name
            );
        }
        found = Some(BootDisk { name, esp, table });
    }
    Ok(found)
}

static BOOT_DISK: OnceLock<BootDisk> = OnceLock::new();

/// Waits up to `timeout` for the boot disk to appear (disk drivers probe asynchronously),
/// then keeps it for the life of the process.
pub fn boot_disk(timeout: Duration) -> Result<&'static BootDisk> {
    if let Some(d) = BOOT_DISK.get() {
        return Ok(d);
    }
    let esp = esp_part_uuid()?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(d) = scan(esp)? {
            return Ok(BOOT_DISK.get_or_init(|| d));
        }
        if Instant::now() > deadline {
            bail!(
                "the disk the firmware booted from (the one holding ESP PARTUUID {esp}) did not appear within {} s (disk driver missing from the board's modules?)",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long a partition may take to appear once its disk is there.
const SETTLE: Duration = Duration::from_secs(5);

/// The block device of the boot disk's partition labelled `label`.
pub fn find(label: &str) -> Result<String> {
    wait_for(label, SETTLE)
}

/// Waits up to `timeout` for the boot disk and its partition labelled `label`.
pub fn wait_for(label: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    let disk = boot_disk(timeout)?;
    if number_of(&disk.table, label).is_none() {
        bail!(
            "the boot disk /dev/{} has no single partition labelled {label}",
            disk.name
        );
    }
    loop {
        if let Some(dev) = disk.partition(label) {
            return Ok(dev);
        }
        if Instant::now() > deadline {
            bail!(
                "partition {label} of the boot disk /dev/{} did not appear within {} s",
                disk.name,
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Bytes from the disk's end that hold the backup GPT (its entries and header).
const TAIL_BYTES: usize = gpt::PRIMARY_BYTES - 512;

/// Size of `/sys/block/<name>` (or a partition's `/sys/class/block/<name>`) in 512-byte sectors.
pub fn sectors_of(sys_dir: &Path) -> Result<u64> {
    let path = sys_dir.join("size");
    std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .parse()
        .with_context(|| format!("{} is not a number", path.display()))
}

/// The disk's table: the primary, else the backup in its last sectors (a cut while the primary
/// was rewritten); with whether the primary was the good one.
pub fn read_gpt(disk: &File, sectors: u64) -> Result<(Table, bool)> {
    let mut head = vec![0u8; gpt::PRIMARY_BYTES];
    disk.read_exact_at(&mut head, 0)
        .context("reading the primary GPT")?;
    let primary = match Table::decode(&head) {
        Ok(t) => return Ok((t, true)),
        Err(e) => e,
    };
    let mut tail = vec![0u8; TAIL_BYTES];
    let at = (sectors * SECTOR)
        .checked_sub(TAIL_BYTES as u64)
        .context("disk smaller than a GPT")?;
    disk.read_exact_at(&mut tail, at)
        .context("reading the backup GPT")?;
    let backup = Table::decode_backup(&tail, sectors)
        .with_context(|| format!("primary GPT: {primary}; backup GPT"))?;
    Ok((backup, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use slate_core::layout::{self, Arch, Sizes};

    fn table(seed: &[u8]) -> Table {
        let sizes = Sizes {
            esp_mib: 1,
            slot_mib: 1,
            data_mib: 1,
        };
        layout::table(Arch::X86_64, sizes, seed)
    }

    #[test]
    fn a_partition_number_matches_whole_lines_only() {
        let ev = "MAJOR=254\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=root-a\n";
        assert_eq!(device_of(ev, 2).as_deref(), Some("/dev/vda2"));
        assert_eq!(device_of(ev, 1), None);
        assert_eq!(device_of("PARTN=12\nDEVNAME=vda12\n", 1), None);
        assert_eq!(device_of("PARTN=2\n", 2), None);
    }

    #[test]
    fn labels_are_numbered_from_the_table_and_a_duplicate_is_refused() {
        let mut t = table(b"spec");
        assert_eq!(number_of(&t, layout::ESP_LABEL), Some(1));
        assert_eq!(number_of(&t, "root-b"), Some(3));
        assert_eq!(number_of(&t, layout::DATA_LABEL), Some(4));
        assert_eq!(number_of(&t, "swap"), None);
        let mut twin = t.partitions[3].clone();
        twin.unique_guid = Guid::derive("twin", b"data");
        t.partitions.push(twin);
        assert_eq!(number_of(&t, layout::DATA_LABEL), None);
    }

    #[test]
    fn only_the_table_holding_the_booted_esp_is_the_boot_disk() {
        let ours = table(b"ours");
        let decoy = table(b"decoy");
        let esp = ours.by_name(layout::ESP_LABEL).unwrap().unique_guid;
        assert!(holds_esp(&ours, esp));
        assert!(!holds_esp(&decoy, esp));
        // The PARTUUID on an entry that is not labelled as the ESP does not count.
        let mut relabelled = ours.clone();
        relabelled.partitions[0].name = "data".into();
        assert!(!holds_esp(&relabelled, esp));
    }
}
