//! Resuming a download that a power cut, a reboot or a long outage stopped: the root image
//! bytes already synced into the idle slot are the resume state. While a pulled bundle
//! streams in, the install syncs the slot every [`crate::slated::install::CHECKPOINT_BYTES`] and this
//! record on `/data` says how far the slot is durable and for which signed target. The next
//! pull of the same target reads that prefix back from the slot (it is hashed again with
//! everything else, so a prefix that did not survive is caught by the signed sha256 and the
//! root image's digest) and fetches only the rest.
//!
//! Any other install of the idle slot (a push, another target) forgets the record first.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use slate_core::layout::Slot;
use slate_core::Digest32;
use std::path::Path;

/// Where the record lives.
pub const RECORD: &str = "/data/slate/download.json";

/// How much of which signed target is durable in which slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The TUF target's sha256 (hex in the file).
    pub sha256: Digest32,
    /// The TUF target's length.
    pub length: u64,
    /// The slot being written.
    pub slot: Slot,
    /// Byte offset in the bundle of the root image's first byte.
    pub bundle_offset: u64,
    /// Root image bytes synced into the slot, from its first byte.
    pub durable: u64,
}

/// A durable prefix a download may take from the slot instead of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// Byte offset in the bundle where the slot's bytes start.
    pub bundle_offset: u64,
    /// How many bytes the slot holds.
    pub len: u64,
}

impl Record {
    /// The prefix this record offers a download of the target `sha256` of `length` bytes into
    /// `idle`, if it is about that very download and makes sense.
    pub fn prefix_for(&self, sha256: &Digest32, length: u64, idle: Slot) -> Option<Prefix> {
        let fits = self
            .bundle_offset
            .checked_add(self.durable)
            .is_some_and(|end| end <= length);
        (self.sha256 == *sha256 && self.length == length && self.slot == idle && fits)
            .then_some(Prefix {
                bundle_offset: self.bundle_offset,
                len: self.durable,
            })
            .filter(|p| p.len > 0)
    }
}

impl Record {
    /// A fresh record for downloading the target `sha256` of `length` bytes into `slot`.
    pub fn start(sha256: Digest32, length: u64, slot: Slot) -> Record {
        Record {
            sha256,
            length,
            slot,
            bundle_offset: 0,
            durable: 0,
        }
    }

    /// Saves this record at [`RECORD`] with the install's latest checkpoint (the root image
    /// starts at `bundle_offset`, `durable` of its bytes are synced); a failure is a warning
    /// from `source`: the download goes on, only its resume is lost.
    pub fn checkpoint(&self, bundle_offset: u64, durable: u64, source: &str) {
        let r = Record {
            bundle_offset,
            durable,
            ..self.clone()
        };
        if let Err(e) = save(Path::new(RECORD), &r) {
            crate::marker::warn(format!("{source}: the resume record: {e:#}"));
        }
    }
}

/// The record at `path`; a missing or unreadable one is no record (the download starts at
/// byte 0, which is always safe).
pub fn load(path: &Path) -> Option<Record> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Replaces the record durably.
pub fn save(path: &Path, record: &Record) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let bytes = serde_json::to_vec(record).context("encoding the download record")?;
    crate::durable::replace(path, &bytes)
}

/// Removes the record (a missing one is fine).
pub fn forget(path: &Path) -> Result<()> {
    crate::durable::remove(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            sha256: Digest32([0xab; 32]),
            length: 1000,
            slot: Slot::B,
            bundle_offset: 3072,
            durable: 0,
        }
    }

    #[test]
    fn a_record_offers_its_prefix_only_to_the_same_target_and_slot() {
        let r = Record {
            length: 10_000,
            durable: 4096,
            ..record()
        };
        let sha = Digest32([0xab; 32]);
        assert_eq!(
            r.prefix_for(&sha, 10_000, Slot::B),
            Some(Prefix {
                bundle_offset: 3072,
                len: 4096
            })
        );
        assert_eq!(r.prefix_for(&Digest32([0xcd; 32]), 10_000, Slot::B), None);
        assert_eq!(r.prefix_for(&sha, 9_999, Slot::B), None);
        assert_eq!(r.prefix_for(&sha, 10_000, Slot::A), None);
    }

    #[test]
    fn a_record_past_the_target_or_empty_offers_nothing() {
        let sha = Digest32([0xab; 32]);
        let past = Record {
            durable: 1000,
            ..record()
        };
        assert_eq!(past.prefix_for(&sha, 1000, Slot::B), None);
        let overflow = Record {
            bundle_offset: u64::MAX,
            durable: 2,
            ..record()
        };
        assert_eq!(overflow.prefix_for(&sha, 1000, Slot::B), None);
        assert_eq!(record().prefix_for(&sha, 1000, Slot::B), None);
    }

    #[test]
    fn records_round_trip_and_a_torn_one_is_no_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slate/download.json");
        assert_eq!(load(&path), None);
        save(&path, &record()).unwrap();
        assert_eq!(load(&path), Some(record()));
        std::fs::write(&path, b"{\"sha256\": \"ab").unwrap();
        assert_eq!(load(&path), None);
        forget(&path).unwrap();
        forget(&path).unwrap();
        assert!(!path.exists());
    }
}
