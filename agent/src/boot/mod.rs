//! The boot loader back-end: how a slot becomes bootable, is tried, blessed or marked bad, and
//! how this boot was chosen. Today that is systemd-boot (type-1 entries or UKIs on the ESP,
//! boot counting in file names, its EFI variables); a Raspberry Pi tryboot back-end would
//! implement the same [`BootBackend`].

pub mod efivars;
pub mod esp;
pub mod secure_boot;

use anyhow::Result;
use slate_core::bootentry::{Entry, EntryName};
use slate_core::layout::Slot;
use std::path::PathBuf;

/// What an install, a commit and a rollback ask of the boot loader, and no more: the rules of
/// when to do each (the install plan, `core::slots`) stay out of it. systemd-boot's ESP
/// ([`esp::Esp`]) is the one back-end today; a Raspberry Pi tryboot back-end would keep its
/// entries in `autoboot.txt` and its one-shot choice in the firmware's tryboot flag.
pub trait BootBackend {
    /// The Slate entries present, good, trial and bad.
    fn entries(&self) -> Result<Vec<EntryName>>;
    /// Removes every entry of `slot` (and what a cut left half-written): from here nothing
    /// boots it. Durable before it returns.
    fn remove_slot(&self, slot: Slot) -> Result<()>;
    /// Puts checked boot files (`(path on the boot medium, source)`) in place, each under a
    /// temporary name, synced and renamed; `before_sync` runs with each file's data written
    /// and not yet synced (where the harness places a cut).
    fn copy_in(&self, files: &[(String, PathBuf)], before_sync: &dyn Fn(&str)) -> Result<()>;
    /// Writes a `.conf` entry: the last step of an install, after which the slot is a trial
    /// (`staged`: under a name the loader does not load, until [`BootBackend::apply_staged`]).
    fn write_entry(&self, name: &EntryName, entry: &Entry, staged: bool) -> Result<()>;
    /// Writes a UKI as the entry `name` (temporary name, sync, rename; `staged` as for
    /// [`BootBackend::write_entry`]).
    fn write_uki_entry(&self, name: &EntryName, uki: &[u8], staged: bool) -> Result<()>;
    /// The staged entries present: what each becomes when applied.
    fn staged_entries(&self) -> Result<Vec<EntryName>>;
    /// Applies a staged entry: renames it to `name`, a trial the loader boots. Durable before
    /// it returns.
    fn apply_staged(&self, name: &EntryName) -> Result<()>;
    /// Renames an entry: blesses a trial (no counter) or marks it bad (`+0-N`).
    fn rename_entry(&self, from: &EntryName, to: &EntryName) -> Result<()>;
    /// Boots `name` at the next boot only, whatever the loader's own order.
    fn set_one_shot(&self, name: &EntryName) -> Result<()>;
}
