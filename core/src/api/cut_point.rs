//! The cut points of the power-cut gauntlet: the moments of an update (and of the first
//! boot's grow of `data`) where a test image's agent stops when the harness asks, so the
//! harness can cut the power at exactly that moment.
//!
//! One enum for the agent's hooks, the console marker (`slate: cut-point <step>`), the
//! harness's fw_cfg value and the gauntlet's tests: a step the agent does not have cannot be
//! asked for.

use std::fmt;
use std::str::FromStr;

/// A moment where a test image's agent can be stopped for a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CutPoint {
    /// The idle slot's entry is gone; nothing is written yet.
    EntryRemoved,
    /// Half of the root image is in the idle slot.
    SlotPartlyWritten,
    /// The root image is written, synced and read back.
    SlotWritten,
    /// Inside the ESP's read-write window, a boot file's temporary copy not yet synced.
    BootFilesWriting,
    /// Kernel and initrd are on the ESP; no entry yet.
    BootFilesWritten,
    /// The new entry (`+3`) is written: the install is done.
    EntryWritten,
    /// The first boot of the trial slot, before its health checks.
    TrialBoot,
    /// While the health checks run.
    HealthRunning,
    /// Right after the trial slot was blessed.
    Blessed,
    /// Right after a failed trial was marked bad.
    MarkedBad,
    /// During the boot that falls back to the good slot.
    FallbackBoot,
    /// A staged update's entry (`….staged`) is written: the install is done, nothing boots it.
    Staged,
    /// A staged update is applied: its entry renamed into a bootable one, the reboot not yet
    /// asked for.
    Applying,
    /// The grow of `data`: the backup GPT is written at the disk's end.
    GrowBackupWritten,
    /// The grow: the primary table's entries are written.
    GrowEntriesWritten,
    /// The grow: the partition is grown, the file system not yet.
    GrowFilesystem,
    /// A sealed `/data`'s enrolment: the sealed key is in the header, nothing formatted yet.
    EnrolKeySealed,
    /// Enrolment: the file system is written through dm-crypt, the header not yet "ready".
    EnrolFormatted,
}

impl CutPoint {
    /// The durable steps of an update, in order (DESIGN §6), then the boots after it.
    pub const UPDATE: [CutPoint; 11] = [
        CutPoint::EntryRemoved,
        CutPoint::SlotPartlyWritten,
        CutPoint::SlotWritten,
        CutPoint::BootFilesWriting,
        CutPoint::BootFilesWritten,
        CutPoint::EntryWritten,
        CutPoint::TrialBoot,
        CutPoint::HealthRunning,
        CutPoint::Blessed,
        CutPoint::MarkedBad,
        CutPoint::FallbackBoot,
    ];

    /// The steps of an update staged and applied later, in order.
    pub const STAGE: [CutPoint; 2] = [CutPoint::Staged, CutPoint::Applying];

    /// Stage 1's steps in the first boot's grow of `data` onto a larger disk, in order.
    pub const GROW: [CutPoint; 3] = [
        CutPoint::GrowBackupWritten,
        CutPoint::GrowEntriesWritten,
        CutPoint::GrowFilesystem,
    ];

    /// Stage 1's steps in the first boot of a sealed `/data`, in order.
    pub const ENROL: [CutPoint; 2] = [CutPoint::EnrolKeySealed, CutPoint::EnrolFormatted];

    /// The step's name, as the marker prints it and the harness asks for it.
    pub fn as_str(self) -> &'static str {
        match self {
            CutPoint::EntryRemoved => "entry-removed",
            CutPoint::SlotPartlyWritten => "slot-partly-written",
            CutPoint::SlotWritten => "slot-written",
            CutPoint::BootFilesWriting => "boot-files-writing",
            CutPoint::BootFilesWritten => "boot-files-written",
            CutPoint::EntryWritten => "entry-written",
            CutPoint::TrialBoot => "trial-boot",
            CutPoint::HealthRunning => "health-running",
            CutPoint::Blessed => "blessed",
            CutPoint::MarkedBad => "marked-bad",
            CutPoint::FallbackBoot => "fallback-boot",
            CutPoint::Staged => "staged",
            CutPoint::Applying => "applying",
            CutPoint::GrowBackupWritten => "grow-backup-written",
            CutPoint::GrowEntriesWritten => "grow-entries-written",
            CutPoint::GrowFilesystem => "grow-filesystem",
            CutPoint::EnrolKeySealed => "enrol-key-sealed",
            CutPoint::EnrolFormatted => "enrol-formatted",
        }
    }
}

impl fmt::Display for CutPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no cut point.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a cut point")]
pub struct UnknownCutPoint(pub String);

impl FromStr for CutPoint {
    type Err = UnknownCutPoint;

    fn from_str(s: &str) -> Result<CutPoint, UnknownCutPoint> {
        CutPoint::UPDATE
            .into_iter()
            .chain(CutPoint::STAGE)
            .chain(CutPoint::GROW)
            .chain(CutPoint::ENROL)
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCutPoint(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cut_point_reads_back_from_its_name_and_names_are_distinct() {
        let all: Vec<CutPoint> = CutPoint::UPDATE
            .into_iter()
            .chain(CutPoint::STAGE)
            .chain(CutPoint::GROW)
            .chain(CutPoint::ENROL)
            .collect();
        for c in &all {
            assert_eq!(c.as_str().parse::<CutPoint>(), Ok(*c));
        }
        let mut names: Vec<_> = all.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert!("cut-everything".parse::<CutPoint>().is_err());
    }
}
