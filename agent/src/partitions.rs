//! Finding partitions by their GPT label (`PARTNAME=` in sysfs uevents; there is no udev in
//! the initramfs). Stage 1, the ESP and the installer all look partitions up here.

use anyhow::{bail, Result};
use std::time::{Duration, Instant};

/// The block device of the partition labelled `label`, if one is present now.
pub fn find(label: &str) -> Option<String> {
    let dir = std::fs::read_dir("/sys/class/block").ok()?;
    for e in dir.flatten() {
        let Ok(uevent) = std::fs::read_to_string(e.path().join("uevent")) else {
            continue;
        };
        if let Some(dev) = device_of(&uevent, label) {
            return Some(dev);
        }
    }
    None
}

/// `/dev/<DEVNAME>` when a uevent file describes the partition labelled `label`.
fn device_of(uevent: &str, label: &str) -> Option<String> {
    let wanted = format!("PARTNAME={label}");
    if !uevent.lines().any(|l| l == wanted) {
        return None;
    }
    let dev = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))?;
    Some(format!("/dev/{dev}"))
}

/// Waits up to `timeout` for the partition to appear (disk drivers probe asynchronously).
pub fn wait_for(label: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(dev) = find(label) {
            return Ok(dev);
        }
        if Instant::now() > deadline {
            bail!(
                "no partition labelled {label} appeared within {} s (disk driver missing from the board's modules?)",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_matches_whole_lines_only() {
        let ev = "MAJOR=254\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=root-a\n";
        assert_eq!(device_of(ev, "root-a").as_deref(), Some("/dev/vda2"));
        assert_eq!(device_of(ev, "root"), None);
        assert_eq!(device_of(ev, "root-b"), None);
        assert_eq!(device_of("PARTNAME=data\n", "data"), None);
    }
}
