//! A `multipart/byteranges` answer (RFC 9110 §14.6), read as it arrives: one request asks
//! for many stretches of a bundle, and each connection saved is a TCP and TLS handshake saved
//! on a link where each round trip is slow.
//!
//! Pure: frames in, the parts' bytes out with where they sit in the bundle (the device's
//! download reads with it; a fuzz target feeds it anything). Nothing here is trusted for the
//! result — the download checks that each part continues where the bytes stopped, and the
//! bundle is hashed whole against the signed sha256.

/// A part's head (its delimiter line and its header lines) longer than this is refused: a
/// server's is about 100 bytes.
const MAX_HEAD: usize = 4096;

/// Bytes of the bundle from one part of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Where they sit in the bundle.
    pub offset: u64,
    /// The whole file's length, as the part's `Content-Range` says.
    pub total: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Why an answer is not a `multipart/byteranges` body this reader takes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PartsError {
    /// A part's head did not end within [`MAX_HEAD`] bytes.
    #[error("a part's head runs past {MAX_HEAD} bytes")]
    HeadTooLong,
    /// Something other than a line break before a part's delimiter (a part longer than its
    /// `Content-Range` said, or another boundary).
    #[error("{0} bytes that are not a line break before a part's delimiter")]
    Stray(usize),
    /// A part without a usable `Content-Range: bytes a-b/total`.
    #[error("a part without a Content-Range of the form bytes a-b/total")]
    NoContentRange,
}

enum State {
    /// Reading a part's head (or the closing delimiter).
    Head,
    /// Inside a part: the next byte's offset, bytes left, the file's length.
    Body { at: u64, left: u64, total: u64 },
    /// After the closing delimiter: anything more is an epilogue, ignored.
    Done,
}

/// The reader of one answer.
pub struct Parts {
    /// `--` and the boundary.
    delimiter: Vec<u8>,
    state: State,
    /// A head being gathered across frames.
    head: Vec<u8>,
}

impl Parts {
    /// A reader for an answer whose `Content-Type` is `content_type`, or None when that is not
    /// `multipart/byteranges` with a boundary.
    pub fn new(content_type: &str) -> Option<Parts> {
        let mut params = content_type.split(';');
        let kind = params.next()?.trim();
        if !kind.eq_ignore_ascii_case("multipart/byteranges") {
            return None;
        }
        let boundary = params.find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("boundary")
                .then(|| v.trim().trim_matches('"').to_string())
        })?;
        if boundary.is_empty() || boundary.len() > 70 {
            return None;
        }
        Some(Parts {
            delimiter: format!("--{boundary}").into_bytes(),
            state: State::Head,
            head: Vec::new(),
        })
    }

    /// Whether the closing delimiter has been read (the answer is complete).
    pub fn done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The bytes of the parts in `data`, the next frame of the answer.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Segment>, PartsError> {
        let mut out = Vec::new();
        let mut buf = data.to_vec();
        let mut pos = 0;
        while pos < buf.len() {
            match &mut self.state {
                State::Done => break,
                State::Body { at, left, total } => {
                    let n = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(buf.len() - pos);
                    out.push(Segment {
                        offset: *at,
                        total: *total,
                        bytes: buf[pos..pos + n].to_vec(),
                    });
                    pos += n;
                    *at += n as u64;
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::Head;
                    }
                }
                State::Head => {
                    self.head.extend_from_slice(&buf[pos..]);
                    pos = buf.len();
                    if let Some((state, used)) = head(&self.head, &self.delimiter)? {
                        // What follows the head is the part's body (or the next head).
                        buf = self.head.split_off(used);
                        pos = 0;
                        self.head.clear();
                        self.state = state;
                    } else if self.head.len() > MAX_HEAD {
                        return Err(PartsError::HeadTooLong);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A part's head at the start of `buf` (the line break ending the previous part, the
/// delimiter, the header lines, an empty line), or the closing delimiter: what follows, and
/// the bytes it took. None while it is incomplete.
fn head(buf: &[u8], delimiter: &[u8]) -> Result<Option<(State, usize)>, PartsError> {
    let Some(at) = find(buf, delimiter) else {
        // The delimiter may still be arriving; nothing else may come first.
        let keep = buf.len().min(delimiter.len() + 2);
        return stray(&buf[..buf.len() - keep]).map(|()| None);
    };
    stray(&buf[..at])?;
    let after = &buf[at + delimiter.len()..];
    if after.len() < 2 {
        return Ok(None);
    }
    if after.starts_with(b"--") {
        return Ok(Some((State::Done, buf.len())));
    }
    let Some(end) = find(after, b"\r\n\r\n") else {
        return Ok(None);
    };
    let lines = String::from_utf8_lossy(&after[..end]);
    let range = lines
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-range"))
        .and_then(|(_, v)| content_range(v))
        .ok_or(PartsError::NoContentRange)?;
    let (first, last, total) = range;
    Ok(Some((
        State::Body {
            at: first,
            left: last - first + 1,
            total,
        },
        at + delimiter.len() + end + 4,
    )))
}

/// Refuses anything but line breaks (and blanks) where only they may be.
fn stray(bytes: &[u8]) -> Result<(), PartsError> {
    match bytes.iter().filter(|b| !b" \t\r\n".contains(b)).count() {
        0 => Ok(()),
        n => Err(PartsError::Stray(n)),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `bytes a-b/total` → (a, b, total), with a ≤ b < total.
fn content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last, total): (u64, u64, u64) = (
        first.trim().parse().ok()?,
        last.trim().parse().ok()?,
        total.trim().parse().ok()?,
    );
    (first <= last && last < total).then_some((first, last, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TYPE: &str = "multipart/byteranges; boundary=00000000000000000001";

    /// An answer as nginx writes it, for `ranges` of `file`.
    fn answer(file: &[u8], ranges: &[(usize, usize)]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(a, b) in ranges {
            out.extend_from_slice(
                format!(
                    "\r\n--00000000000000000001\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {a}-{b}/{}\r\n\r\n",
                    file.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(&file[a..=b]);
        }
        out.extend_from_slice(b"\r\n--00000000000000000001--\r\n");
        out
    }

    /// Runs of bytes by their offset.
    type Runs = Vec<(u64, Vec<u8>)>;

    /// Each part's bytes joined, with its offset, from `body` fed in frames of `split`; and
    /// whether the answer was complete.
    fn read(body: &[u8], split: &[usize]) -> (Result<Runs, PartsError>, bool) {
        let mut parts = Parts::new(TYPE).unwrap();
        let mut got: Runs = Vec::new();
        let mut rest = body;
        let mut sizes = split.iter().copied().cycle();
        while !rest.is_empty() {
            let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
            let (frame, tail) = rest.split_at(n);
            rest = tail;
            match parts.push(frame) {
                Ok(segments) => {
                    for s in segments {
                        match got.last_mut() {
                            Some((at, b)) if *at + b.len() as u64 == s.offset => {
                                b.extend_from_slice(&s.bytes)
                            }
                            _ => got.push((s.offset, s.bytes)),
                        }
                    }
                }
                Err(e) => return (Err(e), parts.done()),
            }
        }
        (Ok(got), parts.done())
    }

    #[test]
    fn the_boundary_is_read_from_the_content_type() {
        assert!(Parts::new(TYPE).is_some());
        assert!(Parts::new("Multipart/Byteranges; charset=x; boundary=\"a b\"").is_some());
        assert!(Parts::new("application/octet-stream").is_none());
        assert!(Parts::new("multipart/byteranges").is_none());
        assert!(Parts::new("multipart/byteranges; boundary=").is_none());
    }

    #[test]
    fn a_part_longer_than_its_range_or_without_one_is_refused() {
        let file: Vec<u8> = (0..100u8).collect();
        let mut body = answer(&file, &[(0, 9), (50, 59)]);
        // One byte more in the first part than its range says.
        let at = find(&body, b"\r\n--00000000000000000001\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 50").unwrap();
        body.insert(at, b'x');
        assert_eq!(read(&body, &[7]).0, Err(PartsError::Stray(1)));
        let no_range = b"--b\r\nContent-Type: x\r\n\r\nabc".to_vec();
        let mut parts = Parts::new("multipart/byteranges; boundary=b").unwrap();
        assert_eq!(parts.push(&no_range), Err(PartsError::NoContentRange));
        let mut parts = Parts::new("multipart/byteranges; boundary=b").unwrap();
        let endless = format!("--b\r\nX: {}", "y".repeat(MAX_HEAD));
        assert_eq!(parts.push(endless.as_bytes()), Err(PartsError::HeadTooLong));
        // A range that runs backwards, or past the file, is no range.
        assert_eq!(content_range("bytes 9-3/10"), None);
        assert_eq!(content_range("bytes 3-10/10"), None);
    }

    proptest! {
        /// However the answer is cut into frames, each part's bytes come out whole, at its
        /// offset, and the closing delimiter ends it.
        #[test]
        fn any_framing_gives_the_parts(
            cuts in prop::collection::btree_set(0usize..4000, 0..12),
            split in prop::collection::vec(1usize..300, 1..8),
        ) {
            let file: Vec<u8> = (0..4000u32).map(|i| (i * 31 % 253) as u8).collect();
            let cuts: Vec<usize> = cuts.into_iter().collect();
            let ranges: Vec<(usize, usize)> = cuts
                .chunks(2)
                .filter(|c| c.len() == 2)
                .map(|c| (c[0], c[1]))
                .collect();
            prop_assume!(!ranges.is_empty());
            let (got, done) = read(&answer(&file, &ranges), &split);
            let want: Vec<(u64, Vec<u8>)> =
                ranges.iter().map(|&(a, b)| (a as u64, file[a..=b].to_vec())).collect();
            // Adjacent ranges read as one run; compare the bytes by offset.
            let flat = |v: &[(u64, Vec<u8>)]| -> Vec<(u64, u8)> {
                v.iter()
                    .flat_map(|(at, b)| b.iter().enumerate().map(move |(i, x)| (at + i as u64, *x)))
                    .collect()
            };
            prop_assert_eq!(flat(&got.unwrap()), flat(&want));
            prop_assert!(done);
        }

        /// Any bytes are read or refused, never a panic.
        #[test]
        fn any_bytes_are_read_or_refused(body in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = read(&body, &[13]);
        }
    }
}
