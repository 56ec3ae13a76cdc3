#![no_main]
//! What stage 1 reads that an attacker with the disk or the bus controls: a TPM's responses
//! (any bytes on `/dev/tpmrm0`), the sealed data partition's header, the sparse template.
//! None may panic; what is accepted stays inside the input.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use slate_core::tpm::header::Header;
    use slate_core::tpm::wire::{Cc, Response};
    for cc in [Cc::Unseal, Cc::CreatePrimary, Cc::PcrRead, Cc::VerifySignature, Cc::NvReadPublic] {
        for handles in 0..2 {
            if let Ok(mut r) = Response::parse(cc, data, handles) {
                while let Ok(b) = r.b() {
                    assert!(b.len() <= data.len());
                }
            }
        }
    }
    if let Ok(h) = Header::pick(data) {
        assert!(h.sealed.private.len() + h.sealed.public.len() <= data.len());
        // What was read encodes again and reads back the same.
        if let Some(again) = h.encode() {
            assert_eq!(Header::decode(&again).ok(), Some(h));
        }
    }
    if let Ok((len, runs)) = slate_core::sparse::decode(data) {
        let mut end = 0u64;
        for r in runs {
            assert!(r.offset >= end);
            end = r.offset + r.bytes.len() as u64;
            assert!(end <= len);
        }
    }
});
