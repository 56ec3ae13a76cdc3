//! The bundle download: streamed straight into the install (no copy on /data), continued with
//! Range requests after a drop, and checked against the TUF target's length and sha256 before
//! the install may finish.
//!
//! A resumed response must be `206` with a `Content-Range` that starts where the stream
//! stopped and names the signed length; a server that ignores Range (`200`) is read again from
//! the start and the bytes already delivered are skipped (a clean restart of the transfer, not
//! of the install); a size that changed is an error, never a mixture of two files.
//!
//! A download that a power cut stopped starts with a [`SlotPrefix`]: the bundle's bytes up to
//! the root image come from the server (a bounded Range), the root image's durable prefix
//! from the slot, the rest from the server again. Every byte is hashed either way.

use super::https::Https;
use super::pieces::{stretches, usable, Sink, RANGES_PER_REQUEST};
pub use super::pieces::{Piece, PieceKind, Pieces, SlotPrefix};
use super::seen::Seen;
use anyhow::{bail, Result};
use bytes::Bytes;
use http_body_util::BodyExt;
use slate_core::Digest32;
use std::io::Read;
use std::time::Duration;
use tokio::sync::mpsc;
use url::Url;

/// How long a download keeps trying.
///
/// While it runs, the download holds the install lock and the idle slot has no entry: a mirror
/// or an on-path attacker that trickles bytes, or drops every connection after a little
/// progress, must not keep the device there for as long as it likes. So besides the stall
/// timeout and the tries without progress, a download keeps the push path's minimum average
/// rate (counted from its start, after a grace, backoffs included), which also gives it an
/// overall deadline (the grace plus the signed length at that rate), and opens at most
/// `connections` connections. Missing either gives up: the install fails and frees the lock,
/// and the next check continues from what is durable in the slot.
#[derive(Clone, Copy, Debug)]
pub struct Patience {
    /// Consecutive tries without progress before giving up.
    pub attempts: u32,
    /// Longest wait for the next bytes of a body before the connection counts as dropped.
    pub stall: Duration,
    /// Wait before the second try; doubled per further try (up to 32 times).
    pub first_backoff: Duration,
    /// Connections one download may open in all.
    pub connections: u32,
    /// The slowest average rate kept, in bytes per second.
    pub min_bytes_s: u64,
    /// How long the download runs before its average counts.
    pub grace: Duration,
}

impl Patience {
    /// What the agent uses: the push path's minimum rate (`[agent] min_upload_kib_s`).
    pub fn device(min_upload_kib_s: u32) -> Patience {
        Patience {
            attempts: 8,
            stall: Duration::from_secs(30),
            first_backoff: Duration::from_secs(2),
            connections: 8,
            min_bytes_s: u64::from(min_upload_kib_s.max(1)) * 1024,
            grace: Duration::from_secs(30),
        }
    }

    /// The moment by which a download that started at `started` must have delivered more than
    /// `delivered` bytes to keep the minimum average rate. At the signed length it is the
    /// download's overall deadline.
    pub fn pace_deadline(
        &self,
        started: tokio::time::Instant,
        delivered: u64,
    ) -> tokio::time::Instant {
        let allowed = Duration::from_secs_f64(delivered as f64 / self.min_bytes_s.max(1) as f64);
        started + self.grace + allowed
    }
}

/// A download that stopped for the network's sake (tries exhausted): what was durable stays
/// worth resuming from. Every other download error is about the bytes themselves.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct GaveUp(String);

/// Whether `e` is a [`GaveUp`].
pub fn gave_up(e: &anyhow::Error) -> bool {
    e.downcast_ref::<GaveUp>().is_some()
}

/// A download whose assembled bytes are not the signed target's (its sha256 differs): the
/// server's copy, or a delta's copies from the device's disks, were not what the bundle has.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Mismatch(String);

/// Whether `e` is a [`Mismatch`].
pub fn mismatched(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Mismatch>().is_some()
}

/// What the TUF targets metadata signed for the bundle.
#[derive(Clone, Debug)]
pub struct Expected {
    /// Length in bytes.
    pub length: u64,
    /// sha256.
    pub sha256: Digest32,
}

/// What a download did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fetched {
    /// Bytes received from the server (including any read again after a restart).
    pub bytes: u64,
    /// Bytes taken from the slot's durable prefix instead of the server.
    pub from_slot: u64,
    /// Bytes a delta copied from the running slot instead of fetching them.
    pub copied: u64,
    /// Bytes taken from a static patch's file.
    pub patched: u64,
    /// Bytes of verity levels computed instead of fetched.
    pub computed: u64,
    /// Requests made to the server.
    pub requests: u64,
    /// Range continuations.
    pub resumes: u64,
    /// Full restarts (a server that ignored Range).
    pub restarts: u64,
}

/// The install's side of a bundle streamed by an async task (a channel download, or an upload
/// to the API): a blocking reader of the chunks it sends; a sent error (a hash mismatch at the
/// end) fails the read, so the install never finishes; a closed channel is the end.
pub struct StreamReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    buf: Bytes,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl StreamReader {
    /// A reader and the sender the download feeds.
    pub fn new() -> (mpsc::Sender<Result<Bytes, String>>, StreamReader) {
        let (tx, rx) = mpsc::channel(16);
        (
            tx,
            StreamReader {
                rx,
                buf: Bytes::new(),
                read: std::sync::Arc::default(),
            },
        )
    }

    /// Bytes the install has read so far (the status's progress follows it).
    pub fn counter(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        self.read.clone()
    }
}

impl Read for StreamReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// `bytes a-b/len` → (a, len).
fn content_range(v: &str) -> Option<(u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()?))
}

/// What one frame of a `multipart/byteranges` answer came to.
enum PartsRead {
    /// Its parts' bytes were taken (with the pieces between them); more is to come.
    More,
    /// The answer is complete.
    Done,
    /// Not what was asked for (why): read no further, and ask one stretch at a time.
    Wrong(String),
    /// A part names a file of this many bytes, not the signed target's.
    Mixture(u64),
}

/// Takes one frame of a multipart answer: each part's bytes where the download stands, the
/// pieces between two parts from the disks. A part that does not continue the download, or
/// overruns the next piece, is wrong (a server that merged or reordered the stretches).
async fn read_parts(
    parts: &mut slate_core::channel::multipart::Parts,
    data: &[u8],
    sink: &mut Sink<'_>,
    pending: &mut std::collections::VecDeque<Piece>,
    stats: &mut Fetched,
    length: u64,
) -> PartsRead {
    let segments = match parts.push(data) {
        Ok(s) => s,
        Err(e) => return PartsRead::Wrong(format!("a multipart answer: {e}")),
    };
    for seg in segments {
        // The parts' bodies, as a single answer's body (heads are not counted).
        stats.bytes += seg.bytes.len() as u64;
        if seg.total != length {
            return PartsRead::Mixture(seg.total);
        }
        while seg.offset > sink.delivered {
            let Some(p) = pending.pop_front_if(|p| p.bundle_offset == sink.delivered) else {
                break;
            };
            sink.piece(&p, stats).await;
        }
        let limit = pending.front().map_or(length, |p| p.bundle_offset);
        if seg.offset != sink.delivered || sink.delivered + seg.bytes.len() as u64 > limit {
            return PartsRead::Wrong(
                "a part of the multipart answer that does not continue the download".into(),
            );
        }
        sink.bytes(Bytes::from(seg.bytes)).await;
    }
    if parts.done() {
        PartsRead::Done
    } else {
        PartsRead::More
    }
}

/// Downloads `url` into `tx`, taking the bytes of `pieces` from the device's disks (a
/// resumed prefix, a delta's copies) and the rest from the server, one bounded Range request
/// per stretch between pieces. Returns `Ok` once
/// every byte was fetched and matched the signed sha256 (even when the install stopped
/// reading early: a refused bundle is then known to be the signed one), or with why not (the
/// install then fails at its next read, or has already stopped reading).
pub async fn fetch(
    https: &Https,
    url: &Url,
    expected: &Expected,
    pieces: impl Into<Pieces>,
    tx: mpsc::Sender<Result<Bytes, String>>,
    stats: &mut Fetched,
    patience: &Patience,
) -> Result<()> {
    let Pieces { list: pieces, tree } = pieces.into();
    let mut sink = Sink {
        seen: Seen::new(tree),
        tx: &tx,
        delivered: 0,
        install_stopped: false,
    };
    let mut attempt = 0;
    let mut connections = 0u32;
    let started = tokio::time::Instant::now();
    let too_slow = |delivered: u64| {
        format!(
            "{url}: gave up at byte {delivered} of {} after {} s: below the minimum average of {} KiB/s (deadline {} s for the whole download)",
            expected.length,
            started.elapsed().as_secs(),
            patience.min_bytes_s / 1024,
            patience
                .pace_deadline(started, expected.length)
                .duration_since(started)
                .as_secs()
        )
    };
    let mut last_error = String::new();
    let mut pending = usable(pieces, expected.length);
    // The last request's body stopped before its end (a drop, a stall).
    let mut after_drop = false;
    // Each stretch between pieces is a request of its own: the cap on connections counts
    // those beyond them (retries).
    let allowed_connections = patience
        .connections
        .saturating_add(u32::try_from(pending.len()).unwrap_or(u32::MAX));
    // Several stretches in one request while the server answers them in one
    // `multipart/byteranges` body; after an answer that is not one, a request per stretch.
    let mut multi = true;
    while sink.delivered < expected.length {
        if let Some(p) = pending.pop_front_if(|p| p.bundle_offset == sink.delivered) {
            sink.piece(&p, stats).await;
            continue;
        }
        let wanted = stretches(
            sink.delivered,
            &pending,
            expected.length,
            if multi { RANGES_PER_REQUEST } else { 1 },
        );
        // The first stretch ends at the next piece, or at the end.
        let stop = wanted.first().map_or(expected.length, |w| w.1);
        let backoff = match attempt {
            0 => Duration::ZERO,
            n => patience.first_backoff * (1 << (n - 1).min(5)),
        };
        let delivered = sink.delivered;
        let gave_up = if attempt == patience.attempts {
            Some(format!(
                "{url}: gave up after {} tries at byte {delivered} of {}: {last_error}",
                patience.attempts, expected.length
            ))
        } else if connections == allowed_connections {
            Some(format!(
                "{url}: gave up at byte {delivered} of {} after {connections} connections: {last_error}",
                expected.length
            ))
        } else if tokio::time::Instant::now() + backoff
            > patience.pace_deadline(started, sink.delivered)
        {
            Some(too_slow(sink.delivered))
        } else {
            None
        };
        if let Some(e) = gave_up {
            let _ = tx.send(Err(e.clone())).await;
            return Err(GaveUp(e).into());
        }
        tokio::time::sleep(backoff).await;
        attempt += 1;
        connections += 1;
        stats.requests += 1;
        let range = match (sink.delivered, stop == expected.length) {
            (0, true) => None,
            (from, true) => Some((from, None)),
            (from, false) => Some((from, Some(stop - 1))),
        };
        let several = wanted.len() > 1;
        let resp = if several {
            let ranges: Vec<(u64, Option<u64>)> = wanted
                .iter()
                .map(|&(from, end)| (from, (end < expected.length).then(|| end - 1)))
                .collect();
            https.get_ranges(url, &ranges).await
        } else {
            https.get(url, range).await
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                last_error = format!("{e:#}");
                continue;
            }
        };
        let status = resp.status();
        let mut skip = 0u64;
        let mut parts = None;
        match status.as_u16() {
            200 => {
                if several {
                    // Some object stores answer several ranges with the whole file: ask
                    // again for one stretch rather than read what was sink.delivered again.
                    multi = false;
                    if sink.delivered > 0 {
                        last_error =
                            "the server answered several ranges with the whole file".into();
                        attempt -= 1;
                        continue;
                    }
                }
                if sink.delivered > 0 {
                    // The server ignored Range: read from the start, skip what was sink.delivered.
                    stats.restarts += 1;
                    skip = sink.delivered;
                }
            }
            206 if range.is_some() || several => {
                let header = |name| resp.headers().get(name).and_then(|v| v.to_str().ok());
                parts = header(hyper::header::CONTENT_TYPE)
                    .filter(|_| several)
                    .and_then(slate_core::channel::multipart::Parts::new);
                if parts.is_some() {
                    if after_drop {
                        stats.resumes += 1;
                    }
                } else {
                    // One range answered (the first, or the stretches merged): that one is
                    // read, and the rest asked for one by one.
                    multi = false;
                    match header(hyper::header::CONTENT_RANGE).and_then(content_range) {
                        Some((start, total))
                            if start == sink.delivered && total == expected.length =>
                        {
                            // A continuation after a drop; a delta's next gap is no resume.
                            if after_drop {
                                stats.resumes += 1;
                            }
                        }
                        Some((_, total)) if total != expected.length => {
                            let e = format!("{url}: the server's file is {total} bytes, the signed target {}; refusing a mixture", expected.length);
                            let _ = tx.send(Err(e.clone())).await;
                            bail!(e);
                        }
                        _ => {
                            last_error =
                                "a 206 answer whose Content-Range does not continue the download"
                                    .into();
                            continue;
                        }
                    }
                }
            }
            s if (500..600).contains(&s) || s == 429 || s == 408 => {
                last_error = format!("HTTP {status}");
                continue;
            }
            _ => {
                let e = format!("{url}: HTTP {status}");
                let _ = tx.send(Err(e.clone())).await;
                bail!(e);
            }
        }
        let mut body = resp.into_body();
        after_drop = true;
        loop {
            let pace = patience.pace_deadline(started, sink.delivered);
            let stall = tokio::time::Instant::now() + patience.stall;
            let frame = match tokio::time::timeout_at(pace.min(stall), body.frame()).await {
                Err(_) if pace < stall => {
                    let e = too_slow(sink.delivered);
                    let _ = tx.send(Err(e.clone())).await;
                    return Err(GaveUp(e).into());
                }
                Err(_) => {
                    last_error = format!("no bytes for {:?}", patience.stall);
                    break;
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    last_error = format!("the connection dropped: {e}");
                    break;
                }
                Ok(Some(Ok(f))) => f,
            };
            let Ok(mut data) = frame.into_data() else {
                continue;
            };
            if let Some(parts) = parts.as_mut() {
                match read_parts(
                    parts,
                    &data,
                    &mut sink,
                    &mut pending,
                    stats,
                    expected.length,
                )
                .await
                {
                    PartsRead::More => {
                        attempt = 0;
                        continue;
                    }
                    PartsRead::Done => {
                        attempt = 0;
                        after_drop = false;
                    }
                    PartsRead::Wrong(why) => {
                        last_error = why;
                        multi = false;
                    }
                    PartsRead::Mixture(total) => {
                        let e = format!("{url}: the server's file is {total} bytes, the signed target {}; refusing a mixture", expected.length);
                        let _ = tx.send(Err(e.clone())).await;
                        bail!(e);
                    }
                }
                break;
            }
            stats.bytes += data.len() as u64;
            if skip > 0 {
                let n = skip.min(data.len() as u64);
                skip -= n;
                data = data.slice(usize::try_from(n).unwrap_or(data.len())..);
            }
            if data.is_empty() {
                continue;
            }
            let reached_stop = sink.delivered + data.len() as u64 >= stop && stop < expected.length;
            if reached_stop {
                // Only what comes before the next piece (a server may send more).
                data = data.slice(..usize::try_from(stop - sink.delivered).unwrap_or(0));
            }
            if sink.delivered + data.len() as u64 > expected.length {
                let e = format!("{url}: longer than the signed {} bytes", expected.length);
                let _ = tx.send(Err(e.clone())).await;
                bail!(e);
            }
            sink.bytes(data).await;
            // Progress resets the count of tries: only consecutive failures give up.
            attempt = 0;
            if reached_stop {
                after_drop = false;
                break;
            }
        }
    }
    let got = sink.seen.finalize();
    if got != expected.sha256 {
        let e = format!(
            "{url}: sha256 {got} does not match the signed target's {}",
            expected.sha256
        );
        let _ = tx.send(Err(e.clone())).await;
        return Err(Mismatch(e).into());
    }
    Ok(())
}

#[cfg(test)]
#[path = "download_tests.rs"]
pub(super) mod faults;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_reads_start_and_total() {
        assert_eq!(content_range("bytes 100-199/200"), Some((100, 200)));
        assert_eq!(content_range("bytes 0-0/1"), Some((0, 1)));
        assert_eq!(content_range("bytes */200"), None);
        assert_eq!(content_range("items 1-2/3"), None);
    }
}
