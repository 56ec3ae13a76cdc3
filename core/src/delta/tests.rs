use super::index::{chunk_id, Chunk};
use super::plan::{plan, COALESCE_GAP};
use super::*;
use proptest::prelude::*;

/// Deterministic pseudo-random bytes (xorshift), so tests need no large fixtures.
pub(super) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The new image built as a device would: copies from `running`, fetches from `new`.
fn apply(p: &DeltaPlan, running: &[u8], new: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in &p.ops {
        match *op {
            Op::Copy { from, to, len } => {
                assert_eq!(to as usize, out.len());
                out.extend_from_slice(&running[from as usize..(from + len) as usize]);
            }
            Op::Fetch { to, len } => {
                assert_eq!(to as usize, out.len());
                out.extend_from_slice(&new[to as usize..(to + len) as usize]);
            }
        }
    }
    out
}

const P: Params = Params {
    min: 1024,
    avg: 4096,
    max: 16384,
};

#[test]
fn chunks_tile_the_image_within_their_bounds_and_average_near_the_target() {
    let data = noise(4 << 20, 7);
    let cs = chunks(&data, &P);
    let mut at = 0u64;
    for (i, &(offset, len)) in cs.iter().enumerate() {
        assert_eq!(offset, at);
        assert!(len <= P.max as usize);
        assert!(len >= P.min as usize || i + 1 == cs.len());
        at += len as u64;
    }
    assert_eq!(at, data.len() as u64);
    let avg = data.len() / cs.len();
    assert!((3000..6000).contains(&avg), "average chunk {avg}");
    // Parameters are part of the format: the same bytes always cut the same way.
    assert_eq!(cs, chunks(&data, &P));
    assert_eq!(
        Params::around(16 << 10),
        Params {
            min: 4096,
            avg: 16384,
            max: 65536
        }
    );
    assert_eq!(Params::around(20_000).avg, 16384);
}

#[test]
fn an_index_reads_back_and_its_size_is_a_small_share_of_the_image() {
    let data = noise(8 << 20, 3);
    let idx = ChunkIndex::of(&data, Params::around(32 << 10));
    let bytes = idx.to_bytes();
    assert_eq!(ChunkIndex::parse(&bytes).unwrap(), idx);
    let share = bytes.len() as f64 / data.len() as f64;
    assert!(
        share < 0.0005,
        "index is {:.4}% of the image",
        share * 100.0
    );
}

#[test]
fn hostile_indexes_are_refused_naming_what_is_wrong() {
    let data = noise(1 << 20, 5);
    let good = ChunkIndex::of(&data, P).to_bytes();
    let err = |b: &[u8]| ChunkIndex::parse(b).unwrap_err();
    assert_eq!(err(b"NOTANIDX"), IndexError::Magic);
    assert!(matches!(err(&good[..20]), IndexError::Truncated { .. }));
    // Parameters a device will not use.
    let mut bad = good.clone();
    bad[12..16].copy_from_slice(&3000u32.to_le_bytes());
    assert!(matches!(err(&bad), IndexError::Params { .. }));
    // A count far beyond the image: refused before allocating.
    let mut bad = good.clone();
    bad[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(err(&bad), IndexError::Count { .. }));
    // A length past max.
    let mut idx = ChunkIndex::of(&data, P);
    idx.chunks[0].len = P.max + 1;
    assert!(matches!(
        err(&idx.to_bytes()),
        IndexError::Length { index: 0, .. }
    ));
    // Lengths that do not add up to the image.
    let mut idx = ChunkIndex::of(&data, P);
    idx.image_len += 1;
    assert!(matches!(err(&idx.to_bytes()), IndexError::Sum { .. }));
    // Trailing bytes.
    let mut bad = good.clone();
    bad.push(0);
    assert!(matches!(err(&bad), IndexError::Trailing { .. }));
    let e = err(&bad).to_string();
    assert!(e.contains("byte"), "{e}");
}

#[test]
fn a_wrong_index_can_only_waste_bytes() {
    // An index that lies (it describes the running image, not the new one): the plan copies
    // the running slot's bytes, and the result is not the new image — which the signed
    // sha256 refuses. Ids that lie about lengths match nothing and cost only bytes.
    let running = noise(1 << 20, 11);
    let new = noise(1 << 20, 12);
    let r = ChunkIndex::of(&running, P);
    let p = plan(&r.clone(), &r, 0);
    assert!(apply(&p, &running, &new) != new);
    let mut lying = ChunkIndex::of(&new, P);
    for (c, rc) in lying.chunks.iter_mut().zip(&r.chunks) {
        c.id = rc.id;
    }
    let p = plan(&lying, &r, 0);
    assert!(apply(&p, &running, &new).len() == new.len());
    // Different parameters match nothing: everything is fetched.
    let other = ChunkIndex::of(&running, Params::around(8192));
    let p = plan(&ChunkIndex::of(&new, P), &other, 0);
    assert_eq!((p.copy_bytes, p.fetch_bytes), (0, new.len() as u64));
}

#[test]
fn never_worse_than_full() {
    let running = noise(2 << 20, 1);
    let unrelated = noise(2 << 20, 2);
    let new_idx = ChunkIndex::of(&unrelated, P);
    let p = plan(&new_idx, &ChunkIndex::of(&running, P), COALESCE_GAP);
    let index_len = new_idx.to_bytes().len() as u64;
    assert_eq!(p.mode(index_len, unrelated.len() as u64 + 4096), Mode::Full);
    let same = plan(
        &ChunkIndex::of(&running, P),
        &ChunkIndex::of(&running, P),
        COALESCE_GAP,
    );
    assert_eq!(same.fetch_bytes, 0);
    assert_eq!(same.mode(index_len, running.len() as u64), Mode::Delta);
}

/// A bundle's delta price counts every part of it once: the root image's and the UKIs' copies
/// and requests, the boot files and levels a device holds, the indexes and the head.
#[test]
fn a_bundle_delta_prices_every_part_once() {
    let running = noise(1 << 20, 3);
    let mut new = running.clone();
    new[500_000..500_100].fill(0);
    let root = plan(
        &ChunkIndex::of(&new, P),
        &ChunkIndex::of(&running, P),
        COALESCE_GAP,
    );
    let uki = plan(
        &ChunkIndex::of(&running[..200_000], P),
        &ChunkIndex::of(&running[..200_000], P),
        COALESCE_GAP,
    );
    let (bundle_len, local, index_len, head_len) = (2_000_000u64, 300_000, 5_000, 8_192);
    let priced = |ukis: &[DeltaPlan]| {
        plan::BundleDelta {
            root: &root,
            ukis,
            index_len,
            head_len,
            bundle_len,
            local,
        }
        .cost()
    };
    let (alone, requests) = priced(&[]);
    assert_eq!(requests, root.requests + 3);
    assert_eq!(
        alone,
        index_len + head_len + bundle_len - local - root.copy_bytes
            + requests * plan::REQUEST_OVERHEAD
    );
    // A UKI copied whole lowers the price by exactly its bytes and adds no request.
    let with_uki = priced(std::slice::from_ref(&uki));
    assert_eq!(uki.requests, 0);
    assert_eq!(with_uki, (alone - 200_000, requests));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Edits (insertions, deletions, overwrites) move only the chunks around them: the plan
    /// rebuilds the new image exactly, fetches no chunk the running image has (without
    /// coalescing), fetches at most the edits' neighbourhoods, and with coalescing makes at
    /// most one request per missing run while fetching no more than the gaps it closed.
    #[test]
    fn edits_cost_only_their_neighbourhood(
        seed in any::<u64>(),
        edits in prop::collection::vec((0usize..(1 << 20), 0usize..3, 1usize..2000), 1..6),
    ) {
        let running = noise(1 << 20, seed);
        let mut new = running.clone();
        for &(at, kind, n) in &edits {
            let at = at.min(new.len());
            match kind {
                0 => { let ins = noise(n, seed ^ at as u64); new.splice(at..at, ins); }
                1 => { let end = (at + n).min(new.len()); new.drain(at..end); }
                _ => {
                    let end = (at + n).min(new.len());
                    let over = noise(end - at, seed.wrapping_add(at as u64));
                    new[at..end].copy_from_slice(&over);
                }
            }
        }
        let r = ChunkIndex::of(&running, P);
        let n = ChunkIndex::of(&new, P);
        let exact = plan(&n, &r, 0);
        prop_assert_eq!(apply(&exact, &running, &new), new.clone());
        // No fetched chunk is one the running image has.
        let have: std::collections::HashSet<u64> = r.chunks.iter().map(|c| c.id).collect();
        for op in &exact.ops {
            if let Op::Fetch { to, len } = *op {
                for c in n.chunks.iter().filter(|c: &&Chunk| c.offset >= to && c.offset < to + len) {
                    prop_assert!(!have.contains(&c.id));
                }
            }
        }
        // Each edit costs at most a few chunks around it.
        let bound = edits.iter().map(|&(_, _, n)| n as u64 + 3 * u64::from(P.max)).sum::<u64>();
        prop_assert!(exact.fetch_bytes <= bound, "{} > {}", exact.fetch_bytes, bound);
        // Coalescing: same image, fewer or as many requests, extra bytes only from short gaps.
        let merged = plan(&n, &r, COALESCE_GAP);
        prop_assert_eq!(apply(&merged, &running, &new), new.clone());
        prop_assert!(merged.requests <= exact.requests);
        prop_assert!(merged.fetch_bytes <= exact.fetch_bytes + (exact.requests.saturating_sub(merged.requests)) * COALESCE_GAP);
        prop_assert_eq!(merged.fetch_bytes + merged.copy_bytes, new.len() as u64);
        // The ids are the chunks' sha256 prefixes.
        for c in n.chunks.iter().take(3) {
            let s = c.offset as usize;
            prop_assert_eq!(c.id, chunk_id(&new[s..s + c.len as usize]));
        }
    }

    /// Any bytes either parse into an index that tiles its image, or are refused: never a
    /// panic, never an allocation the bytes do not pay for.
    #[test]
    fn any_bytes_parse_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut b = MAGIC_PREFIXED.to_vec();
        b.extend_from_slice(&bytes);
        if let Ok(idx) = ChunkIndex::parse(&b) {
            let sum: u64 = idx.chunks.iter().map(|c| u64::from(c.len)).sum();
            prop_assert_eq!(sum, idx.image_len);
        }
        let _ = ChunkIndex::parse(&bytes);
    }
}

/// The magic and sane parameters, for the fuzzing property above.
const MAGIC_PREFIXED: &[u8] = &[
    b'S', b'L', b'A', b'T', b'E', b'C', b'I', b'1', 0, 4, 0, 0, 0, 16, 0, 0, 0, 64, 0, 0,
];

#[test]
fn a_reader_is_chunked_as_the_bytes_are() {
    for len in [0usize, 100, 5000, 3 << 20] {
        let data = noise(len, len as u64);
        let whole = ChunkIndex::of(&data, P);
        // A reader that hands out few bytes at a time.
        struct Dribble<'a>(&'a [u8]);
        impl std::io::Read for Dribble<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = out.len().min(self.0.len()).min(777);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let streamed = ChunkIndex::of_reader(Dribble(&data), len as u64, P).unwrap();
        assert_eq!(streamed, whole, "{len} bytes");
    }
    // A reader shorter than it was said to be is an error, not a short index.
    assert!(ChunkIndex::of_reader(&[0u8; 10][..], 20, P).is_err());
}
