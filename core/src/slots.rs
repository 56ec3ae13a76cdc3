//! Slot states, derived purely from the boot entries on the ESP (DESIGN §6).
//!
//! ```text
//! no entry            → empty     (nothing boots it; an install may be half-written)
//! slate-b-1.1.0.conf  → good      (blessed)
//! slate-b-1.1.0+2-1   → trial     (systemd-boot spends a try per boot)
//! slate-b-1.1.0+0-3   → bad       (tries spent or marked bad by the agent)
//! ```
//! Functions here only compute; the agent does the renames they call for.

use crate::bootentry::{Counter, EntryName};
use crate::layout::Slot;
use crate::version::Version;
use serde::Serialize;

/// State of one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// No entry.
    Empty,
    /// Blessed entry.
    Good,
    /// Counter with tries left.
    Trial,
    /// Counter at zero.
    Bad,
}

/// One slot as the entries describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotView {
    /// Which slot.
    pub slot: Slot,
    /// Its state.
    pub state: State,
    /// Version of its entry.
    pub version: Option<Version>,
    /// Tries left, for trial and bad.
    pub tries_left: Option<u32>,
    /// Entry file name.
    pub entry: Option<String>,
}

/// The view of `slot` given all entry names found (several for one slot: the newest wins).
pub fn view(slot: Slot, entries: &[EntryName]) -> SlotView {
    let mut mine: Vec<&EntryName> = entries.iter().filter(|e| e.slot == slot).collect();
    mine.sort_by(|a, b| a.version.cmp(&b.version));
    match mine.last() {
        None => SlotView {
            slot,
            state: State::Empty,
            version: None,
            tries_left: None,
            entry: None,
        },
        Some(e) => SlotView {
            slot,
            state: match e.counter {
                None => State::Good,
                Some(Counter { left: 0, .. }) => State::Bad,
                Some(_) => State::Trial,
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

    /// The text stored.
    pub fn render(&self) -> String {
        format!("{} {}\n", self.slot, self.starts)
    }
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
    if mine.state != State::Good || !matches!(other.state, State::Good | State::Trial) {
        return None;
    }
    let name: EntryName = mine.entry?.parse().ok()?;
    let bad = marked_bad(&name);
    Some((name, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> EntryName {
        s.parse().unwrap()
    }

    #[test]
    fn states_follow_counters() {
        let entries = vec![n("slate-a-1.0.0.conf"), n("slate-b-1.1.0+2-1.conf")];
        assert_eq!(view(Slot::A, &entries).state, State::Good);
        let b = view(Slot::B, &entries);
        assert_eq!((b.state, b.tries_left), (State::Trial, Some(2)));
        assert_eq!(
            view(Slot::B, &[n("slate-b-1.1.0+0-3.conf")]).state,
            State::Bad
        );
        assert_eq!(view(Slot::B, &[]).state, State::Empty);
    }

    #[test]
    fn attempts_count_starts_of_the_same_slot() {
        let a1 = Attempts::next(None, Slot::A);
        assert_eq!(a1.starts, 1);
        let a2 = Attempts::next(Attempts::parse(&a1.render()), Slot::A);
        assert_eq!(
            a2,
            Attempts {
                slot: Slot::A,
                starts: 2
            }
        );
        assert_eq!(Attempts::next(Some(a2), Slot::B).starts, 1);
        assert_eq!(Attempts::parse("garbage"), None);
        assert_eq!(Attempts::parse("a"), None);
        assert_eq!(Attempts::parse(""), None);
    }

    #[test]
    fn a_good_slot_is_given_up_only_after_the_limit_and_with_a_fallback() {
        let both = vec![n("slate-a-1.0.0.conf"), n("slate-b-1.1.0.conf")];
        let at = |starts| Attempts {
            slot: Slot::B,
            starts,
        };
        assert_eq!(give_up(at(MAX_FAILED_BOOTS), &both), None);
        let (from, to) = give_up(at(MAX_FAILED_BOOTS + 1), &both).unwrap();
        assert_eq!(from.to_string(), "slate-b-1.1.0.conf");
        assert_eq!(to.to_string(), "slate-b-1.1.0+0.conf");
        assert_eq!(view(Slot::B, &[to]).state, State::Bad);
        // No fallback: keep trying the only slot that can boot.
        let alone = vec![n("slate-a-1.0.0+0-3.conf"), n("slate-b-1.1.0.conf")];
        assert_eq!(give_up(at(10), &alone), None);
        assert_eq!(give_up(at(10), &[n("slate-b-1.1.0.conf")]), None);
        // A trial slot is left to systemd-boot's counter.
        let trial = vec![n("slate-a-1.0.0.conf"), n("slate-b-1.1.0+1-2.conf")];
        assert_eq!(give_up(at(10), &trial), None);
        // The other slot on trial is a fallback.
        let other_trial = vec![n("slate-a-1.2.0+3.conf"), n("slate-b-1.1.0.conf")];
        assert!(give_up(at(4), &other_trial).is_some());
    }

    #[test]
    fn bless_and_mark_bad_rename_as_the_spec_says() {
        let e = n("slate-b-1.1.0+2-1.conf");
        assert_eq!(blessed(&e).to_string(), "slate-b-1.1.0.conf");
        assert_eq!(marked_bad(&e).to_string(), "slate-b-1.1.0+0-1.conf");
        assert_eq!(
            marked_bad(&n("slate-b-1.1.0+3.conf")).to_string(),
            "slate-b-1.1.0+0-1.conf"
        );
    }
}
