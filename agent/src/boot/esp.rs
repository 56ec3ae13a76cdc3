//! The ESP as the agent uses it: mounted (vfat) read-only at /run/slate/esp and switched to
//! read-write only for the moment of a write; boot entries listed, written (temporary name,
//! fsync, rename, fsync of the folder) and renamed.
//!
//! Linux marks a FAT volume dirty while it is mounted read-write and clean when it goes back
//! to read-only, so outside those short windows a power cut leaves the ESP clean
//! (`fsck.fat -n` finds nothing), which firmware and boot loader rely on. A cut inside a window
//! leaves what Linux had in flight (dirty bit, lost clusters, a half-written temporary file);
//! the volume is checked and repaired (`slate_core::fat`) before every first mount, since
//! Linux never clears a dirty bit it did not set and the image carries no `fsck.fat`.

use crate::sys;
use anyhow::{Context, Result};
use slate_core::bootentry::{Entry, EntryKind, EntryName};
use slate_core::fat::{self, Repairs};
use slate_core::layout::{self, Slot};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the agent mounts the ESP.
pub const MOUNT: &str = "/run/slate/esp";

/// Checks the unmounted ESP and repairs what a cut left; flushes the device when it wrote.
fn repair(dev: &str) -> Result<Repairs> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .with_context(|| format!("opening {dev}"))?;
    let found = fat::repair(&mut f)?;
    if !found.is_clean() {
        f.sync_all().with_context(|| format!("flushing {dev}"))?;
    }
    Ok(found)
}

/// Removes the temporary files (`<prefix>….tmp`, the prefix starting with the `.` of
/// [`crate::durable::temp_path`]) in `dir` that a cut left; true when there were any. A
/// missing folder has none.
fn remove_temporary(dir: &Path, prefix: &str) -> Result<bool> {
    let mut removed = false;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) && name.ends_with(".tmp") {
            std::fs::remove_file(e.path())
                .with_context(|| format!("removing {}", e.path().display()))?;
            removed = true;
        }
    }
    Ok(removed)
}

/// A mounted ESP.
#[derive(Debug, Clone)]
pub struct Esp {
    root: PathBuf,
    /// The partition's block device: remounted read-write around writes, and flushed after
    /// (None for a plain folder in tests).
    device: Option<String>,
}

const ESP_FLAGS: sys::Flags = sys::Flags::NOSUID
    .union(sys::Flags::NODEV)
    .union(sys::Flags::NOEXEC);
const ESP_OPTIONS: &str = "umask=0077,shortname=mixed,flush";

use crate::durable::sync_dir;

impl Esp {
    /// Mounts the ESP (the boot disk's partition labelled `esp`) if it is not yet.
    pub fn mount() -> Result<Esp> {
        let root = PathBuf::from(MOUNT);
        let dev = crate::partitions::find(layout::ESP_LABEL)?;
        // Every Slate ESP has systemd-boot's settings, whatever kind its entries are.
        if !root.join("loader/loader.conf").is_file() {
            match repair(&dev) {
                Ok(r) if r.is_clean() => {}
                Ok(r) => crate::marker::emit(&slate_core::api::Marker::EspRepaired {
                    what: r.to_string(),
                }),
                Err(e) => crate::marker::warn(format!(
                    "checking the ESP ({dev}): {e:#}; mounting it as it is"
                )),
            }
            sys::mount(
                &dev,
                MOUNT,
                "vfat",
                ESP_FLAGS | sys::Flags::RDONLY,
                ESP_OPTIONS,
            )?;
        }
        Ok(Esp {
            root,
            device: Some(dev),
        })
    }

    /// Runs `f` with the ESP writable, then makes it read-only (and clean) again, also when
    /// `f` fails.
    fn writable<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let Some(device) = &self.device else {
            return f();
        };
        sys::remount(MOUNT, ESP_FLAGS, ESP_OPTIONS).context("making the ESP writable")?;
        let r = f();
        let back = sys::remount(MOUNT, ESP_FLAGS | sys::Flags::RDONLY, ESP_OPTIONS)
            .context("making the ESP read-only again");
        // Going read-only writes the clean state into the boot sector, but only into the
        // disk's write cache: flush it, or a power cut leaves the volume marked dirty, which
        // Linux then never clears (found by the gauntlet's volatile-cache disk).
        let flushed = File::open(device)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("flushing {device}"));
        let v = r?;
        back?;
        flushed?;
        Ok(v)
    }

    /// An ESP at an arbitrary folder (tests).
    pub fn at(root: &Path) -> Esp {
        Esp {
            root: root.to_path_buf(),
            device: None,
        }
    }

    fn entries_dir(&self, kind: EntryKind) -> PathBuf {
        self.root.join(kind.dir())
    }

    /// The Slate entries present: `.conf` entries, and the UKIs of a Secure Boot image (a
    /// kind's folder may be missing).
    pub fn entries(&self) -> Result<Vec<EntryName>> {
        self.list(|name| name.parse::<EntryName>().ok())
    }

    /// The staged entries present (`….conf.staged`, `….efi.staged`), by the names they take
    /// when applied.
    pub fn staged_entries(&self) -> Result<Vec<EntryName>> {
        self.list(|name| EntryName::parse_staged(name).and_then(Result::ok))
    }

    /// The entries whose file names `parse` reads, each in its kind's folder.
    fn list(&self, parse: impl Fn(&str) -> Option<EntryName>) -> Result<Vec<EntryName>> {
        let mut out = Vec::new();
        for kind in [EntryKind::Conf, EntryKind::Uki] {
            let dir = self.entries_dir(kind);
            let list = match std::fs::read_dir(&dir) {
                Ok(list) => list,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
            };
            for e in list {
                let name = e?.file_name().to_string_lossy().into_owned();
                if let Some(n) = parse(&name).filter(|n| n.kind == kind) {
                    out.push(n);
                }
            }
        }
        out.sort_by_key(|n| n.to_string());
        Ok(out)
    }

    /// Removes every entry of `slot`: from here nothing can boot it (durable before returning).
    /// Temporary files a cut left in the slot's folder, and the slot's temporary entries (a
    /// UKI is about 10 MiB of the ESP), go too.
    pub fn remove_slot(&self, slot: Slot) -> Result<()> {
        self.writable(|| {
            let mut kinds = Vec::new();
            for e in self.entries()?.into_iter().filter(|e| e.slot == slot) {
                let p = self.root.join(e.path());
                std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
                kinds.push(e.kind);
            }
            // A staged update in the slot is replaced by what is written next.
            for e in self
                .staged_entries()?
                .into_iter()
                .filter(|e| e.slot == slot)
            {
                let p = self.root.join(e.staged_path());
                std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
                kinds.push(e.kind);
            }
            let temporary_entry = format!(".slate-{slot}-");
            for kind in [EntryKind::Conf, EntryKind::Uki] {
                if remove_temporary(&self.entries_dir(kind), &temporary_entry)? {
                    kinds.push(kind);
                }
            }
            kinds.sort();
            kinds.dedup();
            for kind in kinds {
                sync_dir(&self.entries_dir(kind))?;
            }
            remove_temporary(&self.root.join(format!("slate/{slot}")), ".")?;
            Ok(())
        })
    }

    /// Writes `rel` from `fill` under a temporary name, fsyncs, renames into place, fsyncs.
    /// A failed `fill` removes the temporary file.
    pub fn write_atomic(
        &self,
        rel: &str,
        fill: impl FnOnce(&mut File) -> Result<()>,
    ) -> Result<()> {
        self.writable(|| {
            let path = self.root.join(rel);
            let dir = path.parent().context("ESP path without folder")?;
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            crate::durable::replace_with(&path, fill)
        })
    }

    /// Copies checked files (`(path on the ESP, source)`) in one read-write window, each under a
    /// temporary name, fsynced and renamed. `before_sync` runs for each file with its data
    /// written and not yet synced (where the harness places a cut).
    pub fn copy_in(&self, files: &[(String, PathBuf)], before_sync: &dyn Fn(&str)) -> Result<()> {
        self.writable(|| {
            for (rel, src) in files {
                let path = self.root.join(rel);
                let dir = path.parent().context("ESP path without folder")?;
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                crate::durable::replace_with(&path, |f| {
                    let mut from =
                        File::open(src).with_context(|| format!("opening {}", src.display()))?;
                    std::io::copy(&mut from, f).with_context(|| {
                        format!("copying {} to {rel} on the ESP", src.display())
                    })?;
                    before_sync(rel);
                    Ok(())
                })?;
            }
            Ok(())
        })
    }

    /// Writes a boot entry (last step of an install), staged or bootable.
    pub fn write_entry(&self, name: &EntryName, entry: &Entry, staged: bool) -> Result<()> {
        let text = entry.render();
        self.write_atomic(&entry_path(name, staged), |f| {
            Ok(f.write_all(text.as_bytes())?)
        })
    }

    /// Applies a staged entry: renames `<name>.staged` to `name`.
    pub fn apply_staged(&self, name: &EntryName) -> Result<()> {
        self.writable(|| {
            let (a, b) = (
                self.root.join(name.staged_path()),
                self.root.join(name.path()),
            );
            std::fs::rename(&a, &b)
                .with_context(|| format!("renaming {} to {}", a.display(), b.display()))?;
            sync_dir(&self.entries_dir(name.kind))
        })
    }

    /// Renames an entry (bless or mark bad).
    pub fn rename_entry(&self, from: &EntryName, to: &EntryName) -> Result<()> {
        self.writable(|| {
            let (a, b) = (self.root.join(from.path()), self.root.join(to.path()));
            std::fs::rename(&a, &b)
                .with_context(|| format!("renaming {} to {}", a.display(), b.display()))?;
            sync_dir(&self.entries_dir(to.kind))
        })
    }

    /// Path of a file on the ESP.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }
}

/// Where an entry's file goes: its name, or its staged name.
fn entry_path(name: &EntryName, staged: bool) -> String {
    if staged {
        name.staged_path()
    } else {
        name.path()
    }
}

/// systemd-boot: type-1 entries and UKIs on the ESP, boot counting in their names, the
/// one-shot choice in its `LoaderEntryOneShot` variable.
impl super::BootBackend for Esp {
    fn entries(&self) -> Result<Vec<EntryName>> {
        Esp::entries(self)
    }

    fn remove_slot(&self, slot: Slot) -> Result<()> {
        Esp::remove_slot(self, slot)
    }

    fn copy_in(&self, files: &[(String, PathBuf)], before_sync: &dyn Fn(&str)) -> Result<()> {
        Esp::copy_in(self, files, before_sync)
    }

    fn write_entry(&self, name: &EntryName, entry: &Entry, staged: bool) -> Result<()> {
        Esp::write_entry(self, name, entry, staged)
    }

    fn staged_entries(&self) -> Result<Vec<EntryName>> {
        Esp::staged_entries(self)
    }

    fn apply_staged(&self, name: &EntryName) -> Result<()> {
        Esp::apply_staged(self, name)
    }

    fn write_uki_entry(&self, name: &EntryName, uki: &[u8], staged: bool) -> Result<()> {
        self.write_atomic(&entry_path(name, staged), |f| {
            f.write_all(uki)?;
            // Inside the ESP's read-write window, the temporary file not yet synced.
            crate::hooks::cut_point(slate_core::api::CutPoint::BootFilesWriting);
            Ok(())
        })
    }

    fn rename_entry(&self, from: &EntryName, to: &EntryName) -> Result<()> {
        Esp::rename_entry(self, from, to)
    }

    fn set_one_shot(&self, name: &EntryName) -> Result<()> {
        super::efivars::set_one_shot(&name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_a_slot_takes_its_entries_and_what_a_cut_left_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            "EFI/Linux/slate-a-1.0.0.efi",
            "EFI/Linux/slate-b-1.1.0+1-2.efi",
            "EFI/Linux/.slate-b-1.2.0+3.efi.tmp",
            "EFI/Linux/.slate-a-1.3.0+3.efi.tmp",
            "loader/entries/.slate-b-1.2.0+3.conf.tmp",
            "loader/entries/slate-b-1.4.0+3.conf.staged",
            "EFI/Linux/slate-a-1.5.0+3.efi.staged",
            "loader/entries/other.conf",
            "slate/b/.vmlinuz.tmp",
            "slate/b/vmlinuz",
        ];
        for f in files {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let esp = Esp::at(dir.path());
        esp.remove_slot(Slot::B).unwrap();
        let left: Vec<&str> = files
            .into_iter()
            .filter(|f| dir.path().join(f).exists())
            .collect();
        assert_eq!(
            left,
            [
                "EFI/Linux/slate-a-1.0.0.efi",
                "EFI/Linux/.slate-a-1.3.0+3.efi.tmp",
                "EFI/Linux/slate-a-1.5.0+3.efi.staged",
                "loader/entries/other.conf",
                "slate/b/vmlinuz",
            ]
        );
        let names: Vec<String> = esp
            .entries()
            .unwrap()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(names, ["slate-a-1.0.0.efi"]);
        // The staged UKI is no entry until applied, and is one after.
        let staged = esp.staged_entries().unwrap();
        assert_eq!(staged.len(), 1);
        assert_eq!(staged[0].to_string(), "slate-a-1.5.0+3.efi");
        esp.apply_staged(&staged[0]).unwrap();
        assert!(esp.staged_entries().unwrap().is_empty());
        assert_eq!(esp.entries().unwrap().len(), 2);
    }
}
