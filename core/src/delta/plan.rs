//! What a delta install does: for each stretch of the new root image, copy it from the running
//! slot (where the running slot's index has a chunk with the same identity) or fetch it from
//! the full bundle by HTTP Range; and whether that is worth it against fetching the whole
//! bundle.

use super::index::ChunkIndex;
use std::collections::HashMap;

/// Fetching a stretch of bytes the running slot has is cheaper than a request of its own when
/// the stretch between two fetched runs is shorter than this.
pub const COALESCE_GAP: u64 = 64 << 10;

/// What one request costs beyond its body (request and response heads, a range's multipart
/// boundary), in bytes: counted in the delta's price.
pub const REQUEST_OVERHEAD: u64 = 600;

/// Stretches a device asks for in one request (`Range: bytes=a-b,c-d,…`) when the server
/// answers them in one `multipart/byteranges` body: each request saved is a connection (TCP
/// and TLS handshakes) saved; 32 keep the request's head near 1 KiB.
pub const RANGES_PER_REQUEST: usize = 32;

/// A delta at or above this share of the full bundle is not worth it.
pub const WORTH_IT: (u64, u64) = (95, 100);

/// One step of a delta install, in the new image's order; together they tile it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Copy `len` bytes from the running slot at `from` to the new image at `to`.
    Copy {
        /// Offset in the running slot.
        from: u64,
        /// Offset in the new image.
        to: u64,
        /// Bytes.
        len: u64,
    },
    /// Fetch `len` bytes of the new image at `to` (one Range request).
    Fetch {
        /// Offset in the new image.
        to: u64,
        /// Bytes.
        len: u64,
    },
}

impl Op {
    /// Where in the new image the step starts, and how many bytes it gives.
    pub fn span(&self) -> (u64, u64) {
        match *self {
            Op::Copy { to, len, .. } | Op::Fetch { to, len } => (to, len),
        }
    }
}

/// The steps of a delta install and what they cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaPlan {
    /// The steps, tiling the new image in order.
    pub ops: Vec<Op>,
    /// Bytes fetched (the new image's bytes only).
    pub fetch_bytes: u64,
    /// Bytes copied from the running slot.
    pub copy_bytes: u64,
    /// Range requests (one per fetched run).
    pub requests: u64,
}

/// Full bundle or delta, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Fetch the whole bundle.
    Full,
    /// Fetch only what the plan says (the chunk index's dynamic tier).
    Delta,
    /// Fetch one patch made for the running release (the static tier).
    Static,
}

impl Mode {
    /// The word in markers and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Delta => "delta",
            Mode::Static => "static",
        }
    }
}

/// The plan that builds `new` from `running` (both chunked with the same parameters: with
/// different ones nothing matches and everything is fetched) and the bytes fetched in between:
/// runs of copies shorter than `gap` between two fetches are fetched too.
pub fn plan(new: &ChunkIndex, running: &ChunkIndex, gap: u64) -> DeltaPlan {
    let same = new.params == running.params;
    // A chunk is had when the running image has one of the same identity *and* length: equal
    // contents have both, and a copy never reads past the running chunk whatever an index says.
    let have: HashMap<(u64, u32), u64> = if same {
        running
            .chunks
            .iter()
            .map(|c| ((c.id, c.len), c.offset))
            .collect()
    } else {
        HashMap::new()
    };
    // Chunk by chunk, merging neighbours of the same kind that continue each other.
    let mut ops: Vec<Op> = Vec::new();
    for c in &new.chunks {
        let len = u64::from(c.len);
        let op = match have.get(&(c.id, c.len)) {
            Some(&from) => Op::Copy {
                from,
                to: c.offset,
                len,
            },
            None => Op::Fetch { to: c.offset, len },
        };
        push_merged(&mut ops, op);
    }
    // A short copy between two fetches costs a request more than fetching it.
    let mut coalesced: Vec<Op> = Vec::with_capacity(ops.len());
    for i in 0..ops.len() {
        let op = ops[i];
        let between_fetches = i > 0
            && i + 1 < ops.len()
            && matches!(ops[i - 1], Op::Fetch { .. })
            && matches!(ops[i + 1], Op::Fetch { .. });
        let op = match op {
            Op::Copy { to, len, .. } if between_fetches && len < gap => Op::Fetch { to, len },
            other => other,
        };
        push_merged(&mut coalesced, op);
    }
    let mut p = DeltaPlan {
        ops: coalesced,
        fetch_bytes: 0,
        copy_bytes: 0,
        requests: 0,
    };
    for op in &p.ops {
        match op {
            Op::Copy { len, .. } => p.copy_bytes += len,
            Op::Fetch { len, .. } => {
                p.fetch_bytes += len;
                p.requests += 1;
            }
        }
    }
    p
}

/// Appends `op`, merged into the last step when it continues it.
fn push_merged(ops: &mut Vec<Op>, op: Op) {
    match (ops.last_mut(), op) {
        (
            Some(Op::Copy { from, to, len }),
            Op::Copy {
                from: f,
                to: t,
                len: l,
            },
        ) if *from + *len == f && *to + *len == t => *len += l,
        (Some(Op::Fetch { to, len }), Op::Fetch { to: t, len: l }) if *to + *len == t => *len += l,
        _ => ops.push(op),
    }
}

/// What fetching a whole bundle by delta costs on the wire, as the device plans it and as
/// `slate repo status` and the bench report it (one formula for the three).
#[derive(Debug, Clone, Copy)]
pub struct BundleDelta<'a> {
    /// The root image's plan against the running slot.
    pub root: &'a DeltaPlan,
    /// Each UKI's plan against the UKI the device booted (format 2; none for format 1).
    pub ukis: &'a [DeltaPlan],
    /// The chunk indexes' bytes (the root image's and the UKIs').
    pub index_len: u64,
    /// The bundle's head, read to find the root image.
    pub head_len: u64,
    /// The whole bundle's bytes.
    pub bundle_len: u64,
    /// Bytes the device has without a plan: boot files identical to its own, and the verity
    /// levels it computes.
    pub local: u64,
}

impl BundleDelta<'_> {
    /// Bytes over the network and requests: the indexes, the head, every bundle byte the
    /// device does not hold, and each request's overhead — the plans' own, one for the head,
    /// and one each for the stretches before and after the root image.
    pub fn cost(&self) -> (u64, u64) {
        let copied = self
            .ukis
            .iter()
            .fold(self.root.copy_bytes, |n, p| n.saturating_add(p.copy_bytes));
        let requests = self
            .ukis
            .iter()
            .fold(self.root.requests.saturating_add(3), |n, p| {
                n.saturating_add(p.requests)
            });
        let cost = self
            .index_len
            .saturating_add(self.head_len)
            .saturating_add(
                self.bundle_len
                    .saturating_sub(copied.saturating_add(self.local)),
            )
            .saturating_add(requests.saturating_mul(REQUEST_OVERHEAD));
        (cost, requests)
    }
}

/// Whether fetching `cost` bytes instead of a bundle of `full` is worth it (under
/// [`WORTH_IT`]).
pub fn worth_it(cost: u64, full: u64) -> bool {
    u128::from(cost) * u128::from(WORTH_IT.1) < u128::from(full) * u128::from(WORTH_IT.0)
}

impl DeltaPlan {
    /// What the delta costs over the network: the index, the fetched bytes, and each
    /// request's overhead.
    pub fn cost(&self, index_len: u64) -> u64 {
        index_len
            .saturating_add(self.fetch_bytes)
            .saturating_add(self.requests.saturating_mul(REQUEST_OVERHEAD))
    }

    /// Delta when it costs less than [`WORTH_IT`] of the full bundle's `full_len` bytes,
    /// else the full bundle (never worse than full, whatever the index says).
    pub fn mode(&self, index_len: u64, full_len: u64) -> Mode {
        if worth_it(self.cost(index_len), full_len) {
            Mode::Delta
        } else {
            Mode::Full
        }
    }
}
