//! Slot states, derived purely from the boot entries on the ESP (DESIGN §6).
//!
//! ```text
//! no entry            → empty     (nothing boots it; an install may be half-written)
//! slate-b-1.1.0.conf  → good      (blessed)
//! slate-b-1.1.0+2-1   → trial     (systemd-boot spends a try per boot)
//! slate-b-1.1.0+0-3   → bad       (tries spent or marked bad by the agent)
//! ```
//! Functions here only compute; the agent does the renames they call for.

use crate::api::{
    BootState, Health, HealthState, Marker, Outcome, SlotState, SlotStatus, UpdateRecord,
};
use crate::bootentry::{Counter, EntryName};
use crate::layout::Slot;
use crate::version::Version;

/// Tries a new entry gets (`+3`): systemd-boot spends one per start of a trial slot.
pub const TRIES: u32 = 3;

/// The view of `slot` given all entry names found (several for one slot: the newest wins).
pub fn view(slot: Slot, entries: &[EntryName]) -> SlotStatus {
    let mut mine: Vec<&EntryName> = entries.iter().filter(|e| e.slot == slot).collect();
    mine.sort_by(|a, b| a.version.cmp(&b.version));
    match mine.last() {
        None => SlotStatus {
            slot,
            state: SlotState::Empty,
            version: None,
            tries_left: None,
            entry: None,
        },
        Some(e) => SlotStatus {
            slot,
            state: match e.counter {
                None => SlotState::Good,
                Some(Counter { left: 0, .. }) => SlotState::Bad,
                Some(_) => SlotState::Trial,
            },
            version: Some(e.version.clone()),
            tries_left: e.counter.map(|c| c.left),
            entry: Some(e.to_string()),
        },
    }
}

/// The name a trial entry gets when the agent blesses it.
pub fn blessed(e: &EntryName) -> EntryName {
    EntryName {
        counter: None,
        ..e.clone()
    }
}

/// The name a trial entry gets when the agent marks it bad: no tries left, those spent kept.
pub fn marked_bad(e: &EntryName) -> EntryName {
    let done = e.counter.map_or(0, |c| c.done.max(1));
    EntryName {
        counter: Some(Counter { left: 0, done }),
        ..e.clone()
    }
}

/// Boots of one slot in a row that may end before the health checks pass; the next start of a
/// *good* slot after that many gives it up for the other slot (DESIGN §4).
///
/// A blessed entry has no counter, so systemd-boot would start a good slot that dies early
/// (corruption caught by dm-verity, a kernel panic, a hang) forever. Stage 1 counts the starts
/// on /data and the agent clears the count once the boot is healthy.
pub const MAX_FAILED_BOOTS: u32 = 3;

/// The boot-attempt record in `/data/slate/boot-attempts`: `<slot> <starts>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts {
    /// The slot started last.
    pub slot: Slot,
    /// How many times in a row it started without becoming healthy.
    pub starts: u32,
}

impl Attempts {
    /// Reads the record; anything unreadable counts as no record (a fresh count).
    pub fn parse(text: &str) -> Option<Attempts> {
        let mut it = text.split_whitespace();
        let slot = it.next()?.parse().ok()?;
        let starts = it.next()?.parse().ok()?;
        Some(Attempts { slot, starts })
    }

    /// The record after one more start of `slot`.
    pub fn next(previous: Option<Attempts>, slot: Slot) -> Attempts {
        let starts = match previous {
            Some(p) if p.slot == slot => p.starts.saturating_add(1),
            _ => 1,
        };
        Attempts { slot, starts }
    }

    /// The record after an orderly shutdown of `slot`: its last start is taken back (an
    /// orderly reboot is not a failed start). None when nothing is left to count.
    pub fn forgive(previous: Option<Attempts>, slot: Slot) -> Option<Attempts> {
        let p = previous.filter(|p| p.slot == slot)?;
        let starts = p.starts.checked_sub(1).filter(|&s| s > 0)?;
        Some(Attempts { slot, starts })
    }

    /// The text stored.
    pub fn render(&self) -> String {
        format!("{} {}\n", self.slot, self.starts)
    }
}

/// The entry systemd-boot would start for `slot` (the newest version of it).
fn entry_of(slot: Slot, entries: &[EntryName]) -> Option<&EntryName> {
    entries
        .iter()
        .filter(|e| e.slot == slot)
        .max_by(|a, b| a.version.cmp(&b.version))
}

/// Whether stage 1 may start an image of `epoch` on a device whose floor is `floor`.
pub fn epoch_allows(epoch: u64, floor: u64) -> bool {
    epoch >= floor
}

/// For a slot whose image is below the device's security floor: the rename that marks its
/// entry bad, when the other slot can boot instead (None: nothing else to boot).
pub fn refuse_below_floor(slot: Slot, entries: &[EntryName]) -> Option<(EntryName, EntryName)> {
    if !bootable(view(slot.other(), entries).state) {
        return None;
    }
    let e = entry_of(slot, entries)?;
    let bad = marked_bad(e);
    (bad != *e).then(|| (e.clone(), bad))
}

/// Whether to give up on the slot being started: when it is *good*, has started more than
/// [`MAX_FAILED_BOOTS`] times in a row without becoming healthy, and the other slot can boot
/// (good, or trial with tries left). Returns the rename that marks it bad.
pub fn give_up(attempts: Attempts, entries: &[EntryName]) -> Option<(EntryName, EntryName)> {
    if attempts.starts <= MAX_FAILED_BOOTS {
        return None;
    }
    let mine = view(attempts.slot, entries);
    let other = view(attempts.slot.other(), entries);
    if mine.state != SlotState::Good || !bootable(other.state) {
        return None;
    }
    let name: EntryName = mine.entry?.parse().ok()?;
    let bad = marked_bad(&name);
    Some((name, bad))
}

/// Whether systemd-boot can start a slot in this state.
pub fn bootable(state: SlotState) -> bool {
    matches!(state, SlotState::Good | SlotState::Trial)
}

/// One thing the agent does to carry out a decision, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Rename a boot entry on the ESP. When `required`, a failure stops the plan there.
    Rename {
        /// Current name.
        from: EntryName,
        /// New name.
        to: EntryName,
        /// Whether the rest of the plan depends on it.
        required: bool,
    },
    /// A power-cut test point (test images only).
    CutPoint(crate::api::CutPoint),
    /// Remember a version that failed, so it is retried only as [`crate::retry`] allows.
    Fail {
        /// Version.
        version: String,
        /// Why.
        reason: String,
        /// Whether its own health checks judged it.
        cause: crate::retry::Cause,
        /// When (Unix seconds).
        at: i64,
    },
    /// Raise the device's security epoch to at least this.
    RaiseEpoch(u64),
    /// Make this the last attempt and count its outcome.
    Record(UpdateRecord),
    /// Print a marker.
    Say(Marker),
    /// Reboot once the plan is done.
    Reboot,
}

/// What to do after a boot: computed purely by [`after_health`] or [`notice_fallback`],
/// carried out step by step by the agent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl Plan {
    /// Whether the plan ends with a reboot.
    pub fn reboots(&self) -> bool {
        self.steps.contains(&Step::Reboot)
    }

    /// Whether the plan commits the running slot.
    pub fn commits(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s, Step::Record(r) if r.outcome == Outcome::Committed))
    }

    /// The entries after the plan's renames (for checking a plan before it runs).
    pub fn apply_renames(&self, entries: &[EntryName]) -> Vec<EntryName> {
        let mut out = entries.to_vec();
        for step in &self.steps {
            if let Step::Rename { from, to, .. } = step {
                for e in out.iter_mut().filter(|e| *e == from) {
                    *e = to.clone();
                }
            }
        }
        out
    }
}

/// What the agent knows about this boot when it decides.
#[derive(Debug, Clone, Copy)]
pub struct Boot<'a> {
    /// Running slot.
    pub running: Slot,
    /// Running version.
    pub version: &'a Version,
    /// How systemd-boot chose this boot.
    pub boot: BootState,
    /// Boot entries on the ESP.
    pub entries: &'a [EntryName],
    /// The last update attempt the agent recorded.
    pub last_attempt: Option<&'a UpdateRecord>,
    /// The running image's security epoch.
    pub security_epoch: u64,
    /// The other slot's image's security epoch, when known.
    pub other_epoch: Option<u64>,
    /// Unix seconds now.
    pub now: i64,
}

impl Boot<'_> {
    /// The running slot's trial entry (the newest, if a power cut left two).
    fn trial_entry(&self) -> Option<&EntryName> {
        self.entries
            .iter()
            .filter(|e| e.slot == self.running && e.counter.is_some())
            .max_by(|a, b| a.version.cmp(&b.version))
    }

    fn record(&self, outcome: Outcome, reason: String, security_epoch: u64) -> UpdateRecord {
        UpdateRecord {
            version: Some(self.version.clone()),
            slot: self.running,
            outcome,
            reason,
            security_epoch,
            at: self.now,
        }
    }
}

/// The decision after this boot's health checks: on a trial boot, bless the entry and commit
/// (passed), or mark it bad, remember the version as failed and reboot (failed). A good boot
/// needs no decision. Health still pending decides nothing.
pub fn after_health(b: &Boot<'_>, health: &Health) -> Plan {
    if !matches!(b.boot, BootState::Trial { .. }) || health.state == HealthState::Pending {
        return Plan::default();
    }
    let Some(current) = b.trial_entry().cloned() else {
        return Plan {
            steps: vec![Step::Say(Marker::Warning(
                "trial boot but no trial entry for this slot on the ESP".into(),
            ))],
        };
    };
    let version = b.version.to_string();
    // The image's own epoch (the manifest that installed it carried the same).
    let epoch = b.security_epoch;
    if health.state == HealthState::Passed {
        let mut steps = vec![
            Step::Rename {
                from: current.clone(),
                to: blessed(&current),
                required: true,
            },
            Step::CutPoint(crate::api::CutPoint::Blessed),
            Step::RaiseEpoch(epoch),
        ];
        // The other slot's image is now below the floor: stage 1 would refuse it anyway, and
        // systemd-boot must not fall back to it.
        if let Some((from, to)) = b
            .other_epoch
            .filter(|&e| e < epoch)
            .and_then(|_| entry_of(b.running.other(), b.entries))
            .map(|e| (e.clone(), marked_bad(e)))
            .filter(|(from, to)| from != to)
        {
            steps.push(Step::Say(Marker::Warning(format!(
                "slot {} holds an image below the committed security epoch {epoch}; marking {from} bad",
                b.running.other()
            ))));
            steps.push(Step::Rename {
                from,
                to,
                required: false,
            });
        }
        steps.push(Step::Record(b.record(
            Outcome::Committed,
            String::new(),
            epoch,
        )));
        steps.push(Step::Say(Marker::Committed {
            slot: b.running,
            version,
        }));
        Plan { steps }
    } else {
        let reason = format!("health check failed: {}", health.failures());
        Plan {
            steps: vec![
                Step::Rename {
                    from: current.clone(),
                    to: marked_bad(&current),
                    required: false,
                },
                Step::CutPoint(crate::api::CutPoint::MarkedBad),
                Step::Fail {
                    version: version.clone(),
                    reason: reason.clone(),
                    cause: crate::retry::Cause::Verdict,
                    at: b.now,
                },
                Step::Record(b.record(Outcome::RolledBack, reason.clone(), epoch)),
                Step::Say(Marker::Rollback {
                    slot: b.running,
                    version,
                    reason,
                }),
                Step::Reboot,
            ],
        }
    }
}

/// After a good boot of the old slot: when the last install never got committed and its slot
/// is now bad or empty, the new version used up its boot tries and systemd-boot fell back.
/// Records that as a rollback (nothing on the ESP changes).
pub fn notice_fallback(b: &Boot<'_>) -> Plan {
    let Some(a) = b.last_attempt else {
        return Plan::default();
    };
    let their_slot = a.slot;
    if a.outcome != Outcome::Installed || their_slot == b.running || b.boot != BootState::Good {
        return Plan::default();
    }
    if bootable(view(their_slot, b.entries).state) {
        return Plan::default();
    }
    let reason =
        "boot-failed: the new slot used up its boot tries; systemd-boot fell back".to_string();
    Plan {
        steps: vec![
            Step::Fail {
                version: a
                    .version
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                reason: reason.clone(),
                cause: crate::retry::Cause::NoVerdict,
                at: b.now,
            },
            Step::Record(UpdateRecord {
                outcome: Outcome::RolledBack,
                reason: reason.clone(),
                at: b.now,
                ..a.clone()
            }),
            Step::Say(Marker::Rollback {
                slot: their_slot,
                version: a
                    .version
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                reason,
            }),
        ],
    }
}

#[cfg(test)]
mod tests;
