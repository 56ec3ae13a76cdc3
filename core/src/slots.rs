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
