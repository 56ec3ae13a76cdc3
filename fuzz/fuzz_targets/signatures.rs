#![no_main]
//! manifest.sig arrives from the network; checking it must never panic.
use std::sync::OnceLock;
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    static TRUST: OnceLock<slate_core::manifest::Trust> = OnceLock::new();
    let trust = TRUST.get_or_init(|| slate_core::manifest::Trust {
        threshold: 1,
        keys: vec![slate_core::manifest::TrustedKey {
            id: "6a0b0c6f8b0a8bd4".into(),
            public_key: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a".into(),
        }],
    });
    if let Ok(s) = slate_core::manifest::Signatures::parse(data) {
        let _ = slate_core::manifest::Verifier { trust }.check_signatures(b"format = 1\n", &s);
    }
});
