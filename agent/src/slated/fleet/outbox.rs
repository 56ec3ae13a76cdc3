//! Feedback the server has not taken yet, kept on `/data` in the order it was made and sent
//! in that order once the server answers again. An item leaves the file only after the server
//! took it; a power cut between the two sends it a second time (DDI servers take a repeated
//! status as one more line in the action's history).

use crate::durable;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

/// The most items kept: a device offline for weeks keeps the newest (the end of each action
/// is one item; progress lines are many and matter least).
pub const MAX_ITEMS: usize = 256;

/// One request to send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// `POST` or `PUT`.
    pub method: String,
    /// Where.
    pub url: String,
    /// The JSON body.
    pub body: String,
    /// It ends an action (closed, rejected, canceled): never dropped for room.
    #[serde(default)]
    pub final_word: bool,
}

/// The queue and its file.
#[derive(Debug)]
pub struct Outbox {
    path: PathBuf,
    items: VecDeque<Item>,
}

impl Outbox {
    /// Loads the queue at `path` (none, or unreadable: an empty one, with a warning for the
    /// latter).
    pub fn load(path: &Path) -> Outbox {
        let items = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                crate::marker::warn(format!(
                    "fleet: {} is unreadable ({e}); its feedback is lost",
                    path.display()
                ));
                VecDeque::new()
            }),
            Err(_) => VecDeque::new(),
        };
        Outbox {
            path: path.to_path_buf(),
            items,
        }
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The oldest item.
    pub fn front(&self) -> Option<&Item> {
        self.items.front()
    }

    /// Adds `item` at the end, durably; when full, the oldest progress line makes room.
    pub fn push(&mut self, item: Item) -> Result<()> {
        if self.items.len() >= MAX_ITEMS {
            if let Some(i) = self.items.iter().position(|i| !i.final_word) {
                self.items.remove(i);
            } else {
                self.items.pop_front();
            }
        }
        self.items.push_back(item);
        self.save()
    }

    /// Drops the oldest item (the server took it), durably.
    pub fn pop(&mut self) -> Result<()> {
        self.items.pop_front();
        self.save()
    }

    fn save(&self) -> Result<()> {
        if self.items.is_empty() {
            return durable::remove(&self.path);
        }
        if let Some(dir) = self.path.parent() {
            durable::private_dir(dir)?;
        }
        let bytes = serde_json::to_vec(&self.items).context("encoding the feedback queue")?;
        durable::replace(&self.path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: usize, final_word: bool) -> Item {
        Item {
            method: "POST".into(),
            url: format!("https://f/{n}"),
            body: "{}".into(),
            final_word,
        }
    }

    #[test]
    fn items_survive_a_reload_in_order_and_leave_when_popped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet/outbox.json");
        let mut o = Outbox::load(&path);
        o.push(item(1, false)).unwrap();
        o.push(item(2, true)).unwrap();
        let mut again = Outbox::load(&path);
        assert_eq!(again.len(), 2);
        assert_eq!(again.front(), Some(&item(1, false)));
        again.pop().unwrap();
        again.pop().unwrap();
        assert!(again.is_empty());
        assert!(!path.exists());
    }

    #[test]
    fn a_full_queue_drops_progress_before_an_actions_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::load(&dir.path().join("o.json"));
        o.push(item(0, true)).unwrap();
        for n in 1..=MAX_ITEMS {
            o.push(item(n, false)).unwrap();
        }
        assert_eq!(o.len(), MAX_ITEMS);
        assert_eq!(o.front(), Some(&item(0, true)));
    }

    #[test]
    fn a_damaged_file_is_an_empty_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.json");
        std::fs::write(&path, b"{not json").unwrap();
        assert!(Outbox::load(&path).is_empty());
    }
}
