//! A pull by delta (DESIGN §17): when a release's bundle has a chunk index beside it
//! (`<bundle>.chunks`, authenticated by TUF), the device chunks its running slot the same way,
//! plans which stretches of the new root image it already holds, and hands the download those
//! stretches as pieces copied from the running slot: the download then fetches only the gaps,
//! by Range, and hashes the whole bundle against the signed sha256 as it would a full one.
//! Everything the install checks (signatures, the rootfs sha256, read-back, verity) is the
//! same, so a wrong index can only cost bytes.
//!
//! Where the root image sits in the bundle comes from the bundle's own head (a bounded Range
//! of its first bytes), read here only for offsets: the install reads and verifies it again.

use super::download::{Expected, Piece, PieceKind};
use super::https::Https;
use super::seen::TreeSpec;
use http_body_util::BodyExt;
use slate_core::bundle::BundleReader;
use slate_core::delta::{self, plan, ChunkIndex, Mode, HEAD_MAX, HEAD_PROBE};
use slate_core::manifest::{Manifest, ROOTFS};
use std::path::{Path, PathBuf};
use url::Url;

/// The largest chunk index taken (1 GiB images at 0.05% are half a MiB).
const MAX_INDEX: usize = 16 << 20;

/// Where the running slot's chunk index is kept, by its root hash and chunk size: computing it
/// reads and hashes the whole slot.
pub const CACHE_DIR: &str = "/data/slate/chunks";

/// A delta download, planned.
#[derive(Debug)]
pub struct Setup {
    /// Full bundle or delta.
    pub mode: Mode,
    /// What the fetch costs: the index, the head probe, the gaps and the requests' overhead
    /// (the bundle's length for a full fetch).
    pub cost: u64,
    /// The running slot's stretches to copy (empty for a full fetch), and a static patch's
    /// own bytes.
    pub pieces: Vec<Piece>,
    /// The root image whose verity levels a piece computes.
    pub tree: Option<TreeSpec>,
    /// Bytes fetched to plan it (the chunk index and the bundle's head; a static patch).
    pub fetched: u64,
    /// Requests made to plan it.
    pub requests: u64,
}

/// Plans a delta for the bundle `target` at `url` (`expected`: its signed length and
/// sha256). None when the release has no chunk index; a full fetch (with the reason on the
/// console) when anything else stands in the way.
pub async fn prepare(
    repo: &tough::Repository,
    https: &Https,
    url: &Url,
    target: &str,
    expected: &Expected,
    running: &Running,
) -> Option<Setup> {
    let name = tough::TargetName::new(delta::index_target(target)).ok()?;
    if !repo.targets().signed.targets.contains_key(&name) {
        return None;
    }
    match plan_delta(repo, https, url, target, &name, expected, running).await {
        Ok(setup) => Some(setup),
        Err(e) => {
            crate::marker::warn(format!(
                "channel: no delta for {target} ({e:#}); fetching the whole bundle"
            ));
            Some(Setup {
                mode: Mode::Full,
                cost: expected.length,
                pieces: Vec::new(),
                tree: None,
                fetched: 0,
                requests: 0,
            })
        }
    }
}

/// The least a delta of `target` can cost: its chunk index and the bundle's head, which
/// planning it fetches (None when the release has no chunk index).
pub fn cost_floor(repo: &tough::Repository, target: &str, expected: &Expected) -> Option<u64> {
    let name = tough::TargetName::new(delta::index_target(target)).ok()?;
    let index = repo.targets().signed.targets.get(&name)?;
    Some(index.length.saturating_add(HEAD_PROBE.min(expected.length)))
}

/// The running slot, as a delta reads it.
#[derive(Debug, Clone)]
pub struct Running {
    /// Its block device.
    pub device: PathBuf,
    /// Its boot files' folder on the ESP (`slate/<slot>/`: kernel and initramfs), whose files
    /// a bundle's identical artifacts are copied from.
    pub boot_files: PathBuf,
    /// Its root image's data length (the verity hash offset on the command line).
    pub data_len: u64,
    /// Its root hash (names the cached index).
    pub root_hash: String,
    /// The UKI it booted from (its entry on the ESP), on an image that boots UKIs: a
    /// format-2 bundle's UKIs copy their unchanged stretches from it.
    pub uki: Option<PathBuf>,
}

impl Running {
    /// The running slot of this boot, from the command line.
    pub fn of_this_boot(slot: slate_core::layout::Slot) -> anyhow::Result<Running> {
        let line = std::fs::read_to_string("/proc/cmdline")?;
        let params: slate_core::cmdline::BootParams = line.parse()?;
        let esp = Path::new(crate::boot::esp::MOUNT);
        let uki = crate::boot::esp::Esp::at(esp)
            .entries()
            .unwrap_or_default()
            .into_iter()
            .find(|e| e.slot == slot && e.kind == slate_core::bootentry::EntryKind::Uki)
            .map(|e| esp.join(e.path()));
        Ok(Running {
            device: crate::partitions::find(slot.label())?.into(),
            boot_files: esp.join(format!("slate/{slot}")),
            data_len: params.verity.hash_offset,
            root_hash: params.verity.root_hash.to_string(),
            uki,
        })
    }
}

/// A chunk index target, read through TUF (its length and sha256 checked) and parsed.
async fn read_index(
    repo: &tough::Repository,
    name: &tough::TargetName,
) -> anyhow::Result<(ChunkIndex, u64)> {
    use anyhow::Context;
    use tough::IntoVec;
    let what = || format!("the chunk index {}", name.raw());
    let bytes = repo
        .read_target(name)
        .await
        .with_context(what)?
        .with_context(|| format!("{} is listed but not served", what()))?
        .into_vec()
        .await
        .with_context(what)?;
    if bytes.len() > MAX_INDEX {
        anyhow::bail!("{} is larger than {MAX_INDEX} bytes", what());
    }
    let index = ChunkIndex::parse(&bytes).with_context(what)?;
    Ok((index, bytes.len() as u64))
}

async fn plan_delta(
    repo: &tough::Repository,
    https: &Https,
    url: &Url,
    target: &str,
    name: &tough::TargetName,
    expected: &Expected,
    running: &Running,
) -> anyhow::Result<Setup> {
    let (index, index_len) = read_index(repo, name).await?;
    // A short head first; the longest one a bundle may have when that does not hold it.
    let mut head = fetch_head(https, url, HEAD_PROBE).await?;
    let (mut head_bytes, mut requests) = (head.len() as u64, 2);
    if artifact_offsets(&head).is_err() {
        head = fetch_head(https, url, HEAD_MAX).await?;
        head_bytes += head.len() as u64;
        requests += 1;
    }
    let (rootfs, root_at) = rootfs_in(&head, index.image_len)?;
    let levels = levels_piece(&rootfs, root_at);
    let same_files = identical_boot_files(&head, running);
    let ukis = uki_copies(repo, target, &head, running).await;
    let ours = running_index(running, index.params).await?;
    let p = plan::plan(&index, &ours, plan::COALESCE_GAP);
    let local: u64 =
        same_files.iter().map(|f| f.len).sum::<u64>() + levels.as_ref().map_or(0, |(p, _)| p.len);
    let index_bytes = index_len + ukis.index_bytes;
    requests += ukis.index_requests;
    let (cost, _) = plan::BundleDelta {
        root: &p,
        ukis: &ukis.plans,
        index_len: index_bytes,
        head_len: head_bytes,
        bundle_len: expected.length,
        local,
    }
    .cost();
    if !plan::worth_it(cost, expected.length) {
        return Ok(Setup {
            mode: Mode::Full,
            cost: expected.length,
            pieces: Vec::new(),
            tree: None,
            fetched: index_bytes + head_bytes,
            requests,
        });
    }
    let (levels, tree) = levels.unzip();
    let pieces = same_files
        .into_iter()
        .chain(ukis.pieces)
        .chain(levels)
        .chain(p.ops.iter().filter_map(|op| match *op {
            plan::Op::Copy { from, to, len } => Some(Piece {
                bundle_offset: root_at + to,
                len,
                device: running.device.clone(),
                device_offset: from,
                kind: PieceKind::Copied,
            }),
            plan::Op::Fetch { .. } => None,
        }))
        .collect();
    Ok(Setup {
        mode: Mode::Delta,
        cost,
        pieces,
        tree,
        fetched: index_bytes + head_bytes,
        requests,
    })
}

/// What a format-2 bundle's UKIs take from the UKI the device booted.
#[derive(Debug, Default)]
struct UkiCopies {
    /// Stretches copied from the running UKI.
    pieces: Vec<Piece>,
    /// Bytes of the UKIs' chunk indexes fetched.
    index_bytes: u64,
    /// Requests for those indexes.
    index_requests: u64,
    /// Each UKI's plan (what it copies, what it still fetches from the bundle).
    plans: Vec<plan::DeltaPlan>,
}

/// The stretches of the bundle's UKIs (those with a chunk index beside the bundle) that the
/// running UKI holds: the kernel and the stub are usually the same from one release to the
/// next. Best effort: a missing or wrong index, or no running UKI, only means those bytes
/// are fetched (the bundle is hashed whole, and the install checks each UKI as always).
async fn uki_copies(
    repo: &tough::Repository,
    target: &str,
    head: &[u8],
    running: &Running,
) -> UkiCopies {
    let mut out = UkiCopies::default();
    let Some(uki_path) = running.uki.as_ref() else {
        return out;
    };
    let Ok(artifacts) = artifact_offsets(head) else {
        return out;
    };
    let mut ours: Option<ChunkIndex> = None;
    for (a, at) in artifacts {
        let index_name = delta::uki_index_target(target, &a.name);
        let Ok(name) = tough::TargetName::new(&index_name) else {
            continue;
        };
        if !repo.targets().signed.targets.contains_key(&name) {
            continue;
        }
        out.index_requests += 1;
        let index = match read_index(repo, &name).await {
            Ok((index, len)) => {
                out.index_bytes += len;
                index
            }
            Err(e) => {
                crate::marker::warn(format!("channel: {e:#}; fetching {} whole", a.name));
                continue;
            }
        };
        if index.image_len != a.size {
            crate::marker::warn(format!(
                "channel: {index_name} covers {} bytes, the bundle's {} has {}; fetching it whole",
                index.image_len, a.name, a.size
            ));
            continue;
        }
        // The running UKI is chunked once (both of the bundle's UKIs use the same parameters).
        if ours.as_ref().is_none_or(|i| i.params != index.params) {
            match std::fs::read(uki_path) {
                Ok(bytes) if bytes.len() as u64 <= slate_core::manifest::MAX_BOOT_ARTIFACT => {
                    ours = Some(ChunkIndex::of(&bytes, index.params));
                }
                _ => return out,
            }
        }
        let Some(running_index) = ours.as_ref() else {
            return out;
        };
        let p = plan::plan(&index, running_index, plan::COALESCE_GAP);
        out.pieces.extend(p.ops.iter().filter_map(|op| match *op {
            plan::Op::Copy { from, to, len } => Some(Piece {
                bundle_offset: at + to,
                len,
                device: uki_path.clone(),
                device_offset: from,
                kind: PieceKind::Copied,
            }),
            plan::Op::Fetch { .. } => None,
        }));
        out.plans.push(p);
    }
    out
}

/// The bundle's first `len` bytes (a bounded Range; a server that ignores Range is read that
/// far and dropped).
async fn fetch_head(https: &Https, url: &Url, len: u64) -> anyhow::Result<Vec<u8>> {
    let resp = https.get(url, Some((0, Some(len - 1)))).await?;
    if !matches!(resp.status().as_u16(), 200 | 206) {
        anyhow::bail!("the bundle's head: HTTP {}", resp.status());
    }
    let mut body = resp.into_body();
    let mut head = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            head.extend_from_slice(&data);
        }
        if head.len() as u64 >= len {
            head.truncate(usize::try_from(len).unwrap_or(usize::MAX));
            break;
        }
    }
    Ok(head)
}

/// Where the root image's data starts in a bundle whose first bytes are `head`, for an index
/// of `data_len` bytes: from the manifest's artifact sizes (each entry a 512-byte header and
/// its data padded to 512). The manifest is not trusted here, only used for offsets: the
/// install verifies it and every byte.
#[cfg(test)]
fn rootfs_offset(head: &[u8], data_len: u64) -> anyhow::Result<u64> {
    rootfs_in(head, data_len).map(|(_, at)| at)
}

/// The bundle's root image artifact (see [`rootfs_offset`]) and where its data starts.
fn rootfs_in(head: &[u8], data_len: u64) -> anyhow::Result<(slate_core::manifest::Artifact, u64)> {
    use anyhow::Context;
    let (a, at) = artifact_offsets(head)?
        .into_iter()
        .find(|(a, _)| a.name == ROOTFS)
        .with_context(|| format!("the bundle has no {ROOTFS}"))?;
    let v = a.verity.as_ref().context("a root image without verity")?;
    if v.hash_offset != data_len || a.size < data_len {
        anyhow::bail!(
            "the chunk index covers {data_len} bytes, the bundle's root image data {}",
            v.hash_offset
        );
    }
    Ok((a, at))
}

/// The piece that gives the root image's verity levels (computed from its data as the
/// download assembles it: they change wherever the data does), and what it needs. The
/// superblock block in front of them is fetched with the rest.
fn levels_piece(
    rootfs: &slate_core::manifest::Artifact,
    root_at: u64,
) -> Option<(Piece, TreeSpec)> {
    let v = rootfs.verity.as_ref()?;
    let levels_at = v.hash_offset.checked_add(slate_core::verity::BLOCK)?;
    let len = rootfs.size.checked_sub(levels_at).filter(|&l| l > 0)?;
    let piece = Piece {
        bundle_offset: root_at.checked_add(levels_at)?,
        len,
        device: PathBuf::new(),
        device_offset: 0,
        kind: PieceKind::Tree,
    };
    let spec = TreeSpec {
        data_at: root_at,
        data_len: v.hash_offset,
        salt: v.salt.clone(),
    };
    Some((piece, spec))
}

/// The bundle's boot files (kernel, initramfs) that the running slot's folder on the ESP
/// holds byte for byte (same length and sha256 as the bundle's manifest says), as pieces: an
/// update that keeps its kernel fetches none of it. A manifest that lies costs only bytes (the
/// bundle is hashed whole).
fn identical_boot_files(head: &[u8], running: &Running) -> Vec<Piece> {
    let Ok(artifacts) = artifact_offsets(head) else {
        return Vec::new();
    };
    artifacts
        .into_iter()
        .filter(|(a, _)| a.name != ROOTFS)
        .filter_map(|(a, at)| {
            let path = running.boot_files.join(&a.name);
            holds_file(&path, a.size, &a.sha256).then_some(Piece {
                bundle_offset: at,
                len: a.size,
                device: path,
                device_offset: 0,
                kind: PieceKind::Copied,
            })
        })
        .collect()
}

/// Whether the file at `path` is `len` bytes long with this sha256 (a boot file a delta may
/// copy from; a missing one is not).
pub fn holds_file(path: &Path, len: u64, sha256: &slate_core::Digest32) -> bool {
    std::fs::read(path).is_ok_and(|bytes| {
        bytes.len() as u64 == len
            && <sha2::Sha256 as sha2::Digest>::digest(&bytes).as_slice() == sha256.0
    })
}

/// Each artifact of the bundle whose first bytes are `head`, with where its data starts.
fn artifact_offsets(head: &[u8]) -> anyhow::Result<Vec<(slate_core::manifest::Artifact, u64)>> {
    use anyhow::Context;
    let mut r = BundleReader::new(head);
    let (m, _) = slate_core::install::read_head(&mut r).context("the bundle's head")?;
    let m = Manifest::parse(&m).context("the bundle's manifest")?;
    let offsets = slate_core::bundle::data_offsets(r.offset(), m.artifacts.iter().map(|a| a.size))
        .context("artifact sizes overflow")?;
    Ok(m.artifacts.into_iter().zip(offsets).collect())
}

/// The running slot's chunk index with `params`: kept on /data by root hash, or computed by
/// reading the slot (and kept).
/// Drops the running slot's cached chunk indexes (every average): made again at the next
/// delta, in case a damaged one made the last delta's copies wrong.
pub fn forget_running_index(running: &Running) {
    let prefix = format!("{}-", running.root_hash);
    for e in std::fs::read_dir(CACHE_DIR).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

async fn running_index(
    running: &Running,
    params: slate_core::delta::Params,
) -> anyhow::Result<ChunkIndex> {
    let path = Path::new(CACHE_DIR).join(format!("{}-{}.chunks", running.root_hash, params.avg));
    if let Some(i) = std::fs::read(&path)
        .ok()
        .and_then(|b| ChunkIndex::parse(&b).ok())
        .filter(|i| i.params == params && i.image_len == running.data_len)
    {
        return Ok(i);
    }
    let r = running.clone();
    let index = tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&r.device)?;
        ChunkIndex::of_reader(
            std::io::BufReader::with_capacity(1 << 20, f),
            r.data_len,
            params,
        )
    })
    .await??;
    let _ = std::fs::create_dir_all(CACHE_DIR);
    if let Err(e) = crate::durable::replace(&path, &index.to_bytes()) {
        crate::marker::warn(format!(
            "channel: keeping the running slot's chunk index: {e:#}"
        ));
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use slate_core::manifest::Artifact;
    use slate_core::verity::VerityInfo;
    use slate_core::Digest32;

    /// A format-1 bundle whose root image's data is `data` (its verity tree zeros), and the
    /// bundle offset where that data starts, as the writer placed it.
    fn bundle(data: &[u8]) -> (Vec<u8>, u64) {
        let blocks = data.len() as u64 / 4096;
        let verity = VerityInfo::new(Digest32([1; 32]), vec![], blocks, data.len() as u64).unwrap();
        let mut rootfs = data.to_vec();
        rootfs.resize(usize::try_from(verity.image_size()).unwrap(), 0);
        let artifact = |name: &str, content: &[u8], verity: Option<VerityInfo>| Artifact {
            name: name.into(),
            size: content.len() as u64,
            sha256: Digest32(<sha2::Sha256 as sha2::Digest>::digest(content).into()),
            verity,
        };
        let m = Manifest {
            format: slate_core::manifest::FORMAT,
            product: "p".into(),
            board: "b".into(),
            version: "1.0.0".parse().unwrap(),
            security_epoch: 0,
            created: 0,
            expires: None,
            options: String::new(),
            artifacts: vec![
                artifact(ROOTFS, &rootfs, Some(verity)),
                artifact("vmlinuz", b"abc", None),
                artifact("initrd.img", b"def", None),
            ],
        };
        let mut w = slate_core::bundle::Writer::new(Vec::new(), 0);
        w.head(&m.to_bytes(), b"").unwrap();
        let at = w.get_mut().len() as u64 + 512;
        w.entry(ROOTFS, &rootfs).unwrap();
        w.entry("vmlinuz", b"abc").unwrap();
        w.entry("initrd.img", b"def").unwrap();
        (w.finish().unwrap(), at)
    }

    #[test]
    fn the_root_image_is_found_where_the_bundle_has_it() {
        let data = vec![7u8; 8192];
        let (bytes, expected) = bundle(&data);
        let at = rootfs_offset(&bytes, 8192).unwrap();
        assert_eq!(at, expected);
        assert_eq!(&bytes[at as usize..at as usize + 8192], &data[..]);
        // Only the head is needed.
        assert_eq!(rootfs_offset(&bytes[..at as usize], 8192).unwrap(), at);
        // An index of another length is refused.
        let e = rootfs_offset(&bytes, 4096).unwrap_err();
        assert!(format!("{e:#}").contains("covers 4096 bytes"), "{e:#}");
    }

    #[test]
    fn boot_files_the_running_slot_has_byte_for_byte_are_copied() {
        let (bytes, _) = bundle(&[7u8; 8192]);
        let dir = tempfile::tempdir().unwrap();
        // The running slot has the same kernel and another initramfs.
        std::fs::write(dir.path().join("vmlinuz"), b"abc").unwrap();
        std::fs::write(dir.path().join("initrd.img"), b"xyz").unwrap();
        let running = Running {
            device: dir.path().join("slot"),
            boot_files: dir.path().to_path_buf(),
            data_len: 8192,
            root_hash: String::new(),
            uki: None,
        };
        let pieces = identical_boot_files(&bytes, &running);
        assert_eq!(pieces.len(), 1, "{pieces:?}");
        let p = &pieces[0];
        assert_eq!(p.device, dir.path().join("vmlinuz"));
        let at = p.bundle_offset as usize;
        assert_eq!((&bytes[at..at + 3], p.len), (&b"abc"[..], 3));
    }
}
