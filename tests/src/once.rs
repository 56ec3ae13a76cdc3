//! Values made once per test process and key (an agent build, an image), shared by every test
//! that asks for the same key.
//!
//! The table's lock is held only to find or add a key's cell; the value is made in the cell,
//! so a test asking for one key waits only for that key, never for another key being made
//! (an image built while another test's agent is still compiling, say).

use std::sync::{Mutex, OnceLock};

/// A table of values by key.
pub struct PerKey<K: 'static, V: 'static> {
    cells: Mutex<Vec<(K, &'static OnceLock<V>)>>,
}

impl<K: PartialEq, V> PerKey<K, V> {
    /// An empty table (for a `static`).
    pub const fn new() -> PerKey<K, V> {
        PerKey {
            cells: Mutex::new(Vec::new()),
        }
    }

    /// The value of `key`, made by `make` by the first caller; later callers for the same key
    /// wait for it. A `make` that panics leaves the key unmade for the next caller to try.
    pub fn get(&self, key: K, make: impl FnOnce() -> V) -> &'static V {
        let cell = {
            let mut cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
            match cells.iter().find(|(k, _)| *k == key) {
                Some((_, cell)) => *cell,
                None => {
                    let cell: &'static OnceLock<V> = Box::leak(Box::new(OnceLock::new()));
                    cells.push((key, cell));
                    cell
                }
            }
        };
        cell.get_or_init(make)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn each_key_is_made_once_and_one_key_does_not_wait_for_another() {
        static TABLE: PerKey<u32, u32> = PerKey::new();
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let slow = std::thread::spawn(move || {
            *TABLE.get(1, || {
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                MADE.fetch_add(1, Ordering::SeqCst);
                10
            })
        });
        started_rx.recv().unwrap();
        // Key 1 is being made and blocked; key 2 is made at once.
        assert_eq!(*TABLE.get(2, || 20), 20);
        release_tx.send(()).unwrap();
        assert_eq!(slow.join().unwrap(), 10);
        assert_eq!(*TABLE.get(1, || unreachable!("made twice")), 10);
        assert_eq!(MADE.load(Ordering::SeqCst), 1);
    }
}
