//! `fetch` with pieces: a delta's copies from the running slot, pieces that overlap, and the
//! verity levels it computes instead of fetching.

use super::*;

/// A download of the test payload with a delta's copies from a "running slot" (a file
/// holding the bundle's bytes at other offsets), against a server with `fault`: the pieces
/// leave two stretches to fetch, 0..10,000 and 80,000..200,000.
async fn with_copies(
    fault: Fault,
) -> (
    Result<()>,
    Result<Vec<u8>, String>,
    Fetched,
    Vec<Vec<(usize, Option<usize>)>>,
) {
    let data = payload();
    let slot = tempfile::NamedTempFile::new().unwrap();
    let mut disk = vec![0u8; 4096];
    disk.extend_from_slice(&data[200_000..300_000]);
    disk.extend_from_slice(&data[10_000..60_000]);
    disk.extend_from_slice(&data[55_000..80_000]);
    std::fs::write(slot.path(), &disk).unwrap();
    let piece = |bundle_offset: u64, len: u64, device_offset: u64| Piece {
        bundle_offset,
        len,
        device: slot.path().to_path_buf(),
        device_offset,
        kind: PieceKind::Copied,
    };
    let server = serve(fault).await;
    let (https, url, expected, patience) = client(&server);
    let (tx, reader) = StreamReader::new();
    let consumer = consume(reader);
    let mut stats = Fetched::default();
    // Given out of order, with one inside another (dropped) and one straddling another's
    // end (cut to what follows it).
    let pieces = vec![
        piece(200_000, 100_000, 4096),
        piece(10_000, 50_000, 4096 + 100_000),
        piece(20_000, 10_000, 4096 + 110_000),
        piece(55_000, 25_000, 4096 + 150_000),
    ];
    let result = fetch(&https, &url, &expected, pieces, tx, &mut stats, &patience).await;
    let delivered = consumer.await.unwrap();
    let ranges = server.ranges.lock().unwrap().clone();
    (result, delivered, stats, ranges)
}

const GAPS: [(usize, Option<usize>); 2] = [(0, Some(9_999)), (80_000, Some(199_999))];

#[tokio::test]
async fn copied_pieces_are_taken_from_the_disk_and_only_the_gaps_fetched() {
    let (result, delivered, stats, ranges) = with_copies(Fault::None).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(delivered.is_ok_and(|d| d == payload()));
    assert_eq!((stats.copied, stats.from_slot), (170_000, 0));
    assert_eq!(stats.bytes, (LEN - 170_000) as u64);
    // The two gaps, bounded, in one request (a multipart answer); the last piece ends the
    // bundle.
    assert_eq!(stats.requests, 1);
    assert_eq!(ranges, vec![GAPS.to_vec()]);
}

/// A server that answers several ranges with the first alone, or with the whole file: the
/// download takes what continues it and asks for the rest one stretch at a time.
#[tokio::test]
async fn a_server_without_multipart_answers_gets_a_request_per_stretch() {
    let (result, delivered, stats, ranges) = with_copies(Fault::FirstRangeOnly).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(delivered.is_ok_and(|d| d == payload()));
    assert_eq!(stats.bytes, (LEN - 170_000) as u64);
    assert_eq!(ranges, vec![GAPS.to_vec(), vec![GAPS[1]]]);

    // The whole file for the first request, read up to the first piece (nothing had been
    // delivered); then a stretch at a time.
    let (result, delivered, stats, ranges) = with_copies(Fault::WholeForSeveral).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(delivered.is_ok_and(|d| d == payload()));
    assert_eq!(stats.copied, 170_000);
    assert_eq!(ranges, vec![GAPS.to_vec(), vec![GAPS[1]]]);
    assert_eq!(stats.restarts, 0);
}

/// An answer that stops inside its second part is continued from the byte it stopped at.
#[tokio::test]
async fn a_multipart_answer_cut_short_is_continued_where_it_stopped() {
    let (result, delivered, stats, ranges) = with_copies(Fault::DropInSecondPart).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(delivered.is_ok_and(|d| d == payload()));
    assert_eq!(stats.bytes, (LEN - 170_000) as u64, "{stats:?}");
    assert_eq!(stats.resumes, 1);
    assert_eq!(ranges.len(), 2);
    let (from, to) = ranges[1][0];
    assert!(
        from > 80_000 && from < 200_000 && to == Some(199_999),
        "{ranges:?}"
    );
}

/// A resumed prefix comes first; a delta's piece that straddles its end gives the rest of its
/// bytes (cut at the prefix's end), one it covers whole is dropped, and pieces outside the
/// bundle or empty are never used.
#[test]
fn overlapping_pieces_are_cut_not_lost() {
    let piece = |at: u64, len: u64, from: u64, kind: PieceKind| Piece {
        bundle_offset: at,
        len,
        device: "d".into(),
        device_offset: from,
        kind,
    };
    let got = usable(
        vec![
            piece(100, 50, 0, PieceKind::Resumed),
            piece(90, 20, 1000, PieceKind::Copied),
            piece(120, 10, 2000, PieceKind::Copied),
            piece(140, 30, 3000, PieceKind::Patched),
            piece(170, 0, 0, PieceKind::Copied),
            piece(190, 20, 0, PieceKind::Copied),
        ],
        200,
    );
    let spans: Vec<(u64, u64, u64)> = got
        .iter()
        .map(|p| (p.bundle_offset, p.len, p.device_offset))
        .collect();
    // 90..110 first; the prefix 100..150 cut to 110..150 (its device offset moved by 10);
    // 120..130 inside it dropped; 140..170 cut to 150..170; the empty and the overrunning
    // ones left out.
    assert_eq!(spans, vec![(90, 20, 1000), (110, 40, 10), (150, 20, 3010)]);
}

/// A delta's verity levels are computed from the data the download assembled, never fetched:
/// the bundle (a head, a sealed root image, a tail) arrives whole and right while the server
/// is asked only for the rest.
#[tokio::test]
async fn verity_levels_are_computed_not_fetched() {
    const HEAD: usize = 1536;
    let data: Vec<u8> = (0..64 * 4096).map(|i| (i * 13 % 241) as u8).collect();
    let tree = slate_core::verity::build(
        &data[..],
        data.len() as u64,
        b"salt",
        slate_core::guid::Guid::NIL,
        1,
        &mut |_| {},
    )
    .unwrap();
    let mut bundle = vec![3u8; HEAD];
    bundle.extend_from_slice(&data);
    bundle.extend_from_slice(&tree.area);
    bundle.extend_from_slice(&[5u8; 1000]);
    let levels_at = HEAD + data.len() + 4096;
    let levels_len = tree.area.len() - 4096;
    let server = serve_bytes(Fault::None, bundle.clone()).await;
    let (https, url, _, patience) = client(&server);
    let expected = Expected {
        length: bundle.len() as u64,
        sha256: slate_core::Digest32(Sha256::digest(&bundle).into()),
    };
    let (tx, reader) = StreamReader::new();
    let consumer = consume(reader);
    let pieces = Pieces {
        list: vec![Piece {
            bundle_offset: levels_at as u64,
            len: levels_len as u64,
            device: std::path::PathBuf::new(),
            device_offset: 0,
            kind: PieceKind::Tree,
        }],
        tree: Some(crate::slated::channel::seen::TreeSpec {
            data_at: HEAD as u64,
            data_len: data.len() as u64,
            salt: b"salt".to_vec(),
        }),
    };
    let mut stats = Fetched::default();
    let result = fetch(&https, &url, &expected, pieces, tx, &mut stats, &patience).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(consumer.await.unwrap().is_ok_and(|d| d == bundle));
    assert_eq!(stats.computed, levels_len as u64);
    assert_eq!(stats.bytes, (bundle.len() - levels_len) as u64);
    assert_eq!(
        server.ranges.lock().unwrap().clone(),
        vec![vec![
            (0, Some(levels_at - 1)),
            (levels_at + levels_len, None)
        ]]
    );
}
