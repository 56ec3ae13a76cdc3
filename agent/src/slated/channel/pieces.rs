//! The bytes of a bundle a download takes from the device's own disks rather than the server
//! — a resumed prefix of the idle slot, a delta's copies of the running slot and its boot
//! files, a static patch's file, the verity levels computed as the data passes — and the
//! [`Sink`] that assembles them with the server's bytes in the bundle's order. What is left
//! between the pieces are the stretches the download asks the server for ([`stretches`]).

use super::download::{Expected, Fetched};
use super::seen::Seen;
use bytes::Bytes;
use tokio::sync::mpsc;

/// Bundle bytes that are already in the idle slot (see [`crate::slated::resume`]).
#[derive(Clone, Debug)]
pub struct SlotPrefix {
    /// Where they sit in the bundle, and how many.
    pub at: crate::slated::resume::Prefix,
    /// The slot's block device, read from its first byte.
    pub device: std::path::PathBuf,
}

impl SlotPrefix {
    /// What an earlier download of exactly `expected` left durable in the `idle` slot
    /// (the record at [`crate::slated::resume::RECORD`]), if anything.
    pub fn left_for(expected: &Expected, idle: slate_core::layout::Slot) -> Option<SlotPrefix> {
        let at = crate::slated::resume::load(std::path::Path::new(crate::slated::resume::RECORD))?
            .prefix_for(&expected.sha256, expected.length, idle)?;
        let device = crate::partitions::find(idle.label()).ok()?;
        Some(SlotPrefix {
            at,
            device: device.into(),
        })
    }
}

/// Where a [`Piece`]'s bytes come from, for the counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceKind {
    /// The idle slot's durable prefix, written before a power cut.
    Resumed,
    /// A stretch of the running slot (or of its boot files) that a delta copies.
    Copied,
    /// A static patch's own bytes, read from its file on /data (fetched before the download).
    Patched,
    /// The root image's verity levels, computed from its data as it passed
    /// ([`super::seen::Seen`]); `device_offset` is the offset in the levels.
    Tree,
}

/// The pieces of a download, and the root image whose tree levels a [`PieceKind::Tree`]
/// piece computes.
#[derive(Debug, Default)]
pub struct Pieces {
    /// The pieces.
    pub list: Vec<Piece>,
    /// The root image, for a tree piece.
    pub tree: Option<super::seen::TreeSpec>,
}

impl From<Vec<Piece>> for Pieces {
    fn from(list: Vec<Piece>) -> Pieces {
        Pieces { list, tree: None }
    }
}

/// Bundle bytes the device holds on one of its disks, taken from there instead of the
/// server; hashed with the rest, so a piece that is not what the bundle has never reaches a
/// clean end.
#[derive(Clone, Debug)]
pub struct Piece {
    /// Where they sit in the bundle.
    pub bundle_offset: u64,
    /// How many.
    pub len: u64,
    /// The block device (or file) holding them.
    pub device: std::path::PathBuf,
    /// Where they start on it.
    pub device_offset: u64,
    /// Resumed or copied.
    pub kind: PieceKind,
}

impl From<SlotPrefix> for Piece {
    fn from(p: SlotPrefix) -> Piece {
        Piece {
            bundle_offset: p.at.bundle_offset,
            len: p.at.len,
            device: p.device,
            device_offset: 0,
            kind: PieceKind::Resumed,
        }
    }
}

/// The pieces a download can use: in the bundle, not empty, in order, none overlapping the
/// one before (a later one that would is cut to what follows it: a resumed prefix taken
/// first, a delta's piece that straddles its end still gives the rest).
pub(super) fn usable(mut pieces: Vec<Piece>, length: u64) -> std::collections::VecDeque<Piece> {
    pieces.retain(|p| {
        p.len > 0
            && p.bundle_offset
                .checked_add(p.len)
                .is_some_and(|end| end <= length)
    });
    pieces.sort_by_key(|p| p.bundle_offset);
    let mut out = std::collections::VecDeque::with_capacity(pieces.len());
    let mut end = 0u64;
    for mut p in pieces {
        let p_end = p.bundle_offset + p.len;
        if p_end <= end {
            continue;
        }
        if p.bundle_offset < end {
            let cut = end - p.bundle_offset;
            p.bundle_offset = end;
            p.device_offset += cut;
            p.len -= cut;
        }
        end = p_end;
        out.push_back(p);
    }
    out
}

/// Stretches asked for in one request.
pub const RANGES_PER_REQUEST: usize = slate_core::delta::plan::RANGES_PER_REQUEST;

/// The stretches of the bundle from `delivered` that no piece gives, `[from, end)`, in
/// order, at most `most`: the first up to the next piece (or the end), then those between
/// the pieces after it.
pub(super) fn stretches(
    delivered: u64,
    pending: &std::collections::VecDeque<Piece>,
    length: u64,
    most: usize,
) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = delivered;
    let mut pieces = pending
        .iter()
        .filter(|p| p.bundle_offset >= delivered)
        .peekable();
    while at < length && out.len() < most {
        match pieces.peek() {
            Some(p) if p.bundle_offset <= at => {
                at = at.max(p.bundle_offset + p.len);
                pieces.next();
            }
            Some(p) => {
                out.push((at, p.bundle_offset));
                at = p.bundle_offset;
            }
            None => {
                out.push((at, length));
                at = length;
            }
        }
    }
    out
}

/// Where a download's bytes go, in the bundle's order: hashed, counted, and sent to the
/// install while it reads.
pub(super) struct Sink<'a> {
    pub(super) seen: Seen,
    pub(super) tx: &'a mpsc::Sender<Result<Bytes, String>>,
    /// Bytes of the bundle delivered so far.
    pub(super) delivered: u64,
    /// The install stopped reading (it refused the bundle and says why itself); the rest is
    /// still fetched and hashed, so the device knows whether the signed target is bad
    /// (remembered, never fetched again) or this copy of it (a corrupt mirror or cache: tried
    /// again later).
    pub(super) install_stopped: bool,
}

impl Sink<'_> {
    /// Takes a piece from the disks, counting it by kind; a disk that fails half way leaves
    /// the rest to the server (the next request starts where it stopped).
    pub(super) async fn piece(&mut self, p: &Piece, stats: &mut Fetched) {
        let before = self.delivered;
        let fed = self.feed(p).await;
        let n = self.delivered - before;
        match p.kind {
            PieceKind::Resumed => stats.from_slot += n,
            PieceKind::Copied => stats.copied += n,
            PieceKind::Patched => stats.patched += n,
            PieceKind::Tree => stats.computed += n,
        }
        if let Err(why) = fed {
            crate::marker::warn(format!(
                "channel: bytes {}..{} of the bundle cannot be read from {} ({why}); downloading them instead",
                p.bundle_offset,
                p.bundle_offset + p.len,
                p.device.display()
            ));
        }
    }

    /// A piece's bytes, hashed and sent; `delivered` counts what was taken even when reading
    /// the disk fails half way (the error says why).
    async fn feed(&mut self, p: &Piece) -> Result<(), String> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        if p.kind == PieceKind::Tree {
            let bytes = self.seen.levels(p.device_offset, p.len)?;
            self.bytes(Bytes::from(bytes)).await;
            return Ok(());
        }
        let at_fault = |e: std::io::Error| format!("{}: {e}", p.device.display());
        let mut f = tokio::fs::File::open(&p.device).await.map_err(at_fault)?;
        f.seek(std::io::SeekFrom::Start(p.device_offset))
            .await
            .map_err(at_fault)?;
        let mut left = p.len;
        while left > 0 {
            let mut buf = vec![0u8; usize::try_from(left.min(256 << 10)).unwrap_or(256 << 10)];
            f.read_exact(&mut buf).await.map_err(at_fault)?;
            left -= buf.len() as u64;
            self.bytes(Bytes::from(buf)).await;
        }
        Ok(())
    }

    /// Server bytes, the next of the bundle.
    pub(super) async fn bytes(&mut self, data: Bytes) {
        self.seen.take(self.delivered, &data);
        self.delivered += data.len() as u64;
        if !self.install_stopped && self.tx.send(Ok(data)).await.is_err() {
            self.install_stopped = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stretches between pieces, in order, at most `most`: adjacent pieces leave none
    /// between them, and the last runs to the end.
    #[test]
    fn stretches_are_the_gaps_between_pieces() {
        let piece = |at: u64, len: u64| Piece {
            bundle_offset: at,
            len,
            device: "d".into(),
            device_offset: 0,
            kind: PieceKind::Copied,
        };
        let pending: std::collections::VecDeque<Piece> =
            [piece(10, 5), piece(15, 5), piece(30, 10), piece(90, 10)].into();
        assert_eq!(
            stretches(0, &pending, 100, 32),
            vec![(0, 10), (20, 30), (40, 90)]
        );
        assert_eq!(stretches(0, &pending, 120, 32).last(), Some(&(100, 120)));
        assert_eq!(stretches(0, &pending, 100, 2), vec![(0, 10), (20, 30)]);
        assert_eq!(stretches(20, &pending, 100, 1), vec![(20, 30)]);
        assert!(stretches(100, &pending, 100, 32).is_empty());
    }
}
