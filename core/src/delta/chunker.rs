//! Content-defined chunking: cut points that depend on the bytes around them, not on their
//! offsets, so an insertion or a deletion moves only the chunks next to it and every other
//! chunk of the image keeps its identity.
//!
//! FastCDC (Xia et al., USENIX ATC 2016): a gear hash rolled over the bytes, a cut where its
//! top bits are zero, with "normalised chunking" — a harder condition before the average size
//! and an easier one after (level 1: one bit each way) — so chunk sizes cluster around the
//! average instead of spreading geometrically. The gear table, the masks and the parameters are part of the index format:
//! publisher and device must cut identically, so none of them may change without a new index
//! version.

/// Chunk sizes: no chunk is shorter than `min` (but the last) or longer than `max`, and the
/// average is near `avg` (a power of two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Shortest chunk (but the image's last).
    pub min: u32,
    /// Target average (a power of two).
    pub avg: u32,
    /// Longest chunk.
    pub max: u32,
}

impl Params {
    /// Parameters around an average of `avg` bytes (rounded down to a power of two, at least
    /// 256): min a quarter of it, max four times.
    pub fn around(avg: u32) -> Params {
        let avg = avg.max(256);
        let avg = 1u32 << (31 - avg.leading_zeros());
        Params {
            min: avg / 4,
            avg,
            max: avg.saturating_mul(4),
        }
    }

    /// Whether a device may chunk with these (an index read from outside says them): sizes in
    /// order, the average a power of two, bounds a device can afford.
    pub fn is_sane(&self) -> bool {
        self.min >= 64
            && self.min <= self.avg
            && self.avg <= self.max
            && self.max <= 16 << 20
            && self.avg.is_power_of_two()
    }

    /// The masks: a cut needs the hash's top `bits + 1` bits zero before the average, its top
    /// `bits - 1` after (normalisation level 1), where `avg = 2^bits`. Level 2 (the paper's
    /// default) ties cuts to the chunk's start so strongly that one inserted byte moved 16
    /// chunks (75 KB) before the cuts met again (a property test found it); level 1 meets
    /// within two, and fetches about as much on the e2e images (`cargo xtask bench delta`).
    fn masks(&self) -> (u64, u64) {
        let bits = self.avg.trailing_zeros();
        let top = |n: u32| -> u64 {
            let n = n.clamp(1, 63);
            !0u64 << (64 - n)
        };
        (top(bits + 1), top(bits.saturating_sub(1)))
    }
}

/// The gear table: 256 pseudo-random words from SplitMix64 with a fixed seed (part of the
/// format; see the module's comment).
const GEAR: [u64; 256] = gear();

const fn gear() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut state: u64 = 0x5eed_51a7_e0de_c0de;
    let mut i = 0;
    while i < 256 {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        table[i] = z ^ (z >> 31);
        i += 1;
    }
    table
}

/// Where the first chunk of `data` ends (its length): FastCDC's cut with `p`.
pub fn cut(data: &[u8], p: &Params) -> usize {
    let min = p.min as usize;
    let max = p.max as usize;
    let n = data.len().min(max);
    if n <= min {
        return n;
    }
    let normal = (p.avg as usize).min(n);
    let (hard, easy) = p.masks();
    let mut hash = 0u64;
    let mut i = min;
    while i < normal {
        hash = (hash << 1).wrapping_add(GEAR[usize::from(data[i])]);
        if hash & hard == 0 {
            return i + 1;
        }
        i += 1;
    }
    while i < n {
        hash = (hash << 1).wrapping_add(GEAR[usize::from(data[i])]);
        if hash & easy == 0 {
            return i + 1;
        }
        i += 1;
    }
    n
}

/// The chunks of `data` as `(offset, length)`, in order, covering it exactly.
pub fn chunks(data: &[u8], p: &Params) -> Vec<(u64, usize)> {
    let mut out = Vec::with_capacity(data.len() / (p.avg.max(1) as usize) + 1);
    let mut at = 0usize;
    while at < data.len() {
        let len = cut(&data[at..], p);
        out.push((u64::try_from(at).unwrap_or(u64::MAX), len));
        at += len;
    }
    out
}
