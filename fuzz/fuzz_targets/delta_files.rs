#![no_main]
//! A delta's chunk index and static patch come from the channel (authenticated, but a
//! compromised publisher must still not crash a device): parsing either must never panic, and
//! what parses must tile its image or bundle exactly.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(i) = slate_core::delta::ChunkIndex::parse(data) {
        let sum: u64 = i.chunks.iter().map(|c| u64::from(c.len)).sum();
        assert_eq!(sum, i.image_len);
    }
    let mut patch = slate_core::delta::patch::MAGIC.to_vec();
    patch.extend_from_slice(data);
    for bytes in [data, &patch[..]] {
        if let Ok(p) = slate_core::delta::patch::read(bytes) {
            let mut at = 0u64;
            for op in &p.ops {
                let (to, len) = op.span();
                assert_eq!(to, at);
                assert!(len > 0);
                at += len;
            }
            assert_eq!(at, p.target_len);
        }
    }
});
