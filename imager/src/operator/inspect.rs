//! `slate inspect`: what is on a Slate disk image, read without mounting anything.
//!
//! It reads the GPT, each slot's squashfs superblock and verity superblock, the image identity
//! inside each squashfs, and the boot entries on the ESP (through `fatfs`, read-only).

use anyhow::{Context, Result};
use serde::Serialize;
use slate_core::api::SlotState;
use slate_core::bootentry::{Entry, EntryKind, EntryName};
use slate_core::cmdline::BootParams;
use slate_core::config::{paths, ImageInfo};
use slate_core::gpt::{self, Table};
use slate_core::layout::{self, Slot};
use slate_core::verity::Superblock;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// A read-only window onto part of a file, for the FAT and squashfs readers.
struct Window {
    file: File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Read for Window {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.file.seek(SeekFrom::Start(self.start + self.pos))?;
        let got = self.file.read(&mut buf[..n])?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Seek for Window {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos =
            new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before start"))?;
        Ok(self.pos)
    }
}

impl Write for Window {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "slate inspect never writes",
        ))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One partition.
#[derive(Debug, Serialize)]
pub struct PartitionInfo {
    /// 1-based number.
    pub number: usize,
    /// Label.
    pub label: String,
    /// Type name, or the GUID when unknown.
    pub kind: String,
    /// Unique GUID.
    pub guid: String,
    /// Byte offset.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// Attribute names.
    pub attributes: String,
}

/// One boot entry on the ESP.
#[derive(Debug, Serialize)]
pub struct EntryInfo {
    /// File name.
    pub file: String,
    /// Slot.
    pub slot: Slot,
    /// Version.
    pub version: String,
    /// good, trial or bad.
    pub state: SlotState,
    /// Tries left, for trial and bad entries.
    pub tries_left: Option<u32>,
    /// Root hash the entry asks for.
    pub root_hash: Option<String>,
    /// A measured-boot UKI's signed PCR 11 policies (`.pcrsig`): what a TPM-sealed secret
    /// unseals for when this entry boots.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pcr_policies: Vec<slate_core::tpm::PolicySignature>,
}

/// One root slot.
#[derive(Debug, Serialize)]
pub struct SlotInfo {
    /// Slot.
    pub slot: Slot,
    /// empty, good, trial or bad (from its boot entry).
    pub state: SlotState,
    /// Version of the image in the partition (from /etc/slate/image.toml inside it).
    pub version: Option<String>,
    /// Product name of that image.
    pub name: Option<String>,
    /// The board it was built for (`boards/<board>.toml`): the machine it boots on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub board: Option<String>,
    /// squashfs bytes (padded).
    pub squashfs_bytes: Option<u64>,
    /// Data blocks in the verity superblock.
    pub verity_data_blocks: Option<u64>,
    /// Root hash of the entry booting it.
    pub root_hash: Option<String>,
}

/// Everything `slate inspect` shows.
#[derive(Debug, Serialize)]
pub struct DiskInfo {
    /// Disk size in bytes.
    pub size: u64,
    /// Disk GUID.
    pub guid: String,
    /// Partitions.
    pub partitions: Vec<PartitionInfo>,
    /// Slots.
    pub slots: Vec<SlotInfo>,
    /// Boot entries.
    pub entries: Vec<EntryInfo>,
}

fn kind_name(t: slate_core::Guid) -> String {
    let s = t.to_string();
    match s.as_str() {
        layout::ESP_TYPE => "esp".into(),
        layout::ROOT_X86_64_TYPE => "root-x86-64".into(),
        layout::ROOT_ARM64_TYPE => "root-arm64".into(),
        layout::LINUX_DATA_TYPE => "linux-data".into(),
        _ => s,
    }
}

/// Reads a disk image.
pub fn inspect(path: &Path) -> Result<DiskInfo> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let size = f.metadata()?.len();
    let mut head = vec![0u8; 34 * gpt::SECTOR as usize];
    f.read_exact(&mut head).with_context(|| {
        format!(
            "{}: too small to be a disk image ({size} bytes)",
            path.display()
        )
    })?;
    let table = Table::decode(&head)
        .with_context(|| format!("{}: not a GPT disk image", path.display()))?;
    let partitions = table
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| PartitionInfo {
            number: i + 1,
            label: p.name.clone(),
            kind: kind_name(p.type_guid),
            guid: p.unique_guid.to_string(),
            offset: p.offset(),
            size: p.size(),
            attributes: p.attributes.to_string(),
        })
        .collect();
    let window = |p: &gpt::Partition| -> Result<Window> {
        Ok(Window {
            file: f.try_clone()?,
            start: p.offset(),
            len: p.size(),
            pos: 0,
        })
    };
    let entries = match table.by_name(layout::ESP_LABEL) {
        Some(p) => read_entries(window(p)?)
            .with_context(|| format!("{}: reading boot entries from the ESP", path.display()))?,
        None => Vec::new(),
    };
    let mut slots = Vec::new();
    for slot in [Slot::A, Slot::B] {
        let Some(p) = table.by_name(slot.label()) else {
            continue;
        };
        let entry = entries.iter().find(|e| e.slot == slot);
        let mut info = SlotInfo {
            slot,
            state: entry.map_or(SlotState::Empty, |e| e.state),
            version: None,
            name: None,
            board: None,
            squashfs_bytes: None,
            verity_data_blocks: None,
            root_hash: entry.and_then(|e| e.root_hash.clone()),
        };
        read_slot(window(p)?, &mut info);
        slots.push(info);
    }
    Ok(DiskInfo {
        size,
        guid: table.disk_guid.to_string(),
        partitions,
        slots,
        entries,
    })
}

/// Fills in what the slot's bytes say; a slot that holds no image leaves the fields empty.
fn read_slot(mut w: Window, info: &mut SlotInfo) {
    let mut sb = [0u8; 96];
    if w.read_exact(&mut sb).is_err() || &sb[0..4] != b"hsqs" {
        return;
    }
    let bytes_used = u64::from_le_bytes(sb[40..48].try_into().unwrap_or_default());
    let padded = bytes_used.div_ceil(4096) * 4096;
    info.squashfs_bytes = Some(padded);
    let mut vsb = [0u8; 512];
    if w.seek(SeekFrom::Start(padded)).is_ok() && w.read_exact(&mut vsb).is_ok() {
        if let Ok(s) = Superblock::decode(&vsb) {
            info.verity_data_blocks = Some(s.data_blocks);
        }
    }
    let _ = w.seek(SeekFrom::Start(0));
    let Ok(fs) = backhand::FilesystemReader::from_reader(io::BufReader::new(w)) else {
        return;
    };
    for node in fs.files() {
        if node.fullpath.to_string_lossy().trim_start_matches('/') != paths::IMAGE {
            continue;
        }
        if let backhand::InnerNode::File(file) = &node.inner {
            let mut text = Vec::new();
            if fs.file(file).reader().read_to_end(&mut text).is_ok() {
                if let Ok(img) = toml::from_str::<ImageInfo>(&String::from_utf8_lossy(&text)) {
                    info.version = Some(img.version.to_string());
                    info.name = Some(img.name);
                    info.board = Some(img.board);
                }
            }
        }
    }
}

/// The Slate entries of both kinds: `.conf` files, and a Secure Boot image's UKIs (their
/// command line read from the `.cmdline` section).
fn read_entries(w: Window) -> Result<Vec<EntryInfo>> {
    let fs = fatfs::FileSystem::new(w, fatfs::FsOptions::new())?;
    let root = fs.root_dir();
    let mut out = Vec::new();
    for kind in [EntryKind::Conf, EntryKind::Uki] {
        let Ok(dir) = root.open_dir(kind.dir()) else {
            continue;
        };
        for e in dir.iter() {
            let e = e?;
            let file = e.file_name();
            let Ok(name) = file.parse::<EntryName>() else {
                continue;
            };
            if name.kind != kind {
                continue;
            }
            let mut bytes = Vec::new();
            e.to_file().read_to_end(&mut bytes)?;
            let pcr_policies = match kind {
                EntryKind::Conf => Vec::new(),
                EntryKind::Uki => slate_core::pe::Pe::parse(&bytes)
                    .ok()
                    .and_then(|pe| pe.section(&bytes, ".pcrsig").map(<[u8]>::to_vec))
                    .and_then(|json| serde_json::from_slice::<slate_core::tpm::PcrSig>(&json).ok())
                    .map(|sig| sig.sha256)
                    .unwrap_or_default(),
            };
            let options = match kind {
                EntryKind::Conf => Entry::parse(&String::from_utf8_lossy(&bytes))
                    .ok()
                    .map(|e| e.options),
                EntryKind::Uki => slate_core::pe::Pe::parse(&bytes).ok().and_then(|pe| {
                    pe.section(&bytes, ".cmdline")
                        .map(|c| String::from_utf8_lossy(c).trim().to_string())
                }),
            };
            let (state, tries_left) = match name.counter {
                None => (SlotState::Good, None),
                Some(c) if c.left == 0 => (SlotState::Bad, Some(0)),
                Some(c) => (SlotState::Trial, Some(c.left)),
            };
            out.push(EntryInfo {
                file,
                slot: name.slot,
                version: name.version.to_string(),
                state,
                tries_left,
                root_hash: options
                    .and_then(|o| o.parse::<BootParams>().ok())
                    .map(|p| p.verity.root_hash.to_string()),
                pcr_policies,
            });
        }
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(out)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

/// Human form.
pub fn render(path: &Path, d: &DiskInfo) -> String {
    let mut s = format!(
        "{}: {} GPT disk, guid {}\n\n",
        path.display(),
        mib(d.size),
        d.guid
    );
    s.push_str(&format!(
        "  {:<2} {:<8} {:<12} {:>12} {:>12}  {}\n",
        "#", "label", "type", "offset", "size", "attributes"
    ));
    for p in &d.partitions {
        s.push_str(&format!(
            "  {:<2} {:<8} {:<12} {:>12} {:>12}  {}\n",
            p.number,
            p.label,
            p.kind,
            mib(p.offset),
            mib(p.size),
            p.attributes
        ));
    }
    s.push_str("\nslots:\n");
    for sl in &d.slots {
        let content = match (&sl.version, sl.squashfs_bytes) {
            (Some(v), Some(b)) => format!(
                "{} {v} for {}, squashfs {}, {} verity blocks",
                sl.name.as_deref().unwrap_or("?"),
                sl.board.as_deref().unwrap_or("?"),
                mib(b),
                sl.verity_data_blocks.unwrap_or(0)
            ),
            (None, Some(b)) => format!("squashfs {} (no image identity found)", mib(b)),
            _ => "no image".into(),
        };
        s.push_str(&format!(
            "  {}: {:<6} {content}\n",
            sl.slot,
            sl.state.as_str()
        ));
        if let Some(h) = &sl.root_hash {
            s.push_str(&format!("     root hash {h}\n"));
        }
    }
    s.push_str("\nboot entries (ESP loader/entries):\n");
    if d.entries.is_empty() {
        s.push_str("  none\n");
    }
    for e in &d.entries {
        let tries = e
            .tries_left
            .map(|t| format!(", {t} tries left"))
            .unwrap_or_default();
        s.push_str(&format!(
            "  {:<28} slot {} version {} {}{tries}\n",
            e.file,
            e.slot,
            e.version,
            e.state.as_str()
        ));
        for p in &e.pcr_policies {
            let pcrs: Vec<String> = p.pcrs.iter().map(u32::to_string).collect();
            s.push_str(&format!(
                "     signed policy: PCR {} = policy {} (key sha256 {}){}\n",
                pcrs.join(","),
                p.pol,
                p.pkfp,
                if p.policy_ref.is_empty() {
                    String::new()
                } else {
                    format!(", policyRef {}", p.policy_ref)
                }
            ));
        }
    }
    s
}

/// A device's status for people (`slate status`).
pub fn render_status(s: &slate_core::api::Status) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} on {} — slot {} ({:?}), up {:.0} s, {} boot(s)",
        s.name, s.version, s.board, s.slot, s.boot, s.uptime_s, s.boots
    );
    if let Some(id) = &s.identity {
        let _ = writeln!(out, "identity     {id}");
    }
    let _ = writeln!(out, "health       {:?}", s.health.state);
    for c in &s.health.checks {
        let _ = writeln!(
            out,
            "  {:<12} {}",
            c.name,
            if c.ok { "ok" } else { c.detail.as_str() }
        );
    }
    for sl in &s.slots {
        let _ = writeln!(
            out,
            "slot {}       {} {}",
            sl.slot,
            sl.state.as_str(),
            sl.version
                .as_ref()
                .map(|v| v.to_string())
                .unwrap_or_default()
        );
    }
    if let Some(a) = &s.last_attempt {
        let _ = writeln!(
            out,
            "last update  {} → slot {}: {} {}",
            a.version
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            a.slot,
            a.outcome,
            a.reason
        );
    }
    if let Some(r) = &s.last_refusal {
        let _ = writeln!(out, "last refusal {}", r.reason);
    }
    let _ = writeln!(out, "security epoch {}", s.security_epoch);
    if let Some(t) = &s.tpm {
        let _ = writeln!(
            out,
            "tpm          {}, /data {}{}{}",
            if t.present { "present" } else { "none" },
            if t.sealed_data {
                "sealed"
            } else {
                "not sealed"
            },
            t.nv_epoch
                .map(|e| format!(", epoch index {e}"))
                .unwrap_or_default(),
            t.warning
                .as_ref()
                .map(|w| format!(" — WARNING: {w}"))
                .unwrap_or_default()
        );
    }
    for f in &s.failed {
        let retry = f
            .retry_at
            .map_or("never (final)".to_string(), |t| format!("after {t}"));
        let _ = writeln!(
            out,
            "failed       {} ({} time(s), {} by its checks; retried {retry}): {}",
            f.version, f.failures, f.verdicts, f.reason
        );
    }
    if let Some(c) = &s.consent {
        let _ = writeln!(
            out,
            "consent      the application said {} to {} ({}); asked again at {}",
            c.answer, c.version, c.reason, c.ask_again_at
        );
    }
    if let Some(st) = &s.staged {
        let when = st
            .apply_at
            .map_or("when an operator runs `slate apply`".to_string(), |t| {
                format!("at {t} (Unix time) or on `slate apply`")
            });
        let _ = writeln!(
            out,
            "staged       {} in slot {} ({}), applied {when}",
            st.version, st.slot, st.by
        );
    }
    if let Some(w) = &s.window {
        let _ = if w.open {
            writeln!(out, "window       open: updates are applied")
        } else {
            writeln!(
                out,
                "window       closed until {} (updates are staged and wait; slate apply overrides)",
                w.next_open
            )
        };
    }
    out
}
